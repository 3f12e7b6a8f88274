/* Every Parquet layout of tests/fixtures/parquet (SNAPPY / ZSTD / none, dictionary on and off, data pages v1
 * and v2, 1 and 4 row groups, a dictionary that falls back to PLAIN, the format-1.0 file) imports to the same
 * data.h5 content: the same pairs in the same order with the same token ids, image bytes, image sizes, split
 * and source rows (only the row group differs between layouts). The unsupported ones fail cleanly. */
#include <dirent.h>

#include "data/dataset.h"
#include "data/import.h"
#include "model/model_h5.h"
#include "io/err.h"
#include "test_import_fixture.h"

typedef struct content {
    int64_t n;
    ds_pair *pairs;
    int32_t **tok;
    uint8_t **img;
    int64_t *img_n;
} content;

static int load(const char *path, content *c) {
    ds_file *d;
    if (ds_open(path, &d)) return 1;
    c->n = ds_num_pairs(d);
    c->pairs = calloc((size_t)c->n + 1, sizeof *c->pairs);
    c->tok = calloc((size_t)c->n + 1, sizeof *c->tok);
    c->img = calloc((size_t)c->n + 1, sizeof *c->img);
    c->img_n = calloc((size_t)c->n + 1, sizeof *c->img_n);
    for (int64_t i = 0; i < c->n; i++) {
        const ds_pair *p = ds_pair_at(d, i);
        c->pairs[i] = *p;
        int64_t nt = (int64_t)p->prefix_len + p->chosen_len + p->rejected_len;
        c->tok[i] = malloc(sizeof(int32_t) * (size_t)nt);
        ds_read_tokens(d, p->prefix_off, p->prefix_len, c->tok[i]);
        ds_read_tokens(d, p->chosen_off, p->chosen_len, c->tok[i] + p->prefix_len);
        ds_read_tokens(d, p->rejected_off, p->rejected_len, c->tok[i] + p->prefix_len + p->chosen_len);
        c->img_n[i] = ds_image_size(d, p->image);
        c->img[i] = malloc((size_t)c->img_n[i] + 1);
        ds_read_image(d, p->image, c->img[i]);
    }
    ds_close(d);
    return 0;
}

static void drop(content *c) {
    for (int64_t i = 0; i < c->n; i++) { free(c->tok[i]); free(c->img[i]); }
    free(c->pairs); free(c->tok); free(c->img); free(c->img_n);
}

static int same(const content *a, const content *b) {
    if (a->n != b->n) return 0;
    for (int64_t i = 0; i < a->n; i++) {
        const ds_pair *x = &a->pairs[i], *y = &b->pairs[i];
        if (x->prefix_len != y->prefix_len || x->chosen_len != y->chosen_len || x->rejected_len != y->rejected_len ||
            x->image_pos != y->image_pos || x->height != y->height || x->width != y->width ||
            x->n_image_tokens != y->n_image_tokens || x->split != y->split || x->source_row != y->source_row)
            return 0;
        int64_t nt = (int64_t)x->prefix_len + x->chosen_len + x->rejected_len;
        if (memcmp(a->tok[i], b->tok[i], sizeof(int32_t) * (size_t)nt)) return 0;
        if (a->img_n[i] != b->img_n[i] || memcmp(a->img[i], b->img[i], (size_t)a->img_n[i])) return 0;
    }
    return 1;
}

static int cmpstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
    const char *tmp = test_tmpdir();
    char mdir[1024], model[1024];
    snprintf(mdir, sizeof mdir, "%s/hf", tmp);
    snprintf(model, sizeof model, "%s/model.h5", tmp);
    CHECK_EQ_INT(fx_make_model(mdir, 32064, 32000, 1, model), 0);
    ds_model_ref ref;
    tok *tk = NULL;
    CHECK_EQ_INT(mh5_data_ref(model, &ref, &tk), 0);

    char dir[1024];
    snprintf(dir, sizeof dir, "%s", test_fixture("parquet"));
    DIR *dp = opendir(dir);
    CHECK(dp != NULL);
    char *names[64];
    int nn = 0;
    struct dirent *e;
    while (dp && (e = readdir(dp)) && nn < 64)
        if (strstr(e->d_name, ".parquet")) names[nn++] = strdup(e->d_name);
    if (dp) closedir(dp);
    qsort(names, (size_t)nn, sizeof names[0], cmpstr);
    content ref_c = {0, NULL, NULL, NULL, NULL};
    int compared = 0;
    for (int i = 0; i < nn; i++) {
        char in[2048], out[2048];
        snprintf(in, sizeof in, "%s/%s", dir, names[i]);
        snprintf(out, sizeof out, "%s/%s.h5", tmp, names[i]);
        const char *files[1] = {in};
        imp_opts o;
        imp_opts_default(&o);
        o.out = out;
        o.parquet = files;
        o.n_parquet = 1;
        o.model_path = model;
        imp_report rep;
        err_clear();
        int rc = imp_run(&o, &ref, tk, &rep);
        if (!strncmp(names[i], "unsupported", 11)) {
            /* unsupported encodings/codecs: a clear error naming the file, nothing written */
            if (rc == ERR_OK) {
                /* a column we do not read may be the unsupported one; then the import succeeds */
                continue;
            }
            CHECK_EQ_INT(rc, ERR_DATA);
            CHECK_CONTAINS(err_msg(), names[i]);
            FILE *f = fopen(out, "rb");
            CHECK(f == NULL);
            if (f) fclose(f);
            continue;
        }
        if (rc) fprintf(stderr, "%s: %s\n", names[i], err_msg());
        CHECK_EQ_INT(rc, 0);
        content c = {0, NULL, NULL, NULL, NULL};
        CHECK_EQ_INT(load(out, &c), 0);
        CHECK(c.n > 0);
        if (!ref_c.pairs) {
            ref_c = c;
            printf("%s: %lld pairs (reference)\n", names[i], (long long)c.n);
            continue;
        }
        int s = same(&ref_c, &c);
        printf("%s: %lld pairs, %s\n", names[i], (long long)c.n, s ? "same content" : "DIFFERENT");
        CHECK(s);
        compared++;
        drop(&c);
    }
    CHECK(compared >= 15);
    (void)fx_load_expected; /* the shared fixture header also serves tests that read expected.txt */
    drop(&ref_c);
    for (int i = 0; i < nn; i++) free(names[i]);
    tok_free(tk);
    TEST_MAIN_END();
}
