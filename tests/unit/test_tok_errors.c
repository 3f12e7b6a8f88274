/* Unit tests of the tokenizer loaders and the protobuf reader: malformed input gives ERR_DATA with the file and
 * the place (byte offset, JSON line:col or path), never a crash (this runs under ASan + UBSan); truncation and
 * bit-flip fuzzing of tokenizer.model and tokenizer.json; a toy tokenizers BPE (ids checked with tokenizers 0.23.3)
 * for fuse_unk without byte fallback and Metaspace prepend_scheme "first". */
#include "data/pb.h"
#include "data/tok.h"
#include "io/err.h"
#include "test.h"

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    b[*len] = '\0';
    fclose(f);
    return b;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void expect_ids(const tok *t, const char *text, const int32_t *want, size_t n) {
    tok_ids ids = {0};
    CHECK_EQ_INT(tok_encode(t, text, strlen(text), 0, &ids), ERR_OK);
    int same = ids.n == n && !memcmp(ids.v, want, n * sizeof *want);
    CHECK(same);
    if (!same) {
        fprintf(stderr, "  \"%s\":", text);
        for (size_t i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.v[i]);
        fprintf(stderr, "\n");
    }
    tok_ids_free(&ids);
}

static void expect_json_error(const char *json, const char *needle) {
    tok *t = NULL;
    int rc = tok_load_from_memory(json, strlen(json), "toy.json", &t);
    CHECK_EQ_INT(rc, ERR_DATA);
    CHECK(t == NULL);
    CHECK_CONTAINS(err_msg(), "toy.json");
    CHECK_CONTAINS(err_msg(), needle);
    tok_free(t);
}

#define NORM_SEQ                                                                                                 \
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"}," \
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]}"
#define VOCAB                                                                                                    \
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"\xe2\x96\x81\":3,\"a\":4,\"b\":5,\"\xe2\x96\x81" "a\":6,"     \
    "\"ab\":7,\"\xe2\x96\x81" "ab\":8}"
#define MERGES "\"merges\":[\"\xe2\x96\x81 a\",\"a b\",[\"\xe2\x96\x81" "a\",\"b\"]]"
#define ADDED                                                                                                    \
    "\"added_tokens\":[{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false},"                   \
    "{\"id\":2,\"content\":\"</s>\",\"special\":true,\"normalized\":false}]"
#define MODEL_OPTS "\"unk_token\":\"<unk>\",\"byte_fallback\":false,\"fuse_unk\":true"

