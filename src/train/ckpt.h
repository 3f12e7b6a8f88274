/* ckpt — atomic, checksummed HDF5 checkpoints: DIR/checkpoints/step-NNNNNNNN.h5 (docs/checkpoints.md).
 *
 *   ckpt_write(dir, s)                     write step s->step through the atomic writer (tmp, close, fsync,
 *                                          rename, fsync dir); ERR_IO "(disk full)" leaves older ones intact
 *   ckpt_read(path, into)                  verify every checksum, then copy state and tensors into the caller's
 *                                          buffers; names/shapes must match those set in `into` (ERR_DATA)
 *   ckpt_verify(path, &step)               full verification (format, manifest, every dataset's CRC-32)
 *   ckpt_find_latest(dir, path, cap, &step) newest checkpoint that verifies (step -1, path "" when none);
 *                                          bad ones are logged, moved aside to *.corrupt; temporaries of dead
 *                                          processes on this host removed (a live writer's are left alone)
 *   ckpt_cleanup(dir)                      remove every checkpoint temporary: only for the job's lock holder
 *   ckpt_prune(dir, keep_last)             delete all but the newest keep_last, only once the newest verifies
 *   ckpt_list(dir, steps, cap, &n)         steps of DIR/checkpoints/step-*.h5, ascending, not verified: the
 *                                          first min(n, cap) are stored, n is the total (0: none)
 *   ckpt_path(dir, step, buf, cap)         "DIR/checkpoints/step-NNNNNNNN.h5"
 *
 * Every dataset carries an int64 attribute "crc32" (zlib CRC-32 of its little-endian bytes, the same
 * as Python's zlib.crc32), and /manifest lists every dataset with its size and CRC. Not compressed.
 */
#ifndef ORPO_CKPT_H
#define ORPO_CKPT_H

#include <stddef.h>
#include <stdint.h>

#define CKPT_FORMAT "orpo-hpc/checkpoint"
#define CKPT_FORMAT_VERSION 2 /* 2: model_hash/data_hash are content hashes (io/content_hash.h) */
#define CKPT_MAX_NAME 200 /* bytes of a tensor name */

typedef struct ckpt_tensor {
    const char *name;  /* unique in its list, no '/', e.g. "layers.3.q_proj.lora_A" */
    const char *group; /* optimiser group ("lora", ...), stored as an attribute; NULL: none / not checked */
    float *data;       /* numel fp32 values, row-major */
    int64_t numel;
    int ndim;          /* 0..4 */
    int64_t shape[4];
} ckpt_tensor;

typedef struct ckpt_state {
    int64_t step;            /* optimiser steps done */
    int64_t epoch;           /* data cursor: epoch and position in that epoch's permutation */
    int64_t cursor_pos;
    uint64_t perm_seed, rng_seed;
    int64_t metrics_rows;    /* rows of the metrics 'train' table up to this step */
    double sched_lr_factor;
    int64_t adam_step;
    int64_t samples_seen, tokens_seen; /* cumulative counters of the metrics rows */
    double elapsed_s;        /* training wall time so far */
    int64_t world_size;      /* ranks that trained (informational) */
    uint64_t job_hash;       /* job_hash() of the result-changing keys */
    uint64_t model_hash, data_hash; /* content hashes of model.h5 / data.h5 (chash_, recorded at import); in
                                     * format 1 files a hash of config+size / of counts */
                                    /* ckpt_read: each hash, when nonzero in `into`, must match the file */
    int64_t format_version;  /* ckpt_read: the file's format_version */
    const char *job_yaml;    /* frozen configuration text (write); NULL = "" */
    char *loaded_yaml;       /* ckpt_read: malloc'ed copy of the stored text (caller frees) */
    ckpt_tensor *params, *adam_m, *adam_v; /* same names and shapes in the three lists */
    int ntensors;            /* ckpt_read with adam_m/adam_v NULL skips the moments */
} ckpt_state;

int ckpt_path(const char *dir, int64_t step, char *buf, size_t cap);
int ckpt_write(const char *dir, const ckpt_state *s);
int ckpt_verify(const char *path, int64_t *step);
int ckpt_read(const char *path, ckpt_state *into);
int ckpt_find_latest(const char *dir, char *path, size_t cap, int64_t *step);
int ckpt_cleanup(const char *dir);
int ckpt_prune(const char *dir, int keep_last);
int ckpt_list(const char *dir, int64_t *steps, int cap, int *n);

#endif
