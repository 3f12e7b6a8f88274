/* import-data: Parquet and JSONL importers against the oracle ids of tests/fixtures/data/expected.txt,
 * skip counts, Parquet == JSONL content, split determinism, limits, damaged inputs, CLI exit codes. */
#include <sys/wait.h>

#include "data/dataset.h"
#include "data/import.h"
#include "model/model_h5.h"
#include "io/err.h"
#include "test_import_fixture.h"

static char model_h5[1024];
static fx_expected ex;
static char g_imgdir[1024];

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int run_import(const char *out, const char *const *pq, int npq, const char *jsonl, int64_t max_tokens,
                      int64_t max_pairs, double vf, uint64_t seed, imp_report *rep) {
    ds_model_ref ref;
    tok *t = NULL;
    int rc = mh5_data_ref(model_h5, &ref, &t);
    if (rc) return rc;
    imp_opts o;
    imp_opts_default(&o);
    o.out = out;
    o.parquet = pq;
    o.n_parquet = npq;
    o.jsonl = jsonl;
    char imgdir[1024];
    snprintf(imgdir, sizeof imgdir, "%s", test_fixture("data/images"));
    o.images_dir = jsonl ? imgdir : NULL;
    o.max_tokens = max_tokens;
    o.max_pairs = max_pairs;
    o.val_fraction = vf;
    o.seed = seed;
    o.model_path = model_h5;
    rc = imp_run(&o, &ref, t, rep);
    tok_free(t);
    return rc;
}

static int reason_of(const char *name) {
    for (int r = 0; r < DS_SKIP_N; r++)
        if (!strcmp(ds_skip_name(r), name)) return r;
    return -1;
}

/* expanded prefix + answer of pair i */
static int full_ids(ds_file *d, int64_t i, int rejected, int32_t *out, int cap) {
    const ds_pair *p = ds_pair_at(d, i);
    int32_t pre[FX_MAX_IDS], ans[FX_MAX_IDS];
    int alen = rejected ? p->rejected_len : p->chosen_len;
    if (p->prefix_len > FX_MAX_IDS || alen > FX_MAX_IDS) return -1;
    if (ds_read_tokens(d, p->prefix_off, p->prefix_len, pre)) return -1;
    if (ds_read_tokens(d, rejected ? p->rejected_off : p->chosen_off, alen, ans)) return -1;
    int n = 0;
    for (int k = 0; k < p->prefix_len; k++) {
        if (k == p->image_pos) {
            if (pre[k] != 32000) return -2;
            for (int j = 0; j < p->n_image_tokens && n < cap; j++) out[n++] = 32000;
        } else if (n < cap) {
            out[n++] = pre[k];
        }
    }
    for (int k = 0; k < alen && n < cap; k++) out[n++] = ans[k];
    return n;
}

static int same_ids(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && !memcmp(a, b, sizeof(int32_t) * (size_t)na);
}

static const char *image_file_of_row(int row) {
    static const char *names[] = {"a.jpg", "a.jpg", "b.png", "corrupt.jpg", NULL, "c.jpg", "c.jpg", "c.jpg",
                                  "c.jpg", "c.jpg", NULL, "d.jpg"};
    return row >= 0 && row < 12 ? names[row] : NULL;
}