static void test_pb(void) {
    pb_reader r;
    uint64_t u;
    const uint8_t v300[] = {0xac, 0x02};
    pb_init(&r, v300, 2);
    CHECK_EQ_INT(pb_varint(&r, &u), ERR_OK);
    CHECK_EQ_INT(u, 300);
    CHECK(pb_done(&r));
    const uint8_t trunc[] = {0xac};
    pb_init(&r, trunc, 1);
    CHECK_EQ_INT(pb_varint(&r, &u), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "byte 0: truncated varint");
    const uint8_t neg[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}; /* int32 -1 */
    pb_init(&r, neg, sizeof neg);
    CHECK_EQ_INT(pb_varint(&r, &u), ERR_OK);
    CHECK_EQ_INT((int32_t)(int64_t)u, -1);
    const uint8_t too_long[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    pb_init(&r, too_long, sizeof too_long);
    CHECK_EQ_INT(pb_varint(&r, &u), ERR_DATA);
    /* field 1, length 5, but only 2 bytes follow */
    const uint8_t msg[] = {0x0a, 0x05, 'a', 'b'};
    uint32_t field;
    int wire;
    const uint8_t *p;
    size_t n;
    pb_init(&r, msg, sizeof msg);
    CHECK_EQ_INT(pb_next(&r, &field, &wire), 1);
    CHECK_EQ_INT(field, 1);
    CHECK_EQ_INT(wire, PB_LEN);
    CHECK_EQ_INT(pb_bytes(&r, &p, &n), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "byte 1");
    /* a float and wire-type checks */
    const uint8_t fl[] = {0x15, 0x00, 0x00, 0x00, 0xc0, 0x1b};
    float f = 0;
    pb_init(&r, fl, sizeof fl);
    CHECK_EQ_INT(pb_next(&r, &field, &wire), 1);
    CHECK_EQ_INT(pb_expect(&r, field, wire, PB_I32), ERR_OK);
    CHECK_EQ_INT(pb_float(&r, &f), ERR_OK);
    CHECK_NEAR(f, -2.0, 0);
    CHECK_EQ_INT(pb_next(&r, &field, &wire), 1); /* field 3, start-group */
    CHECK_EQ_INT(pb_skip(&r, wire), ERR_DATA);
    CHECK_EQ_INT(pb_expect(&r, 3, PB_VARINT, PB_LEN), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "field 3 has wire type varint, expected length-delimited");
    const uint8_t zero_field[] = {0x00};
    pb_init(&r, zero_field, 1);
    CHECK(pb_next(&r, &field, &wire) < 0);
    CHECK_CONTAINS(err_msg(), "field number 0");
    /* a sub-reader keeps absolute offsets */
    const uint8_t nested[] = {0x12, 0x02, 0x08, 0x80};
    pb_reader sub;
    pb_init(&r, nested, sizeof nested);
    CHECK_EQ_INT(pb_next(&r, &field, &wire), 1);
    CHECK_EQ_INT(pb_sub(&r, &sub), ERR_OK);
    CHECK_EQ_INT(pb_pos(&sub), 2);
    CHECK_EQ_INT(pb_next(&sub, &field, &wire), 1);
    CHECK_EQ_INT(pb_varint(&sub, &u), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "byte 3");
}

static void test_toy_json(void) {
    const char *json = "{\"version\":\"1.0\",\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES "," MODEL_OPTS "},"
                       NORM_SEQ ",\"pre_tokenizer\":null," ADDED "}";
    tok *t = NULL;
    int rc = tok_load_from_memory(json, strlen(json), "toy.json", &t);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, ERR_OK);
    if (!t) return;
    /* expected ids from tokenizers 0.23.3 on the same JSON */
    expect_ids(t, "ab ab cc", (const int32_t[]){8, 8, 3, 0}, 4);
    expect_ids(t, "b a</s>xyz  b", (const int32_t[]){3, 5, 6, 2, 3, 0, 3, 3, 5}, 9);
    expect_ids(t, "aab", (const int32_t[]){6, 7}, 2);
    char *s = NULL;
    CHECK_EQ_INT(tok_decode(t, (const int32_t[]){1, 8, 0, 3, 5, 2}, 6, 0, &s, NULL), ERR_OK);
    CHECK_EQ_STR(s, "ab \xe2\x81\x87  b"); /* <unk> reads " ⁇ " */
    free(s);
    tok_free(t);

    /* Metaspace with prepend_scheme "first": only a segment at the start of the text gets the "▁" */
    json = "{\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES "," MODEL_OPTS "},\"normalizer\":null,"
           "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\","
           "\"split\":false}," ADDED "}";
    rc = tok_load_from_memory(json, strlen(json), "toy.json", &t);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, ERR_OK);
    if (!t) return;
    expect_ids(t, "ab ab cc", (const int32_t[]){8, 8, 3, 0}, 4);
    expect_ids(t, "b a</s>xyz  b", (const int32_t[]){3, 5, 6, 2, 0, 3, 3, 5}, 8);
    expect_ids(t, " ab", (const int32_t[]){8}, 1);
    expect_ids(t, "</s>ab", (const int32_t[]){2, 7}, 2);
    CHECK(tok_hash(t) != 0);
    tok_free(t);
}

static void test_json_errors(void) {
    expect_json_error("{\"model\": {\"type\": \"BPE\",, }", "line 1:");
    expect_json_error("{\n  \"model\": {\n    \"vocab\": [1, 2\n", "line 3:");
    expect_json_error("{\"normalizer\": null}", "model: missing");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," MERGES "}}", "model.vocab: missing");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":[]," MERGES "}}", "model.vocab: wrong type");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{}," MERGES "}}", "model.vocab: empty");
    expect_json_error("{\"model\":{\"type\":\"Unigram\"," VOCAB "," MERGES "}}", "model.type: \"Unigram\"");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB "}}", "model.merges: missing");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", "used twice");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":5},\"merges\":[]}}",
                      "model.vocab[\"b\"]: expected an integer id in 0..1");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1.5},\"merges\":[]}}",
                      "model.vocab[\"b\"]");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[\"a c\"]}}",
                      "model.merges[0]: \"c\" is not in model.vocab");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[\"a b\",\"b a\"]}}",
                      "model.merges[1]: the merged piece \"ba\"");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[\"ab\"]}}", "model.merges[0]");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[7]}}", "model.merges[0]");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES ",\"unk_token\":\"<?>\"}}",
                      "model.unk_token: \"<?>\" is not in model.vocab");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES ",\"dropout\":0.1}}", "model.dropout");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES ",\"byte_fallback\":1}}",
                      "model.byte_fallback: wrong type");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES "},\"normalizer\":{\"type\":\"NFKC\"}}",
                      "normalizer.type: normalizer \"NFKC\" is not supported");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES "},\"normalizer\":{\"type\":\"Sequence\","
                      "\"normalizers\":[{\"type\":\"Lowercase\"}]}}", "normalizer.normalizers[0].type");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES "},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
                      "pre_tokenizer.type");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES "},\"pre_tokenizer\":{\"type\":\"Metaspace\","
                      "\"replacement\":\"\xe2\x96\x81\",\"split\":true}}", "pre_tokenizer.split");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES "},\"added_tokens\":[{\"id\":40,\"content\":\"a\"}]}",
                      "added_tokens[0]");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES "},\"added_tokens\":[{\"id\":1,\"content\":\"<s>\","
                      "\"lstrip\":true}]}", "added_tokens[0] (\"<s>\"): lstrip");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES "},\"added_tokens\":[{\"id\":\"1\","
                      "\"content\":\"<s>\"}]}", "added_tokens[0].id: wrong type");
    expect_json_error("{\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES "},\"added_tokens\":[{\"id\":40,\"content\":\"<x>\"},"
                      "{\"id\":41,\"content\":\"<x>\"}]}", "clashes");
    expect_json_error("[1, 2]", "top level: expected an object");
}

