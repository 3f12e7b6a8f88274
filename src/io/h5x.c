/* h5x — HDF5 helpers (see h5x.h). */
#include "io/h5x.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/err.h"
#include "io/mem.h"

/* ---- errors --------------------------------------------------------------------------- */

static _Thread_local int g_silenced;

void h5x_init(void) {
    if (g_silenced) return;
    H5open();
    /* the automatic printing is per thread in a thread-safe build */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    g_silenced = 1;
}

typedef struct estack {
    char desc[1024];
    int io;     /* a system I/O error somewhere on the stack */
    int err_no; /* errno reported by the innermost write/read failure, 0 if none */
} estack;

static herr_t ewalk(unsigned n, const H5E_error2_t *e, void *cd) {
    estack *s = cd;
    if (n == 0 && e->desc) snprintf(s->desc, sizeof s->desc, "%s", e->desc);
    /* a failed write or lock is the system's fault; failed reads mostly mean a damaged file */
    if (e->min_num == H5E_WRITEERROR || e->min_num == H5E_CANTLOCKFILE) s->io = 1;
    if (e->desc && !s->err_no) {
        const char *p = strstr(e->desc, "errno = ");
        if (p) s->err_no = atoi(p + 8);
    }
    return 0;
}

/* Sets the error from the HDF5 stack of this thread: "<prefix>: HDF5: <innermost>". */
static int h5fail(int code, const char *fmt, ...) ERR_PRINTF(2, 3);
static int h5fail(int code, const char *fmt, ...) {
    char prefix[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    estack s;
    memset(&s, 0, sizeof s);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, ewalk, &s);
    H5Eclear2(H5E_DEFAULT);
    if (s.err_no && (s.io || code == ERR_IO)) {
        return err_set(ERR_IO, "%s: %s%s", prefix, strerror(s.err_no),
                       s.err_no == ENOSPC ? " (disk full)" : s.err_no == EDQUOT ? " (quota exceeded)" : "");
    }
    if (s.io) code = ERR_IO;
    if (!s.desc[0]) return err_set(code, "%s", prefix);
    return err_set(code, "%s: HDF5: %s", prefix, s.desc);
}

const char *h5x_file_name(hid_t loc, char *buf, size_t cap) {
    if (cap == 0) return buf;
    buf[0] = '\0';
    ssize_t n = H5Fget_name(loc, buf, cap);
    if (n < 0) {
        H5Eclear2(H5E_DEFAULT);
        snprintf(buf, cap, "(unknown file)");
    }
    return buf;
}

/* ---- types ---------------------------------------------------------------------------- */

static hid_t g_bf16 = -1, g_f16 = -1;
static pthread_once_t g_types_once = PTHREAD_ONCE_INIT;

static hid_t make_half(int bf16) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return -1;
    herr_t r;
    if (bf16) {
        r = H5Tset_fields(t, 15, 7, 8, 0, 7);
        if (r >= 0) r = H5Tset_precision(t, 16);
        if (r >= 0) r = H5Tset_size(t, 2);
        if (r >= 0) r = H5Tset_ebias(t, 127);
    } else {
        r = H5Tset_fields(t, 15, 10, 5, 0, 10);
        if (r >= 0) r = H5Tset_precision(t, 16);
        if (r >= 0) r = H5Tset_size(t, 2);
        if (r >= 0) r = H5Tset_ebias(t, 15);
    }
    if (r < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static void types_init(void) {
    h5x_init();
    g_bf16 = make_half(1);
    g_f16 = make_half(0);
}

hid_t h5x_mem_type(h5x_dtype dt) {
    pthread_once(&g_types_once, types_init);
    switch (dt) {
    case H5X_F32: return H5T_NATIVE_FLOAT;
    case H5X_F64: return H5T_NATIVE_DOUBLE;
    case H5X_BF16: return g_bf16;
    case H5X_F16: return g_f16;
    case H5X_U8: return H5T_NATIVE_UINT8;
    case H5X_I8: return H5T_NATIVE_INT8;
    case H5X_U16: return H5T_NATIVE_UINT16;
    case H5X_I16: return H5T_NATIVE_INT16;
    case H5X_I32: return H5T_NATIVE_INT32;
    case H5X_U32: return H5T_NATIVE_UINT32;
    case H5X_I64: return H5T_NATIVE_INT64;
    case H5X_U64: return H5T_NATIVE_UINT64;
    default: return -1;
    }
}

/* the little-endian file type (bf16 is handled by h5x_bf16_type) */
static hid_t file_type(h5x_dtype dt) {
    pthread_once(&g_types_once, types_init);
    switch (dt) {
    case H5X_F32: return H5T_IEEE_F32LE;
    case H5X_F64: return H5T_IEEE_F64LE;
    case H5X_F16: return g_f16;
    case H5X_U8: return H5T_STD_U8LE;
    case H5X_I8: return H5T_STD_I8LE;
    case H5X_U16: return H5T_STD_U16LE;
    case H5X_I16: return H5T_STD_I16LE;
    case H5X_I32: return H5T_STD_I32LE;
    case H5X_U32: return H5T_STD_U32LE;
    case H5X_I64: return H5T_STD_I64LE;
    case H5X_U64: return H5T_STD_U64LE;
    default: return -1;
    }
}

static const char *const g_names[H5X_NDTYPES] = {
    "other", "float32", "bfloat16", "float16", "float64", "uint8", "int8",
    "uint16", "int16", "int32", "uint32", "int64", "uint64"};
static const size_t g_sizes[H5X_NDTYPES] = {0, 4, 2, 2, 8, 1, 1, 2, 2, 4, 4, 8, 8};

const char *h5x_dtype_name(h5x_dtype dt) {
    return (int)dt >= 0 && dt < H5X_NDTYPES ? g_names[dt] : "invalid";
}

size_t h5x_dtype_size(h5x_dtype dt) { return (int)dt >= 0 && dt < H5X_NDTYPES ? g_sizes[dt] : 0; }

h5x_dtype h5x_classify(hid_t type) {
    H5T_class_t c = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (c == H5T_INTEGER) {
        int sgn = H5Tget_sign(type) == H5T_SGN_2;
        switch (size) {
        case 1: return sgn ? H5X_I8 : H5X_U8;
        case 2: return sgn ? H5X_I16 : H5X_U16;
        case 4: return sgn ? H5X_I32 : H5X_U32;
        case 8: return sgn ? H5X_I64 : H5X_U64;
        default: return H5X_OTHER;
        }
    }
    if (c == H5T_FLOAT) {
        size_t spos, epos, esize, mpos, msize;
        if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0) {
            H5Eclear2(H5E_DEFAULT);
            return H5X_OTHER;
        }
        size_t ebias = H5Tget_ebias(type);
        if (size == 4 && esize == 8 && msize == 23 && ebias == 127) return H5X_F32;
        if (size == 8 && esize == 11 && msize == 52 && ebias == 1023) return H5X_F64;
        if (size == 2 && esize == 8 && msize == 7 && ebias == 127) return H5X_BF16;
        if (size == 2 && esize == 5 && msize == 10 && ebias == 15) return H5X_F16;
    }
    return H5X_OTHER;
}

