/* tok — SentencePiece-style BPE tokenizer; see tok.h and docs/tokenizer.md. */
#include "data/tok.h"

#include "data/pb.h"
#include "io/err.h"
#include "io/mem.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WS "\xe2\x96\x81" /* U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's whitespace symbol */
#define WS_LEN 3
#define REPL "\xef\xbf\xbd" /* U+FFFD REPLACEMENT CHARACTER */
#define MAX_PIECES (1 << 24)

enum { MODE_SPM = 1, MODE_HF = 2 };             /* merge by piece score / by merge rank */
enum { PREFIX_NEVER = 0, PREFIX_ALWAYS = 1, PREFIX_FIRST = 2 }; /* dummy "▁" per segment */

struct piece {
    uint32_t off, len; /* bytes in the pool */
    float score;
    uint8_t type;
};

struct added {
    uint32_t off, len;
    int32_t id;
    uint8_t special;
    int32_t next; /* next added token with the same first byte, -1 at the end */
};

struct tok {
    int mode;
    const char *kind;
    char *pool;
    size_t pool_len, pool_cap;
    struct piece *pieces;
    int32_t n_pieces;
    uint32_t *map; /* open addressing piece -> id + 1 (0 = empty) */
    uint32_t map_mask;
    /* tokenizers merges: key (left << 32 | right) -> rank, result */
    uint64_t *mkey;
    int32_t *mrank, *mres;
    uint32_t mmask;
    int32_t *mlist; /* 2 * n_merges ids in rank order (for the hash) */
    int32_t n_merges;
    struct added *added;
    int32_t n_added, cap_added;
    int32_t first[256]; /* head of the added tokens starting with a byte, -1 when none */
    int32_t *user;      /* SentencePiece USER_DEFINED piece ids (matched whole, never merged) */
    int32_t n_user;
    int32_t n_vocab;
    int32_t byte_id[256];
    int32_t unk_id, bos_id, eos_id, pad_id;
    int prefix, prefix_skip_ws, escape_ws, remove_extra_ws, byte_fallback, fuse_unk, ignore_merges;
    uint32_t max_piece_len;
    char unk_surface[64];
};

/* ---------------------------------------------------------------------------------------------- utilities */

static uint64_t fnv(const void *p, size_t n, uint64_t h) {
    const uint8_t *b = (const uint8_t *)p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint32_t hash32(const void *p, size_t n) {
    uint64_t h = fnv(p, n, 0xcbf29ce484222325ULL);
    return (uint32_t)(h ^ (h >> 32));
}

/* Length of the valid UTF-8 character at p (1..4), 0 when malformed (overlong, surrogate, > U+10FFFF, bad or
 * missing continuation bytes). */
static int utf8_len(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    uint32_t cp;
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0) {
        if (n < 2 || (p[1] & 0xc0) != 0x80) return 0;
        cp = (uint32_t)(c & 0x1f) << 6 | (p[1] & 0x3f);
        return cp >= 0x80 ? 2 : 0;
    }
    if ((c & 0xf0) == 0xe0) {
        if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) return 0;
        cp = (uint32_t)(c & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
        return cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff) ? 3 : 0;
    }
    if ((c & 0xf8) == 0xf0) {
        if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80) return 0;
        cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 | (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
        return cp >= 0x10000 && cp <= 0x10ffff ? 4 : 0;
    }
    return 0;
}

struct buf {
    char *p;
    size_t n, cap;
};

static int buf_reserve(struct buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return ERR_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    b->p = mem_realloc(b->p, cap, "tokenizer text buffer");
    b->cap = cap;
    return ERR_OK;
}

static int buf_add(struct buf *b, const void *s, size_t n) {
    if (buf_reserve(b, n)) return ERR_INTERNAL;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return ERR_OK;
}

int tok_ids_push(tok_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        v->v = mem_realloc(v->v, cap * sizeof *v->v, "token ids");
        v->cap = cap;
    }
    v->v[v->n++] = id;
    return ERR_OK;
}

void tok_ids_free(tok_ids *v) {
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
}

static int pool_add(tok *t, const void *s, size_t n, uint32_t *off) {
    if (t->pool_len + n + 1 > 0xffffffffu) return err_set(ERR_DATA, "tokenizer: pieces exceed 4 GiB");
    if (t->pool_len + n + 1 > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 4096;
        while (cap < t->pool_len + n + 1) cap *= 2;
        t->pool = mem_realloc(t->pool, cap, "tokenizer pieces");
        t->pool_cap = cap;
    }
    memcpy(t->pool + t->pool_len, s, n);
    t->pool[t->pool_len + n] = '\0';
    *off = (uint32_t)t->pool_len;
    t->pool_len += n + 1;
    return ERR_OK;
}

static tok *tok_new(int mode) {
    tok *t = mem_calloc(1, sizeof *t, "tokenizer");
    t->mode = mode;
    t->kind = mode == MODE_SPM ? "sentencepiece" : "tokenizers-bpe";
    t->unk_id = t->bos_id = t->eos_id = t->pad_id = -1;
    for (int i = 0; i < 256; i++) t->first[i] = t->byte_id[i] = -1;
    t->prefix = PREFIX_ALWAYS;
    t->escape_ws = 1;
    snprintf(t->unk_surface, sizeof t->unk_surface, " \xe2\x81\x87 ");
    return t;
}

void tok_free(tok *t) {
    if (!t) return;
    free(t->pool);
    free(t->pieces);
    free(t->map);
    free(t->mkey);
    free(t->mrank);
    free(t->mres);
    free(t->mlist);
    free(t->added);
    free(t->user);
    free(t);
}

/* ------------------------------------------------------------------------------------------- piece map */

static int32_t map_find(const tok *t, const char *s, size_t n) {
    if (!t->map) return -1;
    uint32_t i = hash32(s, n) & t->map_mask;
    for (;;) {
        uint32_t v = t->map[i];
        if (!v) return -1;
        const struct piece *p = &t->pieces[v - 1];
        if (p->len == n && !memcmp(t->pool + p->off, s, n)) return (int32_t)(v - 1);
        i = (i + 1) & t->map_mask;
    }
}

/* Index all pieces; ERR_DATA naming the id of a duplicate. */
static int map_build(tok *t) {
    uint32_t cap = 1;
    while (cap < (uint32_t)t->n_pieces * 2u + 2u) cap <<= 1;
    t->map = mem_calloc(cap, sizeof *t->map, "tokenizer piece index");
    t->map_mask = cap - 1;
    for (int32_t id = 0; id < t->n_pieces; id++) {
        const struct piece *p = &t->pieces[id];
        int32_t old = map_find(t, t->pool + p->off, p->len);
        if (old >= 0)
            return err_set(ERR_DATA, "piece %d \"%s\" repeats piece %d (pieces must be unique)", id, t->pool + p->off,
                           old);
        uint32_t i = hash32(t->pool + p->off, p->len) & t->map_mask;
        while (t->map[i]) i = (i + 1) & t->map_mask;
        t->map[i] = (uint32_t)id + 1;
    }
    return ERR_OK;
}

/* The merge (left, right) of a tokenizers BPE: its slot, or -1 when absent. */
static int32_t merge_find(const tok *t, int32_t l, int32_t r) {
    if (!t->mkey) return -1;
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    uint32_t i = hash32(&key, sizeof key) & t->mmask;
    for (;;) {
        if (t->mrank[i] < 0) return -1;
        if (t->mkey[i] == key) return (int32_t)i;
        i = (i + 1) & t->mmask;
    }
}

