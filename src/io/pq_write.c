/* pq_write — minimal streaming Parquet writer. Layout and field ids: parquet-format's parquet.thrift and
 * the Thrift compact protocol spec (facts summarised in /work/shared/spec/rlaifv-parquet.md, section 2).
 * One row group is held in memory (encoded pages per column), then written column chunk by column chunk. */
#include "io/pq_write.h"

#include <errno.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/mem.h"

/* ---- growable byte buffer ------------------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bbuf;

static void bb_reserve(bbuf *b, size_t more) {
    if (b->n + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more) cap *= 2;
    b->p = mem_realloc(b->p, cap, "a Parquet page or footer being encoded");
    b->cap = cap;
}

static void bb_put(bbuf *b, const void *p, size_t n) {
    if (n == 0) return;
    bb_reserve(b, n);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void bb_byte(bbuf *b, uint8_t v) { bb_put(b, &v, 1); }

static void bb_u32le(bbuf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bb_put(b, x, 4);
}

static void bb_varint(bbuf *b, uint64_t v) {
    while (v >= 0x80) {
        bb_byte(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    bb_byte(b, (uint8_t)v);
}

static void bb_free(bbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- Thrift compact protocol encoder -------------------------------------------------------------- */

enum { TW_TRUE = 1, TW_FALSE = 2, TW_I32 = 5, TW_I64 = 6, TW_BINARY = 8, TW_LIST = 9, TW_STRUCT = 12 };
#define TW_MAX_DEPTH 16

typedef struct {
    bbuf *b;
    int depth;
    int16_t last[TW_MAX_DEPTH];
} tw;

static uint64_t zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

static void tw_field(tw *t, int id, int type) {
    int delta = id - t->last[t->depth];
    if (delta > 0 && delta <= 15) {
        bb_byte(t->b, (uint8_t)((delta << 4) | type));
    } else {
        bb_byte(t->b, (uint8_t)type);
        bb_varint(t->b, zigzag(id));
    }
    t->last[t->depth] = (int16_t)id;
}

static void tw_i32(tw *t, int id, int32_t v) { tw_field(t, id, TW_I32); bb_varint(t->b, zigzag(v)); }
static void tw_i64(tw *t, int id, int64_t v) { tw_field(t, id, TW_I64); bb_varint(t->b, zigzag(v)); }
static void tw_bin(tw *t, int id, const void *p, size_t n) {
    tw_field(t, id, TW_BINARY);
    bb_varint(t->b, n);
    bb_put(t->b, p, n);
}
static void tw_str(tw *t, int id, const char *s) { tw_bin(t, id, s, strlen(s)); }

/* a struct value: as field `id` (id > 0) or as a list element (id == 0) */
static void tw_struct_begin(tw *t, int id) {
    if (id > 0) tw_field(t, id, TW_STRUCT);
    t->depth++;
    t->last[t->depth] = 0;
}
static void tw_struct_end(tw *t) {
    bb_byte(t->b, 0); /* STOP */
    t->depth--;
}
static void tw_list_begin(tw *t, int id, int elem_type, size_t n) {
    tw_field(t, id, TW_LIST);
    if (n < 15) {
        bb_byte(t->b, (uint8_t)((n << 4) | (size_t)elem_type));
    } else {
        bb_byte(t->b, (uint8_t)(0xF0 | elem_type));
        bb_varint(t->b, n);
    }
}

/* ---- the writer ----------------------------------------------------------------------------------- */

#define PQW_MAX_COLS 64
#define PQW_MAX_GROUPS 16

typedef struct {
    char name[128];
    int optional;
    int nleaves;
} pqw_group;

typedef struct {
    int64_t offset, uncomp, comp, num_values;
} chunk_meta;

typedef struct {
    char path[256];
    const char *leaf;    /* last component of path */
    int group;           /* index into groups, -1 at top level */
    int type, optional, annot, max_def;
    int set;             /* set in the current row */
    /* current page */
    uint8_t *defs;       /* one definition level per row of the page */
    size_t ndefs, capdefs;
    bbuf vals;           /* PLAIN values of the page */
    /* current row group: encoded pages (header + payload) */
    bbuf chunk;
    int64_t chunk_uncomp;
} pqw_col;