static void test_model_errors(const char *blob, size_t len) {
    tok *t = NULL;
    /* every truncation fails cleanly, naming the file and the byte (spread over the file + every byte of the tail, where the
     * trainer and normalizer specs are) */
    int fails = 0, named = 0, tried = 0;
    for (size_t cut = 0; cut < len; cut += (cut < len - 400 ? 997 : 1)) {
        /* the file ends with normalizer_spec (field 3, 20 bytes): cutting all of it off leaves a valid model
         * with the default normalizer */
        if (cut == len - 20) {
            CHECK_EQ_INT(tok_load_from_memory(blob, cut, "tokenizer.model", &t), ERR_OK);
            tok_free(t);
            t = NULL;
            continue;
        }
        int rc = tok_load_from_memory(blob, cut, "tokenizer.model", &t);
        tried++;
        fails += rc == ERR_DATA && t == NULL;
        if (rc == ERR_OK) fprintf(stderr, "truncated at %zu of %zu bytes: loads\n", cut, len);
        named += strstr(err_msg(), "tokenizer.model") != NULL;
        tok_free(t);
        t = NULL;
    }
    CHECK_EQ_INT(fails, tried);
    CHECK_EQ_INT(named, tried);
    CHECK_EQ_INT(tok_load_from_memory(blob, len - 1, "tokenizer.model", &t), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "tokenizer.model (SentencePiece model): byte ");
    CHECK_EQ_INT(tok_load_from_memory(blob, 0, "empty.model", &t), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "no pieces");

    /* bit flips: either a clean ERR_DATA or a tokenizer that encodes and decodes without crashing */
    char *copy = malloc(len);
    int ok = 0, bad = 0;
    for (int k = 0; k < 300; k++) {
        memcpy(copy, blob, len);
        int flips = 1 + (int)(rnd() % 4);
        for (int f = 0; f < flips; f++) {
            size_t at = (k % 3 == 0) ? len - 1 - rnd() % 600 : rnd() % len; /* the specs are at the end */
            copy[at] ^= (char)(1u << (rnd() % 8));
        }
        int rc = tok_load_from_memory(copy, len, "flipped.model", &t);
        if (rc == ERR_OK) {
            ok++;
            tok_ids ids = {0};
            const char *s = "Hello  wörld\n<s>日本 \x01\xff";
            CHECK_EQ_INT(tok_encode(t, s, strlen(s), TOK_ADD_BOS, &ids), ERR_OK);
            char *d = NULL;
            CHECK_EQ_INT(tok_decode(t, ids.v, ids.n, TOK_DECODE_SPECIAL, &d, NULL), ERR_OK);
            free(d);
            tok_ids_free(&ids);
            tok_free(t);
        } else {
            bad++;
            CHECK_EQ_INT(rc, ERR_DATA);
            CHECK_CONTAINS(err_msg(), "flipped.model");
        }
        t = NULL;
    }
    printf("model bit flips: %d loaded, %d rejected\n", ok, bad);
    CHECK(bad > 0);
    free(copy);

    /* specific corruptions: model type unigram, a precompiled charsmap, UNUSED pieces */
    CHECK_EQ_INT(tok_load_from_memory("\x0a\x05\x0a\x01" "a\x18\x02\x12\x02\x18\x01", 11, "u.model", &t), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "model_type is 1");
    CHECK_EQ_INT(tok_load_from_memory("\x0a\x05\x0a\x01" "a\x18\x05\x12\x02\x18\x02", 11, "u.model", &t), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "UNUSED");
    CHECK_EQ_INT(tok_load_from_memory("\x0a\x05\x0a\x01" "a\x18\x02\x12\x02\x18\x02\x1a\x03\x12\x01x", 16, "u.model",
                                      &t), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "precompiled_charsmap");
    CHECK_EQ_INT(tok_load_from_memory("\x0a\x05\x0a\x01" "a\x18\x07", 7, "u.model", &t), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "piece type 7");
    /* a minimal valid model: <unk> (UNKNOWN), <s>, </s> (CONTROL), "a"; trainer_spec model_type BPE */
    static const char mini[] = "\x0a\x09\x0a\x05<unk>\x18\x02" "\x0a\x07\x0a\x03<s>\x18\x03"
                               "\x0a\x08\x0a\x04</s>\x18\x03" "\x0a\x03\x0a\x01" "a" "\x12\x02\x18\x02";
    int rc = tok_load_from_memory(mini, sizeof mini - 1, "min.model", &t);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, ERR_OK);
    if (t) {
        expect_ids(t, "aab", (const int32_t[]){0, 3, 3, 0}, 4);    /* "▁" and "b" unknown, not fused */
        expect_ids(t, "<s>a</s>", (const int32_t[]){1, 0, 3, 2}, 4); /* control pieces split out */
        expect_ids(t, "bb", (const int32_t[]){0}, 1);                /* "▁bb": consecutive unknowns fused */
        CHECK_EQ_INT(tok_pad_id(t), -1);
        CHECK_EQ_INT(tok_vocab_size(t), 4);
        tok_free(t);
    }
}

