/* content_hash — hash of an HDF5 file's content (see content_hash.h). */
#include "io/content_hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "io/h5x.h"
#include "io/mem.h"

/* ---- the stream hash -------------------------------------------------------------------------- */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* an 8-byte little-endian word (one load on little-endian machines) */
static inline uint64_t le64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

static inline uint64_t round64(uint64_t v, uint64_t w) { return rotl(v + w * P2, 31) * P1; }

void chash_init(chash_state *s) {
    memset(s, 0, sizeof *s);
    s->v[0] = P1 + P2;
    s->v[1] = P2;
    s->v[2] = 0;
    s->v[3] = (uint64_t)0 - P1;
}

/* whole 32-byte stripes: four lanes, one word each */
static const unsigned char *stripes(uint64_t v[4], const unsigned char *p, const unsigned char *end) {
    uint64_t a = v[0], b = v[1], c = v[2], d = v[3];
    for (; end - p >= 32; p += 32) {
        a = round64(a, le64(p));
        b = round64(b, le64(p + 8));
        c = round64(c, le64(p + 16));
        d = round64(d, le64(p + 24));
    }
    v[0] = a, v[1] = b, v[2] = c, v[3] = d;
    return p;
}

void chash_update(chash_state *s, const void *data, size_t n) {
    const unsigned char *p = data, *end = p + n;
    s->total += n;
    if (s->nbuf) {
        size_t k = 32 - s->nbuf < n ? 32 - s->nbuf : n;
        memcpy(s->buf + s->nbuf, p, k);
        s->nbuf += k;
        p += k;
        if (s->nbuf < 32) return;
        stripes(s->v, s->buf, s->buf + 32);
        s->nbuf = 0;
    }
    p = stripes(s->v, p, end);
    s->nbuf = (size_t)(end - p);
    memcpy(s->buf, p, s->nbuf);
}

uint64_t chash_final(const chash_state *s) {
    uint64_t h = rotl(s->v[0], 1) + rotl(s->v[1], 7) + rotl(s->v[2], 12) + rotl(s->v[3], 18);
    for (int i = 0; i < 4; i++) h = (h ^ round64(0, s->v[i])) * P1 + P4;
    h += s->total;
    const unsigned char *p = s->buf, *end = s->buf + s->nbuf;
    for (; end - p >= 8; p += 8) h = rotl(h ^ round64(0, le64(p)), 27) * P1 + P4;
    for (; p < end; p++) h = rotl(h ^ (*p * P5), 11) * P1;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

void chash_hex(uint64_t h, char *buf) { snprintf(buf, CHASH_HEX, "%016llx", (unsigned long long)h); }

/* ---- the file walk ---------------------------------------------------------------------------- */

#define BLOCK_BYTES ((size_t)64 << 20)

typedef struct walk {
    const char *file;
    char **paths;
    size_t n, cap;
    chash_state st;
    int rc;
    const char *obj; /* path of the object whose attributes are being hashed */
} walk;

static void put_str(chash_state *s, const char *t) { chash_update(s, t, strlen(t) + 1); }

static void put_i64(chash_state *s, int64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)v >> (8 * i));
    chash_update(s, b, 8);
}

/* type description and shape of a value */
static int put_type_shape(walk *w, hid_t type, hid_t space, int *nd, hsize_t *dims) {
    char desc[1024];
    h5x_type_describe(type, desc, sizeof desc);
    put_str(&w->st, desc);
    *nd = H5Sget_simple_extent_ndims(space);
    if (*nd < 0 || *nd > H5X_MAX_DIMS || H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        return err_set(ERR_DATA, "%s: %s: cannot read the shape", w->file, w->obj);
    put_i64(&w->st, *nd);
    for (int i = 0; i < *nd; i++) put_i64(&w->st, (int64_t)dims[i]);
    return ERR_OK;
}

/* variable-length strings: their text, each with its NUL. attr >= 0: an attribute, else dataset d */
static int put_vstrings(walk *w, hid_t attr, hid_t d, hid_t ftype, hid_t space, hsize_t npoints) {
    hid_t mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(ftype)) < 0)
        return err_set(ERR_INTERNAL, "HDF5 string type");
    char **v = mem_calloc((size_t)npoints, sizeof *v, "content hash: strings");
    herr_t e = attr >= 0 ? H5Aread(attr, mt, v) : H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    int rc = ERR_OK;
    if (e < 0) rc = err_set(ERR_DATA, "%s: %s: cannot read the strings", w->file, w->obj);
    for (hsize_t i = 0; !rc && i < npoints; i++) put_str(&w->st, v[i] ? v[i] : "");
    if (e >= 0) H5Dvlen_reclaim(mt, space, H5P_DEFAULT, v);
    free(v);
    H5Tclose(mt);
    return rc;
}

