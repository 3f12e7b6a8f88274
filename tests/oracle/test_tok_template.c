/* Oracle test of the llava-v1.6-mistral chat template (src/data/template.c) against transformers'
 * LlavaNextProcessor (tests/fixtures/tokenizer/template.txt, tools/oracle/make_tokenizer_fixtures.py, transformers
 * 5.25): for 12 question/answer/image cases the ids from tokenizer.json must equal the processor's input_ids (image
 * tokens expanded), and the answer must start right after the processor's ids of the prompt alone; the ids from
 * tokenizer.model must equal sentencepiece's with the segment rule. transformers 5.25 loads a llava_next tokenizer as
 * TokenizersBackend, which on this tokenizer.json gives sentencepiece's ids everywhere; 5.0-5.24 (LlamaTokenizer,
 * recorded as full_llama) gave a literal special token followed by a space no extra "▁" (cases 6 and 8-11), and
 * our ids must not follow that rule any more. */
#include "data/template.h"
#include "io/err.h"
#include "test.h"

struct tcase {
    char *q, *a;
    int32_t n_image;
    tok_ids full, prompt, full_sp, llama;
};

static char *unhex(const char *h) {
    size_t n = strlen(h) / 2;
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    out[n] = '\0';
    return out;
}

static void parse_rle(const char *s, tok_ids *v) {
    for (;;) {
        while (*s == ' ') s++;
        if (!*s) break;
        char *end;
        if (*s == 'I') {
            long n = strtol(s + 1, &end, 10);
            for (long k = 0; k < n; k++) tok_ids_push(v, 32000);
        } else {
            tok_ids_push(v, (int32_t)strtol(s, &end, 10));
        }
        s = end;
    }
}

int main(void) {
    FILE *f = fopen(test_fixture("tokenizer/template.txt"), "r");
    CHECK(f != NULL);
    if (!f) TEST_MAIN_END();
    static char line[1 << 16];
    struct tcase cases[32];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        struct tcase *c = &cases[n ? n - 1 : 0];
        if (!strncmp(line, "case ", 5) && n < 32) memset(&cases[n++], 0, sizeof cases[0]);
        else if (!strncmp(line, "question ", 9)) c->q = unhex(line + 9);
        else if (!strncmp(line, "answer ", 7)) c->a = unhex(line + 7);
        else if (!strncmp(line, "nimage ", 7)) c->n_image = atoi(line + 7);
        else if (!strncmp(line, "full ", 5)) parse_rle(line + 5, &c->full);
        else if (!strncmp(line, "prompt ", 7)) parse_rle(line + 7, &c->prompt);
        else if (!strncmp(line, "full_llama ", 11)) parse_rle(line + 11, &c->llama);
        else if (!strncmp(line, "full_sp ", 8)) parse_rle(line + 8, &c->full_sp);
    }
    fclose(f);
    CHECK_EQ_INT(n, 12);
    /* the fixture itself: 5.25 = sentencepiece's rule on every case; 5.24's rule differs exactly on 6 and 8-11 */
    for (int k = 0; k < n; k++) {
        struct tcase *c = &cases[k];
        int llama_differs = c->llama.n != c->full.n || memcmp(c->llama.v, c->full.v, c->full.n * sizeof(int32_t));
        CHECK(c->full_sp.n == c->full.n && !memcmp(c->full_sp.v, c->full.v, c->full.n * sizeof(int32_t)));
        CHECK_EQ_INT(llama_differs, k == 6 || k >= 8);
    }

    tok *toks[2] = {NULL, NULL};
    CHECK_EQ_INT(tok_load_file(test_fixture("tokenizer/tokenizer.json"), &toks[0]), ERR_OK);
    CHECK_EQ_INT(tok_load_file(test_fixture("tokenizer/tokenizer.model"), &toks[1]), ERR_OK);
    if (!toks[0] || !toks[1]) TEST_MAIN_END();
    CHECK_EQ_INT(tok_add_special(toks[1], "<image>", 32000), ERR_OK);
    CHECK_EQ_INT(tok_add_special(toks[1], "<pad>", 32001), ERR_OK);

    for (int b = 0; b < 2; b++) {
        for (int k = 0; k < n; k++) {
            struct tcase *c = &cases[k];
            tpl_seq s;
            int rc = tpl_encode(toks[b], c->q, c->a, c->n_image, &s);
            CHECK_EQ_INT(rc, ERR_OK);
            if (rc) {
                fprintf(stderr, "%s\n", err_msg());
                continue;
            }
            /* from tokenizer.json: the processor's ids (transformers 5.25); from tokenizer.model: sentencepiece's
             * segment rule. On this tokenizer.json the two are the same ids, so both loaders must give both. */
            int is_sp = !strcmp(tok_kind(toks[b]), "sentencepiece");
            const tok_ids *want = is_sp ? &c->full_sp : &c->full;
            int same = s.ids.n == want->n && !memcmp(s.ids.v, want->v, s.ids.n * sizeof(int32_t));
            CHECK(same);
            if (!same) fprintf(stderr, "%s case %d: ids differ from %s\n", tok_kind(toks[b]), k,
                               is_sp ? "sentencepiece" : "the processor");
            if (same) {
                CHECK_EQ_INT(s.answer_start, c->prompt.n);
                size_t n_label = 0;
                for (size_t i = 0; i < s.ids.n; i++) n_label += s.label[i];
                CHECK_EQ_INT(n_label, s.ids.n - c->prompt.n);
            }
            CHECK(s.ids.n > 0 && s.label[s.ids.n - 1] == 1 && s.ids.v[s.ids.n - 1] == 2); /* </s> is a target */
            CHECK(s.label[0] == 0 && s.ids.v[0] == 1);
            if (c->n_image > 0) {
                CHECK_EQ_INT(s.image_start, 5); /* <s> ▁[ INST ] ▁ */
                CHECK_EQ_INT(s.ids.v[s.image_start], 32000);
                CHECK_EQ_INT(s.ids.v[s.image_start + (size_t)c->n_image - 1], 32000);
                CHECK(s.ids.v[s.image_start + (size_t)c->n_image] != 32000);
                CHECK_EQ_INT(s.label[s.image_start], 0);
            }
            tpl_free(&s);
        }
    }
    /* refusals */
    tpl_seq s;
    CHECK_EQ_INT(tpl_encode(toks[0], "look: <image>", "x", 4, &s), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "<image>");
    CHECK_EQ_INT(tpl_encode(toks[0], "q", "a", -1, &s), ERR_ARGS);

    for (int k = 0; k < n; k++) {
        free(cases[k].q);
        free(cases[k].a);
        tok_ids_free(&cases[k].full);
        tok_ids_free(&cases[k].prompt);
        tok_ids_free(&cases[k].llama);
        tok_ids_free(&cases[k].full_sp);
    }
    tok_free(toks[0]);
    tok_free(toks[1]);
    TEST_MAIN_END();
}