static void cat(char *buf, size_t cap, size_t *len, const char *fmt, ...) ERR_PRINTF(4, 5);
static void cat(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
    if (*len >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0) *len += (size_t)n;
    if (*len >= cap) *len = cap - 1;
}

static void describe(hid_t type, char *buf, size_t cap, size_t *len, int depth) {
    H5T_class_t c = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    h5x_dtype dt = h5x_classify(type);
    if (dt != H5X_OTHER) {
        cat(buf, cap, len, "%s", h5x_dtype_name(dt));
        return;
    }
    switch (c) {
    case H5T_FLOAT:
        cat(buf, cap, len, "float(%zu bytes, ebias %zu)", size, H5Tget_ebias(type));
        break;
    case H5T_INTEGER: cat(buf, cap, len, "int(%zu bytes)", size); break;
    case H5T_STRING:
        if (H5Tis_variable_str(type) > 0) cat(buf, cap, len, "string(vlen");
        else cat(buf, cap, len, "string(%zu", size);
        cat(buf, cap, len, "%s)", H5Tget_cset(type) == H5T_CSET_UTF8 ? ", utf8" : "");
        break;
    case H5T_COMPOUND: {
        int n = H5Tget_nmembers(type);
        cat(buf, cap, len, "compound{");
        for (int i = 0; i < n; i++) {
            char *name = H5Tget_member_name(type, (unsigned)i);
            hid_t mt = H5Tget_member_type(type, (unsigned)i);
            cat(buf, cap, len, "%s%s:", i ? ", " : "", name ? name : "?");
            if (mt >= 0 && depth < 4) describe(mt, buf, cap, len, depth + 1);
            if (mt >= 0) H5Tclose(mt);
            if (name) H5free_memory(name);
        }
        cat(buf, cap, len, "}");
        break;
    }
    case H5T_ARRAY: {
        hsize_t d[H5S_MAX_RANK];
        int nd = H5Tget_array_ndims(type);
        if (nd < 0 || nd > H5S_MAX_RANK) nd = 0;
        if (nd > 0) H5Tget_array_dims2(type, d);
        hid_t base = H5Tget_super(type);
        cat(buf, cap, len, "array[");
        for (int i = 0; i < nd; i++) cat(buf, cap, len, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
        cat(buf, cap, len, "] of ");
        if (base >= 0 && depth < 4) describe(base, buf, cap, len, depth + 1);
        if (base >= 0) H5Tclose(base);
        break;
    }
    case H5T_VLEN: {
        hid_t base = H5Tget_super(type);
        cat(buf, cap, len, "vlen of ");
        if (base >= 0 && depth < 4) describe(base, buf, cap, len, depth + 1);
        if (base >= 0) H5Tclose(base);
        break;
    }
    case H5T_ENUM: cat(buf, cap, len, "enum(%zu bytes)", size); break;
    case H5T_OPAQUE: cat(buf, cap, len, "opaque(%zu bytes)", size); break;
    case H5T_BITFIELD: cat(buf, cap, len, "bitfield(%zu bytes)", size); break;
    case H5T_REFERENCE: cat(buf, cap, len, "reference"); break;
    default: cat(buf, cap, len, "unknown type"); break;
    }
}

const char *h5x_type_describe(hid_t type, char *buf, size_t cap) {
    size_t len = 0;
    if (cap == 0) return buf;
    buf[0] = '\0';
    describe(type, buf, cap, &len, 0);
    H5Eclear2(H5E_DEFAULT);
    return buf;
}

/* ---- files and groups ----------------------------------------------------------------- */

static hid_t make_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0 ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}

