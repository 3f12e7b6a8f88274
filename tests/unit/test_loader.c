/* loader: ids and pixels against the oracle fixture, epoch coverage, permutation determinism, exact
 * seek/cursor resume (with and without prefetch), model mismatch, damaged data at read time. */
#include "data/dataset.h"
#include "data/image.h"
#include "data/import.h"
#include "model/model_h5.h"
#include "data/loader.h"
#include "io/h5x.h"
#include "backend/rng.h"
#include "io/err.h"
#include "test_import_fixture.h"

static char model_h5[1024];
static ds_model_ref ref;
static fx_expected ex;

static int import_pq(const char *out, int ncopies, double vf) {
    static char pqpath[1024];
    snprintf(pqpath, sizeof pqpath, "%s", test_fixture("data/rlaifv_small.parquet"));
    const char *pq[4] = {pqpath, pqpath, pqpath, pqpath};
    tok *t = NULL;
    int rc = mh5_data_ref(model_h5, &ref, &t);
    imp_opts o;
    imp_opts_default(&o);
    o.out = out;
    o.parquet = pq;
    o.n_parquet = ncopies;
    o.val_fraction = vf;
    o.seed = 7;
    imp_report *rep = calloc(1, sizeof *rep);
    if (!rc) rc = imp_run(&o, &ref, t, rep);
    free(rep);
    tok_free(t);
    return rc;
}

/* a digest of a batch: pair indices, ids and pixels */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static uint64_t digest(const ldr_batch *b) {
    uint64_t h = 1469598103934665603ULL;
    h = fnv(h, &b->n, sizeof b->n);
    for (int i = 0; i < b->n; i++) {
        const ldr_pair *p = &b->pairs[i];
        h = fnv(h, &p->index, sizeof p->index);
        h = fnv(h, p->prefix, sizeof(int32_t) * (size_t)p->prefix_len);
        h = fnv(h, p->chosen, sizeof(int32_t) * (size_t)p->chosen_len);
        h = fnv(h, p->rejected, sizeof(int32_t) * (size_t)p->rejected_len);
        h = fnv(h, p->pixels, sizeof(float) * (size_t)p->n_patches * 3 * 56 * 56);
    }
    return h;
}

#define NB 40

/* digests and cursors of the first nb batches */
static int run(const char *data, int batch, int prefetch, uint64_t seed, int nb, uint64_t *dig, ldr_cursor *after,
               int64_t *first_index) {
    ldr_opts o;
    ldr_opts_default(&o);
    o.batch_pairs = batch;
    o.prefetch = prefetch;
    o.seed = seed;
    ldr *l = NULL;
    int rc = ldr_open(data, &ref, &o, &l);
    for (int k = 0; !rc && k < nb; k++) {
        const ldr_batch *b = NULL;
        rc = ldr_next(l, &b);
        if (rc) break;
        dig[k] = digest(b);
        after[k] = ldr_tell(l);
        if (first_index) first_index[k] = b->pairs[0].index;
    }
    ldr_close(l);
    return rc;
}

static void check_pixels(const ldr_pair *p, const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s", test_fixture(file));
    size_t n = 0;
    char *bytes = fx_read_file(path, &n);
    img_rgb im;
    memset(&im, 0, sizeof im);
    CHECK_EQ_INT(img_decode(bytes, n, path, 0, &im), ERR_OK);
    img_config cfg;
    img_config_llava16(&cfg);
    cfg.grid = ref.anyres;
    int np = anyres_num_patches(&ref.anyres, im.h, im.w);
    float *want = malloc(sizeof(float) * (size_t)np * 3 * 56 * 56);
    int got = 0;
    CHECK_EQ_INT(img_preprocess(&im, &cfg, want, np, &got), ERR_OK);
    CHECK_EQ_INT(p->n_patches, np);
    CHECK(got == np && !memcmp(want, p->pixels, sizeof(float) * (size_t)np * 3 * 56 * 56));
    free(want);
    img_free(&im);
    free(bytes);
}