static void check_against_expected(const char *path, int jsonl) {
    ds_file *d = NULL;
    CHECK_EQ_INT(ds_open(path, &d), ERR_OK);
    if (!d) { fprintf(stderr, "%s\n", err_msg()); return; }
    const ds_meta *m = ds_meta_of(d);
    CHECK_EQ_INT(ds_num_pairs(d), ex.npairs);
    CHECK_EQ_INT(m->rows_seen, ex.rows);
    CHECK_EQ_INT(m->n_images, 4); /* rows 0 and 1 share one image */
    CHECK_EQ_INT(m->n_train + m->n_val, ex.npairs);
    CHECK_EQ_INT(m->model.image_token, 32000);
    CHECK_EQ_INT(m->model.vocab, 32064);
    CHECK_EQ_INT(m->model.anyres.tile, 56);
    CHECK_EQ_INT(m->model.anyres.n_pinpoints, 5);
    CHECK(m->model.tok_hash == 0xb2276abcf7097f62ULL);
    int want[DS_SKIP_N] = {0};
    for (int r = 0; r < ex.rows; r++)
        if (ex.skip[r][0]) want[reason_of(ex.skip[r])]++;
    for (int r = 0; r < DS_SKIP_N; r++) CHECK_EQ_INT(m->skipped[r], want[r]);
    CHECK_EQ_INT(m->skipped[DS_SKIP_IMAGE_NULL], 2);
    CHECK_EQ_INT(m->skipped[DS_SKIP_IMAGE_CORRUPT], 1);
    for (int i = 0; i < ex.npairs && i < ds_num_pairs(d); i++) {
        const fx_pair *e = &ex.pairs[i];
        const ds_pair *p = ds_pair_at(d, i);
        CHECK_EQ_INT(p->height, e->h);
        CHECK_EQ_INT(p->width, e->w);
        CHECK_EQ_INT(p->n_image_tokens, e->nimg);
        CHECK_EQ_INT(p->prefix_len - 1 + p->n_image_tokens, e->prefix);
        CHECK_EQ_INT(p->source_file, 0);
        CHECK_EQ_INT(p->source_group, jsonl ? -1 : e->row / 4);
        CHECK_EQ_INT(p->source_row, jsonl ? e->row + 1 : e->row);
        int32_t got[FX_MAX_IDS * 2];
        int n = full_ids(d, i, 0, got, FX_MAX_IDS * 2);
        CHECK(same_ids(got, n, e->chosen, e->nchosen));
        n = full_ids(d, i, 1, got, FX_MAX_IDS * 2);
        CHECK(same_ids(got, n, e->rejected, e->nrejected));
        /* the stored image is the original file, byte for byte */
        char ip[1024];
        snprintf(ip, sizeof ip, "%s/%s", g_imgdir, image_file_of_row(e->row));
        size_t flen = 0;
        char *fbytes = fx_read_file(ip, &flen);
        int64_t sz = ds_image_size(d, p->image);
        CHECK_EQ_INT(sz, (int64_t)flen);
        if (fbytes && sz == (int64_t)flen) {
            uint8_t *b = malloc((size_t)sz);
            CHECK_EQ_INT(ds_read_image(d, p->image, b), ERR_OK);
            CHECK(!memcmp(b, fbytes, flen));
            free(b);
        }
        free(fbytes);
    }
    CHECK_EQ_INT(ds_pair_at(d, 0)->image, ds_pair_at(d, 1)->image);
    CHECK(ds_pair_at(d, 1)->image != ds_pair_at(d, 2)->image);
    char desc[256];
    CHECK_CONTAINS(ds_describe_pair(d, 3, desc, sizeof desc), jsonl ? "line 10" : "row group 2 row 9");
    ds_close(d);
}

/* the content two imports must share: tokens, images, sizes, split */
static void check_same_content(const char *a, const char *b) {
    ds_file *x = NULL, *y = NULL;
    CHECK_EQ_INT(ds_open(a, &x), ERR_OK);
    CHECK_EQ_INT(ds_open(b, &y), ERR_OK);
    if (!x || !y) { ds_close(x); ds_close(y); return; }
    CHECK_EQ_INT(ds_num_pairs(x), ds_num_pairs(y));
    CHECK_EQ_INT(ds_meta_of(x)->n_tokens, ds_meta_of(y)->n_tokens);
    CHECK_EQ_INT(ds_meta_of(x)->n_image_bytes, ds_meta_of(y)->n_image_bytes);
    int differ = 0;
    for (int64_t i = 0; i < ds_num_pairs(x) && i < ds_num_pairs(y); i++) {
        const ds_pair *p = ds_pair_at(x, i), *q = ds_pair_at(y, i);
        differ |= p->prefix_off != q->prefix_off || p->prefix_len != q->prefix_len || p->chosen_len != q->chosen_len ||
                  p->rejected_len != q->rejected_len || p->image != q->image || p->height != q->height ||
                  p->width != q->width || p->n_image_tokens != q->n_image_tokens || p->split != q->split ||
                  p->image_pos != q->image_pos;
    }
    CHECK(!differ);
    int64_t nt = ds_meta_of(x)->n_tokens, nb = ds_meta_of(x)->n_image_bytes;
    int32_t *ta = malloc(sizeof(int32_t) * (size_t)nt), *tb = malloc(sizeof(int32_t) * (size_t)nt);
    CHECK_EQ_INT(ds_read_tokens(x, 0, nt, ta), ERR_OK);
    CHECK_EQ_INT(ds_read_tokens(y, 0, nt, tb), ERR_OK);
    CHECK(!memcmp(ta, tb, sizeof(int32_t) * (size_t)nt));
    free(ta);
    free(tb);
    for (int64_t im = 0; im < ds_meta_of(x)->n_images; im++) {
        int64_t s = ds_image_size(x, im);
        CHECK_EQ_INT(s, ds_image_size(y, im));
        uint8_t *ba = malloc((size_t)s), *bb = malloc((size_t)s);
        CHECK_EQ_INT(ds_read_image(x, im, ba), ERR_OK);
        CHECK_EQ_INT(ds_read_image(y, im, bb), ERR_OK);
        CHECK(!memcmp(ba, bb, (size_t)s));
        free(ba);
        free(bb);
    }
    (void)nb;
    ds_close(x);
    ds_close(y);
}