int h5x_create(const char *path, hid_t *file) {
    h5x_init();
    *file = -1;
    hid_t fapl = make_fapl();
    if (fapl < 0) return h5fail(ERR_INTERNAL, "%s: cannot set up file access properties", path);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    int rc = f < 0 ? h5fail(ERR_IO, "%s: cannot create HDF5 file", path) : ERR_OK; /* before the next H5 call */
    H5Pclose(fapl);
    if (rc) return rc;
    *file = f;
    return ERR_OK;
}

int h5x_open(const char *path, int writable, hid_t *file) {
    h5x_init();
    *file = -1;
    struct stat st;
    if (stat(path, &st) != 0) return err_set(ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return err_set(ERR_IO, "%s: is a directory, expected an HDF5 file", path);
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return err_set(ERR_DATA, "%s: not an HDF5 file (no HDF5 signature found; %lld bytes)", path,
                       (long long)st.st_size);
    }
    hid_t fapl = make_fapl();
    if (fapl < 0) return h5fail(ERR_INTERNAL, "%s: cannot set up file access properties", path);
    hid_t f = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
    int rc = f < 0 ? h5fail(ERR_DATA, "%s: cannot open HDF5 file%s (damaged, or still open for writing)", path,
                            writable ? " for writing" : "")
                   : ERR_OK;
    H5Pclose(fapl);
    if (rc) return rc;
    *file = f;
    return ERR_OK;
}

/* libhdf5 1.10.8 leaves a file whose H5Fclose failed (disk full, EFBIG) half closed, and its
 * exit-time cleanup then crashes on it (SIGSEGV in H5F__close_cb, reproduced). After such a
 * failure this hook, which runs before HDF5's atexit cleanup, ends the process with its status. */
static void exit_before_hdf5_cleanup(int status, void *arg) {
    (void)arg;
    fflush(NULL);
    _exit(status);
}

int h5x_close(hid_t *file) {
    if (*file < 0) return ERR_OK;
    char name[1024];
    h5x_file_name(*file, name, sizeof name);
    herr_t r = H5Fclose(*file);
    *file = -1;
    if (r < 0) {
        static int hooked;
        if (!hooked++) on_exit(exit_before_hdf5_cleanup, NULL);
        return h5fail(ERR_IO, "%s: closing the HDF5 file failed", name);
    }
    return ERR_OK;
}

int h5x_exists(hid_t loc, const char *path) {
    h5x_init();
    char buf[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return 0;
    memcpy(buf, path, n + 1);
    if (!strcmp(path, "/") || !strcmp(path, ".")) return 1;
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char keep = buf[i];
            buf[i] = '\0';
            htri_t e = H5Lexists(loc, buf, H5P_DEFAULT);
            buf[i] = keep;
            if (e <= 0) {
                H5Eclear2(H5E_DEFAULT);
                return 0;
            }
        }
    }
    return 1;
}

static hid_t make_lcpl(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        H5Pclose(lcpl);
        return -1;
    }
    return lcpl;
}

int h5x_group(hid_t loc, const char *path, hid_t *grp) {
    h5x_init();
    char fname[1024];
    *grp = -1;
    hid_t g;
    h5x_file_name(loc, fname, sizeof fname); /* before the calls whose error stack we report */
    if (h5x_exists(loc, path)) {
        g = H5Gopen2(loc, path, H5P_DEFAULT);
        if (g < 0) return h5fail(ERR_DATA, "%s: %s: cannot open group", fname, path);
    } else {
        hid_t lcpl = make_lcpl();
        g = H5Gcreate2(loc, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        int rc = g < 0 ? h5fail(ERR_IO, "%s: %s: cannot create group", fname, path) : ERR_OK;
        if (lcpl >= 0) H5Pclose(lcpl);
        if (rc) return rc;
    }
    *grp = g;
    return ERR_OK;
}

/* ---- bf16 named type ------------------------------------------------------------------ */

#define H5X_BF16_PATH "/types/bfloat16"

hid_t h5x_bf16_type(hid_t loc) {
    h5x_init();
    pthread_once(&g_types_once, types_init);
    char fname[1024];
    hid_t file = H5Iget_file_id(loc);
    if (file < 0) {
        h5fail(ERR_INTERNAL, "bfloat16 type: not an HDF5 file object");
        return -1;
    }
    hid_t t;
    h5x_file_name(file, fname, sizeof fname);
    if (h5x_exists(file, H5X_BF16_PATH)) {
        t = H5Topen2(file, H5X_BF16_PATH, H5P_DEFAULT);
        if (t < 0) {
            h5fail(ERR_DATA, "%s: %s: cannot open the named type", fname, H5X_BF16_PATH);
        } else if (h5x_classify(t) != H5X_BF16) {
            char d[256];
            err_set(ERR_DATA, "%s: %s: expected a bfloat16 type (2 bytes, 8-bit exponent, 7-bit mantissa), got %s",
                    fname, H5X_BF16_PATH, h5x_type_describe(t, d, sizeof d));
            H5Tclose(t);
            t = -1;
        }
    } else {
        t = H5Tcopy(g_bf16);
        hid_t lcpl = make_lcpl();
        if (t < 0 || H5Tcommit2(file, H5X_BF16_PATH, t, lcpl, H5P_DEFAULT, H5P_DEFAULT) < 0) {
            h5fail(ERR_IO, "%s: %s: cannot commit the bfloat16 type", fname, H5X_BF16_PATH);
            if (t >= 0) H5Tclose(t);
            t = -1;
        }
        if (lcpl >= 0) H5Pclose(lcpl);
    }
    H5Fclose(file); /* only drops the id reference */
    return t;
}

/* ---- arrays --------------------------------------------------------------------------- */

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *dims) {
    size_t len = 0;
    buf[0] = '\0';
    cat(buf, cap, &len, "[");
    for (int i = 0; i < ndim; i++) cat(buf, cap, &len, "%s%lld", i ? ", " : "", (long long)dims[i]);
    cat(buf, cap, &len, "]");
}