struct pqw {
    pqw_opts o;
    char created_by[128];
    atomic_file af;
    FILE *fp;
    int64_t off;          /* bytes written to the file */
    int failed;
    pqw_group groups[PQW_MAX_GROUPS];
    int ngroups;
    pqw_col cols[PQW_MAX_COLS];
    int ncols;
    int64_t rows_total, rows_rg;
    /* finished row groups */
    chunk_meta *meta;     /* [nrg][ncols] */
    int64_t *rg_rows;
    int nrg, caprg;
    bbuf scratch;         /* page assembly */
    char *zbuf;           /* snappy output */
    size_t zcap;
};

void pqw_opts_default(pqw_opts *o) {
    memset(o, 0, sizeof *o);
    o->codec = PQW_UNCOMPRESSED;
    o->row_group_rows = 1 << 20;
    o->page_bytes = 1 << 20;
}

static int fail(pqw *w, int code, const char *fmt, const char *a, const char *b) {
    w->failed = 1;
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    return err_set(code, "%s: %s", w->af.final, msg);
}

int pqw_open(const char *path, const pqw_opts *opts, pqw **out) {
    *out = NULL;
    pqw *w = mem_calloc(1, sizeof *w, "the Parquet writer");
    if (opts) w->o = *opts;
    else pqw_opts_default(&w->o);
    if (w->o.codec != PQW_UNCOMPRESSED && w->o.codec != PQW_SNAPPY) {
        free(w);
        return err_set(ERR_ARGS, "%s: codec %d: expected UNCOMPRESSED (0) or SNAPPY (1)", path, opts->codec);
    }
    if (w->o.row_group_rows < 1) w->o.row_group_rows = 1;
    if (w->o.page_bytes < 1) w->o.page_bytes = 1;
    snprintf(w->created_by, sizeof w->created_by, "%s", w->o.created_by ? w->o.created_by : "orpo-hpc pq_write");
    int rc = atomic_begin(&w->af, path);
    if (rc) {
        free(w);
        return rc;
    }
    w->fp = fopen(w->af.tmp, "wb");
    if (!w->fp) {
        int e = errno;
        atomic_abort(&w->af);
        free(w);
        return err_set(ERR_IO, "%s: cannot create: %s", path, fs_errno_msg(e));
    }
    if (fwrite("PAR1", 1, 4, w->fp) != 4) {
        int e = errno;
        fclose(w->fp);
        atomic_abort(&w->af);
        free(w);
        return err_set(ERR_IO, "%s: write failed: %s", path, fs_errno_msg(e));
    }
    w->off = 4;
    *out = w;
    return ERR_OK;
}

static int schema_open(pqw *w, const char *what) {
    if (w->failed) return err_set(ERR_ARGS, "%s: the writer failed earlier", w->af.final);
    if (w->rows_total > 0 || w->rows_rg > 0 || w->cols[0].set)
        return fail(w, ERR_ARGS, "%s: the schema is fixed once the first row is written%s", what, NULL);
    return ERR_OK;
}

int pqw_add_group(pqw *w, const char *name, int optional) {
    int rc = schema_open(w, name);
    if (rc) return rc;
    if (!name[0] || strchr(name, '.') || strlen(name) >= sizeof w->groups[0].name)
        return fail(w, ERR_ARGS, "group '%s': expected a non-empty name without '.'%s", name, NULL);
    if (w->ngroups >= PQW_MAX_GROUPS) return fail(w, ERR_ARGS, "group '%s': too many groups%s", name, NULL);
    for (int i = 0; i < w->ncols; i++)
        if (w->cols[i].group < 0 && !strcmp(w->cols[i].path, name))
            return fail(w, ERR_ARGS, "group '%s': a column has this name%s", name, NULL);
    for (int i = 0; i < w->ngroups; i++)
        if (!strcmp(w->groups[i].name, name)) return fail(w, ERR_ARGS, "group '%s': declared twice%s", name, NULL);
    pqw_group *g = &w->groups[w->ngroups++];
    snprintf(g->name, sizeof g->name, "%s", name);
    g->optional = optional ? 1 : 0;
    return ERR_OK;
}

