/* parquet — streaming Parquet reader; see parquet.h and docs/parquet.md.
 *
 * Layout of a file: "PAR1" | column chunks (pages) ... | FileMetaData (Thrift compact) |
 * 4-byte little-endian footer length | "PAR1". A column chunk is a sequence of pages, each a
 * Thrift PageHeader followed by compressed_page_size payload bytes.
 */
#include "io/parquet.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <snappy-c.h>
#include <zstd.h>

#include "io/err.h"
#include "io/thrift.h"

#define PQ_MAX_PAGE_BYTES ((int64_t)1 << 30)  /* largest page (compressed or not) we accept */
#define PQ_MAX_HEADER_BYTES (16 << 20)        /* largest page header (statistics can be big) */
#define PQ_MAX_SCHEMA_DEPTH 64
#ifndef PQ_HEADER_WINDOW
#define PQ_HEADER_WINDOW 4096                 /* first read of a page header; -DPQ_HEADER_WINDOW=3 exercises the growth */
#endif

enum { ENC_PLAIN = 0, ENC_PLAIN_DICTIONARY = 2, ENC_RLE = 3, ENC_BIT_PACKED = 4, ENC_RLE_DICTIONARY = 8 };
enum { CODEC_UNCOMPRESSED = 0, CODEC_SNAPPY = 1, CODEC_ZSTD = 6 };
enum { PAGE_DATA = 0, PAGE_INDEX = 1, PAGE_DICTIONARY = 2, PAGE_DATA_V2 = 3 };
enum { REP_REQUIRED = 0, REP_OPTIONAL = 1, REP_REPEATED = 2 };

typedef struct schema_el {
    char *name;
    int has_type, type, type_length, repetition, has_children, num_children, converted_type, logical_type;
} schema_el;

typedef struct chunk_meta {
    int type, codec, has_meta, file_path_set, encrypted;
    int64_t num_values, total_compressed, data_page_offset, dict_page_offset;
    int has_dict_offset;
    char *path; /* dotted path_in_schema */
} chunk_meta;

typedef struct row_group {
    int64_t num_rows;
    int nchunks;
    chunk_meta *chunks;
} row_group;

struct pq_file {
    char *path;
    int fd;
    int64_t file_size, data_end; /* data_end: where the footer starts */
    char *created_by;
    int64_t num_rows;
    int nschema;
    schema_el *schema;
    int ncols;
    pq_column_info *cols;
    int nrg;
    row_group *rgs;
    uint8_t *hdr;       /* page header window */
    size_t hdr_cap;
    uint8_t *levels;    /* definition levels of one page */
    size_t levels_cap;
};

const char *pq_type_name(int type) {
    static const char *names[] = {"BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY",
                                  "FIXED_LEN_BYTE_ARRAY"};
    return type >= 0 && type < 8 ? names[type] : "unknown type";
}

static const char *encoding_name(int e) {
    static const char *names[] = {"PLAIN", "GROUP_VAR_INT", "PLAIN_DICTIONARY", "RLE", "BIT_PACKED",
                                  "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY",
                                  "RLE_DICTIONARY", "BYTE_STREAM_SPLIT", "ALP"};
    return e >= 0 && e < 11 ? names[e] : "unknown encoding";
}