static int check_dims(const char *fname, const char *path, int ndim, const int64_t *dims) {
    if (ndim < 0 || ndim > H5X_MAX_DIMS)
        return err_set(ERR_INTERNAL, "%s: %s: %d dimensions, expected 0..%d", fname, path, ndim, H5X_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (dims[i] < 0)
            return err_set(ERR_INTERNAL, "%s: %s: dimension %d is %lld, expected >= 0", fname, path, i,
                           (long long)dims[i]);
    return ERR_OK;
}

static int64_t nelems(int ndim, const int64_t *dims) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= dims[i];
    return n;
}

int h5x_write_raw(hid_t loc, const char *path, hid_t ftype, hid_t mtype, int ndim, const int64_t *dims,
                  const void *data, const h5x_wopts *o) {
    h5x_init();
    char fname[1024];
    h5x_file_name(loc, fname, sizeof fname);
    int rc = check_dims(fname, path, ndim, dims);
    if (rc) return rc;
    if (h5x_exists(loc, path)) return err_set(ERR_INTERNAL, "%s: %s: already exists; datasets are written once", fname, path);
    h5x_wopts none;
    memset(&none, 0, sizeof none);
    if (!o) o = &none;
    int chunked = o->unlimited || o->shuffle || o->deflate;
    for (int i = 0; i < ndim; i++) chunked |= o->chunk[i] > 0;
    if (chunked && ndim == 0) return err_set(ERR_INTERNAL, "%s: %s: a scalar cannot be chunked", fname, path);

    hsize_t cur[H5X_MAX_DIMS], max[H5X_MAX_DIMS], chunk[H5X_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        cur[i] = max[i] = (hsize_t)dims[i];
        chunk[i] = o->chunk[i] > 0 ? (hsize_t)o->chunk[i] : 0;
    }
    if (o->unlimited) max[0] = H5S_UNLIMITED;
    if (chunked) {
        /* automatic chunk: whole trailing dims, about 1 MiB of rows along dim 0 */
        size_t esize = H5Tget_size(ftype);
        hsize_t row = esize ? esize : 1;
        for (int i = 1; i < ndim; i++) {
            if (!chunk[i]) chunk[i] = cur[i] ? cur[i] : 1;
            row *= chunk[i];
        }
        if (!chunk[0]) {
            hsize_t r = ((hsize_t)1 << 20) / row;
            if (r < 1) r = 1;
            if (!o->unlimited && cur[0] && r > cur[0]) r = cur[0];
            chunk[0] = r;
        }
    }
    hid_t space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, cur, max);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t lcpl = make_lcpl();
    hid_t dset = -1;
    rc = ERR_OK;
    if (space < 0 || dcpl < 0 || lcpl < 0) {
        rc = h5fail(ERR_INTERNAL, "%s: %s: cannot set up dataset properties", fname, path);
        goto done;
    }
    if (chunked) {
        if (H5Pset_chunk(dcpl, ndim, chunk) < 0 || (o->shuffle && H5Pset_shuffle(dcpl) < 0) ||
            (o->deflate && H5Pset_deflate(dcpl, (unsigned)o->deflate) < 0)) {
            rc = h5fail(ERR_INTERNAL, "%s: %s: bad chunk/filter settings", fname, path);
            goto done;
        }
    }
    dset = H5Dcreate2(loc, path, ftype, space, lcpl, dcpl, H5P_DEFAULT);
    if (dset < 0) {
        rc = h5fail(ERR_IO, "%s: %s: cannot create dataset", fname, path);
        goto done;
    }
    if (nelems(ndim, dims) > 0 && data) {
        if (H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            rc = h5fail(ERR_IO, "%s: %s: writing the dataset failed", fname, path);
    }
done:
    if (dset >= 0) H5Dclose(dset);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return rc;
}

int h5x_write_opts(hid_t loc, const char *path, h5x_dtype dt, int ndim, const int64_t *dims, const void *data,
                   const h5x_wopts *opts) {
    h5x_init();
    if (dt <= H5X_OTHER || dt >= H5X_NDTYPES) return err_set(ERR_INTERNAL, "%s: invalid dtype %d", path, (int)dt);
    if (dt == H5X_BF16) {
        hid_t ft = h5x_bf16_type(loc);
        if (ft < 0) return err_code();
        int rc = h5x_write_raw(loc, path, ft, h5x_mem_type(dt), ndim, dims, data, opts);
        H5Tclose(ft);
        return rc;
    }
    return h5x_write_raw(loc, path, file_type(dt), h5x_mem_type(dt), ndim, dims, data, opts);
}

