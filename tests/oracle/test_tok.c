/* Oracle test of the tokenizer (src/data/tok.c) against sentencepiece and tokenizers.
 *
 * tests/fixtures/tokenizer/cases.txt (tools/oracle/make_tokenizer_fixtures.py) holds ~100 strings (ASCII, accents,
 * CJK, emoji, digits, whitespace runs, control characters, byte fallback, malformed UTF-8, special-token text, a
 * long text, special-token text followed by spaces) with the ids of sentencepiece (segment rule), of tokenizers on
 * tokenizer.json, and of the tokenizer of transformers 5.25's LlavaNextProcessor for a llava_next model directory
 * (TokenizersBackend), and sentencepiece's decode. Both loaders must give identical ids for every string, the
 * tokenizer.json loader those of the processor's tokenizer (with and without BOS), and decode must give
 * sentencepiece's text. */
#include "data/tok.h"
#include "io/err.h"
#include "test.h"

#include <time.h>

struct tcase {
    char name[64];
    char *text;
    size_t len;
    tok_ids sp, hf, hfbos, tf, tfbos;
    char *dec;
    size_t dec_len;
    int has_hf, has_tf, has_dec;
};

static char *unhex(const char *h, size_t *len) {
    size_t n = strlen(h) / 2;
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    out[n] = '\0';
    *len = n;
    return out;
}

static void parse_ids(const char *s, tok_ids *v) {
    char *end;
    for (;;) {
        long x = strtol(s, &end, 10);
        if (end == s) break;
        tok_ids_push(v, (int32_t)x);
        s = end;
    }
}

static struct tcase *load_cases(const char *path, int *n_out) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    size_t cap = 1 << 20;
    char *line = malloc(cap);
    struct tcase *cases = NULL;
    int n = 0;
    while (fgets(line, (int)cap, f)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = '\0';
        struct tcase *c = n ? &cases[n - 1] : NULL;
        if (!strncmp(line, "case ", 5)) {
            cases = realloc(cases, (size_t)(n + 1) * sizeof *cases);
            c = &cases[n++];
            memset(c, 0, sizeof *c);
            int idx;
            sscanf(line, "case %d %63s", &idx, c->name);
        } else if (!strncmp(line, "text ", 5) || !strcmp(line, "text")) {
            c->text = unhex(line + 4 + (l > 4), &c->len);
        } else if (!strncmp(line, "sp", 2) && (line[2] == ' ' || !line[2])) {
            parse_ids(line + 2, &c->sp);
        } else if (!strncmp(line, "hfbos", 5)) {
            parse_ids(line + 5, &c->hfbos);
        } else if (!strncmp(line, "hf", 2) && (line[2] == ' ' || !line[2])) {
            parse_ids(line + 2, &c->hf);
            c->has_hf = 1;
        } else if (!strncmp(line, "tfbos", 5)) {
            parse_ids(line + 5, &c->tfbos);
        } else if (!strncmp(line, "tf", 2) && (line[2] == ' ' || !line[2])) {
            parse_ids(line + 2, &c->tf);
            c->has_tf = 1;
        } else if (!strncmp(line, "dec", 3)) {
            c->dec = unhex(line + 3 + (l > 3), &c->dec_len);
            c->has_dec = 1;
        }
    }
    free(line);
    fclose(f);
    *n_out = n;
    return cases;
}

static int same_ids(const tok_ids *a, const tok_ids *b) {
    return a->n == b->n && (a->n == 0 || !memcmp(a->v, b->v, a->n * sizeof *a->v));
}

static void print_ids(const char *what, const tok_ids *v) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < v->n && i < 40; i++) fprintf(stderr, " %d", v->v[i]);
    fprintf(stderr, v->n > 40 ? " ... (%zu)\n" : "\n", v->n);
}

