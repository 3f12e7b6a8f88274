/* st — safetensors reader: mmap'ed file, strictly validated header, zero-copy tensor views,
 * and the model.safetensors.index.json of sharded checkpoints.
 *
 * File layout: u64 little-endian N, N bytes of JSON header, data section. Header entries:
 *   "name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}  (relative to the data section)
 *   "__metadata__": {"key": "string", ...}   (optional)
 *
 *   st_open(path, &f)                 map and validate; ERR_IO (cannot read) / ERR_DATA (malformed)
 *   st_close(f)                       unmap and free (NULL is fine)
 *   st_count(f)                       number of tensors
 *   st_at(f, i)                       i-th tensor, in name order
 *   st_find(f, name)                  tensor by name, NULL when absent
 *   st_meta_count(f) / st_meta_at(f, i, &key, &val) / st_meta_get(f, key)   the __metadata__ strings
 *   st_path(f)                        the path it was opened from
 *   st_to_f32(f, t, out)              copy a F32/F16/BF16 tensor into out[numel] as float
 *   st_dtype_name(dt) / st_dtype_size(dt) / st_dtype_parse(name)
 *
 *   st_index_open(path, &ix)          parse model.safetensors.index.json (weight_map name -> shard file)
 *   st_index_close(ix)
 *   st_index_count(ix) / st_index_at(ix, i, &name, &shard)   entries in name order
 *   st_index_shard(ix, name)          shard file of a tensor, NULL when absent
 *   st_index_nshards(ix) / st_index_shard_at(ix, i)          distinct shard files, sorted
 *
 * Validation (each an ERR_DATA naming the file, the tensor and the offending value): header
 * length beyond the file or above 100 MB, header not a JSON object, unknown dtype, shape not a
 * list of non-negative integers, data_offsets not [begin, end] with begin <= end, end - begin
 * != numel * dtype size, duplicate names, overlapping tensors, holes in the data section or
 * data not covering it up to the end of the file, non-string metadata.
 * Tensor data pointers are only byte-aligned in general (8-aligned when the header length is
 * a multiple of 8, as the safetensors library writes it); st_to_f32 copies with memcpy.
 */
#ifndef ORPO_SAFETENSORS_H
#define ORPO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef enum st_dtype {
    ST_INVALID = 0,
    ST_BOOL, ST_U8, ST_I8, ST_F8_E4M3, ST_F8_E5M2, ST_F8_E8M0,
    ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32,
    ST_I64, ST_U64, ST_F64,
    ST_NDTYPES
} st_dtype;

typedef struct st_tensor {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;  /* byte offsets relative to the data section */
    size_t nbytes;
    const void *data;     /* inside the mapping; valid until st_close */
} st_tensor;

typedef struct st_file st_file;
typedef struct st_index st_index;

int st_open(const char *path, st_file **out);
void st_close(st_file *f);
int st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, int i);
const st_tensor *st_find(const st_file *f, const char *name);
int st_meta_count(const st_file *f);
void st_meta_at(const st_file *f, int i, const char **key, const char **val);
const char *st_meta_get(const st_file *f, const char *key);
const char *st_path(const st_file *f);
int st_to_f32(const st_file *f, const st_tensor *t, float *out);

const char *st_dtype_name(st_dtype dt);
size_t st_dtype_size(st_dtype dt);
st_dtype st_dtype_parse(const char *name);

int st_index_open(const char *path, st_index **out);
void st_index_close(st_index *ix);
int st_index_count(const st_index *ix);
void st_index_at(const st_index *ix, int i, const char **name, const char **shard);
const char *st_index_shard(const st_index *ix, const char *name);
int st_index_nshards(const st_index *ix);
const char *st_index_shard_at(const st_index *ix, int i);

#endif