static const char *codec_name(int c) {
    static const char *names[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"};
    return c >= 0 && c < 8 ? names[c] : "unknown codec";
}

static char *dup_n(const uint8_t *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s) return NULL;
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static uint32_t rd_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd_u64le(const uint8_t *p) { return (uint64_t)rd_u32le(p) | (uint64_t)rd_u32le(p + 4) << 32; }

/* Read exactly n bytes at offset off. */
static int pread_all(pq_file *f, void *buf, size_t n, int64_t off, const char *what) {
    uint8_t *p = buf;
    while (n) {
        ssize_t k = pread(f->fd, p, n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return err_set(ERR_IO, "%s: cannot read %s at byte %lld: %s", f->path, what, (long long)off, strerror(errno));
        }
        if (k == 0)
            return err_set(ERR_DATA, "%s: file ends at byte %lld while reading %s (expected %zu more bytes)", f->path,
                           (long long)off, what, n);
        p += k;
        n -= (size_t)k;
        off += k;
    }
    return ERR_OK;
}

/* ---------------------------------------------------------------- footer (FileMetaData) */

/* The field has the wrong wire type: a clear error instead of a misread. */
static int bad_type(thr_reader *r, const char *field, int got, const char *want) {
    if (!thr_failed(r)) {
        r->failed = 1;
        err_set(ERR_DATA, "thrift compact protocol, byte %zu of %zu: %s has wire type %s, expected %s", r->pos, r->len,
                field, thr_type_name(got), want);
    }
    return ERR_DATA;
}

static int is_int_type(int t) { return t == THR_I8 || t == THR_I16 || t == THR_I32 || t == THR_I64; }

static int get_int(thr_reader *r, int t, const char *field, int64_t *v) {
    if (!is_int_type(t)) return bad_type(r, field, t, "an integer");
    return thr_int_field(r, t, v);
}

static int get_i32(thr_reader *r, int t, const char *field, int *v) {
    int64_t x;
    *v = 0;
    if (get_int(r, t, field, &x)) return ERR_DATA;
    if (x < INT32_MIN || x > INT32_MAX) return bad_type(r, field, t, "a value in i32 range");
    *v = (int)x;
    return ERR_OK;
}

static int get_list(thr_reader *r, int t, const char *field, int want_elem, uint32_t *n) {
    int et;
    if (t != THR_LIST) return bad_type(r, field, t, "list");
    if (thr_list_begin(r, &et, n)) return ERR_DATA;
    if (et != want_elem) return bad_type(r, field, et, thr_type_name(want_elem));
    return ERR_OK;
}

static int parse_logical_type(thr_reader *r, int *out) {
    int16_t id;
    int t, k;
    *out = 0;
    if (thr_struct_begin(r)) return ERR_DATA;
    while ((k = thr_field_next(r, &id, &t)) == 1) {
        if (!*out) *out = id;
        if (thr_skip(r, t)) return ERR_DATA;
    }
    if (k < 0) return ERR_DATA;
    return thr_struct_end(r);
}

static int parse_schema_el(thr_reader *r, schema_el *e) {
    int16_t id;
    int t, k, have_name = 0;
    e->converted_type = -1;
    e->repetition = REP_REQUIRED;
    if (thr_struct_begin(r)) return ERR_DATA;
    while ((k = thr_field_next(r, &id, &t)) == 1) {
        switch (id) {
        case 1: if (get_i32(r, t, "SchemaElement.type", &e->type)) return ERR_DATA; e->has_type = 1; break;
        case 2: if (get_i32(r, t, "SchemaElement.type_length", &e->type_length)) return ERR_DATA; break;
        case 3: if (get_i32(r, t, "SchemaElement.repetition_type", &e->repetition)) return ERR_DATA; break;
        case 4: {
            const uint8_t *p;
            uint32_t n;
            if (t != THR_BINARY) return bad_type(r, "SchemaElement.name", t, "binary");
            if (thr_read_binary(r, &p, &n)) return ERR_DATA;
            free(e->name);
            if (!(e->name = dup_n(p, n))) return err_set(ERR_INTERNAL, "out of memory");
            have_name = 1;
            break;
        }
        case 5:
            if (get_i32(r, t, "SchemaElement.num_children", &e->num_children)) return ERR_DATA;
            e->has_children = 1;
            break;
        case 6: if (get_i32(r, t, "SchemaElement.converted_type", &e->converted_type)) return ERR_DATA; break;
        case 10:
            if (t != THR_STRUCT) return bad_type(r, "SchemaElement.logicalType", t, "struct");
            if (parse_logical_type(r, &e->logical_type)) return ERR_DATA;
            break;
        default:
            if (thr_skip(r, t)) return ERR_DATA;
        }
    }
    if (k < 0 || thr_struct_end(r)) return ERR_DATA;
    if (!have_name) return bad_type(r, "SchemaElement.name (required)", THR_STOP, "binary");
    return ERR_OK;
}

static int parse_column_meta(thr_reader *r, chunk_meta *c) {
    int16_t id;
    int t, k;
    int have[12] = {0};
    if (thr_struct_begin(r)) return ERR_DATA;
    while ((k = thr_field_next(r, &id, &t)) == 1) {
        if (id >= 1 && id < 12) have[id] = 1;
        switch (id) {
        case 1: if (get_i32(r, t, "ColumnMetaData.type", &c->type)) return ERR_DATA; break;
        case 3: {
            uint32_t n;
            size_t used = 0, cap = 64;
            if (get_list(r, t, "ColumnMetaData.path_in_schema", THR_BINARY, &n)) return ERR_DATA;
            free(c->path);
            if (!(c->path = malloc(cap))) return err_set(ERR_INTERNAL, "out of memory");
            c->path[0] = '\0';
            for (uint32_t i = 0; i < n; i++) {
                const uint8_t *p;
                uint32_t len;
                if (thr_read_binary(r, &p, &len)) return ERR_DATA;
                if (used + len + 2 > cap) {
                    while (used + len + 2 > cap) cap *= 2;
                    char *q = realloc(c->path, cap);
                    if (!q) return err_set(ERR_INTERNAL, "out of memory");
                    c->path = q;
                }
                if (i) c->path[used++] = '.';
                memcpy(c->path + used, p, len);
                used += len;
                c->path[used] = '\0';
            }
            break;
        }
        case 4: if (get_i32(r, t, "ColumnMetaData.codec", &c->codec)) return ERR_DATA; break;
        case 5: if (get_int(r, t, "ColumnMetaData.num_values", &c->num_values)) return ERR_DATA; break;
        case 7: if (get_int(r, t, "ColumnMetaData.total_compressed_size", &c->total_compressed)) return ERR_DATA; break;
        case 9: if (get_int(r, t, "ColumnMetaData.data_page_offset", &c->data_page_offset)) return ERR_DATA; break;
        case 11:
            if (get_int(r, t, "ColumnMetaData.dictionary_page_offset", &c->dict_page_offset)) return ERR_DATA;
            c->has_dict_offset = 1;
            break;
        default:
            if (thr_skip(r, t)) return ERR_DATA;
        }
    }
    if (k < 0 || thr_struct_end(r)) return ERR_DATA;
    static const int required[] = {1, 3, 4, 5, 7, 9};
    static const char *names[] = {"type", "path_in_schema", "codec", "num_values", "total_compressed_size",
                                  "data_page_offset"};
    for (int i = 0; i < 6; i++)
        if (!have[required[i]]) {
            char what[96];
            snprintf(what, sizeof what, "ColumnMetaData.%s (required, missing)", names[i]);
            return bad_type(r, what, THR_STOP, "a value");
        }
    c->has_meta = 1;
    return ERR_OK;
}

static int parse_column_chunk(thr_reader *r, chunk_meta *c) {
    int16_t id;
    int t, k;
    if (thr_struct_begin(r)) return ERR_DATA;
    while ((k = thr_field_next(r, &id, &t)) == 1) {
        if (id == 1) {
            c->file_path_set = 1;
            if (thr_skip(r, t)) return ERR_DATA;
        } else if (id == 3) {
            if (t != THR_STRUCT) return bad_type(r, "ColumnChunk.meta_data", t, "struct");
            if (parse_column_meta(r, c)) return ERR_DATA;
        } else {
            if (id == 8 || id == 9) c->encrypted = 1;
            if (thr_skip(r, t)) return ERR_DATA;
        }
    }
    if (k < 0) return ERR_DATA;
    return thr_struct_end(r);
}

static int parse_row_group(thr_reader *r, row_group *g) {
    int16_t id;
    int t, k, have_rows = 0, have_cols = 0;
    if (thr_struct_begin(r)) return ERR_DATA;
    while ((k = thr_field_next(r, &id, &t)) == 1) {
        if (id == 1) {
            uint32_t n;
            if (get_list(r, t, "RowGroup.columns", THR_STRUCT, &n)) return ERR_DATA;
            if (g->chunks) return bad_type(r, "RowGroup.columns (given twice)", t, "one list");
            if (!(g->chunks = calloc(n ? n : 1, sizeof *g->chunks))) return err_set(ERR_INTERNAL, "out of memory");
            g->nchunks = (int)n;
            for (uint32_t i = 0; i < n; i++)
                if (parse_column_chunk(r, &g->chunks[i])) return ERR_DATA;
            have_cols = 1;
        } else if (id == 3) {
            if (get_int(r, t, "RowGroup.num_rows", &g->num_rows)) return ERR_DATA;
            have_rows = 1;
        } else if (thr_skip(r, t)) {
            return ERR_DATA;
        }
    }
    if (k < 0 || thr_struct_end(r)) return ERR_DATA;
    if (!have_cols) return bad_type(r, "RowGroup.columns (required, missing)", THR_STOP, "list");
    if (!have_rows) return bad_type(r, "RowGroup.num_rows (required, missing)", THR_STOP, "i64");
    return ERR_OK;
}

static int parse_file_meta(thr_reader *r, pq_file *f) {
    int16_t id;
    int t, k, have_schema = 0, have_rows = 0, have_rgs = 0;
    if (thr_struct_begin(r)) return ERR_DATA;
    while ((k = thr_field_next(r, &id, &t)) == 1) {
        switch (id) {
        case 2: {
            uint32_t n;
            if (get_list(r, t, "FileMetaData.schema", THR_STRUCT, &n)) return ERR_DATA;
            if (f->schema) return bad_type(r, "FileMetaData.schema (given twice)", t, "one list");
            if (!(f->schema = calloc(n ? n : 1, sizeof *f->schema))) return err_set(ERR_INTERNAL, "out of memory");
            f->nschema = (int)n;
            for (uint32_t i = 0; i < n; i++)
                if (parse_schema_el(r, &f->schema[i])) return ERR_DATA;
            have_schema = 1;
            break;
        }
        case 3:
            if (get_int(r, t, "FileMetaData.num_rows", &f->num_rows)) return ERR_DATA;
            have_rows = 1;
            break;
        case 4: {
            uint32_t n;
            if (get_list(r, t, "FileMetaData.row_groups", THR_STRUCT, &n)) return ERR_DATA;
            if (f->rgs) return bad_type(r, "FileMetaData.row_groups (given twice)", t, "one list");
            if (!(f->rgs = calloc(n ? n : 1, sizeof *f->rgs))) return err_set(ERR_INTERNAL, "out of memory");
            f->nrg = (int)n;
            for (uint32_t i = 0; i < n; i++)
                if (parse_row_group(r, &f->rgs[i])) return ERR_DATA;
            have_rgs = 1;
            break;
        }
        case 6: {
            const uint8_t *p;
            uint32_t n;
            if (t != THR_BINARY) return bad_type(r, "FileMetaData.created_by", t, "binary");
            if (thr_read_binary(r, &p, &n)) return ERR_DATA;
            free(f->created_by);
            if (!(f->created_by = dup_n(p, n))) return err_set(ERR_INTERNAL, "out of memory");
            break;
        }
        case 8:
            return err_set(ERR_DATA, "the file is encrypted (FileMetaData.encryption_algorithm is set); "
                                     "encrypted Parquet files are not supported");
        default:
            if (thr_skip(r, t)) return ERR_DATA;
        }
    }
    if (k < 0 || thr_struct_end(r)) return ERR_DATA;
    if (!have_schema) return bad_type(r, "FileMetaData.schema (required, missing)", THR_STOP, "list");
    if (!have_rows) return bad_type(r, "FileMetaData.num_rows (required, missing)", THR_STOP, "i64");
    if (!have_rgs) return bad_type(r, "FileMetaData.row_groups (required, missing)", THR_STOP, "list");
    return ERR_OK;
}

/* ---------------------------------------------------------------- schema tree */

static int add_leaf(pq_file *f, const schema_el *e, const char *path, int def, int rep) {
    pq_column_info *c = &f->cols[f->ncols++];
    if (!(c->path = dup_n((const uint8_t *)path, strlen(path)))) return err_set(ERR_INTERNAL, "out of memory");
    c->type = e->type;
    c->type_length = e->type_length;
    c->max_def = def;
    c->max_rep = rep;
    c->converted_type = e->converted_type;
    c->logical_type = e->logical_type;
    c->readable = rep == 0 && e->type >= 0 && e->type <= 7 && e->type != PQ_INT96 &&
                  (e->type != PQ_FIXED_LEN_BYTE_ARRAY || e->type_length > 0);
    return ERR_OK;
}

/* Walk the depth-first flattened schema from element *next; prefix is the parent's dotted path. */
static int walk_schema(pq_file *f, int *next, int depth, const char *prefix, int def, int rep) {
    if (depth > PQ_MAX_SCHEMA_DEPTH)
        return err_set(ERR_DATA, "%s: schema nested deeper than %d levels", f->path, PQ_MAX_SCHEMA_DEPTH);
    if (*next >= f->nschema)
        return err_set(ERR_DATA, "%s: schema element %d is missing (the tree's num_children need more than the %d "
                       "elements given)", f->path, *next, f->nschema);
    int idx = (*next)++;
    const schema_el *e = &f->schema[idx];
    char *path = NULL;
    int rc = ERR_OK;
    if (depth > 0) {
        size_t n = strlen(prefix) + strlen(e->name) + 2;
        if (!(path = malloc(n))) return err_set(ERR_INTERNAL, "out of memory");
        snprintf(path, n, "%s%s%s", prefix, *prefix ? "." : "", e->name);
        if (e->repetition != REP_REQUIRED) def++;
        if (e->repetition != REP_REQUIRED && e->repetition != REP_OPTIONAL) rep++; /* REPEATED, VECTOR, unknown */
    }
    if (e->has_children || depth == 0) {
        if (e->num_children < 0 || e->num_children > f->nschema - *next) {
            rc = err_set(ERR_DATA, "%s: schema element %d ('%s') has num_children %d but only %d elements follow",
                         f->path, idx, e->name, e->num_children, f->nschema - *next);
        } else {
            for (int i = 0; i < e->num_children && !rc; i++)
                rc = walk_schema(f, next, depth + 1, path ? path : "", def, rep);
        }
    } else if (!e->has_type) {
        rc = err_set(ERR_DATA, "%s: schema element %d ('%s') is a leaf without a physical type", f->path, idx, e->name);
    } else {
        rc = add_leaf(f, e, path, def, rep);
    }
    free(path);
    return rc;
}

static int check_row_groups(pq_file *f) {
    int64_t total = 0;
    for (int g = 0; g < f->nrg; g++) {
        row_group *rg = &f->rgs[g];
        if (rg->num_rows < 0 || rg->num_rows > INT32_MAX)
            return err_set(ERR_DATA, "%s: row group %d: num_rows %lld is outside 0..%d", f->path, g,
                           (long long)rg->num_rows, INT32_MAX);
        total += rg->num_rows;
        if (rg->nchunks != f->ncols)
            return err_set(ERR_DATA, "%s: row group %d has %d column chunks, the schema has %d leaf columns", f->path, g,
                           rg->nchunks, f->ncols);
        for (int c = 0; c < f->ncols; c++) {
            chunk_meta *m = &rg->chunks[c];
            if (m->encrypted)
                return err_set(ERR_DATA, "%s: row group %d, column '%s': the column chunk is encrypted; encrypted "
                               "Parquet files are not supported", f->path, g, f->cols[c].path);
            if (m->file_path_set)
                return err_set(ERR_DATA, "%s: row group %d, column '%s': ColumnChunk.file_path is set (data in another "
                               "file); not supported", f->path, g, f->cols[c].path);
            if (!m->has_meta)
                return err_set(ERR_DATA, "%s: row group %d, column '%s': ColumnChunk.meta_data is missing", f->path, g,
                               f->cols[c].path);
            if (strcmp(m->path, f->cols[c].path))
                return err_set(ERR_DATA, "%s: row group %d, column chunk %d has path_in_schema '%s', expected '%s' "
                               "(schema leaf order)", f->path, g, c, m->path, f->cols[c].path);
            if (m->type != f->cols[c].type)
                return err_set(ERR_DATA, "%s: row group %d, column '%s': chunk type %s (%d) differs from the schema "
                               "type %s", f->path, g, m->path, pq_type_name(m->type), m->type,
                               pq_type_name(f->cols[c].type));
        }
    }
    if (total != f->num_rows)
        return err_set(ERR_DATA, "%s: FileMetaData.num_rows is %lld but the row groups hold %lld rows", f->path,
                       (long long)f->num_rows, (long long)total);
    return ERR_OK;
}

/* ---------------------------------------------------------------- open / close */

void pq_close(pq_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    for (int i = 0; i < f->nschema; i++) free(f->schema[i].name);
    free(f->schema);
    for (int i = 0; i < f->ncols; i++) free((char *)f->cols[i].path);
    free(f->cols);
    for (int g = 0; g < f->nrg; g++) {
        for (int c = 0; c < f->rgs[g].nchunks; c++) free(f->rgs[g].chunks[c].path);
        free(f->rgs[g].chunks);
    }
    free(f->rgs);
    free(f->created_by);
    free(f->hdr);
    free(f->levels);
    free(f->path);
    free(f);
}

int pq_open(const char *path, pq_file **out) {
    *out = NULL;
    pq_file *f = calloc(1, sizeof *f);
    if (!f) return err_set(ERR_INTERNAL, "out of memory");
    f->fd = -1;
    if (!(f->path = dup_n((const uint8_t *)path, strlen(path)))) {
        free(f);
        return err_set(ERR_INTERNAL, "out of memory");
    }
    int rc = ERR_OK;
    uint8_t *footer = NULL;
    struct stat st;
    uint8_t head[4], tail[8];
    if ((f->fd = open(path, O_RDONLY)) < 0) {
        rc = err_set(ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    if (fstat(f->fd, &st) < 0) {
        rc = err_set(ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    f->file_size = (int64_t)st.st_size;
    if (f->file_size < 12) {
        rc = err_set(ERR_DATA, "%s: %lld bytes is too short for a Parquet file (at least 12: magic, footer length, "
                     "magic)", path, (long long)f->file_size);
        goto done;
    }
    if ((rc = pread_all(f, head, 4, 0, "the leading magic"))) goto done;
    if ((rc = pread_all(f, tail, 8, f->file_size - 8, "the footer length and magic"))) goto done;
    if (!memcmp(tail + 4, "PARE", 4)) {
        rc = err_set(ERR_DATA, "%s: the footer is encrypted (magic PARE); encrypted Parquet files are not supported",
                     path);
        goto done;
    }
    if (memcmp(head, "PAR1", 4)) {
        rc = err_set(ERR_DATA, "%s: not a Parquet file: expected magic 'PAR1' at byte 0, found bytes %02x %02x %02x %02x",
                     path, head[0], head[1], head[2], head[3]);
        goto done;
    }
    if (memcmp(tail + 4, "PAR1", 4)) { /* the start is fine: the end is missing */
        rc = err_set(ERR_DATA, "%s: truncated or incomplete Parquet file: it starts with the magic 'PAR1', but its last "
                     "4 bytes (at byte %lld of %lld) are %02x %02x %02x %02x, not the closing 'PAR1' after the footer; "
                     "copy or download the file again", path, (long long)(f->file_size - 4), (long long)f->file_size,
                     tail[4], tail[5], tail[6], tail[7]);
        goto done;
    }
    uint32_t flen = rd_u32le(tail);
    if ((int64_t)flen > f->file_size - 12 || flen == 0) {
        rc = err_set(ERR_DATA, "%s: footer length %u at byte %lld does not fit a %lld-byte file", path, flen,
                     (long long)(f->file_size - 8), (long long)f->file_size);
        goto done;
    }
    f->data_end = f->file_size - 8 - (int64_t)flen;
    if (!(footer = malloc(flen))) {
        rc = err_set(ERR_INTERNAL, "out of memory for a %u-byte footer", flen);
        goto done;
    }
    if ((rc = pread_all(f, footer, flen, f->data_end, "the footer"))) goto done;
    thr_reader r;
    thr_init(&r, footer, flen);
    if ((rc = parse_file_meta(&r, f))) {
        err_push("%s: footer (FileMetaData, %u bytes at byte %lld)", path, flen, (long long)f->data_end);
        rc = ERR_DATA;
        goto done;
    }
    if (f->nschema < 1) {
        rc = err_set(ERR_DATA, "%s: the schema is empty (expected a root element)", path);
        goto done;
    }
    if (!(f->cols = calloc((size_t)f->nschema, sizeof *f->cols))) {
        rc = err_set(ERR_INTERNAL, "out of memory");
        goto done;
    }
    int next = 0;
    if ((rc = walk_schema(f, &next, 0, "", 0, 0))) goto done;
    if (next != f->nschema) {
        rc = err_set(ERR_DATA, "%s: the schema tree uses %d of its %d elements", path, next, f->nschema);
        goto done;
    }
    if ((rc = check_row_groups(f))) goto done;
done:
    free(footer);
    if (rc) {
        pq_close(f);
        return rc;
    }
    *out = f;
    return ERR_OK;
}

const char *pq_path(const pq_file *f) { return f->path; }
const char *pq_created_by(const pq_file *f) { return f->created_by ? f->created_by : ""; }
int64_t pq_num_rows(const pq_file *f) { return f->num_rows; }
int pq_num_row_groups(const pq_file *f) { return f->nrg; }
int64_t pq_row_group_rows(const pq_file *f, int rg) { return rg >= 0 && rg < f->nrg ? f->rgs[rg].num_rows : -1; }
int pq_num_columns(const pq_file *f) { return f->ncols; }
const pq_column_info *pq_column(const pq_file *f, int col) { return col >= 0 && col < f->ncols ? &f->cols[col] : NULL; }

int pq_find_column(const pq_file *f, const char *dotted) {
    for (int i = 0; i < f->ncols; i++)
        if (!strcmp(f->cols[i].path, dotted)) return i;
    return -1;
}

/* ---------------------------------------------------------------- reading a column chunk */

typedef struct rd_ctx {
    pq_file *f;
    int rg, col, page;
    int64_t pos; /* file offset of the current page header */
} rd_ctx;

static int cerr(const rd_ctx *c, const char *fmt, ...) ERR_PRINTF(2, 3);
static int cerr(const rd_ctx *c, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(ERR_DATA, "%s: row group %d, column '%s', page %d (byte %lld): %s", c->f->path, c->rg,
                   c->f->cols[c->col].path, c->page, (long long)c->pos, msg);
}

/* The RLE / bit-packed hybrid decoder (levels, dictionary indices, RLE booleans). */
typedef struct rle_dec {
    const uint8_t *p, *end;
    int bw;
    uint32_t rle_left, rle_val;
    uint32_t bp_left;
    const uint8_t *bp, *bp_end;
    uint64_t bp_bit;
} rle_dec;

static void rle_init(rle_dec *d, const uint8_t *p, const uint8_t *end, int bw) {
    memset(d, 0, sizeof *d);
    d->p = p;
    d->end = end;
    d->bw = bw;
}

/* 0 on success, -1 when the data ran out or is malformed */
static int rle_next(rle_dec *d, uint32_t *v) {
    while (!d->rle_left && !d->bp_left) {
        if (d->p >= d->end) return -1;
        uint32_t h = 0;
        int shift = 0;
        for (;;) {
            if (d->p >= d->end || shift > 28) return -1;
            uint8_t b = *d->p++;
            h |= (uint32_t)(b & 0x7f) << shift;
            shift += 7;
            if (!(b & 0x80)) break;
        }
        if (h & 1) {
            uint64_t count = (uint64_t)(h >> 1) * 8;
            uint64_t bytes = (uint64_t)(h >> 1) * (uint64_t)d->bw;
            uint64_t avail = (uint64_t)(d->end - d->p);
            d->bp = d->p;
            d->bp_bit = 0;
            if (bytes > avail) { /* a short final run: keep only the values whose bits are all present */
                if (d->bw) count = avail * 8 / (uint64_t)d->bw;
                bytes = avail;
            }
            d->bp_end = d->p + bytes;
            d->bp_left = (uint32_t)(count > UINT32_MAX ? UINT32_MAX : count);
            d->p += bytes;
        } else {
            int nb = (d->bw + 7) / 8;
            if ((size_t)(d->end - d->p) < (size_t)nb) return -1;
            uint32_t x = 0;
            for (int i = 0; i < nb; i++) x |= (uint32_t)d->p[i] << (8 * i);
            d->p += nb;
            if (d->bw < 32 && (x >> d->bw)) return -1;
            d->rle_val = x;
            d->rle_left = h >> 1;
        }
    }
    if (d->rle_left) {
        d->rle_left--;
        *v = d->rle_val;
        return 0;
    }
    uint64_t bit = d->bp_bit;
    uint32_t x = 0;
    if (d->bw) {
        uint64_t first = bit >> 3, last = (bit + (uint64_t)d->bw - 1) >> 3;
        if (last >= (uint64_t)(d->bp_end - d->bp)) return -1;
        uint64_t acc = 0;
        for (uint64_t i = first; i <= last; i++) acc |= (uint64_t)d->bp[i] << (8 * (i - first));
        acc >>= (bit & 7);
        x = (uint32_t)(acc & ((d->bw == 32) ? 0xffffffffu : ((1u << d->bw) - 1)));
    }
    d->bp_bit += (uint64_t)d->bw;
    d->bp_left--;
    *v = x;
    return 0;
}

static int bit_width(int max_level) {
    int w = 0;
    while ((1 << w) <= max_level) w++;
    return w;
}

/* PLAIN values, one at a time */
typedef struct plain_dec {
    const uint8_t *p, *end;
    uint64_t bit; /* BOOLEAN: bit position */
} plain_dec;

typedef struct value {
    const uint8_t *ptr;
    uint32_t len;
    int64_t i;
    double d;
} value;

static int plain_next(const rd_ctx *c, int type, int tl, plain_dec *pd, value *v) {
    size_t left = (size_t)(pd->end - pd->p);
    switch (type) {
    case PQ_BOOLEAN: {
        uint64_t byte = pd->bit >> 3;
        if (byte >= left) return cerr(c, "PLAIN BOOLEAN values end early (page has %zu value bytes)", left);
        v->i = (pd->p[byte] >> (pd->bit & 7)) & 1;
        pd->bit++;
        return ERR_OK;
    }
    case PQ_INT32:
        if (left < 4) return cerr(c, "PLAIN INT32 values end early");
        v->i = (int32_t)rd_u32le(pd->p);
        pd->p += 4;
        return ERR_OK;
    case PQ_INT64:
        if (left < 8) return cerr(c, "PLAIN INT64 values end early");
        v->i = (int64_t)rd_u64le(pd->p);
        pd->p += 8;
        return ERR_OK;
    case PQ_FLOAT: {
        if (left < 4) return cerr(c, "PLAIN FLOAT values end early");
        uint32_t u = rd_u32le(pd->p);
        float x;
        memcpy(&x, &u, 4);
        v->d = x;
        pd->p += 4;
        return ERR_OK;
    }
    case PQ_DOUBLE: {
        if (left < 8) return cerr(c, "PLAIN DOUBLE values end early");
        uint64_t u = rd_u64le(pd->p);
        memcpy(&v->d, &u, 8);
        pd->p += 8;
        return ERR_OK;
    }
    case PQ_BYTE_ARRAY: {
        if (left < 4) return cerr(c, "PLAIN BYTE_ARRAY: expected a 4-byte length, %zu bytes left in the page", left);
        uint32_t n = rd_u32le(pd->p);
        if (n > left - 4)
            return cerr(c, "PLAIN BYTE_ARRAY value of %u bytes, only %zu bytes left in the page", n, left - 4);
        v->ptr = pd->p + 4;
        v->len = n;
        pd->p += 4 + (size_t)n;
        return ERR_OK;
    }
    case PQ_FIXED_LEN_BYTE_ARRAY:
        if (left < (size_t)tl) return cerr(c, "PLAIN FIXED_LEN_BYTE_ARRAY values end early");
        v->ptr = pd->p;
        v->len = (uint32_t)tl;
        pd->p += tl;
        return ERR_OK;
    default:
        return cerr(c, "physical type %s is not supported", pq_type_name(type));
    }
}

static void put_value(pq_values *out, int64_t row, const value *v) {
    switch (out->type) {
    case PQ_BYTE_ARRAY: case PQ_FIXED_LEN_BYTE_ARRAY:
        out->ptr[row] = v->ptr;
        out->len[row] = v->len;
        break;
    case PQ_FLOAT: case PQ_DOUBLE:
        out->f64[row] = v->d;
        break;
    default:
        out->i64[row] = v->i;
    }
}

static int keep_buffer(pq_values *out, uint8_t *buf) {
    if (out->nbufs == out->capbufs) {
        int cap = out->capbufs ? out->capbufs * 2 : 8;
        uint8_t **b = realloc(out->bufs, (size_t)cap * sizeof *b);
        if (!b) return err_set(ERR_INTERNAL, "out of memory");
        out->bufs = b;
        out->capbufs = cap;
    }
    out->bufs[out->nbufs++] = buf;
    return ERR_OK;
}

/* Decompress src[0..slen) into a new buffer of exactly dlen bytes (checked before allocating). */
static int decompress(const rd_ctx *c, int codec, const uint8_t *src, size_t slen, size_t dlen, uint8_t **dst) {
    *dst = NULL;
    if (codec == CODEC_SNAPPY) {
        size_t ul;
        if (snappy_uncompressed_length((const char *)src, slen, &ul) != SNAPPY_OK)
            return cerr(c, "SNAPPY: corrupt block header (%zu compressed bytes)", slen);
        if (ul != dlen)
            return cerr(c, "SNAPPY block decompresses to %zu bytes, the page header says %zu", ul, dlen);
    } else if (codec == CODEC_ZSTD) {
        unsigned long long fcs = ZSTD_getFrameContentSize(src, slen);
        if (fcs == ZSTD_CONTENTSIZE_ERROR) return cerr(c, "ZSTD: not a zstd frame (%zu compressed bytes)", slen);
        if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != (unsigned long long)dlen)
            return cerr(c, "ZSTD frame decompresses to %llu bytes, the page header says %zu", fcs, dlen);
    } else {
        return cerr(c, "unsupported codec %s (%d); supported: UNCOMPRESSED, SNAPPY, ZSTD", codec_name(codec), codec);
    }
    uint8_t *d = malloc(dlen + 1);
    if (!d) return cerr(c, "out of memory for a %zu-byte page", dlen);
    if (codec == CODEC_SNAPPY) {
        size_t ol = dlen;
        if (snappy_uncompress((const char *)src, slen, (char *)d, &ol) != SNAPPY_OK || ol != dlen) {
            free(d);
            return cerr(c, "SNAPPY: corrupt compressed data");
        }
    } else {
        size_t k = ZSTD_decompress(d, dlen, src, slen);
        if (ZSTD_isError(k) || k != dlen) {
            free(d);
            return cerr(c, "ZSTD: %s", ZSTD_isError(k) ? ZSTD_getErrorName(k) : "wrong decompressed size");
        }
    }
    *dst = d;
    return ERR_OK;
}

/* Page header fields we use. Sub-headers are flattened: field id -> value. */
typedef struct page_hdr {
    int64_t top[9];  /* PageHeader fields 1..8 (ints) */
    int have_top[9];
    int64_t sub[9];  /* fields 1..8 of the data / dictionary / v2 sub-header of the page's type */
    int have_sub[9];
    int sub_id;      /* which sub-header was given: 5, 7 or 8 (0 none) */
} page_hdr;

/* Read the integer and bool fields 1..8 of a struct, skip the rest. */
static int parse_int_struct(thr_reader *r, int64_t *vals, int *have) {
    int16_t id;
    int t, k;
    if (thr_struct_begin(r)) return ERR_DATA;
    while ((k = thr_field_next(r, &id, &t)) == 1) {
        if (id >= 1 && id <= 8 && (is_int_type(t) || t == THR_TRUE || t == THR_FALSE)) {
            if (t == THR_TRUE || t == THR_FALSE) vals[id] = thr_field_bool(t);
            else if (thr_int_field(r, t, &vals[id])) return ERR_DATA;
            have[id] = 1;
        } else if (thr_skip(r, t)) {
            return ERR_DATA;
        }
    }
    if (k < 0) return ERR_DATA;
    return thr_struct_end(r);
}

static int parse_page_header(thr_reader *r, page_hdr *h) {
    int16_t id;
    int t, k;
    memset(h, 0, sizeof *h);
    if (thr_struct_begin(r)) return ERR_DATA;
    while ((k = thr_field_next(r, &id, &t)) == 1) {
        if (id >= 1 && id <= 4 && is_int_type(t)) {
            if (thr_int_field(r, t, &h->top[id])) return ERR_DATA;
            h->have_top[id] = 1;
        } else if ((id == 5 || id == 7 || id == 8) && t == THR_STRUCT && !h->sub_id) {
            h->sub_id = id;
            if (parse_int_struct(r, h->sub, h->have_sub)) return ERR_DATA;
        } else if (thr_skip(r, t)) {
            return ERR_DATA;
        }
    }
    if (k < 0) return ERR_DATA;
    return thr_struct_end(r);
}

/* Read and decode the page header at c->pos; *hlen = its size in bytes. */
static int read_page_header(rd_ctx *c, int64_t chunk_end, page_hdr *h, size_t *hlen) {
    pq_file *f = c->f;
    int64_t left = chunk_end - c->pos;
    size_t win = left < PQ_HEADER_WINDOW ? (size_t)left : PQ_HEADER_WINDOW;
    for (;;) {
        if (win > f->hdr_cap) {
            uint8_t *b = realloc(f->hdr, win);
            if (!b) return err_set(ERR_INTERNAL, "out of memory");
            f->hdr = b;
            f->hdr_cap = win;
        }
        if (pread_all(f, f->hdr, win, c->pos, "a page header")) return err_push("row group %d, column '%s', page %d",
                                                                               c->rg, f->cols[c->col].path, c->page);
        thr_reader r;
        thr_init(&r, f->hdr, win);
        if (!parse_page_header(&r, h)) {
            *hlen = thr_pos(&r);
            return ERR_OK;
        }
        if (!r.eof || (int64_t)win >= left || win >= PQ_MAX_HEADER_BYTES) {
            err_push("%s: row group %d, column '%s', page %d (byte %lld): page header", f->path, c->rg,
                     f->cols[c->col].path, c->page, (long long)c->pos);
            return ERR_DATA;
        }
        win = (int64_t)win * 4 > left ? (size_t)left : win * 4;
        if (win > PQ_MAX_HEADER_BYTES) win = PQ_MAX_HEADER_BYTES;
    }
}

typedef struct dict {
    int64_t n;
    value *v;
} dict;

/* Decode the values of one data page into rows [row0, row0 + nv). */
static int decode_values(const rd_ctx *c, pq_values *out, int enc, const uint8_t *vp, const uint8_t *vend,
                         int64_t row0, int64_t nv, const dict *dc) {
    const pq_column_info *ci = &c->f->cols[c->col];
    value v;
    memset(&v, 0, sizeof v);
    if (enc == ENC_PLAIN) {
        plain_dec pd = {vp, vend, 0};
        for (int64_t i = row0; i < row0 + nv; i++) {
            if (out->is_null[i]) continue;
            if (plain_next(c, ci->type, ci->type_length, &pd, &v)) return ERR_DATA;
            put_value(out, i, &v);
        }
        return ERR_OK;
    }
    if (enc == ENC_RLE && ci->type == PQ_BOOLEAN) {
        if (vend - vp < 4) return cerr(c, "RLE BOOLEAN values: expected a 4-byte length");
        uint32_t n = rd_u32le(vp);
        if (n > (size_t)(vend - vp - 4)) return cerr(c, "RLE BOOLEAN values: length %u beyond the page", n);
        rle_dec d;
        rle_init(&d, vp + 4, vp + 4 + n, 1);
        for (int64_t i = row0; i < row0 + nv; i++) {
            uint32_t x;
            if (out->is_null[i]) continue;
            if (rle_next(&d, &x)) return cerr(c, "RLE BOOLEAN values end early or are malformed at row %lld",
                                              (long long)i);
            out->i64[i] = x;
        }
        return ERR_OK;
    }
    if (enc == ENC_RLE_DICTIONARY || enc == ENC_PLAIN_DICTIONARY) {
        int64_t nonnull = 0;
        for (int64_t i = row0; i < row0 + nv; i++) nonnull += !out->is_null[i];
        if (!nonnull) return ERR_OK;
        if (dc->n < 0) return cerr(c, "%s page but the column chunk has no dictionary page", encoding_name(enc));
        if (vp >= vend) return cerr(c, "dictionary indices: expected a bit-width byte, the page is empty");
        int bw = *vp;
        if (bw > 32) return cerr(c, "dictionary index bit width %d (expected 0..32)", bw);
        rle_dec d;
        rle_init(&d, vp + 1, vend, bw);
        for (int64_t i = row0; i < row0 + nv; i++) {
            uint32_t k;
            if (out->is_null[i]) continue;
            if (rle_next(&d, &k))
                return cerr(c, "dictionary indices end early or are malformed at row %lld", (long long)i);
            if ((int64_t)k >= dc->n)
                return cerr(c, "dictionary index %u at row %lld is outside the dictionary of %lld entries", k,
                            (long long)i, (long long)dc->n);
            put_value(out, i, &dc->v[k]);
        }
        return ERR_OK;
    }
    return cerr(c, "unsupported encoding %s (%d) for %s values; supported: PLAIN, PLAIN_DICTIONARY, RLE_DICTIONARY%s",
                encoding_name(enc), enc, pq_type_name(ci->type), ci->type == PQ_BOOLEAN ? ", RLE" : "");
}

/* Definition levels -> is_null for rows [row0, row0+nv). */
static int decode_levels(const rd_ctx *c, pq_values *out, const uint8_t *p, const uint8_t *end, int64_t row0,
                         int64_t nv, int64_t *nulls) {
    int max_def = c->f->cols[c->col].max_def;
    rle_dec d;
    rle_init(&d, p, end, bit_width(max_def));
    *nulls = 0;
    for (int64_t i = 0; i < nv; i++) {
        uint32_t lv;
        if (rle_next(&d, &lv))
            return cerr(c, "definition levels end early or are malformed at value %lld of %lld", (long long)i,
                        (long long)nv);
        if (lv > (uint32_t)max_def)
            return cerr(c, "definition level %u above the column's maximum %d", lv, max_def);
        out->is_null[row0 + i] = lv < (uint32_t)max_def;
        *nulls += lv < (uint32_t)max_def;
    }
    return ERR_OK;
}

void pq_values_free(pq_values *v) {
    if (!v) return;
    free(v->is_null);
    free(v->ptr);
    free(v->len);
    free(v->i64);
    free(v->f64);
    for (int i = 0; i < v->nbufs; i++) free(v->bufs[i]);
    free(v->bufs);
    memset(v, 0, sizeof *v);
}

static int is_bytes(int type) { return type == PQ_BYTE_ARRAY || type == PQ_FIXED_LEN_BYTE_ARRAY; }

static int type_width(int type, int tl) {
    switch (type) {
    case PQ_INT32: case PQ_FLOAT: return 4;
    case PQ_INT64: case PQ_DOUBLE: return 8;
    case PQ_FIXED_LEN_BYTE_ARRAY: return tl;
    case PQ_BYTE_ARRAY: return 4; /* at least its length */
    default: return 0;
    }
}

int pq_read_column(pq_file *f, int rg, int col, pq_values *out) {
    memset(out, 0, sizeof *out);
    if (rg < 0 || rg >= f->nrg) return err_set(ERR_ARGS, "%s: row group %d does not exist (the file has %d)", f->path, rg,
                                               f->nrg);
    if (col < 0 || col >= f->ncols) return err_set(ERR_ARGS, "%s: column %d does not exist (the file has %d)", f->path,
                                                   col, f->ncols);
    const pq_column_info *ci = &f->cols[col];
    const chunk_meta *m = &f->rgs[rg].chunks[col];
    rd_ctx c = {f, rg, col, 0, 0};
    if (ci->max_rep > 0)
        return err_set(ERR_DATA, "%s: row group %d, column '%s': repeated fields (max repetition level %d) are not "
                       "supported", f->path, rg, ci->path, ci->max_rep);
    if (!ci->readable)
        return err_set(ERR_DATA, "%s: row group %d, column '%s': physical type %s (%d) is not supported", f->path, rg,
                       ci->path, pq_type_name(ci->type), ci->type);
    if (m->codec != CODEC_UNCOMPRESSED && m->codec != CODEC_SNAPPY && m->codec != CODEC_ZSTD)
        return err_set(ERR_DATA, "%s: row group %d, column '%s': unsupported codec %s (%d); supported: UNCOMPRESSED, "
                       "SNAPPY, ZSTD", f->path, rg, ci->path, codec_name(m->codec), m->codec);
    int64_t n = f->rgs[rg].num_rows;
    if (m->num_values != n)
        return err_set(ERR_DATA, "%s: row group %d, column '%s': the chunk has num_values %lld, expected one per row "
                       "(%lld)", f->path, rg, ci->path, (long long)m->num_values, (long long)n);
    int64_t start = m->data_page_offset;
    if (m->has_dict_offset && m->dict_page_offset > 0 && m->dict_page_offset < start) start = m->dict_page_offset;
    int64_t end = start + (m->total_compressed > 0 ? m->total_compressed : 0);
    /* A row group without rows has no data page to read: pyarrow writes its chunks with data_page_offset 0 and at
     * most a dictionary page. Nothing in the chunk is needed, so its byte range is not checked. */
    if (n > 0 && (start < 4 || m->total_compressed <= 0 || m->total_compressed > f->data_end || end > f->data_end))
        return err_set(ERR_DATA, "%s: row group %d, column '%s': the chunk's bytes [%lld, +%lld) are outside the data "
                       "region [4, %lld)", f->path, rg, ci->path, (long long)start, (long long)m->total_compressed,
                       (long long)f->data_end);

    out->n = n;
    out->type = ci->type;
    size_t rows = (size_t)(n ? n : 1);
    out->is_null = calloc(rows, 1);
    int ok = out->is_null != NULL;
    if (is_bytes(ci->type)) {
        out->ptr = calloc(rows, sizeof *out->ptr);
        out->len = calloc(rows, sizeof *out->len);
        ok = ok && out->ptr && out->len;
    } else if (ci->type == PQ_FLOAT || ci->type == PQ_DOUBLE) {
        ok = ok && (out->f64 = calloc(rows, sizeof *out->f64));
    } else {
        ok = ok && (out->i64 = calloc(rows, sizeof *out->i64));
    }
    if (!ok) {
        pq_values_free(out);
        return err_set(ERR_INTERNAL, "%s: out of memory for %lld rows of column '%s'", f->path, (long long)n, ci->path);
    }

    dict dc = {-1, NULL};
    int64_t done = 0;
    int rc = ERR_OK, data_pages = 0;
    c.pos = start;
    while (c.pos < end && done < n) {
        page_hdr h;
        size_t hlen = 0;
        uint8_t *raw = NULL, *dec = NULL;
        if ((rc = read_page_header(&c, end, &h, &hlen))) break;
        int ptype = (int)h.top[1];
        int64_t usize = h.top[2], csize = h.top[3];
        int64_t payload = c.pos + (int64_t)hlen;
        if (!h.have_top[1] || !h.have_top[2] || !h.have_top[3]) {
            rc = cerr(&c, "page header lacks type, uncompressed_page_size or compressed_page_size");
            break;
        }
        if (csize < 0 || usize < 0 || csize > PQ_MAX_PAGE_BYTES || usize > PQ_MAX_PAGE_BYTES || csize > end - payload) {
            rc = cerr(&c, "page sizes (compressed %lld, uncompressed %lld) do not fit the column chunk (%lld bytes "
                      "left after the %zu-byte header)", (long long)csize, (long long)usize,
                      (long long)(end - payload), hlen);
            break;
        }
        int is_data = ptype == PAGE_DATA || ptype == PAGE_DATA_V2;
        if (ptype != PAGE_DICTIONARY && !is_data) { /* index pages and unknown types are skipped */
            out->pages_other++;
            c.pos = payload + csize;
            c.page++;
            continue;
        }
        int want_sub = ptype == PAGE_DATA ? 5 : ptype == PAGE_DICTIONARY ? 7 : 8;
        if (h.sub_id != want_sub) {
            rc = cerr(&c, "page of type %d lacks its sub-header (PageHeader field %d)", ptype, want_sub);
            break;
        }
        if (!(raw = malloc((size_t)csize + 1))) {
            rc = cerr(&c, "out of memory for a %lld-byte page", (long long)csize);
            break;
        }
        if ((rc = pread_all(f, raw, (size_t)csize, payload, "a page"))) {
            err_push("row group %d, column '%s', page %d", rg, ci->path, c.page);
            free(raw);
            break;
        }

        if (ptype == PAGE_DICTIONARY) {
            int64_t nd = h.sub[1];
            int enc = h.have_sub[2] ? (int)h.sub[2] : -1;
            if (dc.n >= 0 || data_pages) {
                rc = cerr(&c, "a dictionary page after %s", dc.n >= 0 ? "another dictionary page" : "data pages");
            } else if (enc != ENC_PLAIN && enc != ENC_PLAIN_DICTIONARY) {
                rc = cerr(&c, "dictionary page encoding %s (%d); expected PLAIN or PLAIN_DICTIONARY",
                          encoding_name(enc), enc);
            } else if (m->codec == CODEC_UNCOMPRESSED) {
                if (usize != csize) rc = cerr(&c, "uncompressed page sizes differ (%lld vs %lld)", (long long)usize,
                                              (long long)csize);
                else { dec = raw; raw = NULL; }
            } else {
                rc = decompress(&c, m->codec, raw, (size_t)csize, (size_t)usize, &dec);
            }
            int w = type_width(ci->type, ci->type_length);
            if (!rc && (nd < 0 || (w > 0 && nd > usize / w) || (ci->type == PQ_BOOLEAN && nd > usize * 8)))
                rc = cerr(&c, "dictionary of %lld entries cannot fit in %lld bytes", (long long)nd, (long long)usize);
            if (!rc && !(dc.v = calloc((size_t)(nd ? nd : 1), sizeof *dc.v)))
                rc = cerr(&c, "out of memory for a dictionary of %lld entries", (long long)nd);
            if (!rc) {
                plain_dec pd = {dec, dec + usize, 0};
                for (int64_t i = 0; i < nd && !rc; i++) rc = plain_next(&c, ci->type, ci->type_length, &pd, &dc.v[i]);
                dc.n = nd;
            }
            if (!rc && is_bytes(ci->type)) {
                rc = keep_buffer(out, dec);
                if (!rc) dec = NULL;
            }
            out->pages_dict++;
        } else {
            int64_t nv = h.sub[1];
            int enc = (int)(ptype == PAGE_DATA ? h.sub[2] : h.sub[4]);
            const uint8_t *lp = NULL, *lend = NULL, *vp = NULL, *vend = NULL;
            data_pages++;
            if (!h.have_sub[ptype == PAGE_DATA ? 2 : 4])
                rc = cerr(&c, "data page header lacks its encoding");
            else if (!h.have_sub[1] || nv < 0 || nv > n - done)
                rc = cerr(&c, "num_values %lld with %lld of the row group's %lld rows left", (long long)nv,
                          (long long)(n - done), (long long)n);
            if (!rc && ptype == PAGE_DATA) {
                out->pages_v1++;
                if (m->codec == CODEC_UNCOMPRESSED) {
                    if (usize != csize) rc = cerr(&c, "uncompressed page sizes differ (%lld vs %lld)",
                                                  (long long)usize, (long long)csize);
                    else { dec = raw; raw = NULL; }
                } else {
                    rc = decompress(&c, m->codec, raw, (size_t)csize, (size_t)usize, &dec);
                }
                if (!rc) {
                    vp = dec;
                    vend = dec + usize;
                    if (ci->max_def > 0) {
                        int denc = (int)h.sub[3];
                        if (denc != ENC_RLE)
                            rc = cerr(&c, "definition levels encoded as %s (%d); only RLE is supported",
                                      encoding_name(denc), denc);
                        else if (vend - vp < 4)
                            rc = cerr(&c, "definition levels: expected a 4-byte length");
                        else {
                            uint32_t ln = rd_u32le(vp);
                            if (ln > (size_t)(vend - vp - 4))
                                rc = cerr(&c, "definition levels of %u bytes exceed the page", ln);
                            lp = vp + 4;
                            lend = lp + (rc ? 0 : ln);
                            vp = lend;
                        }
                    }
                }
            } else if (!rc) {
                out->pages_v2++;
                int64_t dl = h.sub[5], rl = h.sub[6];
                int compressed = h.have_sub[7] ? (int)h.sub[7] : 1;
                if (!h.have_sub[5] || !h.have_sub[6] || dl < 0 || rl < 0 || dl + rl > csize || dl + rl > usize) {
                    rc = cerr(&c, "v2 level lengths (definition %lld, repetition %lld) do not fit the page "
                              "(%lld bytes)", (long long)dl, (long long)rl, (long long)csize);
                } else if (h.have_sub[3] && h.sub[3] != nv) {
                    rc = cerr(&c, "v2 page has %lld rows but %lld values (a flat column has one per row)",
                              (long long)h.sub[3], (long long)nv);
                } else {
                    lp = raw + rl;
                    lend = lp + dl;
                    size_t vc = (size_t)(csize - dl - rl), vu = (size_t)(usize - dl - rl);
                    if (compressed && m->codec != CODEC_UNCOMPRESSED) {
                        rc = decompress(&c, m->codec, raw + dl + rl, vc, vu, &dec);
                        if (!rc) { vp = dec; vend = dec + vu; }
                    } else if (vc != vu) {
                        rc = cerr(&c, "uncompressed v2 values: %zu bytes stored, %zu expected", vc, vu);
                    } else {
                        vp = raw + dl + rl;
                        vend = vp + vu;
                    }
                }
            }
            int64_t nulls = 0;
            if (!rc && ci->max_def > 0) {
                rc = decode_levels(&c, out, lp, lend, done, nv, &nulls);
                if (!rc && ptype == PAGE_DATA_V2 && h.have_sub[2] && h.sub[2] != nulls)
                    rc = cerr(&c, "v2 page says %lld nulls, its definition levels give %lld", (long long)h.sub[2],
                              (long long)nulls);
            }
            if (!rc) {
                if (enc == ENC_PLAIN) out->pages_plain++;
                if (enc == ENC_RLE_DICTIONARY || enc == ENC_PLAIN_DICTIONARY) out->pages_dict_encoded++;
                rc = decode_values(&c, out, enc, vp, vend, done, nv, &dc);
            }
            if (!rc && enc == ENC_PLAIN && is_bytes(ci->type) && nv > nulls) {
                /* the values point into this page: keep whichever buffer holds them */
                if (dec) { rc = keep_buffer(out, dec); if (!rc) dec = NULL; }
                else { rc = keep_buffer(out, raw); if (!rc) raw = NULL; }
            }
            if (!rc) done += nv;
        }
        free(raw);
        free(dec);
        if (rc) break;
        c.pos = payload + csize;
        c.page++;
    }
    free(dc.v);
    if (!rc && done != n)
        rc = err_set(ERR_DATA, "%s: row group %d, column '%s': the column chunk ends after %lld of %lld rows (%d pages)",
                     f->path, rg, ci->path, (long long)done, (long long)n, c.page);
    if (rc) pq_values_free(out);
    return rc;
}
