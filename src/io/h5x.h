/* h5x — HDF5 helpers: files pinned to the 1.10 format, typed n-d arrays, attributes,
 * the committed bfloat16 type, f32<->bf16/f16 conversion, HDF5 errors as err_set messages.
 *
 * Files and groups
 *   h5x_init()                                   silence HDF5's error printing (called by every h5x_ entry)
 *   h5x_create(path, &file)                      create/truncate; libver (V110,V110), H5F_CLOSE_STRONG
 *   h5x_open(path, writable, &file)              open; missing file ERR_IO, not HDF5 ERR_DATA
 *   h5x_close(&file)                             H5Fclose with its status checked (ERR_IO); sets file to -1
 *   h5x_exists(loc, path)                        1 when every link of path exists, else 0
 *   h5x_group(loc, path, &grp)                   open or create a group and its parents
 *   h5x_file_name(loc, buf, cap)                 name of the file holding loc (for messages)
 *
 * Arrays (dims are int64; ndim 0 is a scalar; intermediate groups are created)
 *   h5x_write(loc, path, dtype, ndim, dims, data)            contiguous, whole array
 *   h5x_write_opts(loc, path, dtype, ndim, dims, data, opts) chunking / unlimited dim 0 / shuffle+deflate
 *   h5x_write_raw(loc, path, ftype, mtype, ndim, dims, data, opts)  any HDF5 types (compound rows, ...)
 *   h5x_append(loc, path, dtype, n0, data)                  grow dim 0 of a chunked dataset by n0 rows
 *   h5x_append_raw(loc, path, mtype, n0, data)              same with an HDF5 memory type
 *   h5x_info(loc, path, &info)                              dtype, ndim, dims, layout of a dataset
 *   h5x_read(loc, path, dtype, ndim, dims, data)            whole array; dtype and shape must match (ERR_DATA)
 *   h5x_read_rows(loc, path, dtype, row0, nrows, data)      rows [row0, row0+nrows) along dim 0
 *   h5x_read_alloc(loc, path, dtype, &ndim, dims, &data)    whole array of any shape, malloc'ed
 *
 * Attributes (obj is a path relative to loc, "." for loc itself)
 *   h5x_attr_exists(loc, obj, name)                          1/0
 *   h5x_attr_set_i64 / _f64 / _str / _i64s(loc, obj, name, ...)   create or replace
 *   h5x_attr_get_i64 / _f64(loc, obj, name, &v)
 *   h5x_attr_get_str(loc, obj, name, &s)                     malloc'ed string (vlen or fixed)
 *   h5x_attr_get_i64s(loc, obj, name, v, cap, &n)            int64 array of up to cap values
 *
 * Whole files written atomically (io/atomic.h: temporary, close, fsync, rename, fsync of the directory)
 *   h5x_write_atomic(path, body, ctx, &stage)   create path's temporary, body(file, ctx), close it, commit; on
 *       failure path is untouched, no temporary is left, the first error message is kept and stage (may be NULL)
 *       says where: H5X_AT_BEGIN (setting up the temporary), H5X_AT_WRITE (create, body, close), H5X_AT_COMMIT
 *
 * Format stamp (docs/formats.md: root attributes "format" and "format_version")
 *   h5x_set_format(file, format, version)                   write both root attributes
 *   h5x_check_format(file, format, max_version, &version)   ERR_DATA unless format matches and version <= max
 *
 * Types
 *   h5x_dtype_name(dtype) / h5x_dtype_size(dtype)            "float32", "bfloat16", ...; bytes per element
 *   h5x_mem_type(dtype)                                      HDF5 memory type (do not close it)
 *   h5x_bf16_type(loc)                                       /types/bfloat16 of loc's file, committed on first use
 *   h5x_classify(type)                                       HDF5 type -> h5x_dtype (H5X_OTHER when none)
 *   h5x_type_describe(type, buf, cap)                        "bfloat16", "int64", "compound{step:int64, ...}"
 *
 * Half precision (plain C; round to nearest even; NaN stays NaN with its sign)
 *   h5x_f32_to_bf16(f) / h5x_bf16_to_f32(b)   and the _n array forms
 *   h5x_f32_to_f16(f)  / h5x_f16_to_f32(h)    and the _n array forms
 *
 * Errors: a failing HDF5 call becomes err_set(code, "FILE: /path: what: HDF5: innermost message");
 * code is ERR_IO when HDF5's stack reports a system I/O error (disk full, EFBIG), else the caller's.
 */
#ifndef ORPO_H5X_H
#define ORPO_H5X_H

#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#define H5X_MAX_DIMS 8