/* ----------------------------------------------------------------------------------------- added tokens */

static const struct added *added_by_id(const tok *t, int32_t id) {
    for (int32_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return &t->added[i];
    return NULL;
}

static void added_index(tok *t) {
    for (int i = 0; i < 256; i++) t->first[i] = -1;
    /* insert longest first so that a scan finds the longest match first */
    for (int32_t k = t->n_added - 1; k >= 0; k--) t->added[k].next = -1;
    for (int32_t k = 0; k < t->n_added; k++) {
        struct added *a = &t->added[k];
        uint8_t b = (uint8_t)t->pool[a->off];
        int32_t *link = &t->first[b];
        while (*link >= 0 && t->added[*link].len >= a->len) link = &t->added[*link].next;
        a->next = *link;
        *link = k;
    }
}

/* Add without indexing; the caller runs added_index. */
static int added_push(tok *t, const char *s, size_t n, int32_t id, int special) {
    if (n == 0) return err_set(ERR_DATA, "added token %d is empty", id);
    if (id < 0 || id >= MAX_PIECES) return err_set(ERR_DATA, "added token \"%.*s\": id %d out of range", (int)n, s, id);
    for (int32_t i = 0; i < t->n_added; i++) {
        const struct added *a = &t->added[i];
        int same_text = a->len == n && !memcmp(t->pool + a->off, s, n);
        if (same_text && a->id == id) return ERR_OK;
        if (same_text || a->id == id)
            return err_set(ERR_DATA, "added token \"%.*s\" = %d clashes with added token \"%s\" = %d", (int)n, s, id,
                           t->pool + a->off, a->id);
    }
    if (id >= t->n_pieces && map_find(t, s, n) >= 0)
        return err_set(ERR_DATA, "added token \"%.*s\" = %d, but the vocabulary has it as %d", (int)n, s, id,
                       map_find(t, s, n));
    if (id < t->n_pieces) {
        const struct piece *p = &t->pieces[id];
        if (p->len != n || memcmp(t->pool + p->off, s, n))
            return err_set(ERR_DATA, "added token \"%.*s\" = %d, but piece %d is \"%s\"", (int)n, s, id, id,
                           t->pool + p->off);
    }
    if (t->n_added == t->cap_added) {
        int32_t cap = t->cap_added ? t->cap_added * 2 : 16;
        t->added = mem_realloc(t->added, (size_t)cap * sizeof *t->added, "tokenizer added tokens");
        t->cap_added = cap;
    }
    struct added *a = &t->added[t->n_added];
    if (id < t->n_pieces)
        a->off = t->pieces[id].off; /* same text, checked above (s may point into the pool) */
    else if (pool_add(t, s, n, &a->off))
        return ERR_INTERNAL;
    a->len = (uint32_t)n;
    a->id = id;
    a->special = (uint8_t)special;
    a->next = -1;
    t->n_added++;
    if (id >= t->n_vocab) t->n_vocab = id + 1;
    return ERR_OK;
}

int tok_add_special(tok *t, const char *text, int32_t id) {
    size_t n = text ? strlen(text) : 0;
    if (!n || id < 0) return err_set(ERR_ARGS, "tok_add_special: need a non-empty text and an id >= 0");
    if (id < t->n_pieces) {
        int ty = t->pieces[id].type;
        if (ty != TOK_CONTROL && ty != TOK_UNKNOWN && ty != TOK_USER_DEFINED)
            return err_set(ERR_ARGS, "tok_add_special(\"%s\", %d): piece %d is an ordinary piece", text, id, id);
    }
    if (added_push(t, text, n, id, 1)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err_msg());
        return err_set(ERR_ARGS, "tok_add_special: %s", msg);
    }
    added_index(t);
    return ERR_OK;
}