int h5x_write(hid_t loc, const char *path, h5x_dtype dt, int ndim, const int64_t *dims, const void *data) {
    return h5x_write_opts(loc, path, dt, ndim, dims, data, NULL);
}

int h5x_info(hid_t loc, const char *path, h5x_dsinfo *info) {
    h5x_init();
    char fname[1024];
    memset(info, 0, sizeof *info);
    h5x_file_name(loc, fname, sizeof fname);
    if (!h5x_exists(loc, path)) return err_set(ERR_DATA, "%s: %s: no such dataset", fname, path);
    hid_t d = H5Dopen2(loc, path, H5P_DEFAULT);
    if (d < 0) return h5fail(ERR_DATA, "%s: %s: cannot open as a dataset", fname, path);
    hid_t t = H5Dget_type(d), s = H5Dget_space(d), p = H5Dget_create_plist(d);
    int rc = ERR_OK;
    if (t < 0 || s < 0 || p < 0) {
        rc = h5fail(ERR_DATA, "%s: %s: cannot read the dataset header", fname, path);
        goto done;
    }
    info->dtype = h5x_classify(t);
    info->type_size = H5Tget_size(t);
    int nd = H5Sget_simple_extent_ndims(s);
    if (nd < 0 || nd > H5X_MAX_DIMS) {
        rc = err_set(ERR_DATA, "%s: %s: %d dimensions, at most %d supported", fname, path, nd, H5X_MAX_DIMS);
        goto done;
    }
    hsize_t cur[H5X_MAX_DIMS], max[H5X_MAX_DIMS];
    H5Sget_simple_extent_dims(s, cur, max);
    info->ndim = nd;
    for (int i = 0; i < nd; i++) {
        info->dims[i] = (int64_t)cur[i];
        info->maxdims[i] = max[i] == H5S_UNLIMITED ? -1 : (int64_t)max[i];
    }
    if (H5Pget_layout(p) == H5D_CHUNKED) {
        hsize_t ch[H5X_MAX_DIMS];
        info->chunked = 1;
        int cn = H5Pget_chunk(p, H5X_MAX_DIMS, ch);
        for (int i = 0; i < cn && i < H5X_MAX_DIMS; i++) info->chunk[i] = (int64_t)ch[i];
    }
    info->nfilters = H5Pget_nfilters(p);
done:
    if (p >= 0) H5Pclose(p);
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    H5Dclose(d);
    return rc;
}

static int check_dtype(const char *fname, const char *path, const h5x_dsinfo *in, h5x_dtype want) {
    if (in->dtype == want) return ERR_OK;
    char shp[256];
    fmt_shape(shp, sizeof shp, in->ndim, in->dims);
    return err_set(ERR_DATA, "%s: %s: expected dtype %s, got %s %s", fname, path, h5x_dtype_name(want),
                   in->dtype == H5X_OTHER ? "a non-numeric type" : h5x_dtype_name(in->dtype), shp);
}