typedef enum h5x_dtype {
    H5X_OTHER = 0,
    H5X_F32,
    H5X_BF16,
    H5X_F16,
    H5X_F64,
    H5X_U8,
    H5X_I8,
    H5X_U16,
    H5X_I16,
    H5X_I32,
    H5X_U32,
    H5X_I64,
    H5X_U64,
    H5X_NDTYPES
} h5x_dtype;

typedef struct h5x_wopts {
    int64_t chunk[H5X_MAX_DIMS]; /* chunk dims; all 0 = contiguous (or automatic when unlimited) */
    int unlimited;               /* dim 0 may grow (implies chunked) */
    int shuffle;                 /* byte-shuffle filter */
    int deflate;                 /* 0 none, 1..9 gzip level */
} h5x_wopts;

typedef struct h5x_dsinfo {
    h5x_dtype dtype;             /* H5X_OTHER for compound, strings, ... */
    int ndim;
    int64_t dims[H5X_MAX_DIMS];
    int64_t maxdims[H5X_MAX_DIMS]; /* -1 = unlimited */
    int chunked;
    int64_t chunk[H5X_MAX_DIMS];
    int nfilters;
    size_t type_size;            /* bytes per element in the file */
} h5x_dsinfo;

/* where h5x_write_atomic failed, for the caller's message */
enum { H5X_AT_BEGIN = 1, H5X_AT_WRITE, H5X_AT_COMMIT };
typedef int (*h5x_body_fn)(hid_t file, void *ctx);

void h5x_init(void);
int h5x_create(const char *path, hid_t *file);
int h5x_open(const char *path, int writable, hid_t *file);
int h5x_close(hid_t *file);
int h5x_exists(hid_t loc, const char *path);
int h5x_group(hid_t loc, const char *path, hid_t *grp);
const char *h5x_file_name(hid_t loc, char *buf, size_t cap);

int h5x_write(hid_t loc, const char *path, h5x_dtype dt, int ndim, const int64_t *dims, const void *data);
int h5x_write_opts(hid_t loc, const char *path, h5x_dtype dt, int ndim, const int64_t *dims,
                   const void *data, const h5x_wopts *opts);
int h5x_write_raw(hid_t loc, const char *path, hid_t ftype, hid_t mtype, int ndim, const int64_t *dims,
                  const void *data, const h5x_wopts *opts);
int h5x_append(hid_t loc, const char *path, h5x_dtype dt, int64_t n0, const void *data);
int h5x_append_raw(hid_t loc, const char *path, hid_t mtype, int64_t n0, const void *data);
int h5x_info(hid_t loc, const char *path, h5x_dsinfo *info);
int h5x_read(hid_t loc, const char *path, h5x_dtype dt, int ndim, const int64_t *dims, void *data);
int h5x_read_rows(hid_t loc, const char *path, h5x_dtype dt, int64_t row0, int64_t nrows, void *data);
int h5x_read_alloc(hid_t loc, const char *path, h5x_dtype dt, int *ndim, int64_t *dims, void **data);

int h5x_attr_exists(hid_t loc, const char *obj, const char *name);
int h5x_attr_set_i64(hid_t loc, const char *obj, const char *name, int64_t v);
int h5x_attr_set_f64(hid_t loc, const char *obj, const char *name, double v);
int h5x_attr_set_str(hid_t loc, const char *obj, const char *name, const char *s);
int h5x_attr_set_i64s(hid_t loc, const char *obj, const char *name, const int64_t *v, int n);
int h5x_attr_get_i64(hid_t loc, const char *obj, const char *name, int64_t *v);
int h5x_attr_get_f64(hid_t loc, const char *obj, const char *name, double *v);
int h5x_attr_get_str(hid_t loc, const char *obj, const char *name, char **s);
int h5x_attr_get_i64s(hid_t loc, const char *obj, const char *name, int64_t *v, int cap, int *n);

int h5x_write_atomic(const char *path, h5x_body_fn body, void *ctx, int *stage);

int h5x_set_format(hid_t file, const char *format, int64_t version);
int h5x_check_format(hid_t file, const char *format, int64_t max_version, int64_t *version);

const char *h5x_dtype_name(h5x_dtype dt);
size_t h5x_dtype_size(h5x_dtype dt);
hid_t h5x_mem_type(h5x_dtype dt);
hid_t h5x_bf16_type(hid_t loc);
h5x_dtype h5x_classify(hid_t type);
const char *h5x_type_describe(hid_t type, char *buf, size_t cap);

uint16_t h5x_f32_to_bf16(float f);
float h5x_bf16_to_f32(uint16_t b);
uint16_t h5x_f32_to_f16(float f);
float h5x_f16_to_f32(uint16_t h);
void h5x_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n);
void h5x_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n);
void h5x_f32_to_f16_n(const float *src, uint16_t *dst, size_t n);
void h5x_f16_to_f32_n(const uint16_t *src, float *dst, size_t n);

#endif
