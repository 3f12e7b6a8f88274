/* orpo-hpc inspect FILE [--attrs] [--max-depth N]: the tree of an HDF5 file (groups, datasets
 * with dtype, shape, storage and filters, named types, key attributes) or the tensors of a
 * .safetensors file. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "io/err.h"
#include "io/h5x.h"
#include "io/mem.h"
#include "io/safetensors.h"

typedef struct walk {
    int all_attrs;
    int max_depth; /* -1: unlimited */
    haddr_t seen[4096];
    int nseen;
} walk;

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int key_attr(const char *name) {
    return !strncmp(name, "format", 6) || ends_with(name, "version");
}

static void print_string(const char *s) {
    putchar('"');
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n < 200; p++, n++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p == '\n') printf("\\n");
        else if (*p < 0x20) printf("\\x%02x", *p);
        else putchar(*p);
    }
    if (n >= 200) printf("...");
    putchar('"');
}

static void print_dims(int nd, const hsize_t *d) {
    printf("[");
    for (int i = 0; i < nd; i++) printf("%s%llu", i ? ", " : "", (unsigned long long)d[i]);
    printf("]");
}

typedef struct actx {
    int indent, all;
} actx;

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *ainfo, void *cd) {
    (void)ainfo;
    actx *c = cd;
    if (!c->all && !key_attr(name)) return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) {
        printf("%*s@%s = (unreadable)\n", c->indent, "", name);
        return 0;
    }
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    hssize_t np = H5Sget_simple_extent_npoints(s);
    int nd = H5Sget_simple_extent_ndims(s);
    H5T_class_t cls = H5Tget_class(t);
    printf("%*s@%s = ", c->indent, "", name);
    if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && np >= 0 && np <= 4096) {
        size_t n = (size_t)np;
        int isint = cls == H5T_INTEGER;
        void *buf = mem_alloc(n * 8, "an HDF5 attribute");
        if (H5Aread(a, isint ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, buf) >= 0) {
            if (nd > 0) printf("[");
            for (size_t i = 0; i < n && i < 16; i++) {
                if (isint) printf("%s%lld", i ? ", " : "", (long long)((int64_t *)buf)[i]);
                else printf("%s%.9g", i ? ", " : "", ((double *)buf)[i]);
            }
            if (n > 16) printf(", ... (%zu values)", n);
            if (nd > 0) printf("]");
        } else {
            printf("(unreadable)");
        }
        free(buf);
    } else if (cls == H5T_STRING && np == 1) {
        char *str = NULL;
        hid_t mt = H5Tcopy(t);
        if (H5Tis_variable_str(t) > 0) {
            char *p = NULL;
            if (H5Aread(a, mt, &p) >= 0 && p) {
                print_string(p);
                H5free_memory(p);
            } else {
                printf("(unreadable)");
            }
        } else {
            size_t sz = H5Tget_size(t);
            str = mem_calloc(sz + 1, 1, "an HDF5 string attribute");
            if (H5Aread(a, mt, str) >= 0) print_string(str);
            else printf("(unreadable)");
            free(str);
        }
        H5Tclose(mt);
    } else {
        char d[256];
        hsize_t dims[H5S_MAX_RANK];
        printf("%s ", h5x_type_describe(t, d, sizeof d));
        if (nd > 0 && nd <= H5S_MAX_RANK) {
            H5Sget_simple_extent_dims(s, dims, NULL);
            print_dims(nd, dims);
        } else {
            printf("scalar");
        }
    }
    printf("\n");
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
    H5Eclear2(H5E_DEFAULT);
    return 0;
}

static void print_attrs(hid_t obj, int indent, int all) {
    actx c = {indent, all};
    hsize_t idx = 0;
    H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, &c);
    H5Eclear2(H5E_DEFAULT);
}

