/* st_write — write a safetensors file (header JSON + data), atomically.
 *
 *   stw_new()                                     an empty writer
 *   stw_add(w, name, dtype, ndim, shape, data)    queue a tensor (data copied); dtype "F32", "F16", "BF16", "I64", ...
 *   stw_meta(w, key, value)                       a __metadata__ string
 *   stw_write(w, path)                            write all tensors in name order through atomic_; ERR_IO on failure
 *   stw_free(w)
 *
 * The header is padded with spaces to a multiple of 8 bytes, as the safetensors library does, so
 * tensor data is 8-byte aligned in a mapping.
 */
#ifndef ORPO_ST_WRITE_H
#define ORPO_ST_WRITE_H

#include <stddef.h>
#include <stdint.h>

typedef struct stw stw;

stw *stw_new(void);
int stw_add(stw *w, const char *name, const char *dtype, int ndim, const int64_t *shape, const void *data);
int stw_meta(stw *w, const char *key, const char *value);
int stw_write(stw *w, const char *path);
void stw_free(stw *w);

#endif