static void splits_of(const char *path, char *out, int cap, int *n) {
    ds_file *d = NULL;
    *n = 0;
    if (ds_open(path, &d)) return;
    for (int64_t i = 0; i < ds_num_pairs(d) && i < cap; i++) out[(*n)++] = (char)('0' + ds_pair_at(d, i)->split);
    out[*n] = '\0';
    ds_close(d);
}

static int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(void) {
    const char *tmp = test_tmpdir();
    char dir[1024], out[1024], out2[1024], path[1024];
    imp_report *rep = calloc(1, sizeof *rep);
    CHECK_EQ_INT(fx_load_expected(&ex), 0);
    CHECK_EQ_INT(ex.rows, 12);
    CHECK_EQ_INT(ex.npairs, 5);

    /* the model the data is made for: tiny LLaVA widened to the Mistral vocabulary */
    snprintf(dir, sizeof dir, "%s/hf", tmp);
    snprintf(model_h5, sizeof model_h5, "%s/model.h5", tmp);
    CHECK_EQ_INT(fx_make_model(dir, 32064, 32000, 1, model_h5), ERR_OK);
    ds_model_ref ref;
    tok *t = NULL;
    CHECK_EQ_INT(mh5_data_ref(model_h5, &ref, &t), ERR_OK);
    CHECK_EQ_INT(ref.vocab, 32064);
    CHECK_EQ_INT(ref.image_token, 32000);
    CHECK(ref.tok_hash == 0xb2276abcf7097f62ULL);
    CHECK_EQ_STR(ref.tok_kind, "tokenizers-bpe");

    /* the check that tokenizer and model belong together */
    CHECK_EQ_INT(imp_check_tokenizer("m", 32064, 32000, t), ERR_OK);
    CHECK_EQ_INT(imp_check_tokenizer("m", 32001, 32000, t), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "vocab_size is 32001");
    CHECK_EQ_INT(imp_check_tokenizer("m", 32064, 300, t), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "image_token_index is 300");
    tok_free(t);
    {
        char d2[1024], m2[1024];
        snprintf(d2, sizeof d2, "%s/hf_tiny", tmp);
        snprintf(m2, sizeof m2, "%s/tiny.h5", tmp);
        /* the fixture model as it is, with the Mistral tokenizer: refused at import-model already, nothing written */
        CHECK_EQ_INT(fx_make_model(d2, 320, 300, 1, m2), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "hf_tiny/tokenizer.json: the tokenizer's <image> id is 32000, the model's "
                                  "image_token_index is 300");
        CHECK(!file_exists(m2));
        snprintf(d2, sizeof d2, "%s/hf_notok", tmp);
        snprintf(m2, sizeof m2, "%s/notok.h5", tmp);
        CHECK_EQ_INT(fx_make_model(d2, 32064, 32000, 0, m2), ERR_OK);
        CHECK_EQ_INT(mh5_data_ref(m2, &ref, &t), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "holds no tokenizer");
    }

    /* a Parquet file with a row group without rows (pyarrow: data_page_offset 0) imports */
    snprintf(out, sizeof out, "%s/emptyrg.h5", tmp);
    {
        static char erg[1024];
        snprintf(erg, sizeof erg, "%s", test_fixture("parquet/empty_row_group.parquet"));
        const char *e1[1] = {erg};
        int rc0 = run_import(out, e1, 1, NULL, 0, 0, 0.1, 7, rep);
        CHECK_EQ_INT(rc0, ERR_OK);
        if (rc0) fprintf(stderr, "%s\n", err_msg());
        CHECK_EQ_INT(rep->meta.rows_seen, 12);
        CHECK(rep->meta.n_pairs > 0);
    }

    /* Parquet */
    static char pqpath[1024], jlpath[1024];
    snprintf(pqpath, sizeof pqpath, "%s", test_fixture("data/rlaifv_small.parquet"));
    snprintf(jlpath, sizeof jlpath, "%s", test_fixture("data/rlaifv_small.jsonl"));
    snprintf(g_imgdir, sizeof g_imgdir, "%s", test_fixture("data/images"));
    const char *pq[1] = {pqpath};
    snprintf(out, sizeof out, "%s/pq.h5", tmp);
    int rc = run_import(out, pq, 1, NULL, 0, 0, 0.4, 7, rep);
    CHECK_EQ_INT(rc, ERR_OK);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rep->meta.n_pairs, 5);
    CHECK_CONTAINS(rep->examples[DS_SKIP_IMAGE_CORRUPT][0], "row group 0 row 3 (corrupt)");
    /* image_corrupt by the decoder's reason: row 3 (corrupt.jpg) has a broken marker */
    CHECK_EQ_INT(rep->meta.skipped[DS_SKIP_IMAGE_CORRUPT], 1);
    CHECK_EQ_INT(rep->image_fail[IMG_FAIL_CORRUPT], 1);
    {
        char sum[512];
        imp_skip_summary(rep, sum, sizeof sum);
        CHECK_CONTAINS(sum, "image_corrupt 1 (corrupt 1)");
        CHECK_CONTAINS(sum, "image_null 2");
    }
    CHECK_CONTAINS(rep->examples[DS_SKIP_IMAGE_NULL][1], "row group 2 row 10");
    check_against_expected(out, 0);

    /* JSONL of the same rows: the same content */
    snprintf(out2, sizeof out2, "%s/jl.h5", tmp);
    rc = run_import(out2, NULL, 0, jlpath, 0, 0, 0.4, 7, rep);
    CHECK_EQ_INT(rc, ERR_OK);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    check_against_expected(out2, 1);
    check_same_content(out, out2);

    /* malformed JSONL lines and a missing image are counted, with line numbers */
    snprintf(out2, sizeof out2, "%s/bad.h5", tmp);
    rc = run_import(out2, NULL, 0, test_fixture("data/bad.jsonl"), 0, 0, 0.0, 7, rep);
    CHECK_EQ_INT(rc, ERR_OK);
    CHECK_EQ_INT(rep->meta.n_pairs, 2);
    CHECK_EQ_INT(rep->meta.rows_seen, 6); /* the blank line is not a row */
    CHECK_EQ_INT(rep->meta.skipped[DS_SKIP_MALFORMED], 3);
    CHECK_EQ_INT(rep->meta.skipped[DS_SKIP_IMAGE_MISSING], 1);
    CHECK_CONTAINS(rep->examples[DS_SKIP_MALFORMED][0], "bad.jsonl line 2 (invalid JSON at column 1)");
    CHECK_CONTAINS(rep->examples[DS_SKIP_MALFORMED][1], "line 3 (field 'image' is a number, expected a string or null)");
    CHECK_CONTAINS(rep->examples[DS_SKIP_MALFORMED][2], "line 6 (an array, expected an object)");
    CHECK_CONTAINS(rep->examples[DS_SKIP_IMAGE_MISSING][0], "line 5");
    CHECK_EQ_INT(rep->meta.n_train, 2);

    /* --max-tokens: the longest pair (row 9, its chosen answer) no longer fits */
    int longest = ex.pairs[3].nchosen;
    snprintf(out2, sizeof out2, "%s/maxtok.h5", tmp);
    CHECK_EQ_INT(run_import(out2, pq, 1, NULL, longest, 0, 0.4, 7, rep), ERR_OK);
    CHECK_EQ_INT(rep->meta.n_pairs, 5);
    CHECK_EQ_INT(run_import(out2, pq, 1, NULL, longest - 1, 0, 0.4, 7, rep), ERR_OK);
    CHECK_EQ_INT(rep->meta.n_pairs, 4);
    CHECK_EQ_INT(rep->meta.skipped[DS_SKIP_TOO_LONG], 1);
    CHECK_CONTAINS(rep->examples[DS_SKIP_TOO_LONG][0], "row 9");
    /* --max-pairs */
    CHECK_EQ_INT(run_import(out2, pq, 1, NULL, 0, 2, 0.4, 7, rep), ERR_OK);
    CHECK_EQ_INT(rep->meta.n_pairs, 2);
    CHECK_EQ_INT(rep->meta.rows_seen, 2);
    /* two files: sources and provenance */
    const char *pq2[2] = {pq[0], pq[0]};
    CHECK_EQ_INT(run_import(out2, pq2, 2, NULL, 0, 0, 0.4, 7, rep), ERR_OK);
    CHECK_EQ_INT(rep->meta.n_pairs, 10);
    CHECK_EQ_INT(rep->meta.n_images, 8); /* consecutive duplicates only: file 2 starts with A again after D */
    {
        ds_file *d = NULL;
        CHECK_EQ_INT(ds_open(out2, &d), ERR_OK);
        if (d) {
            CHECK_EQ_INT(ds_pair_at(d, 7)->source_file, 1);
            CHECK_EQ_INT(ds_pair_at(d, 7)->source_row, 2);
            CHECK_CONTAINS(ds_source(d, 1), "rlaifv_small.parquet");
            ds_close(d);
        }
    }

    /* split: a pure function of (seed, row); the fraction is respected at the extremes */
    {
        char s1[64], s2[64], s3[64];
        int n1, n2, n3, differ = 0;
        splits_of(out, s1, 63, &n1);
        snprintf(out2, sizeof out2, "%s/split.h5", tmp);
        CHECK_EQ_INT(run_import(out2, pq, 1, NULL, 0, 0, 0.4, 7, rep), ERR_OK);
        splits_of(out2, s2, 63, &n2);
        CHECK_EQ_STR(s1, s2);
        for (uint64_t seed = 1; seed <= 8; seed++) {
            CHECK_EQ_INT(run_import(out2, pq, 1, NULL, 0, 0, 0.5, seed, rep), ERR_OK);
            splits_of(out2, s3, 63, &n3);
            differ += strcmp(s3, s1) != 0;
        }
        CHECK(differ > 0);
        CHECK_EQ_INT(run_import(out2, pq, 1, NULL, 0, 0, 0.0, 7, rep), ERR_OK);
        splits_of(out2, s3, 63, &n3);
        CHECK_EQ_STR(s3, "00000");
        CHECK_EQ_INT(run_import(out2, pq, 1, NULL, 0, 0, 1.0, 7, rep), ERR_OK);
        splits_of(out2, s3, 63, &n3);
        CHECK_EQ_STR(s3, "11111");
        CHECK_EQ_INT(rep->meta.n_val, 5);
    }

    /* damaged Parquet: an error (or, when only image bytes are hit, a clean import), never a crash; on error
     * nothing at --out and an existing file there is untouched */
    {
        size_t n = 0;
        char *orig = fx_read_file(pq[0], &n);
        char bad[1024];
        snprintf(bad, sizeof bad, "%s/bad.parquet", tmp);
        snprintf(out2, sizeof out2, "%s/damaged.h5", tmp);
        const char *bp[1] = {bad};
        fx_write_file(bad, orig, n - 100);
        CHECK_EQ_INT(run_import(out2, bp, 1, NULL, 0, 0, 0.1, 7, rep), ERR_DATA);
        CHECK(!file_exists(out2));
        fx_write_file(out2, "old", 3);
        int errors = 0, oks = 0;
        for (size_t k = 0; k < 40; k++) {
            char *c = malloc(n);
            memcpy(c, orig, n);
            size_t pos = 4 + (k * 7919 + (k * k) * 131) % (n - 8);
            c[pos] ^= (char)(1u << (k % 8));
            fx_write_file(bad, c, n);
            free(c);
            rc = run_import(out2, bp, 1, NULL, 0, 0, 0.1, 7, rep);
            if (rc) {
                errors++;
                CHECK(rc == ERR_DATA || rc == ERR_IO);
                size_t on = 0;
                char *o = fx_read_file(out2, &on);
                CHECK(o && on == 3 && !memcmp(o, "old", 3));
                free(o);
            } else {
                oks++;
                fx_write_file(out2, "old", 3);
            }
        }
        CHECK(errors > 0);
        printf("bit flips: %d errors, %d clean imports\n", errors, oks);
        /* footer length damaged */
        memcpy(orig + n - 8, "\xff\xff\xff\x7f", 4);
        fx_write_file(bad, orig, n);
        CHECK_EQ_INT(run_import(out2, bp, 1, NULL, 0, 0, 0.1, 7, rep), ERR_DATA);
        free(orig);
        const char *missing[1] = {"/nonexistent/x.parquet"};
        CHECK_EQ_INT(run_import(out2, missing, 1, NULL, 0, 0, 0.1, 7, rep), ERR_IO);
        /* every row skipped -> an error, nothing written */
        unlink(out2);
        snprintf(path, sizeof path, "%s/allbad.jsonl", tmp);
        fx_write_file(path, "{\"image\": null, \"question\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\"}\n", 66);
        CHECK_EQ_INT(run_import(out2, NULL, 0, path, 0, 0, 0.1, 7, rep), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "no usable pairs in 1 rows (every row was skipped: image_null 1); nothing written");
        CHECK(!file_exists(out2));
        /* the counts per reason, the decoder's reasons among them; JSONL: the missing field, the parse column */
        static const char allbad[] =
            "{\"image\": \"corrupt.jpg\", \"question\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
            "{\"image\": \"a.jpg\", \"question\": \"q\", \"rejected\": \"b\"}\n"
            "{\"image\": \"a.jpg\", \"question\": \"q\" \"chosen\": \"a\", \"rejected\": \"b\"}\n"
            "{\"image\": \"a.jpg\", \"question\": \"same\", \"chosen\": \"a\", \"rejected\": \"a\"}\n";
        fx_write_file(path, allbad, sizeof allbad - 1);
        CHECK_EQ_INT(run_import(out2, NULL, 0, path, 0, 0, 0.1, 7, rep), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "no usable pairs in 4 rows (every row was skipped: image_corrupt 1 (corrupt 1), "
                                  "same_answers 1, malformed_line 2); nothing written");
        CHECK_CONTAINS(rep->examples[DS_SKIP_MALFORMED][0], "allbad.jsonl line 2 (field 'chosen' is missing)");
        CHECK_CONTAINS(rep->examples[DS_SKIP_MALFORMED][1], "allbad.jsonl line 3 (invalid JSON at column 36)");
        CHECK_CONTAINS(rep->examples[DS_SKIP_IMAGE_CORRUPT][0], "allbad.jsonl line 1 (corrupt)");
        CHECK(!file_exists(out2));
    }

    /* the command line: exit codes per DESIGN.md */
    const char *bin = getenv("ORPO_BIN");
    if (bin) {
        char cmd[4096];
        snprintf(out2, sizeof out2, "%s/cli.h5", tmp);
        snprintf(cmd, sizeof cmd, "ORPO_LOG=info '%s' import-data --model '%s' --out '%s' --parquet '%s' --seed 7 --val-fraction 0.4 "
                 "2>'%s/cli.log'", bin, model_h5, out2, pq[0], tmp);
        CHECK_EQ_INT(sh(cmd), 0);
        check_same_content(out, out2);
        snprintf(path, sizeof path, "%s/cli.log", tmp);
        char *log = fx_read_file(path, NULL);
        CHECK_CONTAINS(log, "5 pairs written");
        CHECK_CONTAINS(log, "image_corrupt");
        /* the skipped image said with the decoder's reason, and the count per reason at the end */
        CHECK_CONTAINS(log, "skipped ");
        CHECK_CONTAINS(log, "rlaifv_small.parquet row group 0 row 3: corrupt JPEG: byte ");
        CHECK_CONTAINS(log, "    corrupt                       1");
        free(log);
        unlink(out2);
        snprintf(cmd, sizeof cmd, "'%s' import-data --model '%s' --out '%s' --parquet /nonexistent.parquet 2>/dev/null",
                 bin, model_h5, out2);
        CHECK_EQ_INT(sh(cmd), 4);
        snprintf(cmd, sizeof cmd, "'%s' import-data --model '%s' --out '%s' --parquet '%s/bad.parquet' 2>/dev/null", bin,
                 model_h5, out2, tmp);
        CHECK_EQ_INT(sh(cmd), 3);
        CHECK(!file_exists(out2));
        snprintf(cmd, sizeof cmd, "'%s' import-data --model '%s' --out '%s' --parquet '%s' --val-fraction 2 2>/dev/null",
                 bin, model_h5, out2, pq[0]);
        CHECK_EQ_INT(sh(cmd), 2);
        snprintf(cmd, sizeof cmd, "'%s' import-data --model '%s' --out '%s' --jsonl '%s' 2>/dev/null", bin, model_h5,
                 out2, jlpath);
        CHECK_EQ_INT(sh(cmd), 2);
        snprintf(cmd, sizeof cmd, "'%s' import-data --model /nonexistent/model.h5 --out '%s' --parquet '%s' 2>/dev/null",
                 bin, out2, pq[0]);
        CHECK_EQ_INT(sh(cmd), 4);
        CHECK(!file_exists(out2));
    }
    free(rep);
    if (!t_fail) { /* keep the scratch files of a failed run for a look */
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    }
    TEST_MAIN_END();
}