int h5x_read(hid_t loc, const char *path, h5x_dtype dt, int ndim, const int64_t *dims, void *data) {
    char fname[1024];
    h5x_dsinfo in;
    int rc = h5x_info(loc, path, &in);
    if (rc) return rc;
    h5x_file_name(loc, fname, sizeof fname);
    int same = in.ndim == ndim && in.dtype == dt;
    for (int i = 0; same && i < ndim; i++) same = in.dims[i] == dims[i];
    if (!same) {
        char a[256], b[256];
        fmt_shape(a, sizeof a, ndim, dims);
        fmt_shape(b, sizeof b, in.ndim, in.dims);
        return err_set(ERR_DATA, "%s: %s: expected %s %s, got %s %s", fname, path, h5x_dtype_name(dt), a,
                       in.dtype == H5X_OTHER ? "non-numeric" : h5x_dtype_name(in.dtype), b);
    }
    if (nelems(ndim, dims) == 0) return ERR_OK;
    hid_t d = H5Dopen2(loc, path, H5P_DEFAULT);
    if (d < 0) return h5fail(ERR_DATA, "%s: %s: cannot open dataset", fname, path);
    if (H5Dread(d, h5x_mem_type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = h5fail(ERR_DATA, "%s: %s: reading the dataset failed", fname, path);
    H5Dclose(d);
    return rc;
}

static int rows_io(hid_t loc, const char *path, hid_t mtype, int64_t row0, int64_t nrows, void *rdata,
                   const void *wdata, const h5x_dsinfo *in, const char *fname) {
    int rc = ERR_OK;
    hsize_t start[H5X_MAX_DIMS] = {0}, count[H5X_MAX_DIMS];
    start[0] = (hsize_t)row0;
    count[0] = (hsize_t)nrows;
    for (int i = 1; i < in->ndim; i++) count[i] = (hsize_t)in->dims[i];
    hid_t d = H5Dopen2(loc, path, H5P_DEFAULT);
    if (d < 0) return h5fail(ERR_DATA, "%s: %s: cannot open dataset", fname, path);
    if (wdata) {
        hsize_t ext[H5X_MAX_DIMS];
        for (int i = 0; i < in->ndim; i++) ext[i] = (hsize_t)in->dims[i];
        ext[0] = (hsize_t)(row0 + nrows);
        if (H5Dset_extent(d, ext) < 0) {
            rc = h5fail(ERR_IO, "%s: %s: cannot grow the dataset to %lld rows", fname, path, (long long)ext[0]);
            H5Dclose(d);
            return rc;
        }
    }
    hid_t fs = H5Dget_space(d);
    hid_t ms = H5Screate_simple(in->ndim, count, NULL);
    if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0) {
        rc = h5fail(ERR_INTERNAL, "%s: %s: cannot select rows %lld..%lld", fname, path, (long long)row0,
                    (long long)(row0 + nrows));
    } else if (wdata) {
        if (H5Dwrite(d, mtype, ms, fs, H5P_DEFAULT, wdata) < 0)
            rc = h5fail(ERR_IO, "%s: %s: appending %lld rows failed", fname, path, (long long)nrows);
    } else {
        if (H5Dread(d, mtype, ms, fs, H5P_DEFAULT, rdata) < 0)
            rc = h5fail(ERR_DATA, "%s: %s: reading rows %lld..%lld failed", fname, path, (long long)row0,
                        (long long)(row0 + nrows));
    }
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    H5Dclose(d);
    return rc;
}

int h5x_read_rows(hid_t loc, const char *path, h5x_dtype dt, int64_t row0, int64_t nrows, void *data) {
    char fname[1024];
    h5x_dsinfo in;
    int rc = h5x_info(loc, path, &in);
    if (rc) return rc;
    h5x_file_name(loc, fname, sizeof fname);
    if ((rc = check_dtype(fname, path, &in, dt))) return rc;
    if (in.ndim < 1) return err_set(ERR_DATA, "%s: %s: expected an array with rows, got a scalar", fname, path);
    if (row0 < 0 || nrows < 0 || row0 + nrows > in.dims[0])
        return err_set(ERR_DATA, "%s: %s: rows %lld..%lld requested, the dataset has %lld rows", fname, path,
                       (long long)row0, (long long)(row0 + nrows), (long long)in.dims[0]);
    if (nrows == 0) return ERR_OK;
    return rows_io(loc, path, h5x_mem_type(dt), row0, nrows, data, NULL, &in, fname);
}

int h5x_append_raw(hid_t loc, const char *path, hid_t mtype, int64_t n0, const void *data) {
    char fname[1024];
    h5x_dsinfo in;
    int rc = h5x_info(loc, path, &in);
    if (rc) return rc;
    h5x_file_name(loc, fname, sizeof fname);
    if (in.ndim < 1 || in.maxdims[0] != -1)
        return err_set(ERR_INTERNAL, "%s: %s: cannot append, dim 0 is not unlimited", fname, path);
    if (n0 < 0) return err_set(ERR_INTERNAL, "%s: %s: appending %lld rows", fname, path, (long long)n0);
    if (n0 == 0) return ERR_OK;
    return rows_io(loc, path, mtype, in.dims[0], n0, NULL, data, &in, fname);
}

int h5x_append(hid_t loc, const char *path, h5x_dtype dt, int64_t n0, const void *data) {
    char fname[1024];
    h5x_dsinfo in;
    int rc = h5x_info(loc, path, &in);
    if (rc) return rc;
    if ((rc = check_dtype(h5x_file_name(loc, fname, sizeof fname), path, &in, dt))) return rc;
    return h5x_append_raw(loc, path, h5x_mem_type(dt), n0, data);
}

int h5x_read_alloc(hid_t loc, const char *path, h5x_dtype dt, int *ndim, int64_t *dims, void **data) {
    char fname[1024];
    h5x_dsinfo in;
    *data = NULL;
    int rc = h5x_info(loc, path, &in);
    if (rc) return rc;
    if ((rc = check_dtype(h5x_file_name(loc, fname, sizeof fname), path, &in, dt))) return rc;
    int64_t n = nelems(in.ndim, in.dims);
    size_t bytes = (size_t)n * h5x_dtype_size(dt);
    char what[1100];
    snprintf(what, sizeof what, "%s: %s", fname, path);
    void *buf = mem_alloc(bytes, what);
    if ((rc = h5x_read(loc, path, dt, in.ndim, in.dims, buf))) {
        free(buf);
        return rc;
    }
    *ndim = in.ndim;
    for (int i = 0; i < in.ndim; i++) dims[i] = in.dims[i];
    *data = buf;
    return ERR_OK;
}

/* ---- attributes ----------------------------------------------------------------------- */

int h5x_attr_exists(hid_t loc, const char *obj, const char *name) {
    h5x_init();
    htri_t e = H5Aexists_by_name(loc, obj, name, H5P_DEFAULT);
    if (e < 0) H5Eclear2(H5E_DEFAULT);
    return e > 0;
}

static int attr_write(hid_t loc, const char *obj, const char *name, hid_t ftype, hid_t mtype, int n,
                      const void *data) {
    h5x_init();
    char fname[1024];
    h5x_file_name(loc, fname, sizeof fname);
    hid_t o = H5Oopen(loc, obj, H5P_DEFAULT);
    if (o < 0) return h5fail(ERR_DATA, "%s: %s: cannot open object to set attribute '%s'", fname, obj, name);
    int rc = ERR_OK;
    hid_t s = -1, a = -1;
    htri_t e = H5Aexists(o, name);
    if (e > 0 && H5Adelete(o, name) < 0) {
        rc = h5fail(ERR_IO, "%s: %s: cannot replace attribute '%s'", fname, obj, name);
        goto done;
    }
    if (n < 0) {
        s = H5Screate(H5S_SCALAR);
    } else {
        hsize_t d = (hsize_t)n;
        s = H5Screate_simple(1, &d, NULL);
    }
    a = s < 0 ? -1 : H5Acreate2(o, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) {
        rc = h5fail(ERR_IO, "%s: %s: cannot create attribute '%s'", fname, obj, name);
        goto done;
    }
    if (n != 0 && H5Awrite(a, mtype, data) < 0) rc = h5fail(ERR_IO, "%s: %s: cannot write attribute '%s'", fname, obj, name);
done:
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    H5Oclose(o);
    return rc;
}

int h5x_attr_set_i64(hid_t loc, const char *obj, const char *name, int64_t v) {
    return attr_write(loc, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, -1, &v);
}

int h5x_attr_set_f64(hid_t loc, const char *obj, const char *name, double v) {
    return attr_write(loc, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, -1, &v);
}

int h5x_attr_set_i64s(hid_t loc, const char *obj, const char *name, const int64_t *v, int n) {
    if (n < 0) return err_set(ERR_INTERNAL, "%s: attribute '%s': %d values", obj, name, n);
    return attr_write(loc, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, n, v);
}

int h5x_attr_set_str(hid_t loc, const char *obj, const char *name, const char *s) {
    h5x_init();
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        if (t >= 0) H5Tclose(t);
        return h5fail(ERR_INTERNAL, "%s: attribute '%s': cannot make a string type", obj, name);
    }
    int rc = attr_write(loc, obj, name, t, t, -1, &s);
    H5Tclose(t);
    return rc;
}