int main(void) {
    const char *tmp = test_tmpdir();
    char dir[1024], data[1024], data10[1024], path[1024];
    CHECK_EQ_INT(fx_load_expected(&ex), 0);
    snprintf(dir, sizeof dir, "%s/hf", tmp);
    snprintf(model_h5, sizeof model_h5, "%s/model.h5", tmp);
    CHECK_EQ_INT(fx_make_model(dir, 32064, 32000, 1, model_h5), ERR_OK);
    snprintf(data, sizeof data, "%s/data.h5", tmp);
    CHECK_EQ_INT(import_pq(data, 1, 0.0), ERR_OK); /* 5 pairs, all train */

    /* ids and pixels in file order */
    {
        ldr_opts o;
        ldr_opts_default(&o);
        o.shuffle = 0;
        o.batch_pairs = 2;
        ldr *l = NULL;
        CHECK_EQ_INT(ldr_open(data, &ref, &o, &l), ERR_OK);
        if (!l) { fprintf(stderr, "%s\n", err_msg()); return 1; }
        CHECK_EQ_INT(ldr_num_pairs(l), 5);
        static const char *img_of_pair[5] = {"data/images/a.jpg", "data/images/a.jpg", "data/images/b.png",
                                             "data/images/c.jpg", "data/images/d.jpg"};
        int seen = 0, sizes[3] = {2, 2, 1};
        for (int bi = 0; bi < 3; bi++) {
            const ldr_batch *b = NULL;
            CHECK_EQ_INT(ldr_next(l, &b), ERR_OK);
            if (!b) break;
            CHECK_EQ_INT(b->n, sizes[bi]);
            CHECK_EQ_INT(b->start.pos, seen);
            for (int j = 0; j < b->n; j++, seen++) {
                const ldr_pair *p = &b->pairs[j];
                const fx_pair *e = &ex.pairs[seen];
                CHECK_EQ_INT(p->index, seen);
                CHECK_EQ_INT(p->prefix_len, e->prefix);
                CHECK_EQ_INT(p->n_image_tokens, e->nimg);
                CHECK_EQ_INT(p->height, e->h);
                CHECK_EQ_INT(p->width, e->w);
                CHECK_EQ_INT(p->prefix_len + p->chosen_len, e->nchosen);
                CHECK_EQ_INT(p->prefix_len + p->rejected_len, e->nrejected);
                CHECK(!memcmp(p->prefix, e->chosen, sizeof(int32_t) * (size_t)p->prefix_len));
                CHECK(!memcmp(p->prefix, e->rejected, sizeof(int32_t) * (size_t)p->prefix_len));
                CHECK(!memcmp(p->chosen, e->chosen + p->prefix_len, sizeof(int32_t) * (size_t)p->chosen_len));
                CHECK(!memcmp(p->rejected, e->rejected + p->prefix_len, sizeof(int32_t) * (size_t)p->rejected_len));
                CHECK_EQ_INT(p->prefix[p->image_pos], 32000);
                CHECK_EQ_INT(p->prefix[p->image_pos + p->n_image_tokens - 1], 32000);
                CHECK(p->prefix[p->image_pos + p->n_image_tokens] != 32000);
                CHECK_EQ_INT(p->chosen[p->chosen_len - 1], 2);
                check_pixels(p, img_of_pair[seen]);
            }
        }
        ldr_cursor c = ldr_tell(l);
        CHECK_EQ_INT(c.epoch, 1);
        CHECK_EQ_INT(c.pos, 0);
        CHECK(ldr_buffer_bytes(l) > 2 * 2 * (size_t)3 * 56 * 56 * sizeof(float));
        ldr_close(l);
    }

    /* a bigger set: 20 pairs (4 copies), all train; batches of 3 -> 7 per epoch (the last one of 2) */
    snprintf(data10, sizeof data10, "%s/data20.h5", tmp);
    CHECK_EQ_INT(import_pq(data10, 4, 0.0), ERR_OK);
    uint64_t d1[NB], d2[NB], d3[NB];
    ldr_cursor a1[NB], a2[NB];
    int64_t first[NB];
    CHECK_EQ_INT(run(data10, 3, 1, 11, NB, d1, a1, first), ERR_OK);
    CHECK_EQ_INT(a1[0].epoch, 0);
    CHECK_EQ_INT(a1[0].pos, 3);
    CHECK_EQ_INT(a1[6].epoch, 1);
    CHECK_EQ_INT(a1[6].pos, 0);
    /* every pair exactly once per epoch */
    {
        ldr_opts o;
        ldr_opts_default(&o);
        o.batch_pairs = 3;
        o.seed = 11;
        ldr *l = NULL;
        CHECK_EQ_INT(ldr_open(data10, &ref, &o, &l), ERR_OK);
        for (int e = 0; l && e < 2; e++) {
            int count[20] = {0}, total = 0;
            for (int k = 0; k < 7; k++) {
                const ldr_batch *b = NULL;
                if (ldr_next(l, &b)) break;
                CHECK_EQ_INT(b->n, k < 6 ? 3 : 2);
                for (int j = 0; j < b->n; j++) count[b->pairs[j].index]++, total++;
            }
            int once = 1;
            for (int i = 0; i < 20; i++) once &= count[i] == 1;
            CHECK(once);
            CHECK_EQ_INT(total, 20);
        }
        ldr_close(l);
    }
    /* determinism: the same seed gives the same batches (prefetch or not); another seed or epoch another order */
    CHECK_EQ_INT(run(data10, 3, 0, 11, NB, d2, a2, NULL), ERR_OK);
    CHECK(!memcmp(d1, d2, sizeof d1));
    CHECK_EQ_INT(run(data10, 3, 1, 12, NB, d3, a2, NULL), ERR_OK);
    CHECK(memcmp(d1, d3, sizeof d1) != 0);
    CHECK(memcmp(d1, d1 + 7, sizeof(uint64_t) * 6) != 0); /* epoch 1 is not epoch 0 again */
    /* the permutation is the counter-based one */
    {
        int64_t perm[20];
        CHECK_EQ_INT(rng_permutation(11, 0, 20, perm), 0);
        CHECK_EQ_INT(first[0], perm[0]);
        CHECK_EQ_INT(first[1], perm[3]);
        CHECK_EQ_INT(rng_permutation(11, 1, 20, perm), 0);
        CHECK_EQ_INT(first[7], perm[0]);
    }

    /* seek: resuming from the cursor after batch k gives exactly the batches k+1.. of the uninterrupted run */
    for (int prefetch = 0; prefetch <= 1; prefetch++) {
        int ks[] = {0, 4, 5, 6, 12, 20};
        for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
            int k = ks[t];
            ldr_opts o;
            ldr_opts_default(&o);
            o.batch_pairs = 3;
            o.seed = 11;
            o.prefetch = prefetch;
            ldr *l = NULL;
            CHECK_EQ_INT(ldr_open(data10, &ref, &o, &l), ERR_OK);
            if (!l) continue;
            /* read a few batches first so that the prefetcher has run ahead, then seek */
            const ldr_batch *b = NULL;
            CHECK_EQ_INT(ldr_next(l, &b), ERR_OK);
            CHECK_EQ_INT(ldr_next(l, &b), ERR_OK);
            CHECK_EQ_INT(ldr_seek(l, a1[k]), ERR_OK);
            CHECK_EQ_INT(ldr_tell(l).epoch, a1[k].epoch);
            CHECK_EQ_INT(ldr_tell(l).pos, a1[k].pos);
            int same = 1;
            for (int j = k + 1; j < NB; j++) {
                if (ldr_next(l, &b)) { same = 0; break; }
                same &= digest(b) == d1[j] && b->next.epoch == a1[j].epoch && b->next.pos == a1[j].pos;
            }
            CHECK(same);
            ldr_close(l);
        }
    }
    {
        ldr_opts o;
        ldr_opts_default(&o);
        ldr *l = NULL;
        CHECK_EQ_INT(ldr_open(data10, &ref, &o, &l), ERR_OK);
        ldr_cursor bad = {0, 20};
        CHECK_EQ_INT(ldr_seek(l, bad), ERR_ARGS);
        /* the val split of this set is empty */
        ldr_close(l);
        o.split = DS_VAL;
        CHECK_EQ_INT(ldr_open(data10, &ref, &o, &l), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "val split is empty");
    }
    /* train/val split sizes as stored */
    {
        snprintf(path, sizeof path, "%s/split.h5", tmp);
        CHECK_EQ_INT(import_pq(path, 4, 0.5), ERR_OK);
        ds_file *d = NULL;
        CHECK_EQ_INT(ds_open(path, &d), ERR_OK);
        int64_t ntrain = d ? ds_meta_of(d)->n_train : -1, nval = d ? ds_meta_of(d)->n_val : -1;
        ds_close(d);
        CHECK(ntrain > 0 && nval > 0);
        ldr_opts o;
        ldr_opts_default(&o);
        ldr *l = NULL;
        CHECK_EQ_INT(ldr_open(path, &ref, &o, &l), ERR_OK);
        if (l) CHECK_EQ_INT(ldr_num_pairs(l), ntrain);
        ldr_close(l);
        o.split = DS_VAL;
        CHECK_EQ_INT(ldr_open(path, &ref, &o, &l), ERR_OK);
        if (l) CHECK_EQ_INT(ldr_num_pairs(l), nval);
        ldr_close(l);
    }

    /* a model that is not the one the data was made for */
    {
        ldr_opts o;
        ldr_opts_default(&o);
        ldr *l = NULL;
        ds_model_ref other = ref;
        other.tok_hash ^= 0x10;
        CHECK_EQ_INT(ldr_open(data, &other, &o, &l), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "b2276abcf7097f62");
        CHECK_CONTAINS(err_msg(), "b2276abcf7097f72");
        other = ref;
        other.anyres.pinpoints[0][1] = 168;
        CHECK_EQ_INT(ldr_open(data, &other, &o, &l), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "pinpoints");
        other = ref;
        other.image_token = 32001;
        CHECK_EQ_INT(ldr_open(data, &other, &o, &l), ERR_DATA);
    }

    /* damaged data at read time: ERR_DATA naming data.h5, the pair and its provenance */
    for (int prefetch = 0; prefetch <= 1; prefetch++) {
        for (int what = 0; what < 3; what++) {
            char dmg[1024];
            snprintf(dmg, sizeof dmg, "%s/damaged%d%d.h5", tmp, prefetch, what);
            size_t n = 0;
            char *bytes = fx_read_file(data, &n);
            fx_write_file(dmg, bytes, n);
            free(bytes);
            ds_file *d = NULL;
            CHECK_EQ_INT(ds_open(dmg, &d), ERR_OK);
            const ds_pair *p2 = d ? ds_pair_at(d, 2) : NULL; /* row 2 (PNG) */
            int64_t img_off = 0, tok_off = p2 ? p2->chosen_off + 1 : 0, img_index = p2 ? p2->image : -1;
            if (d) {
                int64_t *offs = malloc(sizeof(int64_t) * 8);
                hid_t f;
                h5x_open(dmg, 0, &f);
                h5x_read_rows(f, "image_offsets", H5X_I64, p2->image, 1, offs);
                h5x_close(&f);
                img_off = offs[0];
                free(offs);
            }
            ds_close(d);
            hid_t f;
            CHECK_EQ_INT(h5x_open(dmg, 1, &f), ERR_OK);
            hid_t ds = H5Dopen2(f, what == 2 ? "tokens" : "image_bytes", H5P_DEFAULT);
            hid_t fs = H5Dget_space(ds);
            hsize_t start = (hsize_t)(what == 2 ? tok_off : img_off + (what == 0 ? 0 : 16)), cnt = what == 2 ? 1 : 8;
            hsize_t cnt1 = cnt;
            hid_t ms = H5Screate_simple(1, &cnt1, NULL);
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &cnt, NULL);
            int32_t tokv = 99999;
            uint8_t junk[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            if (what == 2) H5Dwrite(ds, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, &tokv);
            else H5Dwrite(ds, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, junk);
            H5Sclose(ms);
            H5Sclose(fs);
            H5Dclose(ds);
            h5x_close(&f);
            ldr_opts o;
            ldr_opts_default(&o);
            o.shuffle = 0;
            o.prefetch = prefetch;
            ldr *l = NULL;
            CHECK_EQ_INT(ldr_open(dmg, &ref, &o, &l), ERR_OK);
            int rc = ERR_OK;
            const ldr_batch *b = NULL;
            for (int k = 0; l && k < 5 && !rc; k++) rc = ldr_next(l, &b);
            CHECK_EQ_INT(rc, ERR_DATA);
            CHECK_CONTAINS(err_msg(), dmg);
            CHECK_CONTAINS(err_msg(), "pair 2 (");
            CHECK_CONTAINS(err_msg(), "row group 0 row 2");
            if (what == 2) CHECK_CONTAINS(err_msg(), "99999");
            if (what < 2) { /* the decoder's reason after the data file, the pair and the image index, once each */
                char want[1400];
                snprintf(want, sizeof want, "%s: pair 2 (", dmg);
                CHECK(!strncmp(err_msg(), want, strlen(want)));
                snprintf(want, sizeof want, "row group 0 row 2): image %lld: %s", (long long)img_index,
                         what == 0 ? "unknown format" : "corrupt PNG: CRC mismatch in chunk 'IHDR'");
                CHECK_CONTAINS(err_msg(), want);
                CHECK(strstr(err_msg() + 1, dmg) == NULL); /* the data file named once */
            }
            /* the error repeats */
            if (l) CHECK_EQ_INT(ldr_next(l, &b), ERR_DATA);
            ldr_close(l);
        }
    }
    if (!t_fail) { /* keep the scratch files of a failed run for a look */
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    }
    TEST_MAIN_END();
}
