/* demo_tok — the demo's tokenizer.json: a SentencePiece-style BPE in the HF tokenizers format of
 * llava-hf/llava-v1.6-mistral-7b-hf (Prepend "▁" + Replace " " -> "▁" normalizer, byte_fallback), but small:
 *   0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, 259 "▁", then the printable ASCII characters, then the
 *   pieces made by the merges, then <image> and <pad> as added special tokens.
 * The merges are found by running BPE (lowest rank first, leftmost on ties, as tokenizers does) on every
 * word of the demo ("▁word", and the bare word for those that start a segment after "<image>\n") and
 * appending a merge of the first two remaining symbols until the word is one token. A new merge has the
 * lowest priority, so it never changes how an earlier word is split: every word stays one token. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo/demo.h"
#include "io/atomic.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/mem.h"

#define TB_CAP 8192 /* hash table slots (pieces and merges stay far below) */
#define SP "\xE2\x96\x81" /* U+2581 "▁" */

typedef struct {
    char *piece[TB_CAP / 2];
    int n;
    int slot[TB_CAP];              /* string hash -> piece id + 1 */
    int ml[TB_CAP / 2], mr[TB_CAP / 2], mres[TB_CAP / 2];
    int nm;
    int mslot[TB_CAP];             /* (left, right) hash -> merge rank + 1 */
    int full; /* a fixed-size table overflowed */
} tb;

static uint32_t str_hash(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static int piece_id(const tb *t, const char *s) {
    for (uint32_t k = str_hash(s) & (TB_CAP - 1);; k = (k + 1) & (TB_CAP - 1)) {
        if (!t->slot[k]) return -1;
        if (!strcmp(t->piece[t->slot[k] - 1], s)) return t->slot[k] - 1;
    }
}

static int add_piece(tb *t, const char *s) {
    int id = piece_id(t, s);
    if (id >= 0) return id;
    if (t->n >= TB_CAP / 2 - 8) return t->full = 1, 0;
    char *c = mem_strdup(s, "a demo tokenizer piece");
    id = t->n++;
    t->piece[id] = c;
    uint32_t k = str_hash(s) & (TB_CAP - 1);
    while (t->slot[k]) k = (k + 1) & (TB_CAP - 1);
    t->slot[k] = id + 1;
    return id;
}

static uint32_t pair_hash(int l, int r) { return ((uint32_t)l * 2654435761u) ^ ((uint32_t)r * 40503u); }

static int merge_rank(const tb *t, int l, int r) {
    for (uint32_t k = pair_hash(l, r) & (TB_CAP - 1);; k = (k + 1) & (TB_CAP - 1)) {
        if (!t->mslot[k]) return -1;
        int m = t->mslot[k] - 1;
        if (t->ml[m] == l && t->mr[m] == r) return m;
    }
}

static void add_merge(tb *t, int l, int r) {
    if (t->nm >= TB_CAP / 2 - 8) {
        t->full = 1;
        return;
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s", t->piece[l], t->piece[r]);
    int res = add_piece(t, buf);
    int m = t->nm++;
    t->ml[m] = l, t->mr[m] = r, t->mres[m] = res;
    uint32_t k = pair_hash(l, r) & (TB_CAP - 1);
    while (t->mslot[k]) k = (k + 1) & (TB_CAP - 1);
    t->mslot[k] = m + 1;
}

/* BPE of one word (all its characters are pieces): symbols in sym[], returns their count */
static int bpe(const tb *t, const char *w, int *sym, int cap) {
    int n = 0;
    for (const char *p = w; *p && n < cap;) {
        int len = ((uint8_t)*p & 0xE0) == 0xC0 ? 2 : ((uint8_t)*p & 0xF0) == 0xE0 ? 3 : 1;
        char ch[8];
        memcpy(ch, p, (size_t)len);
        ch[len] = '\0';
        sym[n++] = piece_id(t, ch);
        p += len;
    }
    for (;;) {
        int best = -1, brank = 0;
        for (int k = 0; k + 1 < n; k++) {
            int r = merge_rank(t, sym[k], sym[k + 1]);
            if (r >= 0 && (best < 0 || r < brank)) best = k, brank = r;
        }
        if (best < 0) return n;
        sym[best] = t->mres[brank];
        memmove(sym + best + 1, sym + best + 2, sizeof *sym * (size_t)(n - best - 2));
        n--;
    }
}

static void learn(tb *t, const char *w) {
    int sym[128];
    for (;;) {
        int n = bpe(t, w, sym, 128);
        if (n <= 1 || t->full) return;
        add_merge(t, sym[0], sym[1]);
    }
}

static void tb_free(tb *t) {
    for (int i = 0; i < t->n; i++) free(t->piece[i]);
    free(t);
}

/* words that can start a text segment without a space (the question after "<image>\n") */
static const char *const seg_initial[] = {"What", "How", "Where", "Is", "Describe"};

static tb *build(void) {
    tb *t = mem_calloc(1, sizeof *t, "the demo tokenizer");
    add_piece(t, "<unk>");
    add_piece(t, "<s>");
    add_piece(t, "</s>");
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        add_piece(t, s);
    }
    add_piece(t, SP);
    for (int c = 0x21; c < 0x7F; c++) {
        char s[2] = {(char)c, 0};
        add_piece(t, s);
    }
    int nw;
    const char *const *w = demo_words(&nw);
    for (int i = 0; i < nw; i++) {
        char u[128];
        snprintf(u, sizeof u, SP "%s", w[i]);
        learn(t, u);
    }
    for (size_t i = 0; i < sizeof seg_initial / sizeof seg_initial[0]; i++) learn(t, seg_initial[i]);
    if (t->full) {
        tb_free(t);
        return NULL;
    }
    return t;
}

static cJSON *added_token(int id, const char *content) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "content", content);
    cJSON_AddBoolToObject(o, "single_word", 0);
    cJSON_AddBoolToObject(o, "lstrip", 0);
    cJSON_AddBoolToObject(o, "rstrip", 0);
    cJSON_AddBoolToObject(o, "normalized", 0);
    cJSON_AddBoolToObject(o, "special", 1);
    return o;
}