int pqw_add_column(pqw *w, const char *path, int type, int optional, int annot) {
    int rc = schema_open(w, path);
    if (rc) return rc;
    if (w->ncols >= PQW_MAX_COLS) return fail(w, ERR_ARGS, "column '%s': too many columns%s", path, NULL);
    if (type != PQ_BYTE_ARRAY && type != PQ_INT64)
        return fail(w, ERR_ARGS, "column '%s': only BYTE_ARRAY and INT64 are supported%s", path, NULL);
    if (annot == PQW_ANNOT_STRING && type != PQ_BYTE_ARRAY)
        return fail(w, ERR_ARGS, "column '%s': a STRING annotation needs BYTE_ARRAY%s", path, NULL);
    if (!path[0] || strlen(path) >= sizeof w->cols[0].path)
        return fail(w, ERR_ARGS, "column '%s': bad name%s", path, NULL);
    for (int i = 0; i < w->ncols; i++)
        if (!strcmp(w->cols[i].path, path)) return fail(w, ERR_ARGS, "column '%s': declared twice%s", path, NULL);
    pqw_col *c = &w->cols[w->ncols];
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", path);
    c->group = -1;
    const char *dot = strchr(c->path, '.');
    if (dot) {
        if (strchr(dot + 1, '.') || dot[1] == '\0')
            return fail(w, ERR_ARGS, "column '%s': one level of nesting (group.leaf) at most%s", path, NULL);
        size_t gl = (size_t)(dot - c->path);
        for (int i = 0; i < w->ngroups; i++)
            if (strlen(w->groups[i].name) == gl && !strncmp(w->groups[i].name, c->path, gl)) c->group = i;
        if (c->group < 0) return fail(w, ERR_ARGS, "column '%s': its group was not declared with pqw_add_group%s", path, NULL);
        /* leaves of a group are contiguous in the (depth-first) schema */
        if (w->groups[c->group].nleaves > 0 && (w->ncols == 0 || w->cols[w->ncols - 1].group != c->group))
            return fail(w, ERR_ARGS, "column '%s': leaves of one group must be added one after another%s", path, NULL);
        c->leaf = c->path + gl + 1;
    } else {
        for (int i = 0; i < w->ngroups; i++)
            if (!strcmp(w->groups[i].name, path)) return fail(w, ERR_ARGS, "column '%s': a group has this name%s", path, NULL);
        c->leaf = c->path;
    }
    c->type = type;
    c->optional = optional ? 1 : 0;
    c->annot = annot;
    c->max_def = c->optional + (c->group >= 0 ? w->groups[c->group].optional : 0);
    if (c->group >= 0) w->groups[c->group].nleaves++;
    w->ncols++;
    return ERR_OK;
}

int pqw_num_columns(const pqw *w) { return w->ncols; }
int pqw_max_def(const pqw *w, int col) { return col >= 0 && col < w->ncols ? w->cols[col].max_def : -1; }

static int check_col(pqw *w, int col, const char *what) {
    if (w->failed) return err_set(ERR_ARGS, "%s: the writer failed earlier", w->af.final);
    if (w->ncols == 0) return fail(w, ERR_ARGS, "%s: no columns declared%s", what, NULL);
    if (col < 0 || col >= w->ncols) {
        char n[32];
        snprintf(n, sizeof n, "%d", col);
        return fail(w, ERR_ARGS, "%s: no column %s", what, n);
    }
    if (w->cols[col].set) return fail(w, ERR_ARGS, "column '%s': set twice in row%s", w->cols[col].path, NULL);
    return ERR_OK;
}

static int push_def(pqw_col *c, int def) {
    if (c->ndefs == c->capdefs) {
        size_t cap = c->capdefs ? 2 * c->capdefs : 256;
        c->defs = mem_realloc(c->defs, cap, "the definition levels of a Parquet column");
        c->capdefs = cap;
    }
    c->defs[c->ndefs++] = (uint8_t)def;
    c->set = 1;
    return ERR_OK;
}

int pqw_set_bytes(pqw *w, int col, const void *p, size_t n) {
    int rc = check_col(w, col, "pqw_set_bytes");
    if (rc) return rc;
    pqw_col *c = &w->cols[col];
    if (c->type != PQ_BYTE_ARRAY) return fail(w, ERR_ARGS, "column '%s': not BYTE_ARRAY%s", c->path, NULL);
    if (n > 0x7fffffffu) return fail(w, ERR_ARGS, "column '%s': value over 2 GiB%s", c->path, NULL);
    bb_u32le(&c->vals, (uint32_t)n);
    bb_put(&c->vals, p, n);
    return push_def(c, c->max_def);
}

int pqw_set_str(pqw *w, int col, const char *s) { return pqw_set_bytes(w, col, s, strlen(s)); }

int pqw_set_i64(pqw *w, int col, int64_t v) {
    int rc = check_col(w, col, "pqw_set_i64");
    if (rc) return rc;
    pqw_col *c = &w->cols[col];
    if (c->type != PQ_INT64) return fail(w, ERR_ARGS, "column '%s': not INT64%s", c->path, NULL);
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)((uint64_t)v >> (8 * i));
    bb_put(&c->vals, x, 8);
    return push_def(c, c->max_def);
}