/* encode every case with t and compare with the expected ids; decode and compare with sentencepiece */
static void check_backend(tok *t, const char *label, struct tcase *cases, int n, int use_hf) {
    int bad = 0;
    for (int k = 0; k < n; k++) {
        struct tcase *c = &cases[k];
        const tok_ids *want = use_hf ? &c->hf : &c->sp;
        if (use_hf && !c->has_hf) want = &c->sp; /* malformed UTF-8: only sentencepiece has an answer */
        tok_ids got = {0};
        int rc = tok_encode(t, c->text, c->len, 0, &got);
        CHECK_EQ_INT(rc, ERR_OK);
        if (!same_ids(&got, want)) {
            t_fail++;
            bad++;
            fprintf(stderr, "%s: case %d %s: ids differ\n", label, k, c->name);
            print_ids("want", want);
            print_ids("got ", &got);
        } else {
            t_pass++;
        }
        /* the same with BOS, against tokenizers' add_special_tokens=True */
        if (c->has_hf) {
            tok_ids b = {0};
            CHECK_EQ_INT(tok_encode(t, c->text, c->len, TOK_ADD_BOS, &b), ERR_OK);
            CHECK(same_ids(&b, &c->hfbos));
            tok_ids_free(&b);
        }
        /* tokenizer.json: the ids of transformers' LlavaNextProcessor tokenizer, without and with BOS */
        if (use_hf && c->has_tf) {
            tok_ids b = {0};
            CHECK_EQ_INT(tok_encode(t, c->text, c->len, TOK_ADD_BOS, &b), ERR_OK);
            CHECK(same_ids(&got, &c->tf));
            CHECK(same_ids(&b, &c->tfbos));
            if (!same_ids(&got, &c->tf)) fprintf(stderr, "%s: case %d %s: ids differ from the processor's\n", label,
                                                 k, c->name);
            tok_ids_free(&b);
        }
        if (c->has_dec) {
            char *s = NULL;
            size_t sl = 0;
            CHECK_EQ_INT(tok_decode(t, want->v, want->n, 0, &s, &sl), ERR_OK);
            if (s && sl == c->dec_len && !memcmp(s, c->dec, sl)) {
                t_pass++;
            } else {
                t_fail++;
                fprintf(stderr, "%s: case %d %s: decode \"%s\", expected \"%s\"\n", label, k, c->name, s ? s : "",
                        c->dec);
            }
            free(s);
            /* round trip where sentencepiece's decode gives the text back */
            if (c->dec_len == c->len && !memcmp(c->dec, c->text, c->len)) {
                CHECK_EQ_INT(tok_decode(t, got.v, got.n, 0, &s, &sl), ERR_OK);
                CHECK(s && sl == c->len && !memcmp(s, c->text, sl));
                free(s);
            }
        }
        tok_ids_free(&got);
    }
    printf("%s: %d cases, %d with wrong ids\n", label, n, bad);
}

static void bench(tok *t, const char *label, const struct tcase *c) {
    tok_ids ids = {0};
    struct timespec t0, t1;
    int reps = 0;
    size_t tokens = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double dt = 0;
    do {
        ids.n = 0;
        tok_encode(t, c->text, c->len, 0, &ids);
        tokens += ids.n;
        reps++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    } while (dt < 0.5);
    printf("%s: encode %s (%zu bytes, %zu tokens): %.0f tokens/s, %.1f MB/s\n", label, c->name, c->len, ids.n,
           (double)tokens / dt, (double)c->len * reps / dt / 1e6);
    tok_ids_free(&ids);
}