/* opens attribute name of obj; checks the class and that it holds 1 value (scalar) or up to cap values */
static int attr_open(hid_t loc, const char *obj, const char *name, H5T_class_t want, const char *want_name,
                     hid_t *o, hid_t *a, hid_t *t, hssize_t *npoints, char *fname, size_t fcap) {
    h5x_init();
    h5x_file_name(loc, fname, fcap);
    *o = *a = *t = -1;
    if (!h5x_attr_exists(loc, obj, name))
        return err_set(ERR_DATA, "%s: %s: attribute '%s' is missing (expected %s)", fname, obj, name, want_name);
    *o = H5Oopen(loc, obj, H5P_DEFAULT);
    if (*o < 0) return h5fail(ERR_DATA, "%s: %s: cannot open object", fname, obj);
    *a = H5Aopen(*o, name, H5P_DEFAULT);
    if (*a < 0) return h5fail(ERR_DATA, "%s: %s: cannot open attribute '%s'", fname, obj, name);
    *t = H5Aget_type(*a);
    hid_t s = H5Aget_space(*a);
    *npoints = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    int nd = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    if (s >= 0) H5Sclose(s);
    H5T_class_t c = *t >= 0 ? H5Tget_class(*t) : H5T_NO_CLASS;
    int ok = c == want || (want == H5T_FLOAT && c == H5T_INTEGER);
    if (!ok || nd < 0 || nd > 1) {
        char d[256] = "?";
        if (*t >= 0) h5x_type_describe(*t, d, sizeof d);
        return err_set(ERR_DATA, "%s: %s: attribute '%s': expected %s, got %s with %d dimensions", fname, obj, name,
                       want_name, d, nd);
    }
    return ERR_OK;
}

static void attr_close(hid_t o, hid_t a, hid_t t) {
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    if (o >= 0) H5Oclose(o);
}

static int attr_scalar(hid_t loc, const char *obj, const char *name, H5T_class_t c, const char *cname, hid_t mtype,
                       void *v) {
    char fname[1024];
    hid_t o, a, t;
    hssize_t np;
    int rc = attr_open(loc, obj, name, c, cname, &o, &a, &t, &np, fname, sizeof fname);
    if (!rc && np != 1)
        rc = err_set(ERR_DATA, "%s: %s: attribute '%s': expected one %s value, got %lld values", fname, obj, name,
                     cname, (long long)np);
    if (!rc && H5Aread(a, mtype, v) < 0) rc = h5fail(ERR_DATA, "%s: %s: cannot read attribute '%s'", fname, obj, name);
    attr_close(o, a, t);
    return rc;
}

int h5x_attr_get_i64(hid_t loc, const char *obj, const char *name, int64_t *v) {
    return attr_scalar(loc, obj, name, H5T_INTEGER, "an integer", H5T_NATIVE_INT64, v);
}

int h5x_attr_get_f64(hid_t loc, const char *obj, const char *name, double *v) {
    return attr_scalar(loc, obj, name, H5T_FLOAT, "a number", H5T_NATIVE_DOUBLE, v);
}

int h5x_attr_get_i64s(hid_t loc, const char *obj, const char *name, int64_t *v, int cap, int *n) {
    char fname[1024];
    hid_t o, a, t;
    hssize_t np;
    *n = 0;
    int rc = attr_open(loc, obj, name, H5T_INTEGER, "integers", &o, &a, &t, &np, fname, sizeof fname);
    if (!rc && (np < 0 || np > cap))
        rc = err_set(ERR_DATA, "%s: %s: attribute '%s': %lld values, expected at most %d", fname, obj, name,
                     (long long)np, cap);
    if (!rc && np > 0 && H5Aread(a, H5T_NATIVE_INT64, v) < 0)
        rc = h5fail(ERR_DATA, "%s: %s: cannot read attribute '%s'", fname, obj, name);
    if (!rc) *n = (int)np;
    attr_close(o, a, t);
    return rc;
}