/* The longest added token at text[0..n), or NULL. */
static const struct added *added_match(const tok *t, const char *text, size_t n) {
    for (int32_t k = t->first[(uint8_t)text[0]]; k >= 0; k = t->added[k].next) {
        const struct added *a = &t->added[k];
        if (a->len <= n && !memcmp(t->pool + a->off, text, a->len)) return a;
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------------ encode */

struct sym {
    uint32_t start, len; /* bytes of the normalized segment */
    int32_t prev, next;
    int32_t id; /* -1 while unknown (sentencepiece looks single characters up at the end) */
    int32_t freeze;
};

struct cand {
    float key; /* lower merges first: -score (sentencepiece) or rank (tokenizers) */
    int32_t left, right, id;
    uint32_t size;
};

static int cand_before(const struct cand *a, const struct cand *b) {
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

struct heap {
    struct cand *v;
    size_t n, cap;
};

static int heap_push(struct heap *h, struct cand c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        h->v = mem_realloc(h->v, cap * sizeof *h->v, "tokenizer merge queue");
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!cand_before(&c, &h->v[up])) break;
        h->v[i] = h->v[up];
        i = up;
    }
    h->v[i] = c;
    return ERR_OK;
}

static struct cand heap_pop(struct heap *h) {
    struct cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && cand_before(&h->v[c + 1], &h->v[c])) c++;
        if (!cand_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* Per-call scratch (tok_encode is reentrant). */
struct work {
    struct buf norm;
    struct sym *sym;
    size_t cap_sym;
    struct heap heap;
};

static void work_free(struct work *w) {
    free(w->norm.p);
    free(w->sym);
    free(w->heap.v);
}

static int mergeable(int type) { return type == TOK_NORMAL || type == TOK_USER_DEFINED || type == TOK_UNUSED; }

/* Queue the merge of symbols l and r if the model has one. */
static int try_pair(const tok *t, struct work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return ERR_OK;
    const struct sym *a = &w->sym[l], *b = &w->sym[r];
    struct cand c;
    c.left = l;
    c.right = r;
    c.size = a->len + b->len;
    if (t->mode == MODE_SPM) {
        if (a->freeze || b->freeze || c.size > t->max_piece_len) return ERR_OK;
        int32_t id = map_find(t, w->norm.p + a->start, c.size);
        if (id < 0 || !mergeable(t->pieces[id].type)) return ERR_OK;
        c.id = id;
        c.key = -t->pieces[id].score;
    } else {
        if (a->id < 0 || b->id < 0) return ERR_OK;
        int32_t slot = merge_find(t, a->id, b->id);
        if (slot < 0) return ERR_OK;
        c.id = t->mres[slot];
        c.key = (float)t->mrank[slot];
    }
    return heap_push(&w->heap, c);
}

/* Normalize seg[0..n) into w->norm: U+FFFD for malformed bytes, extra spaces removed (if set), the dummy prefix,
 * spaces as "▁". */
static int normalize(const tok *t, const char *seg, size_t n, int first, struct work *w) {
    const uint8_t *s = (const uint8_t *)seg;
    size_t i = 0;
    w->norm.n = 0;
    if (buf_reserve(&w->norm, n * 3 + WS_LEN + 1)) return ERR_INTERNAL;
    if (t->remove_extra_ws)
        while (i < n && s[i] == ' ') i++;
    if (i == n) return ERR_OK;
    int prefix = t->prefix == PREFIX_ALWAYS || (t->prefix == PREFIX_FIRST && first);
    if (prefix && t->prefix_skip_ws && (s[i] == ' ' || (n - i >= WS_LEN && !memcmp(s + i, WS, WS_LEN)))) prefix = 0;
    char *o = w->norm.p;
    size_t m = 0;
    if (prefix) {
        if (t->escape_ws) memcpy(o + m, WS, WS_LEN), m += WS_LEN;
        else o[m++] = ' ';
    }
    int prev_space = t->remove_extra_ws;
    while (i < n) {
        int len = utf8_len(s + i, n - i);
        if (len == 0) {
            memcpy(o + m, REPL, 3);
            m += 3;
            i++;
            prev_space = 0;
        } else if (s[i] == ' ') {
            i++;
            if (!prev_space) {
                if (t->escape_ws) memcpy(o + m, WS, WS_LEN), m += WS_LEN;
                else o[m++] = ' ';
            }
            prev_space = t->remove_extra_ws;
        } else {
            memcpy(o + m, s + i, (size_t)len);
            m += (size_t)len;
            i += (size_t)len;
            prev_space = 0;
        }
    }
    if (t->remove_extra_ws) {
        if (t->escape_ws)
            while (m >= WS_LEN && !memcmp(o + m - WS_LEN, WS, WS_LEN)) m -= WS_LEN;
        else
            while (m > 0 && o[m - 1] == ' ') m--;
    }
    w->norm.n = m;
    o[m] = '\0';
    return ERR_OK;
}

static int push_sym(struct work *w, size_t *n, uint32_t start, uint32_t len, int32_t id, int freeze) {
    if (*n == w->cap_sym) {
        size_t cap = w->cap_sym ? w->cap_sym * 2 : 64;
        w->sym = mem_realloc(w->sym, cap * sizeof *w->sym, "tokenizer symbols");
        w->cap_sym = cap;
    }
    struct sym *s = &w->sym[*n];
    s->start = start;
    s->len = len;
    s->id = id;
    s->freeze = freeze;
    s->prev = (int32_t)*n - 1;
    s->next = (int32_t)*n + 1;
    (*n)++;
    return ERR_OK;
}

/* Emit the ids of a sentencepiece symbol: the piece, else its bytes (byte_fallback), else <unk> (consecutive
 * unknowns fused). */
static int emit_spm(const tok *t, const char *s, uint32_t len, int32_t id, int *prev_unk, tok_ids *out) {
    if (id < 0) id = map_find(t, s, len);
    int unk = id < 0 || id == t->unk_id || t->pieces[id].type == TOK_UNKNOWN;
    if (!unk) {
        *prev_unk = 0;
        return tok_ids_push(out, id);
    }
    if (t->byte_fallback) {
        int all = 1;
        for (uint32_t k = 0; k < len; k++)
            if (t->byte_id[(uint8_t)s[k]] < 0) all = 0;
        if (all) {
            for (uint32_t k = 0; k < len; k++)
                if (tok_ids_push(out, t->byte_id[(uint8_t)s[k]])) return ERR_INTERNAL;
            *prev_unk = 0;
            return ERR_OK;
        }
    }
    if (t->unk_id < 0) return err_set(ERR_DATA, "tokenizer has no <unk> for the unknown text \"%.*s\"", (int)len, s);
    if (*prev_unk) return ERR_OK;
    *prev_unk = 1;
    return tok_ids_push(out, t->unk_id);
}

/* Encode one segment (text between added tokens) as its own SentencePiece string. */
static int encode_segment(const tok *t, const char *seg, size_t n, int first, struct work *w, tok_ids *out) {
    if (n == 0) return ERR_OK;
    if (normalize(t, seg, n, first, w)) return ERR_INTERNAL;
    const char *s = w->norm.p;
    size_t m = w->norm.n, ns = 0;
    if (m == 0) return ERR_OK;
    if (m > 0x7fffffffu) return err_set(ERR_ARGS, "tokenizer: a text segment of %zu bytes is too long", m);
    if (t->mode == MODE_HF && t->ignore_merges) {
        int32_t id = map_find(t, s, m);
        if (id >= 0) return tok_ids_push(out, id);
    }

    /* initial symbols */
    for (size_t i = 0; i < m;) {
        uint32_t len = (uint32_t)utf8_len((const uint8_t *)s + i, m - i); /* valid after normalize */
        if (t->mode == MODE_SPM) {
            uint32_t best = 0; /* the longest user-defined piece here: one frozen symbol */
            for (int32_t k = 0; k < t->n_user; k++) {
                const struct piece *p = &t->pieces[t->user[k]];
                if (p->len > best && p->len <= m - i && !memcmp(t->pool + p->off, s + i, p->len)) best = p->len;
            }
            int freeze = best > 0;
            if (freeze) len = best;
            if (push_sym(w, &ns, (uint32_t)i, len, -1, freeze)) return ERR_INTERNAL;
        } else {
            int32_t id = map_find(t, s + i, len);
            if (id >= 0) {
                if (push_sym(w, &ns, (uint32_t)i, len, id, 0)) return ERR_INTERNAL;
            } else {
                int all = t->byte_fallback;
                for (uint32_t k = 0; all && k < len; k++)
                    if (t->byte_id[(uint8_t)s[i + k]] < 0) all = 0;
                if (all) {
                    for (uint32_t k = 0; k < len; k++)
                        if (push_sym(w, &ns, (uint32_t)(i + k), 1, t->byte_id[(uint8_t)s[i + k]], 0)) return ERR_INTERNAL;
                } else if (t->unk_id < 0) {
                    return err_set(ERR_DATA, "tokenizer has no <unk> for the unknown text \"%.*s\"", (int)len, s + i);
                } else if (t->fuse_unk && ns > 0 && w->sym[ns - 1].id == t->unk_id) {
                    w->sym[ns - 1].len += len;
                } else if (push_sym(w, &ns, (uint32_t)i, len, t->unk_id, 0)) {
                    return ERR_INTERNAL;
                }
            }
        }
        i += len;
    }
    w->sym[ns - 1].next = -1;

    /* merges, best first */
    w->heap.n = 0;
    for (size_t i = 1; i < ns; i++)
        if (try_pair(t, w, (int32_t)i - 1, (int32_t)i)) return ERR_INTERNAL;
    while (w->heap.n) {
        struct cand c = heap_pop(&w->heap);
        struct sym *a = &w->sym[c.left], *b = &w->sym[c.right];
        if (!a->len || !b->len || a->next != c.right || a->len + b->len != c.size) continue; /* stale */
        a->len += b->len;
        a->id = c.id;
        a->next = b->next;
        if (b->next >= 0) w->sym[b->next].prev = c.left;
        b->len = 0;
        if (try_pair(t, w, a->prev, c.left) || try_pair(t, w, c.left, a->next)) return ERR_INTERNAL;
    }

    int prev_unk = 0;
    for (int32_t i = 0; i >= 0; i = w->sym[i].next) {
        const struct sym *y = &w->sym[i];
        if (t->mode == MODE_SPM) {
            if (emit_spm(t, s + y->start, y->len, y->id, &prev_unk, out)) return err_code();
        } else if (tok_ids_push(out, y->id)) {
            return ERR_INTERNAL;
        }
    }
    return ERR_OK;
}

int tok_encode(const tok *t, const char *text, size_t len, int flags, tok_ids *out) {
    struct work w;
    memset(&w, 0, sizeof w);
    int rc = ERR_OK;
    if (flags & TOK_ADD_BOS) {
        if (t->bos_id < 0) return err_set(ERR_ARGS, "tok_encode: TOK_ADD_BOS, but the tokenizer has no <s>");
        if ((rc = tok_ids_push(out, t->bos_id))) return rc;
    }
    size_t seg = 0, i = 0;
    while (i < len && !(flags & TOK_NO_SPECIAL)) {
        const struct added *a = added_match(t, text + i, len - i);
        if (!a) {
            i++;
            continue;
        }
        if ((rc = encode_segment(t, text + seg, i - seg, seg == 0, &w, out))) goto done;
        if ((rc = tok_ids_push(out, a->id))) goto done;
        i += a->len;
        seg = i;
    }
    if ((rc = encode_segment(t, text + seg, len - seg, seg == 0, &w, out))) goto done;
    if (flags & TOK_ADD_EOS) {
        if (t->eos_id < 0) {
            rc = err_set(ERR_ARGS, "tok_encode: TOK_ADD_EOS, but the tokenizer has no </s>");
            goto done;
        }
        rc = tok_ids_push(out, t->eos_id);
    }
done:
    work_free(&w);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ decode */

/* Append bytes b[0..n) with every byte of a malformed sequence as U+FFFD. */
static int flush_bytes(struct buf *out, const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n;) {
        int len = utf8_len(b + i, n - i);
        if (len == 0) {
            if (buf_add(out, REPL, 3)) return ERR_INTERNAL;
            i++;
        } else {
            if (buf_add(out, b + i, (size_t)len)) return ERR_INTERNAL;
            i += (size_t)len;
        }
    }
    return ERR_OK;
}

int tok_decode(const tok *t, const int32_t *ids, size_t n, int flags, char **out, size_t *out_len) {
    struct buf o = {0}, bytes = {0};
    int rc = ERR_OK;
    int bos_ws = 1, bos_ws_seen = 0; /* sentencepiece: drop the "▁" of the first visible piece */
    if ((rc = buf_reserve(&o, 16))) goto fail;
    o.p[0] = '\0';
    for (size_t k = 0; k < n; k++) {
        int32_t id = ids[k];
        const struct piece *p = id >= 0 && id < t->n_pieces ? &t->pieces[id] : NULL;
        const struct added *a = p ? NULL : id >= 0 && id < t->n_vocab ? added_by_id(t, id) : NULL;
        if (!p && !a) {
            rc = err_set(ERR_ARGS, "tok_decode: id %d at position %zu is not in the vocabulary (size %d)", id, k,
                         t->n_vocab);
            goto fail;
        }
        if (p && p->type == TOK_BYTE) {
            uint8_t b = (uint8_t)strtol(t->pool + p->off + 3, NULL, 16); /* "<0xNN>", checked at load */
            if ((rc = buf_add(&bytes, &b, 1))) goto fail;
            continue;
        }
        if ((rc = flush_bytes(&o, (const uint8_t *)bytes.p, bytes.n))) goto fail;
        bytes.n = 0;
        if (bos_ws_seen || o.n > 0) bos_ws = 0;
        bos_ws_seen = 0;
        if (a || p->type == TOK_CONTROL) {
            if ((flags & TOK_DECODE_SPECIAL) || (a && !a->special)) {
                const char *s = a ? t->pool + a->off : t->pool + p->off;
                if ((rc = buf_add(&o, s, a ? a->len : p->len))) goto fail;
            }
            continue;
        }
        if (p->type == TOK_UNKNOWN) {
            const char *s = (flags & TOK_DECODE_SPECIAL) ? t->pool + p->off : t->unk_surface;
            if ((rc = buf_add(&o, s, strlen(s)))) goto fail;
            continue;
        }
        const char *s = t->pool + p->off;
        size_t len = p->len;
        if (bos_ws && (t->prefix != PREFIX_NEVER || t->remove_extra_ws) && len >= WS_LEN && !memcmp(s, WS, WS_LEN)) {
            s += WS_LEN;
            len -= WS_LEN;
            bos_ws_seen = 1;
        }
        for (size_t i = 0; i < len;) {
            if (t->escape_ws && len - i >= WS_LEN && !memcmp(s + i, WS, WS_LEN)) {
                if ((rc = buf_add(&o, " ", 1))) goto fail;
                i += WS_LEN;
            } else {
                size_t j = i + 1;
                while (j < len && !(len - j >= WS_LEN && !memcmp(s + j, WS, WS_LEN))) j++;
                if ((rc = buf_add(&o, s + i, j - i))) goto fail;
                i = j;
            }
        }
    }
    if ((rc = flush_bytes(&o, (const uint8_t *)bytes.p, bytes.n))) goto fail;
    free(bytes.p);
    *out = o.p;
    if (out_len) *out_len = o.n;
    return ERR_OK;
fail:
    free(o.p);
    free(bytes.p);
    return rc;
}

/* --------------------------------------------------------------------------------------- hash, accessors */

static uint64_t hash_u32(uint64_t h, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return fnv(b, 4, h);
}

uint64_t tok_hash(const tok *t) {
    uint64_t h = fnv("orpo-tok-1", 10, 0xcbf29ce484222325ULL);
    h = hash_u32(h, (uint32_t)t->mode);
    h = hash_u32(h, (uint32_t)t->n_pieces);
    for (int32_t i = 0; i < t->n_pieces; i++) {
        const struct piece *p = &t->pieces[i];
        uint32_t bits;
        memcpy(&bits, &p->score, 4);
        h = hash_u32(h, p->len);
        h = fnv(t->pool + p->off, p->len, h);
        h = hash_u32(h, p->type);
        h = hash_u32(h, t->mode == MODE_SPM ? bits : 0);
    }
    h = hash_u32(h, (uint32_t)t->n_merges);
    for (int32_t i = 0; i < 2 * t->n_merges; i++) h = hash_u32(h, (uint32_t)t->mlist[i]);
    /* added tokens in id order (their order in the file does not matter) */
    h = hash_u32(h, (uint32_t)t->n_added);
    for (int32_t id = -1;;) {
        const struct added *next = NULL;
        for (int32_t i = 0; i < t->n_added; i++)
            if (t->added[i].id > id && (!next || t->added[i].id < next->id)) next = &t->added[i];
        if (!next) break;
        h = hash_u32(h, (uint32_t)next->id);
        h = hash_u32(h, next->len);
        h = fnv(t->pool + next->off, next->len, h);
        h = hash_u32(h, next->special);
        id = next->id;
    }
    int32_t settings[] = {t->unk_id,    t->bos_id,          t->eos_id,      t->pad_id,
                          t->prefix,    t->prefix_skip_ws,  t->escape_ws,   t->remove_extra_ws,
                          t->byte_fallback, t->fuse_unk,    t->ignore_merges};
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) h = hash_u32(h, (uint32_t)settings[i]);
    h = fnv(t->unk_surface, strlen(t->unk_surface), h);
    return h;
}

int32_t tok_vocab_size(const tok *t) { return t->n_vocab; }
int32_t tok_bos_id(const tok *t) { return t->bos_id; }
int32_t tok_eos_id(const tok *t) { return t->eos_id; }
int32_t tok_unk_id(const tok *t) { return t->unk_id; }
int32_t tok_pad_id(const tok *t) { return t->pad_id; }
const char *tok_kind(const tok *t) { return t->kind; }

const char *tok_piece(const tok *t, int32_t id, size_t *len) {
    if (id >= 0 && id < t->n_pieces) {
        if (len) *len = t->pieces[id].len;
        return t->pool + t->pieces[id].off;
    }
    const struct added *a = id >= 0 ? added_by_id(t, id) : NULL;
    if (!a) return NULL;
    if (len) *len = a->len;
    return t->pool + a->off;
}

int32_t tok_piece_id(const tok *t, const char *s, size_t len) {
    int32_t id = map_find(t, s, len);
    if (id >= 0) return id;
    for (int32_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && !memcmp(t->pool + t->added[i].off, s, len)) return t->added[i].id;
    return -1;
}

/* ------------------------------------------------------------------------------------------------ loading */

/* After the pieces are in: index, byte pieces, the longest mergeable piece, user-defined pieces. */
static int finish_pieces(tok *t) {
    if (map_build(t)) return ERR_DATA;
    if (t->n_pieces > t->n_vocab) t->n_vocab = t->n_pieces;
    for (int32_t id = 0; id < t->n_pieces; id++) {
        struct piece *p = &t->pieces[id];
        const char *s = t->pool + p->off;
        if (p->type == TOK_BYTE) {
            unsigned v;
            char tail;
            if (p->len != 6 || memcmp(s, "<0x", 3) || s[5] != '>' || sscanf(s + 3, "%2X%c", &v, &tail) != 2 ||
                !strchr("0123456789ABCDEF", s[3]) || !strchr("0123456789ABCDEF", s[4]))
                return err_set(ERR_DATA, "piece %d \"%s\" has type BYTE, expected the form <0xNN> (upper-case hex)",
                               id, s);
            if (t->byte_id[v] >= 0)
                return err_set(ERR_DATA, "piece %d \"%s\" repeats byte piece %d", id, s, t->byte_id[v]);
            t->byte_id[v] = id;
        }
        if (mergeable(p->type) && p->len > t->max_piece_len) t->max_piece_len = p->len;
        if (t->mode == MODE_SPM && p->type == TOK_USER_DEFINED) {
            t->user = mem_realloc(t->user, (size_t)(t->n_user + 1) * sizeof *t->user, "tokenizer user pieces");
            t->user[t->n_user++] = id;
        }
    }
    return ERR_OK;
}

static int check_id(const tok *t, const char *what, int32_t id) {
    if (id < -1 || id >= t->n_pieces)
        return err_set(ERR_DATA, "%s %d is out of range (expected -1 or 0..%d)", what, id, t->n_pieces - 1);
    return ERR_OK;
}

static int spm_piece(tok *t, pb_reader *r, int32_t id) {
    const uint8_t *s = NULL;
    size_t n = 0;
    uint32_t field;
    int wire, rc;
    struct piece *p = &t->pieces[id];
    p->type = TOK_NORMAL;
    p->score = 0.0f;
    int has_piece = 0;
    while ((rc = pb_next(r, &field, &wire)) > 0) {
        if (field == 1) {
            if (pb_expect(r, field, wire, PB_LEN) || pb_bytes(r, &s, &n)) return ERR_DATA;
            has_piece = 1;
        } else if (field == 2) {
            if (pb_expect(r, field, wire, PB_I32) || pb_float(r, &p->score)) return ERR_DATA;
            if (!isfinite(p->score)) return err_set(ERR_DATA, "byte %zu: score is not finite", pb_pos(r) - 4);
        } else if (field == 3) {
            uint64_t v;
            if (pb_expect(r, field, wire, PB_VARINT) || pb_varint(r, &v)) return ERR_DATA;
            if (v < 1 || v > 6) return err_set(ERR_DATA, "byte %zu: piece type %llu (expected 1..6)", pb_pos(r),
                                             (unsigned long long)v);
            p->type = (uint8_t)v;
        } else if (pb_skip(r, wire)) {
            return ERR_DATA;
        }
    }
    if (rc < 0) return ERR_DATA;
    if (!has_piece || n == 0)
        return err_set(ERR_DATA, "byte %zu: piece %d has no text (expected a non-empty field 1)", pb_pos(r), id);
    for (size_t i = 0; i < n;) {
        int len = utf8_len(s + i, n - i);
        if (!len) return err_set(ERR_DATA, "byte %zu: piece %d is not valid UTF-8", pb_pos(r), id);
        i += (size_t)len;
    }
    if (p->type == TOK_UNUSED)
        return err_set(ERR_DATA, "byte %zu: piece %d has type UNUSED, which this tokenizer does not support",
                       pb_pos(r), id);
    return pool_add(t, s, n, &p->off) ? ERR_INTERNAL : (p->len = (uint32_t)n, ERR_OK);
}

static int spm_varint_field(pb_reader *r, uint32_t field, int wire, int64_t *v) {
    uint64_t u;
    if (pb_expect(r, field, wire, PB_VARINT) || pb_varint(r, &u)) return ERR_DATA;
    *v = (int64_t)u;
    return ERR_OK;
}

static int load_spm(tok *t, const uint8_t *buf, size_t len) {
    pb_reader r, sub;
    uint32_t field;
    int wire, rc;
    int32_t n = 0;
    /* pass 1: count the pieces */
    pb_init(&r, buf, len);
    while ((rc = pb_next(&r, &field, &wire)) > 0) {
        if (field == 1 && wire == PB_LEN) {
            if (n == MAX_PIECES) return err_set(ERR_DATA, "byte %zu: more than %d pieces", pb_pos(&r), MAX_PIECES);
            n++;
        }
        if (pb_skip(&r, wire)) return ERR_DATA;
    }
    if (rc < 0) return ERR_DATA;
    if (n == 0) return err_set(ERR_DATA, "no pieces (expected a SentencePiece ModelProto with field 1 repeated)");
    t->pieces = mem_calloc((size_t)n, sizeof *t->pieces, "tokenizer pieces");
    /* pass 2 */
    int64_t model_type = 1, byte_fallback = 0, suffix = 0, unk = 0, bos = 1, eos = 2, pad = -1;
    int64_t dummy = 1, extra = 1, escape = 1;
    const uint8_t *surface = NULL;
    size_t surface_len = 0;
    int has_surface = 0;
    pb_init(&r, buf, len);
    while ((rc = pb_next(&r, &field, &wire)) > 0) {
        if (field == 1) {
            if (pb_expect(&r, field, wire, PB_LEN) || pb_sub(&r, &sub) || spm_piece(t, &sub, t->n_pieces))
                return err_code();
            t->n_pieces++;
        } else if (field == 2) { /* TrainerSpec */
            if (pb_expect(&r, field, wire, PB_LEN) || pb_sub(&r, &sub)) return ERR_DATA;
            while ((rc = pb_next(&sub, &field, &wire)) > 0) {
                int e = ERR_OK;
                switch (field) {
                case 3: e = spm_varint_field(&sub, field, wire, &model_type); break;
                case 24: e = spm_varint_field(&sub, field, wire, &suffix); break;
                case 35: e = spm_varint_field(&sub, field, wire, &byte_fallback); break;
                case 40: e = spm_varint_field(&sub, field, wire, &unk); break;
                case 41: e = spm_varint_field(&sub, field, wire, &bos); break;
                case 42: e = spm_varint_field(&sub, field, wire, &eos); break;
                case 43: e = spm_varint_field(&sub, field, wire, &pad); break;
                case 44:
                    e = pb_expect(&sub, field, wire, PB_LEN) || pb_bytes(&sub, &surface, &surface_len);
                    has_surface = 1;
                    break;
                default: e = pb_skip(&sub, wire);
                }
                if (e) return ERR_DATA;
            }
            if (rc < 0) return ERR_DATA;
        } else if (field == 3 || field == 5) { /* NormalizerSpec, denormalizer */
            const uint32_t spec = field;
            if (pb_expect(&r, field, wire, PB_LEN) || pb_sub(&r, &sub)) return ERR_DATA;
            while ((rc = pb_next(&sub, &field, &wire)) > 0) {
                int e = ERR_OK;
                const uint8_t *p;
                size_t np;
                if (field == 2) {
                    e = pb_expect(&sub, field, wire, PB_LEN) || pb_bytes(&sub, &p, &np);
                    if (!e && np)
                        return err_set(ERR_DATA, "byte %zu: %s has a precompiled_charsmap (%zu bytes); only the "
                                       "identity normalizer is supported", pb_pos(&sub),
                                       spec == 3 ? "normalizer_spec" : "denormalizer_spec", np);
                } else if (spec == 3 && field == 3) {
                    e = spm_varint_field(&sub, field, wire, &dummy);
                } else if (spec == 3 && field == 4) {
                    e = spm_varint_field(&sub, field, wire, &extra);
                } else if (spec == 3 && field == 5) {
                    e = spm_varint_field(&sub, field, wire, &escape);
                } else {
                    e = pb_skip(&sub, wire);
                }
                if (e) return ERR_DATA;
            }
            if (rc < 0) return ERR_DATA;
        } else if (pb_skip(&r, wire)) {
            return ERR_DATA;
        }
    }
    if (rc < 0) return ERR_DATA;
    if (model_type != 2)
        return err_set(ERR_DATA, "trainer_spec.model_type is %lld, expected 2 (BPE); unigram/word/char models are "
                       "not supported", (long long)model_type);
    if (suffix) return err_set(ERR_DATA, "trainer_spec.treat_whitespace_as_suffix is set; not supported");
    t->unk_id = (int32_t)unk;
    t->bos_id = (int32_t)bos;
    t->eos_id = (int32_t)eos;
    t->pad_id = (int32_t)pad;
    if (check_id(t, "trainer_spec.unk_id", t->unk_id) || check_id(t, "trainer_spec.bos_id", t->bos_id) ||
        check_id(t, "trainer_spec.eos_id", t->eos_id) || check_id(t, "trainer_spec.pad_id", t->pad_id))
        return ERR_DATA;
    if (t->unk_id < 0 || t->pieces[t->unk_id].type != TOK_UNKNOWN)
        return err_set(ERR_DATA, "trainer_spec.unk_id %d is not a piece of type UNKNOWN", t->unk_id);
    t->byte_fallback = byte_fallback != 0;
    t->prefix = dummy ? PREFIX_ALWAYS : PREFIX_NEVER;
    t->remove_extra_ws = extra != 0;
    t->escape_ws = escape != 0;
    if (has_surface) {
        if (surface_len >= sizeof t->unk_surface)
            return err_set(ERR_DATA, "trainer_spec.unk_surface is longer than %zu bytes", sizeof t->unk_surface - 1);
        memcpy(t->unk_surface, surface, surface_len);
        t->unk_surface[surface_len] = '\0';
    }
    if (finish_pieces(t)) return ERR_DATA;
    for (int32_t id = 0; id < t->n_pieces; id++) {
        const struct piece *p = &t->pieces[id];
        if (p->type == TOK_UNKNOWN && id != t->unk_id)
            return err_set(ERR_DATA, "piece %d has type UNKNOWN but trainer_spec.unk_id is %d", id, t->unk_id);
        if (p->type == TOK_BYTE && !t->byte_fallback)
            return err_set(ERR_DATA, "piece %d is a BYTE piece but trainer_spec.byte_fallback is off", id);
        if ((p->type == TOK_CONTROL || p->type == TOK_UNKNOWN) && added_push(t, t->pool + p->off, p->len, id, 1))
            return ERR_DATA;
    }
    added_index(t);
    return ERR_OK;
}

/* JSON helpers: a member that must have a type; NULL (and an error naming the path) otherwise. */
static const cJSON *jget(const cJSON *obj, const char *path, const char *key, int (*is)(const cJSON *),
                         const char *what, int required) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) err_set(ERR_DATA, "%s.%s: missing (expected %s)", path, key, what);
        return NULL;
    }
    if (!is(v)) {
        err_set(ERR_DATA, "%s.%s: wrong type (expected %s)", path, key, what);
        return NULL;
    }
    return v;
}