static cJSON *replace(const char *from, const char *to) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "Replace");
    cJSON *pat = cJSON_AddObjectToObject(o, "pattern");
    cJSON_AddStringToObject(pat, "String", from);
    cJSON_AddStringToObject(o, "content", to);
    return o;
}

static cJSON *typed(const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

int demo_tok_json(char **json, size_t *n, demo_tok_info *info) {
    *json = NULL;
    *n = 0;
    tb *t = build();
    if (!t) return err_set(ERR_INTERNAL, "demo tokenizer: the piece or merge table is full");
    memset(info, 0, sizeof *info);
    info->unk = 0, info->bos = 1, info->eos = 2;
    info->image_token = t->n;
    info->pad_token = t->n + 1;
    info->vocab = t->n + 2;
    info->n_merges = t->nm;

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON_AddItemToArray(added, added_token(0, "<unk>"));
    cJSON_AddItemToArray(added, added_token(1, "<s>"));
    cJSON_AddItemToArray(added, added_token(2, "</s>"));
    cJSON_AddItemToArray(added, added_token(info->image_token, "<image>"));
    cJSON_AddItemToArray(added, added_token(info->pad_token, "<pad>"));
    cJSON *norm = cJSON_AddObjectToObject(root, "normalizer");
    cJSON_AddStringToObject(norm, "type", "Sequence");
    cJSON *nl = cJSON_AddArrayToObject(norm, "normalizers");
    cJSON *prep = typed("Prepend");
    cJSON_AddStringToObject(prep, "prepend", SP);
    cJSON_AddItemToArray(nl, prep);
    cJSON_AddItemToArray(nl, replace(" ", SP));
    cJSON_AddNullToObject(root, "pre_tokenizer");
    /* post_processor: <s> + sequence, as the llava-hf file */
    cJSON *pp = cJSON_AddObjectToObject(root, "post_processor");
    cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
    const char *forms[2] = {"single", "pair"};
    for (int f = 0; f < 2; f++) {
        cJSON *arr = cJSON_AddArrayToObject(pp, forms[f]);
        for (int k = 0; k <= f; k++) {
            cJSON *st = cJSON_CreateObject(), *sti = cJSON_AddObjectToObject(st, "SpecialToken");
            cJSON_AddStringToObject(sti, "id", "<s>");
            cJSON_AddNumberToObject(sti, "type_id", k);
            cJSON_AddItemToArray(arr, st);
            cJSON *sq = cJSON_CreateObject(), *sqi = cJSON_AddObjectToObject(sq, "Sequence");
            cJSON_AddStringToObject(sqi, "id", k ? "B" : "A");
            cJSON_AddNumberToObject(sqi, "type_id", k);
            cJSON_AddItemToArray(arr, sq);
        }
    }
    cJSON *spt = cJSON_AddObjectToObject(pp, "special_tokens");
    cJSON *bos = cJSON_AddObjectToObject(spt, "<s>");
    cJSON_AddStringToObject(bos, "id", "<s>");
    cJSON *ids = cJSON_AddArrayToObject(bos, "ids");
    cJSON_AddItemToArray(ids, cJSON_CreateNumber(1));
    cJSON *toks = cJSON_AddArrayToObject(bos, "tokens");
    cJSON_AddItemToArray(toks, cJSON_CreateString("<s>"));
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "Sequence");
    cJSON *dl = cJSON_AddArrayToObject(dec, "decoders");
    cJSON_AddItemToArray(dl, replace(SP, " "));
    cJSON_AddItemToArray(dl, typed("ByteFallback"));
    cJSON_AddItemToArray(dl, typed("Fuse"));
    cJSON *strip = typed("Strip");
    cJSON_AddStringToObject(strip, "content", " ");
    cJSON_AddNumberToObject(strip, "start", 1);
    cJSON_AddNumberToObject(strip, "stop", 0);
    cJSON_AddItemToArray(dl, strip);
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddStringToObject(model, "unk_token", "<unk>");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 1);
    cJSON_AddBoolToObject(model, "byte_fallback", 1);
    cJSON_AddBoolToObject(model, "ignore_merges", 0);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int i = 0; i < t->n; i++) cJSON_AddNumberToObject(vocab, t->piece[i], i);
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (int m = 0; m < t->nm; m++) {
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(t->piece[t->ml[m]]));
        cJSON_AddItemToArray(pair, cJSON_CreateString(t->piece[t->mr[m]]));
        cJSON_AddItemToArray(merges, pair);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    tb_free(t);
    if (!s) return err_set(ERR_INTERNAL, "demo tokenizer: out of memory printing tokenizer.json");
    *json = s;
    *n = strlen(s);
    return ERR_OK;
}