int h5x_attr_get_str(hid_t loc, const char *obj, const char *name, char **s) {
    char fname[1024];
    hid_t o, a, t;
    hssize_t np;
    *s = NULL;
    int rc = attr_open(loc, obj, name, H5T_STRING, "a string", &o, &a, &t, &np, fname, sizeof fname);
    if (!rc && np != 1)
        rc = err_set(ERR_DATA, "%s: %s: attribute '%s': expected one string, got %lld", fname, obj, name, (long long)np);
    if (rc) {
        attr_close(o, a, t);
        return rc;
    }
    hid_t mt = H5Tcopy(t);
    if (H5Tis_variable_str(t) > 0) {
        char *p = NULL;
        if (mt < 0 || H5Aread(a, mt, &p) < 0) {
            rc = h5fail(ERR_DATA, "%s: %s: cannot read attribute '%s'", fname, obj, name);
        } else {
            *s = mem_strdup(p ? p : "", "an HDF5 string attribute");
            H5free_memory(p);
        }
    } else {
        size_t size = H5Tget_size(t);
        char *buf = mem_calloc(size + 1, 1, "an HDF5 string attribute");
        if (mt < 0 || H5Aread(a, mt, buf) < 0) {
            free(buf);
            rc = h5fail(ERR_DATA, "%s: %s: cannot read attribute '%s'", fname, obj, name);
        } else {
            /* fixed-length strings may be space or NUL padded */
            size_t n = strlen(buf);
            while (n > 0 && buf[n - 1] == ' ' && H5Tget_strpad(t) == H5T_STR_SPACEPAD) buf[--n] = '\0';
            *s = buf;
        }
    }
    if (mt >= 0) H5Tclose(mt);
    attr_close(o, a, t);
    return rc;
}

/* ---- format stamp --------------------------------------------------------------------- */

int h5x_set_format(hid_t file, const char *format, int64_t version) {
    int rc = h5x_attr_set_str(file, "/", "format", format);
    if (!rc) rc = h5x_attr_set_i64(file, "/", "format_version", version);
    return rc;
}

/* ---- whole files, atomically ------------------------------------------------------------- */

int h5x_write_atomic(const char *path, h5x_body_fn body, void *ctx, int *stage) {
    int at_ = 0, *at = stage ? stage : &at_;
    *at = H5X_AT_BEGIN;
    atomic_file af;
    int rc = atomic_begin(&af, path);
    if (rc) return rc;
    *at = H5X_AT_WRITE;
    hid_t f = -1;
    rc = h5x_create(af.tmp, &f);
    if (!rc) rc = body(f, ctx);
    if (rc) {
        /* keep the first message; closing a file after a failed write may fail again */
        char keep[2048];
        snprintf(keep, sizeof keep, "%s", err_msg());
        h5x_close(&f);
        err_set(rc, "%s", keep);
    } else {
        rc = h5x_close(&f);
    }
    if (rc) {
        atomic_abort(&af);
        return rc;
    }
    *at = H5X_AT_COMMIT;
    return atomic_commit(&af);
}

int h5x_check_format(hid_t file, const char *format, int64_t max_version, int64_t *version) {
    char fname[1024];
    char *got = NULL;
    int64_t v = 0;
    h5x_file_name(file, fname, sizeof fname);
    if (!h5x_attr_exists(file, "/", "format"))
        return err_set(ERR_DATA, "%s: no root attribute 'format'; expected an orpo-hpc file of format '%s'", fname,
                       format);
    int rc = h5x_attr_get_str(file, "/", "format", &got);
    if (rc) return rc;
    if (strcmp(got, format)) {
        rc = err_set(ERR_DATA, "%s: format is '%s', expected '%s'", fname, got, format);
        free(got);
        return rc;
    }
    free(got);
    if ((rc = h5x_attr_get_i64(file, "/", "format_version", &v))) return rc;
    if (v < 1 || v > max_version)
        return err_set(ERR_DATA, "%s: %s format_version %lld, this build reads versions 1..%lld", fname, format,
                       (long long)v, (long long)max_version);
    if (version) *version = v;
    return ERR_OK;
}

/* ---- half precision ------------------------------------------------------------------- */

uint16_t h5x_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN, sign kept */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float h5x_bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t h5x_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);                       /* >= 65520 rounds to inf */
    if (a < 0x38800000u) {                                                          /* below 2^-14: subnormal */
        float v;
        memcpy(&v, &a, 4);
        long m = lrintf(v * 16777216.0f); /* exact scaling by 2^24, round to nearest even */
        return (uint16_t)(sign | (uint16_t)m);
    }
    uint32_t e = (a >> 23) - 112u, mant = a & 0x7fffffu;
    uint32_t h = (e << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

float h5x_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0) {
        float v = ldexpf((float)m, -24);
        memcpy(&u, &v, 4);
        u |= sign;
    } else if (e == 31) {
        u = sign | 0x7f800000u | (m << 13);
    } else {
        u = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void h5x_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = h5x_f32_to_bf16(src[i]);
}
void h5x_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = h5x_bf16_to_f32(src[i]);
}
void h5x_f32_to_f16_n(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = h5x_f32_to_f16(src[i]);
}
void h5x_f16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = h5x_f16_to_f32(src[i]);
}
