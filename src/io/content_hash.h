/* content_hash — a 64-bit hash of what an HDF5 file holds (model.h5, data.h5), recorded at import and checked by
 * train / resume / eval (docs/checkpoints.md "Inputs").
 *
 *   chash_file(path, &h)          hash of the file's content (below); reads every byte of every dataset
 *   chash_record(path, &h)        chash_file, then store it as the root attribute content_hash (h may be NULL)
 *   chash_read(path, &h, &found)  the recorded root attribute content_hash (found 0 when the file has none)
 *   chash_hex(h, buf)             16 lower-case hex digits and a NUL into buf[CHASH_HEX]
 *   chash_init(&s) / chash_update(&s, p, n) / chash_final(&s)   the byte-stream hash itself
 *
 * What enters the hash, in this order: every object of the file in HDF5's name order (H5Ovisit by name,
 * increasing: a canonical order, whatever the order of creation), and for each one its path, then its
 * attributes in name order (name, type, shape, values), then, for a dataset, its type, its shape and its raw
 * bytes (little-endian as stored; variable-length strings as their text). Left out: the root attribute
 * content_hash itself and the provenance attributes that change with where and by which build a file was made,
 * not with what it holds (root created_by, source_dir, model_path). Storage (chunking, compression, order of
 * creation) does not enter it.
 *
 * The stream hash works on 8-byte little-endian words in four independent lanes (multiply-rotate rounds, the
 * construction of xxHash64, not its exact output), 32 bytes per round; it is not cryptographic: it notices a
 * changed or re-imported file, not an attacker. Datasets are read in blocks of about 64 MiB.
 */
#ifndef ORPO_CONTENT_HASH_H
#define ORPO_CONTENT_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CHASH_ATTR "content_hash"
#define CHASH_HEX 17

typedef struct chash_state {
    uint64_t v[4];
    uint64_t total;
    unsigned char buf[32];
    size_t nbuf;
} chash_state;

void chash_init(chash_state *s);
void chash_update(chash_state *s, const void *p, size_t n);
uint64_t chash_final(const chash_state *s);

int chash_file(const char *path, uint64_t *h);
int chash_record(const char *path, uint64_t *h);
int chash_read(const char *path, uint64_t *h, int *found);
void chash_hex(uint64_t h, char *buf);

#endif