static void test_json_fuzz(const char *blob, size_t len) {
    tok *t = NULL;
    int tried = 0, fails = 0;
    for (int k = 1; k <= 12; k++) { /* truncations of the real tokenizer.json */
        size_t cut = len * (size_t)k / 13;
        int rc = tok_load_from_memory(blob, cut, "tokenizer.json", &t);
        tried++;
        fails += rc == ERR_DATA && !t && strstr(err_msg(), "tokenizer.json: line ") != NULL;
        tok_free(t);
        t = NULL;
    }
    CHECK_EQ_INT(fails, tried);
    /* bit flips in the toy JSON */
    const char *toy = "{\"version\":\"1.0\",\"model\":{\"type\":\"BPE\"," VOCAB "," MERGES "," MODEL_OPTS "},"
                      NORM_SEQ ",\"pre_tokenizer\":null," ADDED "}";
    size_t n = strlen(toy);
    char *copy = malloc(n + 1);
    int ok = 0, bad = 0;
    for (int k = 0; k < 2000; k++) {
        memcpy(copy, toy, n + 1);
        copy[rnd() % n] ^= (char)(1u << (rnd() % 8));
        if (k % 2) copy[rnd() % n] ^= (char)(1u << (rnd() % 8));
        int rc = tok_load_from_memory(copy, n, "toy.json", &t);
        if (rc == ERR_OK) {
            ok++;
            tok_ids ids = {0};
            CHECK_EQ_INT(tok_encode(t, "ab b</s>a\xc3", 10, TOK_ADD_BOS | TOK_ADD_EOS, &ids) != ERR_INTERNAL, 1);
            tok_ids_free(&ids);
            tok_free(t);
        } else {
            bad++;
            if (rc != ERR_DATA || !strstr(err_msg(), "toy.json")) {
                t_fail++;
                fprintf(stderr, "flip %d: rc %d: %s\n", k, rc, err_msg());
            }
        }
        t = NULL;
    }
    printf("json bit flips: %d loaded, %d rejected\n", ok, bad);
    CHECK(bad > 0 && ok > 0);
    free(copy);
}

int main(void) {
    test_pb();
    test_toy_json();
    test_json_errors();
    size_t len;
    char *model = read_all(test_fixture("tokenizer/tokenizer.model"), &len);
    test_model_errors(model, len);
    free(model);
    char *json = read_all(test_fixture("tokenizer/tokenizer.json"), &len);
    test_json_fuzz(json, len);
    free(json);
    tok *t = NULL;
    CHECK_EQ_INT(tok_load_file("/nonexistent/tokenizer.json", &t), ERR_IO);
    CHECK_CONTAINS(err_msg(), "/nonexistent/tokenizer.json");
    TEST_MAIN_END();
}