int pqw_set_null(pqw *w, int col, int def) {
    int rc = check_col(w, col, "pqw_set_null");
    if (rc) return rc;
    pqw_col *c = &w->cols[col];
    if (def < 0 || def >= c->max_def)
        return fail(w, ERR_ARGS, "column '%s': null definition level out of range (the column %s)", c->path,
                    c->max_def ? "has a smaller max_def" : "is required");
    /* a null group (def below the group's own level) must be null in every leaf of the group: checked at
     * end of row */
    return push_def(c, def);
}

/* RLE-hybrid, RLE runs only: header (run << 1), then the value in one byte (bit width <= 8) */
static void rle_levels(bbuf *b, const uint8_t *v, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1;
        while (j < n && v[j] == v[i]) j++;
        bb_varint(b, (uint64_t)(j - i) << 1);
        bb_byte(b, v[i]);
        i = j;
    }
}

static int write_out(pqw *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->fp) != n) {
        int e = errno;
        w->failed = 1;
        return err_set(ERR_IO, "%s: write failed at byte %lld: %s", w->af.final, (long long)w->off, fs_errno_msg(e));
    }
    w->off += (int64_t)n;
    return ERR_OK;
}

/* finish the current page of column c into c->chunk */
static int flush_page(pqw *w, pqw_col *c) {
    if (c->ndefs == 0) return ERR_OK;
    bbuf *pl = &w->scratch;
    pl->n = 0;
    if (c->max_def > 0) {
        bbuf lv = {0};
        rle_levels(&lv, c->defs, c->ndefs);
        bb_u32le(pl, (uint32_t)lv.n);
        bb_put(pl, lv.p, lv.n);
        bb_free(&lv);
    }
    bb_put(pl, c->vals.p, c->vals.n);
    if (pl->n > 0x7fffffffu) return fail(w, ERR_ARGS, "column '%s': page over 2 GiB%s", c->path, NULL);
    const uint8_t *payload = pl->p;
    size_t plen = pl->n;
    if (w->o.codec == PQW_SNAPPY) {
        size_t need = snappy_max_compressed_length(pl->n);
        if (need > w->zcap) {
            w->zbuf = mem_realloc(w->zbuf, need, "the Snappy buffer of a Parquet page");
            w->zcap = need;
        }
        size_t zl = w->zcap;
        if (snappy_compress((const char *)pl->p, pl->n, w->zbuf, &zl) != SNAPPY_OK)
            return fail(w, ERR_INTERNAL, "column '%s': snappy_compress failed%s", c->path, NULL);
        payload = (const uint8_t *)w->zbuf;
        plen = zl;
    }
    /* PageHeader */
    bbuf hb = {0};
    tw t = {&hb, 0, {0}};
    tw_i32(&t, 1, 0);                  /* type DATA_PAGE */
    tw_i32(&t, 2, (int32_t)pl->n);     /* uncompressed_page_size */
    tw_i32(&t, 3, (int32_t)plen);      /* compressed_page_size */
    tw_struct_begin(&t, 5);            /* data_page_header */
    tw_i32(&t, 1, (int32_t)c->ndefs);  /* num_values (nulls included) */
    tw_i32(&t, 2, 0);                  /* encoding PLAIN */
    tw_i32(&t, 3, 3);                  /* definition_level_encoding RLE */
    tw_i32(&t, 4, 3);                  /* repetition_level_encoding RLE */
    tw_struct_end(&t);
    bb_byte(&hb, 0);                   /* end of PageHeader */
    bb_put(&c->chunk, hb.p, hb.n);
    bb_put(&c->chunk, payload, plen);
    c->chunk_uncomp += (int64_t)(hb.n + pl->n);
    bb_free(&hb);
    c->ndefs = 0;
    c->vals.n = 0;
    return ERR_OK;
}