static void print_dataset(hid_t d) {
    char desc[1024];
    hid_t t = H5Dget_type(d), s = H5Dget_space(d), p = H5Dget_create_plist(d);
    printf("dataset %s", h5x_type_describe(t, desc, sizeof desc));
    if (H5Tcommitted(t) > 0) {
        char tn[256] = "";
        if (H5Iget_name(t, tn, sizeof tn) > 0) printf(" (named type %s)", tn);
    }
    int nd = H5Sget_simple_extent_ndims(s);
    if (nd == 0) {
        printf(" scalar");
    } else if (nd > 0 && nd <= H5S_MAX_RANK) {
        hsize_t cur[H5S_MAX_RANK], max[H5S_MAX_RANK];
        H5Sget_simple_extent_dims(s, cur, max);
        printf(" ");
        print_dims(nd, cur);
        int differs = 0;
        for (int i = 0; i < nd; i++) differs |= max[i] != cur[i];
        if (differs) {
            printf(" max [");
            for (int i = 0; i < nd; i++) {
                if (max[i] == H5S_UNLIMITED) printf("%sunlimited", i ? ", " : "");
                else printf("%s%llu", i ? ", " : "", (unsigned long long)max[i]);
            }
            printf("]");
        }
    }
    H5D_layout_t lay = H5Pget_layout(p);
    if (lay == H5D_CHUNKED) {
        hsize_t ch[H5S_MAX_RANK];
        int cn = H5Pget_chunk(p, H5S_MAX_RANK, ch);
        printf(" chunked ");
        print_dims(cn > 0 ? cn : 0, ch);
    } else if (lay == H5D_CONTIGUOUS) {
        printf(" contiguous");
    } else if (lay == H5D_COMPACT) {
        printf(" compact");
    } else if (lay == H5D_VIRTUAL) {
        printf(" virtual");
    }
    int nf = H5Pget_nfilters(p);
    for (int i = 0; i < nf; i++) {
        unsigned flags = 0, cfg = 0, cd[8];
        size_t ncd = 8;
        char fname[64] = "";
        H5Z_filter_t id = H5Pget_filter2(p, (unsigned)i, &flags, &ncd, cd, sizeof fname, fname, &cfg);
        const char *name = id == H5Z_FILTER_DEFLATE ? "deflate" : id == H5Z_FILTER_SHUFFLE ? "shuffle"
                         : id == H5Z_FILTER_FLETCHER32 ? "fletcher32" : id == H5Z_FILTER_SZIP ? "szip"
                         : id == H5Z_FILTER_NBIT ? "nbit" : id == H5Z_FILTER_SCALEOFFSET ? "scaleoffset"
                         : fname[0] ? fname : "filter";
        printf("%s%s", i ? "+" : " filters ", name);
        if (id == H5Z_FILTER_DEFLATE && ncd >= 1) printf("(%u)", cd[0]);
        else if (id != H5Z_FILTER_SHUFFLE && id != H5Z_FILTER_FLETCHER32) printf("(id %d)", (int)id);
    }
    printf(", %llu bytes stored\n", (unsigned long long)H5Dget_storage_size(d));
    H5Pclose(p);
    H5Sclose(s);
    H5Tclose(t);
    H5Eclear2(H5E_DEFAULT);
}

typedef struct gctx {
    walk *w;
    int depth;
} gctx;

static void print_group(hid_t g, int depth, walk *w);

