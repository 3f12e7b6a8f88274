/* pq_write — a minimal, streaming Parquet writer (the counterpart of io/parquet.h, for the demo data set
 * and for tests). Flat columns and one level of struct nesting; no repeated fields.
 *
 * What it writes: "PAR1", then row group after row group (each column chunk = one or more data pages v1:
 * RLE-hybrid definition levels with a 4-byte length prefix when max_def > 0, then PLAIN values), then the
 * FileMetaData in the Thrift compact protocol (own encoder, in pq_write.c), its length and "PAR1".
 * Physical types BYTE_ARRAY (strings with ConvertedType UTF8 + LogicalType STRING, or plain binary) and
 * INT64; codecs UNCOMPRESSED and SNAPPY (libsnappy). No dictionary, no statistics, no page index.
 * The file goes through io/atomic: nothing appears at the path until pqw_close succeeds.
 *
 *   pqw_open(path, &opts, &w)             start a file (opts NULL: defaults, see pqw_opts_default)
 *   pqw_opts_default(&opts)               UNCOMPRESSED, 1 Mi rows per row group, 1 MiB pages
 *   pqw_add_group(w, name, optional)      a top-level struct group; its leaves follow as "name.leaf"
 *   pqw_add_column(w, path, type, optional, annot)   a leaf: "col" or "group.leaf"; type PQ_BYTE_ARRAY or
 *                                         PQ_INT64; annot PQW_ANNOT_NONE or PQW_ANNOT_STRING (BYTE_ARRAY only)
 *   pqw_set_bytes(w, col, p, n)           the value of leaf col in the current row (copied)
 *   pqw_set_str(w, col, s)                the same for a NUL-terminated string
 *   pqw_set_i64(w, col, v)                an INT64 value
 *   pqw_set_null(w, col, def)             a null with definition level def (< the leaf's max_def): for
 *                                         "group.leaf", 0 = the group is null, 1 = the leaf is null
 *   pqw_end_row(w)                        every leaf must have been set; flushes a row group when full
 *   pqw_close(w)                          flush, write the footer, commit the file; frees w (even on error)
 *   pqw_abort(w)                          discard the temporary file; frees w (NULL is fine)
 *   pqw_num_columns(w) / pqw_max_def(w, col)   schema facts for callers and tests
 *
 * Errors: ERR_ARGS for misuse (unknown column, wrong type, a leaf set twice or not at all, schema after the
 * first row), ERR_IO naming the path when the disk fails. After an error the writer only accepts
 * pqw_abort / pqw_close (which then fails and removes the temporary).
 */
#ifndef ORPO_PQ_WRITE_H
#define ORPO_PQ_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "io/parquet.h"

enum { PQW_UNCOMPRESSED = 0, PQW_SNAPPY = 1 };   /* parquet.thrift CompressionCodec values */
enum { PQW_ANNOT_NONE = 0, PQW_ANNOT_STRING = 1 };

typedef struct pqw_opts {
    int codec;                 /* PQW_UNCOMPRESSED or PQW_SNAPPY */
    int64_t row_group_rows;    /* rows per row group (the last one may be shorter) */
    size_t page_bytes;         /* a data page is cut once its values reach this many bytes */
    const char *created_by;    /* FileMetaData.created_by (NULL: "orpo-hpc pq_write") */
} pqw_opts;

typedef struct pqw pqw;

void pqw_opts_default(pqw_opts *o);
int pqw_open(const char *path, const pqw_opts *opts, pqw **out);
int pqw_add_group(pqw *w, const char *name, int optional);
int pqw_add_column(pqw *w, const char *path, int type, int optional, int annot);
int pqw_set_bytes(pqw *w, int col, const void *p, size_t n);
int pqw_set_str(pqw *w, int col, const char *s);
int pqw_set_i64(pqw *w, int col, int64_t v);
int pqw_set_null(pqw *w, int col, int def);
int pqw_end_row(pqw *w);
int pqw_close(pqw *w);
void pqw_abort(pqw *w);
int pqw_num_columns(const pqw *w);
int pqw_max_def(const pqw *w, int col);

#endif