static int hashable(walk *w, hid_t type) {
    if (H5Tis_variable_str(type) > 0) return ERR_OK;
    if (H5Tdetect_class(type, H5T_VLEN) > 0 || H5Tdetect_class(type, H5T_REFERENCE) > 0)
        return err_set(ERR_DATA, "%s: %s: a variable-length or reference type, which orpo-hpc files do not hold",
                       w->file, w->obj);
    return ERR_OK;
}

static herr_t on_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    walk *w = data;
    if (!strcmp(w->obj, "/") &&
        (!strcmp(name, CHASH_ATTR) || !strcmp(name, "created_by") || !strcmp(name, "source_dir") ||
         !strcmp(name, "model_path")))
        return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1, sp = a >= 0 ? H5Aget_space(a) : -1;
    int rc = a < 0 || t < 0 || sp < 0 ? err_set(ERR_DATA, "%s: %s: attribute %s: cannot open", w->file, w->obj, name) : 0;
    int nd = 0;
    hsize_t dims[H5X_MAX_DIMS];
    if (!rc) {
        put_str(&w->st, name);
        rc = put_type_shape(w, t, sp, &nd, dims);
    }
    if (!rc) rc = hashable(w, t);
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : 0;
    if (!rc && np > 0) {
        if (H5Tis_variable_str(t) > 0) {
            rc = put_vstrings(w, a, -1, t, sp, (hsize_t)np);
        } else {
            size_t bytes = (size_t)np * H5Tget_size(t);
            void *buf = mem_alloc(bytes, "content hash: attribute");
            if (H5Aread(a, t, buf) < 0) rc = err_set(ERR_DATA, "%s: %s: attribute %s: cannot read", w->file, w->obj, name);
            else chash_update(&w->st, buf, bytes);
            free(buf);
        }
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    if (rc) w->rc = rc;
    return rc ? -1 : 0;
}

static int put_attrs(walk *w, hid_t obj) {
    hsize_t idx = 0;
    w->rc = ERR_OK;
    if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, on_attr, w) < 0 && !w->rc)
        w->rc = err_set(ERR_DATA, "%s: %s: cannot list the attributes", w->file, w->obj);
    return w->rc;
}

/* a dataset's type, shape and bytes, read along dim 0 in blocks of about BLOCK_BYTES (whole chunks) */
static int put_dataset(walk *w, hid_t d) {
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    int rc = t < 0 || sp < 0 ? err_set(ERR_DATA, "%s: %s: cannot open the dataset", w->file, w->obj) : 0;
    int nd = 0;
    hsize_t dims[H5X_MAX_DIMS];
    if (!rc) rc = put_type_shape(w, t, sp, &nd, dims);
    if (!rc) rc = hashable(w, t);
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : 0;
    if (!rc && np > 0 && H5Tis_variable_str(t) > 0) {
        rc = put_vstrings(w, -1, d, t, sp, (hsize_t)np);
    } else if (!rc && np > 0) {
        size_t esz = H5Tget_size(t), row = esz;
        for (int i = 1; i < nd; i++) row *= (size_t)dims[i];
        hsize_t nrows = nd ? dims[0] : 1, block = BLOCK_BYTES / row ? BLOCK_BYTES / row : 1;
        hid_t pl = H5Dget_create_plist(d);
        hsize_t chunk[H5X_MAX_DIMS];
        if (nd && pl >= 0 && H5Pget_layout(pl) == H5D_CHUNKED && H5Pget_chunk(pl, nd, chunk) == nd && chunk[0] > 0)
            block = (block + chunk[0] - 1) / chunk[0] * chunk[0];
        if (pl >= 0) H5Pclose(pl);
        if (block > nrows) block = nrows;
        unsigned char *buf = mem_alloc((size_t)block * row, "content hash: read buffer");
        for (hsize_t r0 = 0; !rc && r0 < nrows; r0 += block) {
            hsize_t n = nrows - r0 < block ? nrows - r0 : block;
            herr_t e;
            if (nd == 0) {
                e = H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            } else {
                hsize_t start[H5X_MAX_DIMS] = {0}, count[H5X_MAX_DIMS];
                memcpy(count, dims, sizeof(hsize_t) * (size_t)nd);
                start[0] = r0;
                count[0] = n;
                hid_t ms = H5Screate_simple(nd, count, NULL);
                e = ms < 0 || H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL) < 0
                        ? -1
                        : H5Dread(d, t, ms, sp, H5P_DEFAULT, buf);
                if (ms >= 0) H5Sclose(ms);
            }
            if (e < 0) rc = err_set(ERR_DATA, "%s: %s: cannot read rows %llu..%llu (damaged file?)", w->file, w->obj,
                                    (unsigned long long)r0, (unsigned long long)(r0 + n));
            else chash_update(&w->st, buf, (size_t)n * row);
        }
        free(buf);
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    return rc;
}