static cJSON *added_token_obj(const char *content) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "content", content);
    cJSON_AddBoolToObject(o, "lstrip", 0);
    cJSON_AddBoolToObject(o, "normalized", 0);
    cJSON_AddBoolToObject(o, "rstrip", 0);
    cJSON_AddBoolToObject(o, "single_word", 0);
    return o;
}

static int write_json(const char *dir, const char *name, cJSON *root) {
    char path[4096];
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) return err_set(ERR_INTERNAL, "demo: out of memory printing %s", name);
    int rc = fs_join(path, sizeof path, dir, name);
    if (!rc) rc = atomic_write_file(path, s, strlen(s));
    free(s);
    return rc;
}

int demo_tok_write(const char *dir, demo_tok_info *info) {
    char *json;
    size_t n;
    int rc = demo_tok_json(&json, &n, info);
    if (rc) return rc;
    char path[4096];
    rc = fs_join(path, sizeof path, dir, "tokenizer.json");
    if (!rc) rc = atomic_write_file(path, json, n);
    free(json);
    if (rc) return rc;

    /* tokenizer_config.json: llava-hf's keys; legacy true = the per-segment "▁" rule (docs/tokenizer.md) */
    cJSON *c = cJSON_CreateObject();
    cJSON_AddBoolToObject(c, "add_bos_token", 1);
    cJSON_AddBoolToObject(c, "add_eos_token", 0);
    cJSON *dec = cJSON_AddObjectToObject(c, "added_tokens_decoder");
    const int ids[5] = {0, 1, 2, info->image_token, info->pad_token};
    const char *names[5] = {"<unk>", "<s>", "</s>", "<image>", "<pad>"};
    for (int i = 0; i < 5; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", ids[i]);
        cJSON *o = added_token_obj(names[i]);
        cJSON_AddBoolToObject(o, "special", 1);
        cJSON_AddItemToObject(dec, key, o);
    }
    cJSON_AddStringToObject(c, "bos_token", "<s>");
    cJSON_AddBoolToObject(c, "clean_up_tokenization_spaces", 0);
    cJSON_AddStringToObject(c, "eos_token", "</s>");
    cJSON_AddBoolToObject(c, "legacy", 1);
    cJSON_AddNumberToObject(c, "model_max_length", 4096);
    cJSON_AddStringToObject(c, "pad_token", "<pad>");
    cJSON_AddStringToObject(c, "padding_side", "left");
    cJSON_AddStringToObject(c, "processor_class", "LlavaNextProcessor");
    cJSON_AddObjectToObject(c, "sp_model_kwargs");
    cJSON_AddStringToObject(c, "tokenizer_class", "LlamaTokenizer");
    cJSON_AddStringToObject(c, "unk_token", "<unk>");
    cJSON_AddBoolToObject(c, "use_default_system_prompt", 0);
    if ((rc = write_json(dir, "tokenizer_config.json", c))) return rc;

    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToObject(m, "bos_token", added_token_obj("<s>"));
    cJSON_AddItemToObject(m, "eos_token", added_token_obj("</s>"));
    cJSON_AddItemToObject(m, "pad_token", added_token_obj("<pad>"));
    cJSON_AddItemToObject(m, "unk_token", added_token_obj("<unk>"));
    return write_json(dir, "special_tokens_map.json", m);
}