int main(void) {
    int n = 0;
    struct tcase *cases = load_cases(test_fixture("tokenizer/cases.txt"), &n);
    CHECK(n >= 108);
    int n_tf = 0;
    for (int k = 0; k < n; k++) n_tf += cases[k].has_tf;
    CHECK(n_tf >= 100);

    tok *spm = NULL, *hf = NULL;
    int rc = tok_load_file(test_fixture("tokenizer/tokenizer.model"), &spm);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, ERR_OK);
    rc = tok_load_file(test_fixture("tokenizer/tokenizer.json"), &hf);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, ERR_OK);
    if (!spm || !hf) TEST_MAIN_END();

    /* the vocabulary (spec section 8) */
    CHECK_EQ_STR(tok_kind(spm), "sentencepiece");
    CHECK_EQ_STR(tok_kind(hf), "tokenizers-bpe");
    CHECK_EQ_INT(tok_vocab_size(spm), 32000);
    CHECK_EQ_INT(tok_vocab_size(hf), 32002);
    CHECK_EQ_INT(tok_unk_id(spm), 0);
    CHECK_EQ_INT(tok_bos_id(spm), 1);
    CHECK_EQ_INT(tok_eos_id(spm), 2);
    CHECK_EQ_INT(tok_pad_id(spm), -1);
    CHECK_EQ_INT(tok_unk_id(hf), 0);
    CHECK_EQ_INT(tok_bos_id(hf), 1);
    CHECK_EQ_INT(tok_eos_id(hf), 2);
    CHECK_EQ_INT(tok_pad_id(hf), 32001);
    CHECK_EQ_INT(tok_piece_id(hf, "<image>", 7), 32000);
    CHECK_EQ_INT(tok_piece_id(spm, "<image>", 7), -1);
    CHECK_EQ_INT(tok_piece_id(spm, "\xe2\x96\x81[", 4), 733);
    CHECK_EQ_INT(tok_piece_id(spm, "INST", 4), 16289);
    CHECK_EQ_INT(tok_piece_id(spm, "<0x0A>", 6), 13);
    CHECK_EQ_INT(tok_piece_id(hf, "\xe2\x96\x81", 3), 28705);
    CHECK_EQ_STR(tok_piece(hf, 32001, NULL), "<pad>");
    CHECK_EQ_STR(tok_piece(spm, 28793, NULL), "]");
    CHECK(tok_piece(spm, 32000, NULL) == NULL);

    /* the .model loader gets llava-hf's added tokens */
    CHECK_EQ_INT(tok_add_special(spm, "<image>", 32000), ERR_OK);
    CHECK_EQ_INT(tok_add_special(spm, "<pad>", 32001), ERR_OK);
    CHECK_EQ_INT(tok_vocab_size(spm), 32002);
    CHECK_EQ_INT(tok_add_special(spm, "<image>", 32005), ERR_ARGS); /* clashes */
    CHECK_EQ_INT(tok_add_special(spm, "the", 1), ERR_ARGS);         /* piece 1 is <s> */
    CHECK_EQ_INT(tok_add_special(spm, "\xe2\x96\x81t", 261), ERR_ARGS); /* an ordinary piece */

    check_backend(spm, "tokenizer.model", cases, n, 0);
    check_backend(hf, "tokenizer.json", cases, n, 1);

    /* the spec's prompt (section 8) */
    const char *prompt = "[INST] <image>\nWhat is shown in this image? [/INST]";
    tok_ids ids = {0};
    CHECK_EQ_INT(tok_encode(hf, prompt, strlen(prompt), TOK_ADD_BOS, &ids), ERR_OK);
    /* tokenizers' ids (also in cases.txt as image_prompt); spec 8: 18 text tokens + <image> */
    const int32_t want[] = {1, 733, 16289, 28793, 28705, 32000, 28705, 13, 3195, 349,
                            4894, 297, 456, 3469, 28804, 733, 28748, 16289, 28793};
    CHECK_EQ_INT(ids.n, 19);
    CHECK(ids.n == 19 && !memcmp(ids.v, want, sizeof want));
    char *s = NULL;
    CHECK_EQ_INT(tok_decode(hf, ids.v, ids.n, 0, &s, NULL), ERR_OK);
    CHECK_EQ_STR(s, "[INST]  \nWhat is shown in this image? [/INST]"); /* spec 10: two spaces */
    free(s);
    CHECK_EQ_INT(tok_decode(hf, ids.v, ids.n, TOK_DECODE_SPECIAL, &s, NULL), ERR_OK);
    CHECK_EQ_STR(s, "<s> [INST] <image> \nWhat is shown in this image? [/INST]"); /* = tokenizers' decode */
    free(s);
    /* TOK_NO_SPECIAL: special-token text is plain text */
    ids.n = 0;
    CHECK_EQ_INT(tok_encode(hf, "<s>", 3, TOK_NO_SPECIAL | TOK_ADD_EOS, &ids), ERR_OK);
    CHECK_EQ_INT(ids.n, 4);
    CHECK_EQ_INT(ids.v[0], tok_piece_id(hf, "\xe2\x96\x81<", 4));
    CHECK_EQ_INT(ids.v[3], 2);
    CHECK_EQ_INT(tok_decode(hf, (const int32_t[]){5, 32002}, 2, 0, &s, NULL), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "32002");
    tok_ids_free(&ids);

    /* hash: stable, the same from a path and from memory, different between the two files and after a change */
    uint64_t h_spm = tok_hash(spm), h_hf = tok_hash(hf);
    printf("hash tokenizer.model(+<image>,<pad>) %016llx, tokenizer.json %016llx\n", (unsigned long long)h_spm,
           (unsigned long long)h_hf);
    CHECK(h_spm != h_hf);
    FILE *f = fopen(test_fixture("tokenizer/tokenizer.model"), "rb");
    char *blob = malloc(1 << 20);
    size_t blen = f ? fread(blob, 1, 1 << 20, f) : 0;
    if (f) fclose(f);
    CHECK_EQ_INT(blen, 493443);
    tok *mem = NULL;
    CHECK_EQ_INT(tok_load_from_memory(blob, blen, "blob", &mem), ERR_OK);
    if (mem) {
        uint64_t h0 = tok_hash(mem);
        CHECK(h0 != h_spm); /* no <image>/<pad> yet */
        tok_add_special(mem, "<pad>", 32001);
        tok_add_special(mem, "<image>", 32000); /* order of addition does not matter */
        CHECK(tok_hash(mem) == h_spm);
        tok_free(mem);
    }
    /* one score changed -> another hash: piece 261 "▁t" has score -2 = 0xc0000000, stored little-endian */
    for (size_t i = 0; i + 4 < blen; i++) {
        if (!memcmp(blob + i, "\x0a\x04\xe2\x96\x81t\x15\x00\x00\x00\xc0", 11)) {
            blob[i + 10] = (char)0xc1;
            break;
        }
    }
    CHECK_EQ_INT(tok_load_from_memory(blob, blen, "blob", &mem), ERR_OK);
    if (mem) {
        tok_add_special(mem, "<image>", 32000);
        tok_add_special(mem, "<pad>", 32001);
        CHECK(tok_hash(mem) != h_spm);
        tok_free(mem);
    }
    free(blob);
    CHECK(tok_hash(hf) == h_hf);
    CHECK_EQ_INT((long long)(h_hf == 0), 0);

    /* speed (information, not a test) */
    for (int k = 0; k < n; k++)
        if (!strcmp(cases[k].name, "long_text")) {
            bench(spm, "tokenizer.model", &cases[k]);
            bench(hf, "tokenizer.json", &cases[k]);
        }

    for (int k = 0; k < n; k++) {
        free(cases[k].text);
        free(cases[k].dec);
        tok_ids_free(&cases[k].sp);
        tok_ids_free(&cases[k].hf);
        tok_ids_free(&cases[k].hfbos);
        tok_ids_free(&cases[k].tf);
        tok_ids_free(&cases[k].tfbos);
    }
    free(cases);
    tok_free(spm);
    tok_free(hf);
    TEST_MAIN_END();
}