static herr_t on_link(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    walk *w = data;
    if (info->type != H5L_TYPE_HARD) return 0;
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->paths = mem_realloc(w->paths, w->cap * sizeof *w->paths, "content hash: object list");
    }
    w->paths[w->n++] = mem_strdup(name, "content hash: object name");
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int hash_open_file(hid_t f, const char *path, uint64_t *h) {
    walk w;
    memset(&w, 0, sizeof w);
    w.file = path;
    chash_init(&w.st);
    put_str(&w.st, "orpo-hpc content hash 1");
    int rc = ERR_OK;
    w.obj = "/";
    put_str(&w.st, "/");
    rc = put_attrs(&w, f);
    if (!rc && H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, on_link, &w) < 0)
        rc = err_set(ERR_DATA, "%s: cannot list the objects", path);
    if (w.n > 1) qsort(w.paths, w.n, sizeof *w.paths, cmp_str);
    for (size_t i = 0; !rc && i < w.n; i++) {
        w.obj = w.paths[i];
        hid_t o = H5Oopen(f, w.paths[i], H5P_DEFAULT);
        if (o < 0) {
            rc = err_set(ERR_DATA, "%s: %s: cannot open", path, w.paths[i]);
            break;
        }
        H5I_type_t kind = H5Iget_type(o);
        put_str(&w.st, w.paths[i]);
        put_i64(&w.st, kind == H5I_DATASET ? 1 : kind == H5I_GROUP ? 2 : 3);
        rc = put_attrs(&w, o);
        if (!rc && kind == H5I_DATASET) rc = put_dataset(&w, o);
        H5Oclose(o);
    }
    for (size_t i = 0; i < w.n; i++) free(w.paths[i]);
    free(w.paths);
    H5Eclear2(H5E_DEFAULT);
    if (!rc) *h = chash_final(&w.st);
    return rc;
}

int chash_file(const char *path, uint64_t *h) {
    hid_t f;
    int rc = h5x_open(path, 0, &f);
    if (rc) return rc;
    rc = hash_open_file(f, path, h);
    h5x_close(&f);
    return rc;
}

int chash_record(const char *path, uint64_t *h) {
    uint64_t v = 0;
    int rc = chash_file(path, &v);
    if (rc) return err_push("content hash");
    hid_t f;
    if ((rc = h5x_open(path, 1, &f))) return rc;
    char hex[CHASH_HEX];
    chash_hex(v, hex);
    rc = h5x_attr_set_str(f, "/", CHASH_ATTR, hex);
    int crc = h5x_close(&f);
    if (!rc) rc = crc;
    if (!rc && h) *h = v;
    return rc;
}

int chash_read(const char *path, uint64_t *h, int *found) {
    hid_t f;
    *found = 0;
    *h = 0;
    int rc = h5x_open(path, 0, &f);
    if (rc) return rc;
    char *s = NULL;
    if (h5x_attr_exists(f, "/", CHASH_ATTR)) {
        rc = h5x_attr_get_str(f, "/", CHASH_ATTR, &s);
        char *end = NULL;
        if (!rc) {
            unsigned long long v = strtoull(s, &end, 16);
            if (strlen(s) != 16 || *end)
                rc = err_set(ERR_DATA, "%s: root attribute %s is '%s', expected 16 hex digits", path, CHASH_ATTR, s);
            *h = v;
            *found = !rc;
        }
        free(s);
    }
    h5x_close(&f);
    return rc;
}
