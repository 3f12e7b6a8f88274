/* parquet — a small, streaming Parquet reader for flat and struct-nested columns (RLAIF-V).
 *
 * Reads the footer at open, then one column chunk of one row group per call, with pread:
 * memory is bounded by the largest decoded column chunk, never the whole file.
 * Supported: PLAIN, PLAIN_DICTIONARY/RLE_DICTIONARY (with fallback to PLAIN inside a chunk),
 * RLE for BOOLEAN, RLE/bit-packed hybrid definition levels, data pages v1 and v2, codecs
 * UNCOMPRESSED, SNAPPY, ZSTD; types BOOLEAN, INT32, INT64, FLOAT, DOUBLE, BYTE_ARRAY,
 * FIXED_LEN_BYTE_ARRAY; optional/required fields inside any number of optional/required groups.
 * Not supported (ERR_DATA naming file, row group, column and page): repeated fields, DELTA_*,
 * BYTE_STREAM_SPLIT, other codecs, INT96, encrypted files, column chunks in other files.
 * See docs/parquet.md.
 *
 *   pq_open(path, &pq)                    open a file and decode its footer and schema
 *   pq_close(pq)                          close it (NULL is fine)
 *   pq_path(pq)                           the path given to pq_open
 *   pq_created_by(pq)                     FileMetaData.created_by ("" when absent)
 *   pq_num_rows(pq)                       rows in the file
 *   pq_num_row_groups(pq)                 row groups in the file
 *   pq_row_group_rows(pq, rg)             rows in one row group
 *   pq_num_columns(pq)                    leaf columns (one per column chunk)
 *   pq_column(pq, col)                    pq_column_info of a leaf column (path, types, levels)
 *   pq_find_column(pq, "image.bytes")     leaf index by dotted path, -1 when absent
 *   pq_read_column(pq, rg, col, &vals)    decode one column chunk: one value or null per row
 *   pq_values_free(&vals)                 release what pq_read_column allocated (zeroes it)
 *   pq_type_name(type)                    "BYTE_ARRAY", "INT64", ...
 */
#ifndef ORPO_PARQUET_H
#define ORPO_PARQUET_H

#include <stddef.h>
#include <stdint.h>

/* physical types (parquet.thrift Type) */
enum {
    PQ_BOOLEAN = 0,
    PQ_INT32 = 1,
    PQ_INT64 = 2,
    PQ_INT96 = 3,
    PQ_FLOAT = 4,
    PQ_DOUBLE = 5,
    PQ_BYTE_ARRAY = 6,
    PQ_FIXED_LEN_BYTE_ARRAY = 7
};

typedef struct pq_file pq_file;

typedef struct pq_column_info {
    const char *path;       /* dotted path, e.g. "image.bytes" */
    int type;               /* PQ_* physical type */
    int type_length;        /* FIXED_LEN_BYTE_ARRAY width, else 0 */
    int max_def, max_rep;   /* maximum definition / repetition level */
    int converted_type;     /* SchemaElement.converted_type (0 = UTF8), -1 when absent */
    int logical_type;       /* LogicalType union member id (1 = STRING, 11 = UNKNOWN/null), 0 when absent */
    int readable;           /* 1 when pq_read_column supports this column (type and max_rep == 0) */
} pq_column_info;

/* One decoded column chunk: `n` rows. Byte arrays point into buffers owned by this struct
 * (the dictionary and the decoded pages); they stay valid until pq_values_free. */
typedef struct pq_values {
    int64_t n;              /* rows */
    int type;               /* PQ_* physical type */
    uint8_t *is_null;       /* [n] 1 = null (any definition level below the maximum) */
    const uint8_t **ptr;    /* [n] BYTE_ARRAY / FIXED_LEN_BYTE_ARRAY: value bytes (NULL when null) */
    uint32_t *len;          /* [n] their lengths */
    int64_t *i64;           /* [n] INT32, INT64, BOOLEAN (0/1) */
    double *f64;            /* [n] FLOAT, DOUBLE */
    /* how the chunk was stored (diagnostics and tests) */
    int pages_dict, pages_v1, pages_v2, pages_plain, pages_dict_encoded, pages_other;
    /* owned buffers */
    uint8_t **bufs;
    int nbufs, capbufs;
} pq_values;

int pq_open(const char *path, pq_file **out);
void pq_close(pq_file *pq);
const char *pq_path(const pq_file *pq);
const char *pq_created_by(const pq_file *pq);
int64_t pq_num_rows(const pq_file *pq);
int pq_num_row_groups(const pq_file *pq);
int64_t pq_row_group_rows(const pq_file *pq, int rg);
int pq_num_columns(const pq_file *pq);
const pq_column_info *pq_column(const pq_file *pq, int col);
int pq_find_column(const pq_file *pq, const char *dotted_path);
int pq_read_column(pq_file *pq, int rg, int col, pq_values *out);
void pq_values_free(pq_values *v);
const char *pq_type_name(int type);

#endif