static int flush_row_group(pqw *w) {
    if (w->rows_rg == 0) return ERR_OK;
    if (w->nrg == w->caprg) {
        int cap = w->caprg ? 2 * w->caprg : 8;
        w->meta = mem_realloc(w->meta, sizeof *w->meta * (size_t)cap * (size_t)w->ncols,
                              "Parquet column chunk metadata");
        w->rg_rows = mem_realloc(w->rg_rows, sizeof *w->rg_rows * (size_t)cap, "Parquet row group sizes");
        w->caprg = cap;
    }
    for (int i = 0; i < w->ncols; i++) {
        pqw_col *c = &w->cols[i];
        int rc = flush_page(w, c);
        if (rc) return rc;
        chunk_meta *m = &w->meta[(size_t)w->nrg * (size_t)w->ncols + (size_t)i];
        m->offset = w->off;
        m->comp = (int64_t)c->chunk.n;
        m->uncomp = c->chunk_uncomp;
        m->num_values = w->rows_rg;
        if ((rc = write_out(w, c->chunk.p, c->chunk.n))) return rc;
        c->chunk.n = 0;
        c->chunk_uncomp = 0;
    }
    w->rg_rows[w->nrg++] = w->rows_rg;
    w->rows_rg = 0;
    return ERR_OK;
}

int pqw_end_row(pqw *w) {
    if (w->failed) return err_set(ERR_ARGS, "%s: the writer failed earlier", w->af.final);
    if (w->ncols == 0) return fail(w, ERR_ARGS, "pqw_end_row: no columns declared%s%s", NULL, NULL);
    for (int i = 0; i < w->ncols; i++)
        if (!w->cols[i].set) return fail(w, ERR_ARGS, "column '%s': no value in this row%s", w->cols[i].path, NULL);
    /* a null group must be null in all its leaves, and a present group present in all */
    for (int i = 0; i < w->ncols; i++) {
        pqw_col *c = &w->cols[i];
        if (c->group < 0 || !w->groups[c->group].optional) continue;
        int gnull = c->defs[c->ndefs - 1] == 0;
        for (int j = 0; j < w->ncols; j++) {
            pqw_col *d = &w->cols[j];
            if (d->group == c->group && (d->defs[d->ndefs - 1] == 0) != gnull)
                return fail(w, ERR_ARGS, "group of '%s': null in some leaves but not in '%s'", c->path, d->path);
        }
    }
    for (int i = 0; i < w->ncols; i++) {
        pqw_col *c = &w->cols[i];
        c->set = 0;
        if (c->vals.n >= w->o.page_bytes) {
            int rc = flush_page(w, c);
            if (rc) return rc;
        }
    }
    w->rows_rg++;
    w->rows_total++;
    if (w->rows_rg >= w->o.row_group_rows) return flush_row_group(w);
    return ERR_OK;
}

static void put_schema_leaf(tw *t, const pqw_col *c) {
    tw_struct_begin(t, 0);
    tw_i32(t, 1, c->type);
    tw_i32(t, 3, c->optional ? 1 : 0);
    tw_str(t, 4, c->leaf);
    if (c->annot == PQW_ANNOT_STRING) {
        tw_i32(t, 6, 0);        /* converted_type UTF8 */
        tw_struct_begin(t, 10); /* logicalType: union member 1 = STRING (empty StringType) */
        tw_struct_begin(t, 1);
        tw_struct_end(t);
        tw_struct_end(t);
    }
    tw_struct_end(t);
}