static int js_is_string(const cJSON *v) { return cJSON_IsString(v); }
static int js_is_object(const cJSON *v) { return cJSON_IsObject(v); }
static int js_is_array(const cJSON *v) { return cJSON_IsArray(v); }
static int js_is_int(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 2147483648.0;
}

/* An optional boolean member; def when absent or null. -1 (error set) on a wrong type. */
static int jbool(const cJSON *obj, const char *path, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return def;
    if (!cJSON_IsBool(v)) {
        err_set(ERR_DATA, "%s.%s: wrong type (expected true or false)", path, key);
        return -1;
    }
    return cJSON_IsTrue(v);
}

static int is_ws_string(const cJSON *v) { return cJSON_IsString(v) && !strcmp(v->valuestring, WS); }

/* One normalizer: Prepend("▁") or Replace(" " -> "▁"); sets *prepend / *replace. */
static int hf_normalizer(const cJSON *n, const char *path, int *prepend, int *replace) {
    const cJSON *type = jget(n, path, "type", js_is_string, "a string", 1);
    if (!type) return ERR_DATA;
    const char *ty = type->valuestring;
    if (!strcmp(ty, "Sequence")) {
        const cJSON *list = jget(n, path, "normalizers", js_is_array, "an array", 1);
        if (!list) return ERR_DATA;
        int i = 0;
        for (const cJSON *e = list->child; e; e = e->next, i++) {
            char sub[128];
            snprintf(sub, sizeof sub, "%s.normalizers[%d]", path, i);
            if (!cJSON_IsObject(e)) return err_set(ERR_DATA, "%s: expected an object", sub);
            if (hf_normalizer(e, sub, prepend, replace)) return ERR_DATA;
        }
        return ERR_OK;
    }
    if (!strcmp(ty, "Prepend")) {
        if (!is_ws_string(cJSON_GetObjectItemCaseSensitive(n, "prepend")))
            return err_set(ERR_DATA, "%s.prepend: only \"" WS "\" is supported", path);
        if (*replace) return err_set(ERR_DATA, "%s: Prepend after Replace is not supported", path);
        *prepend = 1;
        return ERR_OK;
    }
    if (!strcmp(ty, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const cJSON *str = cJSON_IsObject(pat) ? cJSON_GetObjectItemCaseSensitive(pat, "String") : NULL;
        if (!cJSON_IsString(str) || strcmp(str->valuestring, " ") ||
            !is_ws_string(cJSON_GetObjectItemCaseSensitive(n, "content")))
            return err_set(ERR_DATA, "%s: only Replace({\"String\": \" \"}, \"" WS "\") is supported", path);
        *replace = 1;
        return ERR_OK;
    }
    return err_set(ERR_DATA, "%s.type: normalizer \"%s\" is not supported (expected Sequence, Prepend, Replace)",
                   path, ty);
}

/* The pre-tokenizer: Metaspace(replacement "▁", split false) or a Sequence of one. */
static int hf_pretokenizer(tok *t, const cJSON *n, const char *path) {
    const cJSON *type = jget(n, path, "type", js_is_string, "a string", 1);
    if (!type) return ERR_DATA;
    if (!strcmp(type->valuestring, "Sequence")) {
        const cJSON *list = jget(n, path, "pretokenizers", js_is_array, "an array", 1);
        if (!list) return ERR_DATA;
        int i = 0;
        for (const cJSON *e = list->child; e; e = e->next, i++) {
            char sub[128];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", path, i);
            if (!cJSON_IsObject(e)) return err_set(ERR_DATA, "%s: expected an object", sub);
            if (hf_pretokenizer(t, e, sub)) return ERR_DATA;
        }
        return ERR_OK;
    }
    if (strcmp(type->valuestring, "Metaspace"))
        return err_set(ERR_DATA, "%s.type: pre-tokenizer \"%s\" is not supported (expected Metaspace)", path,
                       type->valuestring);
    if (!is_ws_string(cJSON_GetObjectItemCaseSensitive(n, "replacement")))
        return err_set(ERR_DATA, "%s.replacement: only \"" WS "\" is supported", path);
    int split = jbool(n, path, "split", 1);
    if (split < 0) return ERR_DATA;
    if (split) return err_set(ERR_DATA, "%s.split: Metaspace with split=true is not supported", path);
    const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(n, "prepend_scheme");
    int prefix;
    if (cJSON_IsString(scheme)) {
        const char *s = scheme->valuestring;
        if (!strcmp(s, "always")) prefix = PREFIX_ALWAYS;
        else if (!strcmp(s, "first")) prefix = PREFIX_FIRST;
        else if (!strcmp(s, "never")) prefix = PREFIX_NEVER;
        else return err_set(ERR_DATA, "%s.prepend_scheme: \"%s\" (expected always, first or never)", path, s);
    } else {
        int add = jbool(n, path, "add_prefix_space", 1);
        if (add < 0) return ERR_DATA;
        prefix = add ? PREFIX_ALWAYS : PREFIX_NEVER;
    }
    t->prefix = prefix;
    t->prefix_skip_ws = 1; /* Metaspace adds no "▁" to a text that already starts with one */
    t->escape_ws = 1;
    return ERR_OK;
}

/* Merge i: "left right" or ["left", "right"]. */
static int hf_merge(tok *t, const cJSON *e, int32_t i, int32_t *l, int32_t *r, int32_t *res) {
    const char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    *l = *r = *res = -1;
    if (cJSON_IsString(e)) {
        const char *sp = strchr(e->valuestring, ' ');
        if (!sp) return err_set(ERR_DATA, "model.merges[%d]: \"%s\" has no space (expected \"left right\")", i,
                                e->valuestring);
        a = e->valuestring;
        na = (size_t)(sp - a);
        b = sp + 1;
        nb = strlen(b);
    } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
               cJSON_IsString(e->child->next)) {
        a = e->child->valuestring;
        na = strlen(a);
        b = e->child->next->valuestring;
        nb = strlen(b);
    } else {
        return err_set(ERR_DATA, "model.merges[%d]: expected \"left right\" or [\"left\", \"right\"]", i);
    }
    *l = map_find(t, a, na);
    *r = map_find(t, b, nb);
    if (*l < 0 || *r < 0)
        return err_set(ERR_DATA, "model.merges[%d]: \"%.*s\" is not in model.vocab", i, (int)(*l < 0 ? na : nb),
                       *l < 0 ? a : b);
    char tmp[512];
    if (na + nb > sizeof tmp) return err_set(ERR_DATA, "model.merges[%d]: merged piece longer than %zu bytes", i,
                                            sizeof tmp);
    memcpy(tmp, a, na);
    memcpy(tmp + na, b, nb);
    *res = map_find(t, tmp, na + nb);
    if (*res < 0)
        return err_set(ERR_DATA, "model.merges[%d]: the merged piece \"%.*s\" is not in model.vocab", i,
                       (int)(na + nb), tmp);
    return ERR_OK;
}