static herr_t link_cb(hid_t g, const char *name, const H5L_info_t *li, void *cd) {
    gctx *c = cd;
    int indent = 2 * c->depth;
    if (li->type == H5L_TYPE_SOFT || li->type == H5L_TYPE_EXTERNAL) {
        char target[1024] = "";
        H5Lget_val(g, name, target, sizeof target, H5P_DEFAULT);
        if (li->type == H5L_TYPE_SOFT) printf("%*s%s -> %s (soft link)\n", indent, "", name, target);
        else printf("%*s%s (external link)\n", indent, "", name);
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    H5O_info_t oi;
    if (H5Oget_info_by_name2(g, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
        printf("%*s%s (unreadable object)\n", indent, "", name);
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) {
        printf("%*s%s (cannot open)\n", indent, "", name);
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    if (oi.type == H5O_TYPE_GROUP) {
        int again = 0;
        for (int i = 0; i < c->w->nseen; i++) again |= c->w->seen[i] == oi.addr;
        if (again) {
            printf("%*s%s/ (group, hard link to a group shown before)\n", indent, "", name);
        } else {
            if (c->w->nseen < (int)(sizeof c->w->seen / sizeof c->w->seen[0])) c->w->seen[c->w->nseen++] = oi.addr;
            hsize_t n = 0;
            H5G_info_t gi;
            if (H5Gget_info(o, &gi) >= 0) n = gi.nlinks;
            printf("%*s%s/ (group, %llu members)\n", indent, "", name, (unsigned long long)n);
            print_attrs(o, indent + 4, c->w->all_attrs);
            if (c->w->max_depth < 0 || c->depth + 1 <= c->w->max_depth) print_group(o, c->depth + 1, c->w);
            else if (n) printf("%*s... (deeper than --max-depth %d)\n", indent + 2, "", c->w->max_depth);
        }
    } else if (oi.type == H5O_TYPE_DATASET) {
        printf("%*s%s ", indent, "", name);
        print_dataset(o);
        print_attrs(o, indent + 4, c->w->all_attrs);
    } else if (oi.type == H5O_TYPE_NAMED_DATATYPE) {
        char desc[512];
        printf("%*s%s named datatype %s\n", indent, "", name, h5x_type_describe(o, desc, sizeof desc));
        print_attrs(o, indent + 4, c->w->all_attrs);
    } else {
        printf("%*s%s (unknown object type)\n", indent, "", name);
    }
    H5Oclose(o);
    H5Eclear2(H5E_DEFAULT);
    return 0;
}

static void print_group(hid_t g, int depth, walk *w) {
    gctx c = {w, depth};
    hsize_t idx = 0;
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, link_cb, &c);
    H5Eclear2(H5E_DEFAULT);
}

static int inspect_h5(const char *path, walk *w) {
    hid_t f;
    int rc = h5x_open(path, 0, &f);
    if (rc) return rc;
    H5F_info2_t fi;
    hsize_t size = 0;
    H5Fget_filesize(f, &size);
    int sb = H5Fget_info2(f, &fi) >= 0 ? (int)fi.super.version : -1;
    printf("%s: HDF5, superblock version %d%s, %llu bytes\n", path, sb,
           sb >= 3 ? " (HDF5 >= 1.10)" : sb >= 0 ? " (readable by HDF5 1.8)" : "", (unsigned long long)size);
    H5O_info_t oi;
    if (H5Oget_info_by_name2(f, "/", &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0) w->seen[w->nseen++] = oi.addr;
    hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
    H5G_info_t gi;
    unsigned long long n = root >= 0 && H5Gget_info(root, &gi) >= 0 ? (unsigned long long)gi.nlinks : 0;
    printf("/ (group, %llu members)\n", n);
    if (root >= 0) {
        print_attrs(root, 4, w->all_attrs);
        if (w->max_depth != 0) print_group(root, 1, w);
        else if (n) printf("  ... (deeper than --max-depth 0)\n");
        H5Gclose(root);
    }
    H5Eclear2(H5E_DEFAULT);
    return h5x_close(&f);
}

static int inspect_st(const char *path) {
    st_file *f;
    int rc = st_open(path, &f);
    if (rc) return rc;
    uint64_t total = 0;
    for (int i = 0; i < st_count(f); i++) total += st_at(f, i)->nbytes;
    printf("%s: safetensors, %d tensors, %llu bytes of tensor data\n", path, st_count(f), (unsigned long long)total);
    for (int i = 0; i < st_meta_count(f); i++) {
        const char *k, *v;
        st_meta_at(f, i, &k, &v);
        printf("  @%s = ", k);
        print_string(v);
        printf("\n");
    }
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        printf("  %s %s [", t->name, st_dtype_name(t->dtype));
        for (int k = 0; k < t->ndim; k++) printf("%s%lld", k ? ", " : "", (long long)t->shape[k]);
        printf("] bytes [%llu, %llu)\n", (unsigned long long)t->begin, (unsigned long long)t->end);
    }
    st_close(f);
    return ERR_OK;
}

int cmd_inspect(int argc, char **argv) {
    static walk w;
    memset(&w, 0, sizeof w);
    w.max_depth = -1;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--attrs")) {
            w.all_attrs = 1;
        } else if (!strcmp(argv[i], "--max-depth")) {
            char *end = NULL;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : -1;
            if (i + 1 >= argc || !end || *end || v < 0 || v > 1000)
                return err_set(ERR_ARGS, "inspect: --max-depth needs a number 0..1000, got '%s'",
                               i + 1 < argc ? argv[i + 1] : ""), cli_fail();
            w.max_depth = (int)v;
            i++;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return err_set(ERR_ARGS, "inspect: unknown option '%s' (usage: orpo-hpc inspect FILE [--attrs] [--max-depth N])",
                           argv[i]), cli_fail();
        } else if (path) {
            return err_set(ERR_ARGS, "inspect: one file at a time ('%s' and '%s')", path, argv[i]), cli_fail();
        } else {
            path = argv[i];
        }
    }
    if (!path) return err_set(ERR_ARGS, "inspect: no file given (usage: orpo-hpc inspect FILE [--attrs] [--max-depth N])"), cli_fail();
    struct stat st;
    if (stat(path, &st) != 0) return err_set(ERR_IO, "%s: cannot open: %s", path, strerror(errno)), cli_fail();
    h5x_init();
    int rc;
    if (H5Fis_hdf5(path) <= 0 && ends_with(path, ".safetensors")) rc = inspect_st(path);
    else rc = inspect_h5(path, &w);
    fflush(stdout);
    return rc ? cli_fail() : 0;
}