static void put_footer(pqw *w, bbuf *b) {
    tw t = {b, 0, {0}};
    tw_i32(&t, 1, 1); /* version */
    /* schema: root, then depth-first */
    int nodes = 1, top = 0;
    for (int i = 0; i < w->ncols; i++) {
        nodes++;
        if (w->cols[i].group < 0 || i == 0 || w->cols[i - 1].group != w->cols[i].group) {
            top++;
            if (w->cols[i].group >= 0) nodes++;
        }
    }
    tw_list_begin(&t, 2, TW_STRUCT, (size_t)nodes);
    tw_struct_begin(&t, 0);
    tw_str(&t, 4, "schema");
    tw_i32(&t, 5, top);
    tw_struct_end(&t);
    for (int i = 0; i < w->ncols; i++) {
        const pqw_col *c = &w->cols[i];
        if (c->group >= 0 && (i == 0 || w->cols[i - 1].group != c->group)) {
            const pqw_group *g = &w->groups[c->group];
            tw_struct_begin(&t, 0);
            tw_i32(&t, 3, g->optional ? 1 : 0);
            tw_str(&t, 4, g->name);
            tw_i32(&t, 5, g->nleaves);
            tw_struct_end(&t);
        }
        put_schema_leaf(&t, c);
    }
    tw_i64(&t, 3, w->rows_total);
    tw_list_begin(&t, 4, TW_STRUCT, (size_t)w->nrg);
    for (int r = 0; r < w->nrg; r++) {
        int64_t total_uncomp = 0, total_comp = 0;
        tw_struct_begin(&t, 0);
        tw_list_begin(&t, 1, TW_STRUCT, (size_t)w->ncols);
        for (int i = 0; i < w->ncols; i++) {
            const pqw_col *c = &w->cols[i];
            const chunk_meta *m = &w->meta[(size_t)r * (size_t)w->ncols + (size_t)i];
            total_uncomp += m->uncomp;
            total_comp += m->comp;
            tw_struct_begin(&t, 0); /* ColumnChunk */
            tw_i64(&t, 2, 0);       /* file_offset (deprecated): 0, no metadata outside the footer */
            tw_struct_begin(&t, 3); /* ColumnMetaData */
            tw_i32(&t, 1, c->type);
            if (c->max_def > 0) {
                tw_list_begin(&t, 2, TW_I32, 2);
                bb_varint(b, zigzag(0)); /* PLAIN */
                bb_varint(b, zigzag(3)); /* RLE (levels) */
            } else {
                tw_list_begin(&t, 2, TW_I32, 1);
                bb_varint(b, zigzag(0));
            }
            int depth = c->group >= 0 ? 2 : 1;
            tw_list_begin(&t, 3, TW_BINARY, (size_t)depth);
            if (depth == 2) {
                const char *g = w->groups[c->group].name;
                bb_varint(b, strlen(g));
                bb_put(b, g, strlen(g));
            }
            bb_varint(b, strlen(c->leaf));
            bb_put(b, c->leaf, strlen(c->leaf));
            tw_i32(&t, 4, w->o.codec);
            tw_i64(&t, 5, m->num_values);
            tw_i64(&t, 6, m->uncomp);
            tw_i64(&t, 7, m->comp);
            tw_i64(&t, 9, m->offset);
            tw_struct_end(&t);
            tw_struct_end(&t);
        }
        tw_i64(&t, 2, total_uncomp);
        tw_i64(&t, 3, w->rg_rows[r]);
        tw_i64(&t, 5, w->meta[(size_t)r * (size_t)w->ncols].offset);
        tw_i64(&t, 6, total_comp);
        tw_field(&t, 7, 4); /* ordinal i16 */
        bb_varint(b, zigzag(r));
        tw_struct_end(&t);
    }
    tw_str(&t, 6, w->created_by);
    bb_byte(b, 0); /* end of FileMetaData */
}

static void free_writer(pqw *w) {
    for (int i = 0; i < w->ncols; i++) {
        free(w->cols[i].defs);
        bb_free(&w->cols[i].vals);
        bb_free(&w->cols[i].chunk);
    }
    bb_free(&w->scratch);
    free(w->zbuf);
    free(w->meta);
    free(w->rg_rows);
    free(w);
}

void pqw_abort(pqw *w) {
    if (!w) return;
    if (w->fp) fclose(w->fp);
    atomic_abort(&w->af);
    free_writer(w);
}

int pqw_close(pqw *w) {
    if (!w) return err_set(ERR_ARGS, "pqw_close: no writer");
    int rc = ERR_OK;
    if (w->failed) rc = err_set(ERR_ARGS, "%s: not written: the writer failed earlier", w->af.final);
    for (int i = 0; !rc && i < w->ncols; i++)
        if (w->cols[i].set) rc = fail(w, ERR_ARGS, "column '%s': a row was started but not ended%s", w->cols[i].path, NULL);
    if (!rc && w->ncols == 0) rc = fail(w, ERR_ARGS, "no columns declared%s%s", NULL, NULL);
    if (!rc) rc = flush_row_group(w);
    if (!rc) {
        bbuf f = {0};
        put_footer(w, &f);
        rc = write_out(w, f.p, f.n);
        if (!rc) {
            uint8_t tail[8] = {(uint8_t)f.n, (uint8_t)(f.n >> 8), (uint8_t)(f.n >> 16), (uint8_t)(f.n >> 24),
                               'P', 'A', 'R', '1'};
            rc = write_out(w, tail, 8);
        }
        bb_free(&f);
    }
    if (!rc) {
        FILE *fp = w->fp;
        w->fp = NULL;
        if (fclose(fp) != 0) {
            int e = errno;
            rc = err_set(ERR_IO, "%s: close failed: %s", w->af.final, fs_errno_msg(e));
        }
    }
    if (!rc) rc = atomic_commit(&w->af);
    if (rc) {
        if (w->fp) fclose(w->fp);
        w->fp = NULL;
        atomic_abort(&w->af);
    }
    free_writer(w);
    return rc;
}