static int load_hf(tok *t, const cJSON *root) {
    if (!cJSON_IsObject(root)) return err_set(ERR_DATA, "top level: expected an object");
    const cJSON *model = jget(root, "(root)", "model", js_is_object, "an object", 1);
    if (!model) return ERR_DATA;
    const cJSON *type = jget(model, "model", "type", js_is_string, "a string", 0);
    if (err_code()) return ERR_DATA;
    if (type && strcmp(type->valuestring, "BPE"))
        return err_set(ERR_DATA, "model.type: \"%s\" is not supported (expected \"BPE\")", type->valuestring);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return err_set(ERR_DATA, "model.dropout: BPE dropout is not supported (expected null)");
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, affix[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !v->valuestring[0]))
            return err_set(ERR_DATA, "model.%s: not supported (expected null)", affix[i]);
    }
    if ((t->byte_fallback = jbool(model, "model", "byte_fallback", 0)) < 0) return ERR_DATA;
    if ((t->fuse_unk = jbool(model, "model", "fuse_unk", 0)) < 0) return ERR_DATA;
    if ((t->ignore_merges = jbool(model, "model", "ignore_merges", 0)) < 0) return ERR_DATA;

    /* vocab: piece -> id, ids 0..n-1 each once */
    const cJSON *vocab = jget(model, "model", "vocab", js_is_object, "an object {piece: id}", 1);
    if (!vocab) return ERR_DATA;
    int32_t n = 0;
    for (const cJSON *e = vocab->child; e; e = e->next)
        if (++n > MAX_PIECES) return err_set(ERR_DATA, "model.vocab: more than %d pieces", MAX_PIECES);
    if (n == 0) return err_set(ERR_DATA, "model.vocab: empty (expected the pieces)");
    t->pieces = mem_calloc((size_t)n, sizeof *t->pieces, "tokenizer pieces");
    t->n_pieces = n;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!js_is_int(e) || e->valuedouble < 0 || e->valuedouble >= n)
            return err_set(ERR_DATA, "model.vocab[\"%s\"]: expected an integer id in 0..%d", e->string, n - 1);
        int32_t id = (int32_t)e->valuedouble;
        struct piece *p = &t->pieces[id];
        if (p->type) return err_set(ERR_DATA, "model.vocab[\"%s\"]: id %d is used twice", e->string, id);
        size_t len = strlen(e->string);
        if (!len) return err_set(ERR_DATA, "model.vocab: id %d has an empty piece", id);
        if (pool_add(t, e->string, len, &p->off)) return ERR_INTERNAL;
        p->len = (uint32_t)len;
        p->type = TOK_NORMAL;
    }
    for (int32_t id = 0; id < n; id++) {
        struct piece *p = &t->pieces[id];
        if (t->byte_fallback && p->len == 6 && !memcmp(t->pool + p->off, "<0x", 3)) p->type = TOK_BYTE;
    }
    const cJSON *unk = jget(model, "model", "unk_token", js_is_string, "a string", 0);
    if (err_code()) return ERR_DATA;
    if (finish_pieces(t)) return err_push("model.vocab");
    if (unk) {
        t->unk_id = map_find(t, unk->valuestring, strlen(unk->valuestring));
        if (t->unk_id < 0) return err_set(ERR_DATA, "model.unk_token: \"%s\" is not in model.vocab", unk->valuestring);
        t->pieces[t->unk_id].type = TOK_UNKNOWN;
    }

    /* merges, in rank order */
    const cJSON *merges = jget(model, "model", "merges", js_is_array, "an array", 1);
    if (!merges) return ERR_DATA;
    int32_t nm = cJSON_GetArraySize(merges);
    if (nm >= (1 << 24)) return err_set(ERR_DATA, "model.merges: more than 2^24 merges");
    uint32_t cap = 1;
    while (cap < (uint32_t)nm * 2u + 2u) cap <<= 1;
    t->mkey = mem_calloc(cap, sizeof *t->mkey, "tokenizer merge index");
    t->mrank = mem_calloc(cap, sizeof *t->mrank, "tokenizer merge index");
    t->mres = mem_calloc(cap, sizeof *t->mres, "tokenizer merge index");
    t->mlist = mem_calloc((size_t)(2 * nm + 1), sizeof *t->mlist, "tokenizer merges");
    for (uint32_t i = 0; i < cap; i++) t->mrank[i] = -1;
    t->mmask = cap - 1;
    int32_t i = 0;
    for (const cJSON *e = merges->child; e; e = e->next, i++) {
        int32_t l = -1, r = -1, res = -1;
        if (hf_merge(t, e, i, &l, &r, &res)) return ERR_DATA;
        t->mlist[2 * i] = l;
        t->mlist[2 * i + 1] = r;
        int32_t slot = merge_find(t, l, r);
        if (slot < 0) { /* a repeated merge keeps its last rank, as tokenizers does */
            uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
            uint32_t k = hash32(&key, sizeof key) & t->mmask;
            while (t->mrank[k] >= 0) k = (k + 1) & t->mmask;
            slot = (int32_t)k;
            t->mkey[k] = key;
        }
        t->mrank[slot] = i;
        t->mres[slot] = res;
    }
    t->n_merges = nm;

    /* normalizer and pre-tokenizer: where the dummy prefix comes from */
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    int prepend = 0, replace = 0;
    if (norm && !cJSON_IsNull(norm)) {
        if (!cJSON_IsObject(norm)) return err_set(ERR_DATA, "normalizer: expected an object or null");
        if (hf_normalizer(norm, "normalizer", &prepend, &replace)) return ERR_DATA;
    }
    t->prefix = prepend ? PREFIX_ALWAYS : PREFIX_NEVER;
    t->escape_ws = replace;
    if (pre && !cJSON_IsNull(pre)) {
        if (!cJSON_IsObject(pre)) return err_set(ERR_DATA, "pre_tokenizer: expected an object or null");
        if (prepend || replace)
            return err_set(ERR_DATA, "pre_tokenizer: Metaspace together with a Prepend/Replace normalizer is not "
                           "supported");
        if (hf_pretokenizer(t, pre, "pre_tokenizer")) return ERR_DATA;
    }

    /* added tokens */
    const cJSON *added = jget(root, "(root)", "added_tokens", js_is_array, "an array", 0);
    if (err_code()) return ERR_DATA;
    i = 0;
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next, i++) {
        char path[64];
        snprintf(path, sizeof path, "added_tokens[%d]", i);
        if (!cJSON_IsObject(e)) return err_set(ERR_DATA, "%s: expected an object", path);
        const cJSON *id = jget(e, path, "id", js_is_int, "an integer", 1);
        const cJSON *content = id ? jget(e, path, "content", js_is_string, "a string", 1) : NULL;
        if (!content) return ERR_DATA;
        int special = jbool(e, path, "special", 0), normalized = jbool(e, path, "normalized", 0);
        int lstrip = jbool(e, path, "lstrip", 0), rstrip = jbool(e, path, "rstrip", 0);
        int single = jbool(e, path, "single_word", 0);
        if (special < 0 || normalized < 0 || lstrip < 0 || rstrip < 0 || single < 0) return ERR_DATA;
        if (lstrip || rstrip || single)
            return err_set(ERR_DATA, "%s (\"%s\"): lstrip/rstrip/single_word are not supported", path,
                           content->valuestring);
        if (normalized && (strchr(content->valuestring, ' ') || strstr(content->valuestring, WS)))
            return err_set(ERR_DATA, "%s (\"%s\"): a normalized added token with spaces is not supported", path,
                           content->valuestring);
        int32_t tid = (int32_t)id->valuedouble;
        if (added_push(t, content->valuestring, strlen(content->valuestring), tid, special))
            return err_push("%s", path);
        if (special && tid < t->n_pieces && t->pieces[tid].type == TOK_NORMAL) t->pieces[tid].type = TOK_CONTROL;
    }
    added_index(t);
    /* special ids by their usual names */
    t->bos_id = tok_piece_id(t, "<s>", 3);
    t->eos_id = tok_piece_id(t, "</s>", 4);
    t->pad_id = tok_piece_id(t, "<pad>", 5);
    return ERR_OK;
}

/* line:column of byte offset off in buf */
static void line_col(const char *buf, size_t off, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (buf[i] == '\n') (*line)++, *col = 1;
        else (*col)++;
    }
}

int tok_load_from_memory(const void *data, size_t len, const char *name, tok **out) {
    const uint8_t *b = (const uint8_t *)data;
    size_t i = 0;
    *out = NULL;
    if (!name) name = "(tokenizer)";
    if (len >= 3 && b[0] == 0xef && b[1] == 0xbb && b[2] == 0xbf) i = 3; /* UTF-8 BOM */
    while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r')) i++;
    int json = i < len && (b[i] == '{' || b[i] == '[');
    tok *t = tok_new(json ? MODE_HF : MODE_SPM);
    err_clear();
    int rc;
    if (json) {
        const char *end = NULL;
        cJSON *root = cJSON_ParseWithLengthOpts((const char *)data, len, &end, 0);
        if (!root) {
            size_t off = end && end >= (const char *)data && end <= (const char *)data + len
                             ? (size_t)(end - (const char *)data) : 0;
            int line, col;
            line_col((const char *)data, off, &line, &col);
            rc = err_set(ERR_DATA, "%s: line %d:%d (byte %zu): invalid JSON (expected a tokenizers tokenizer.json)",
                         name, line, col, off);
        } else {
            rc = load_hf(t, root);
            cJSON_Delete(root);
            if (rc) rc = err_push("%s", name);
        }
    } else {
        rc = load_spm(t, b, len);
        if (rc) rc = err_push("%s (SentencePiece model)", name);
    }
    if (rc) {
        tok_free(t);
        return rc;
    }
    *out = t;
    return ERR_OK;
}

int tok_load_file(const char *path, tok **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *data = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 1 << 20;
            data = mem_realloc(data, cap, path);
        }
        size_t got = fread(data + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(data);
        return err_set(ERR_IO, "%s: read error", path);
    }
    int rc = tok_load_from_memory(data, len, path, out);
    free(data);
    return rc;
}
