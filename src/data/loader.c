/* loader — prefetched micro-batches from data.h5; see loader.h and docs/data.md. */
#include "data/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "io/h5x.h"
#include "io/mem.h"
#include "backend/rng.h"

enum { SLOT_EMPTY = 0, SLOT_READY = 1 };

typedef struct slot {
    int state;
    int rc;              /* status of the fill (ERR_OK or the error) */
    char msg[2048];      /* its message (errors are per thread) */
    ldr_batch batch;
    ldr_pair *pairs;     /* [batch_pairs] */
    int32_t *toks;       /* [batch_pairs * max_tokens] */
    float *pix;          /* [batch_pairs * max_patches * 3 * tile * tile] */
} slot;

struct ldr {
    ds_file *d;
    ldr_opts o;
    ds_model_ref model;
    img_config icfg;
    int64_t n;           /* pairs in the split */
    int64_t *split_idx;  /* [n] pair indices of the split, in file order */
    int64_t *perm;       /* [n] the order of perm_epoch */
    int64_t perm_epoch;
    int64_t max_tokens;  /* largest expanded prefix + chosen + rejected */
    int64_t max_raw;     /* largest stored prefix/answer */
    int max_patches;
    int64_t max_img;     /* largest encoded image */
    size_t pix_per_pair; /* floats */
    int32_t *raw;        /* [max_raw] a stored prefix before expansion */
    uint8_t *img;        /* [max_img] encoded bytes */
    int own_max;         /* pairs of a full batch this loader reads (all of them without shards) */
    slot slots[2];
    /* producer / consumer */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int running, stop;
    int fill_i, take_i;  /* the slot the worker fills next / the caller takes next */
    int held;            /* slot the caller holds (-1 none) */
    ldr_cursor fill_cur; /* worker's cursor */
    ldr_cursor tell;
};

void ldr_opts_default(ldr_opts *o) {
    memset(o, 0, sizeof *o);
    o->split = DS_TRAIN;
    o->batch_pairs = 1;
    o->seed = 42;
    o->shuffle = 1;
    o->prefetch = 1;
    o->nshards = 1;
}

/* 1 when pair j of a batch is read by this loader (data-parallel shards; see loader.h) */
static int owns(const ldr_opts *o, int64_t j) {
    return o->shard_pairs <= 0 || o->nshards <= 1 || (j / o->shard_pairs) % o->nshards == o->shard;
}

int64_t ldr_num_pairs(const ldr *l) { return l->n; }
ldr_cursor ldr_tell(const ldr *l) { return l->tell; }

size_t ldr_buffer_bytes(const ldr *l) {
    size_t b = (size_t)l->o.batch_pairs, own = (size_t)l->own_max;
    return 2 * (b * sizeof(ldr_pair) + own * (size_t)l->max_tokens * sizeof(int32_t) + own * l->pix_per_pair * sizeof(float)) +
           (size_t)l->max_raw * sizeof(int32_t) + (size_t)l->max_img;
}

/* ---- filling one batch (worker thread, or the caller without prefetch) ------------------------ */

static int64_t order_at(ldr *l, int64_t epoch, int64_t pos) {
    if (!l->o.shuffle) return l->split_idx[pos];
    if (l->perm_epoch != epoch) {
        rng_permutation(l->o.seed, (uint32_t)epoch, l->n, l->perm);
        l->perm_epoch = epoch;
    }
    return l->split_idx[l->perm[pos]];
}

/* "data.h5: pair 12 (rlaifv.parquet row group 0 row 12)": where a failure of pair i is */
static const char *pair_label(ldr *l, int64_t i, char *buf, size_t cap) {
    char desc[1200];
    snprintf(buf, cap, "%s: %s", ds_path(l->d), ds_describe_pair(l->d, i, desc, sizeof desc));
    return buf;
}

static int bad_pair(ldr *l, int64_t i, const char *what) {
    char label[1400];
    return err_set(ERR_DATA, "%s: %s", pair_label(l, i, label, sizeof label), what);
}

/* the current error (a failed read of pair i) with the pair in front; its code is kept (I/O stays I/O) */
static int pair_failed(ldr *l, int64_t i) {
    char desc[1200];
    return err_push("%s", ds_describe_pair(l->d, i, desc, sizeof desc));
}

/* ids in [0, vocab), no <image> (answers) */
static int check_ids(ldr *l, int64_t i, const int32_t *v, int32_t n, const char *what) {
    for (int32_t k = 0; k < n; k++) {
        if (v[k] < 0 || v[k] >= l->model.vocab || v[k] == l->model.image_token) {
            char m[256];
            snprintf(m, sizeof m, "%s token %d is %d (expected an id in [0, %d) other than <image> %d)", what, k, v[k],
                     l->model.vocab, l->model.image_token);
            return bad_pair(l, i, m);
        }
    }
    return ERR_OK;
}

static int fill_pair(ldr *l, int64_t i, ldr_pair *out, int32_t *toks, float *pix) {
    const ds_pair *p = ds_pair_at(l->d, i);
    int rc;
    /* prefix: stored with one placeholder, expanded here */
    if ((rc = ds_read_tokens(l->d, p->prefix_off, p->prefix_len, l->raw))) return pair_failed(l, i);
    if (l->raw[p->image_pos] != l->model.image_token) {
        char m[200];
        snprintf(m, sizeof m, "prefix token %d is %d, expected the <image> placeholder %d", p->image_pos,
                 l->raw[p->image_pos], l->model.image_token);
        return bad_pair(l, i, m);
    }
    l->raw[p->image_pos] = 0; /* checked above; keep the id check simple */
    rc = check_ids(l, i, l->raw, p->prefix_len, "prefix");
    l->raw[p->image_pos] = l->model.image_token;
    if (rc) return rc;
    int32_t n = 0;
    for (int32_t k = 0; k < p->prefix_len; k++) {
        if (k == p->image_pos)
            for (int32_t j = 0; j < p->n_image_tokens; j++) toks[n++] = l->model.image_token;
        else
            toks[n++] = l->raw[k];
    }
    out->prefix = toks;
    out->prefix_len = n;
    out->image_pos = p->image_pos;
    out->n_image_tokens = p->n_image_tokens;
    int32_t *c = toks + n, *r = c + p->chosen_len;
    if ((rc = ds_read_tokens(l->d, p->chosen_off, p->chosen_len, c))) return pair_failed(l, i);
    if ((rc = ds_read_tokens(l->d, p->rejected_off, p->rejected_len, r))) return pair_failed(l, i);
    if ((rc = check_ids(l, i, c, p->chosen_len, "chosen"))) return rc;
    if ((rc = check_ids(l, i, r, p->rejected_len, "rejected"))) return rc;
    out->chosen = c;
    out->chosen_len = p->chosen_len;
    out->rejected = r;
    out->rejected_len = p->rejected_len;
    /* image */
    if ((rc = ds_read_image(l->d, p->image, l->img))) return pair_failed(l, i);
    img_rgb im;
    memset(&im, 0, sizeof im);
    char label[1400]; /* the decoder's message reads "data.h5: pair 12 (...): image 4: truncated JPEG: ..." */
    if ((rc = img_decode(l->img, (size_t)ds_image_size(l->d, p->image), pair_label(l, i, label, sizeof label),
                         (long)p->image, &im)))
        return rc;
    if (im.h != p->height || im.w != p->width) {
        char m[200];
        snprintf(m, sizeof m, "the image decodes to %dx%d (height x width), the table says %dx%d", im.h, im.w,
                 p->height, p->width);
        img_free(&im);
        return bad_pair(l, i, m);
    }
    int np = 0;
    rc = img_preprocess(&im, &l->icfg, pix, l->max_patches, &np);
    img_free(&im);
    if (rc) return err_push("%s", label);
    out->pixels = pix;
    out->n_patches = np;
    out->height = p->height;
    out->width = p->width;
    out->index = i;
    return ERR_OK;
}

/* a pair of another shard: its index and lengths (what the ORPO normalisers need), no data */
static void size_pair(ldr *l, int64_t i, ldr_pair *out) {
    const ds_pair *p = ds_pair_at(l->d, i);
    memset(out, 0, sizeof *out);
    out->index = i;
    out->prefix_len = p->prefix_len - 1 + p->n_image_tokens;
    out->image_pos = p->image_pos;
    out->n_image_tokens = p->n_image_tokens;
    out->chosen_len = p->chosen_len;
    out->rejected_len = p->rejected_len;
    out->height = p->height;
    out->width = p->width;
}

static void fill(ldr *l, slot *s, ldr_cursor cur) {
    int64_t k = l->n - cur.pos;
    if (k > l->o.batch_pairs) k = l->o.batch_pairs;
    s->rc = ERR_OK;
    s->msg[0] = '\0';
    s->batch.start = cur;
    s->batch.n = 0;
    for (int64_t j = 0, own = 0; j < k; j++) {
        int64_t i = order_at(l, cur.epoch, cur.pos + j);
        if (!owns(&l->o, j)) {
            size_pair(l, i, &s->pairs[j]);
            s->batch.n++;
            continue;
        }
        int rc = fill_pair(l, i, &s->pairs[j], s->toks + own * l->max_tokens, s->pix + (size_t)own * l->pix_per_pair);
        own++;
        if (rc) {
            s->rc = rc;
            snprintf(s->msg, sizeof s->msg, "%s", err_msg());
            err_clear();
            return;
        }
        s->batch.n++;
    }
    s->batch.pairs = s->pairs;
    s->batch.next.epoch = cur.epoch;
    s->batch.next.pos = cur.pos + k;
    if (s->batch.next.pos >= l->n) {
        s->batch.next.epoch++;
        s->batch.next.pos = 0;
    }
}

static void *worker(void *arg) {
    ldr *l = arg;
    h5x_init(); /* HDF5 error printing is per thread */
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && l->slots[l->fill_i].state != SLOT_EMPTY) pthread_cond_wait(&l->cv, &l->mu);
        if (l->stop) break;
        slot *s = &l->slots[l->fill_i];
        ldr_cursor cur = l->fill_cur;
        pthread_mutex_unlock(&l->mu);
        fill(l, s, cur);
        pthread_mutex_lock(&l->mu);
        s->state = SLOT_READY;
        l->fill_i ^= 1;
        l->fill_cur = s->batch.next;
        pthread_cond_broadcast(&l->cv);
        if (s->rc) break; /* stop at the first error; ldr_next reports it */
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void stop_worker(ldr *l) {
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->th, NULL);
    l->running = 0;
}

static int start(ldr *l, ldr_cursor c) {
    l->slots[0].state = l->slots[1].state = SLOT_EMPTY;
    l->fill_i = l->take_i = 0;
    l->held = -1;
    l->fill_cur = c;
    l->tell = c;
    l->stop = 0;
    if (!l->o.prefetch) return ERR_OK;
    if (pthread_create(&l->th, NULL, worker, l)) return err_set(ERR_INTERNAL, "loader: cannot start the prefetch thread");
    l->running = 1;
    return ERR_OK;
}

int ldr_next(ldr *l, const ldr_batch **batch) {
    *batch = NULL;
    slot *s;
    if (!l->o.prefetch) {
        s = &l->slots[0];
        if (s->state == SLOT_READY && s->rc) return err_set(s->rc, "%s", s->msg);
        fill(l, s, l->fill_cur);
        s->state = SLOT_READY;
        if (s->rc) return err_set(s->rc, "%s", s->msg);
        l->fill_cur = s->batch.next;
    } else {
        pthread_mutex_lock(&l->mu);
        if (l->held >= 0 && !l->slots[l->held].rc) { /* give the previous batch back */
            l->slots[l->held].state = SLOT_EMPTY;
            l->held = -1;
            pthread_cond_broadcast(&l->cv);
        }
        s = &l->slots[l->take_i];
        while (s->state != SLOT_READY) pthread_cond_wait(&l->cv, &l->mu);
        int rc = s->rc;
        if (!rc) {
            l->held = l->take_i;
            l->take_i ^= 1;
        } else {
            l->held = l->take_i; /* keep the failed slot: the error repeats */
        }
        pthread_mutex_unlock(&l->mu);
        if (rc) return err_set(rc, "%s", s->msg);
    }
    l->tell = s->batch.next;
    *batch = &s->batch;
    return ERR_OK;
}

int ldr_seek(ldr *l, ldr_cursor c) {
    if (c.epoch < 0 || c.epoch > UINT32_MAX || c.pos < 0 || c.pos >= l->n)
        return err_set(ERR_ARGS, "%s: loader cursor (epoch %lld, pos %lld) outside the split (%lld pairs)",
                       ds_path(l->d), (long long)c.epoch, (long long)c.pos, (long long)l->n);
    stop_worker(l);
    return start(l, c);
}

/* ---- open / close -------------------------------------------------------------------------- */

void ldr_close(ldr *l) {
    if (!l) return;
    stop_worker(l);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    for (int k = 0; k < 2; k++) {
        free(l->slots[k].pairs);
        free(l->slots[k].toks);
        free(l->slots[k].pix);
    }
    free(l->split_idx);
    free(l->perm);
    free(l->raw);
    free(l->img);
    ds_close(l->d);
    free(l);
}

int ldr_open(const char *data_h5, const ds_model_ref *model, const ldr_opts *o, ldr **out) {
    *out = NULL;
    if (o->batch_pairs < 1) return err_set(ERR_ARGS, "loader: batch_pairs %d, expected >= 1", o->batch_pairs);
    if (o->split != DS_TRAIN && o->split != DS_VAL) return err_set(ERR_ARGS, "loader: split %d, expected train or val", o->split);
    if (o->shard_pairs > 0 && (o->nshards < 1 || o->shard < 0 || o->shard >= o->nshards))
        return err_set(ERR_ARGS, "loader: shard %d of %d", o->shard, o->nshards);
    ldr *l = mem_calloc(1, sizeof *l, "the data loader");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->o = *o;
    l->model = *model;
    l->perm_epoch = -1;
    l->held = -1;
    img_config_llava16(&l->icfg);
    l->icfg.grid = model->anyres;
    int rc = ds_open(data_h5, &l->d);
    if (!rc) rc = ds_check_model(ds_meta_of(l->d), model, data_h5);
    if (rc) {
        ldr_close(l);
        return rc;
    }
    int64_t np = ds_num_pairs(l->d);
    l->split_idx = mem_calloc((size_t)(np ? np : 1), sizeof(int64_t), "the loader's pair order");
    l->perm = mem_calloc((size_t)(np ? np : 1), sizeof(int64_t), "the loader's pair order");
    for (int64_t i = 0; i < np; i++) {
        const ds_pair *p = ds_pair_at(l->d, i);
        if (p->split != o->split) continue;
        l->split_idx[l->n++] = i;
        int64_t t = (int64_t)p->prefix_len - 1 + p->n_image_tokens + p->chosen_len + p->rejected_len;
        if (t > l->max_tokens) l->max_tokens = t;
        if (p->prefix_len > l->max_raw) l->max_raw = p->prefix_len;
        int npatch = anyres_num_patches(&model->anyres, p->height, p->width);
        if (npatch > l->max_patches) l->max_patches = npatch;
        int64_t isz = ds_image_size(l->d, p->image);
        if (isz > l->max_img) l->max_img = isz;
    }
    if (l->n == 0) {
        rc = err_set(ERR_DATA, "%s: the %s split is empty", data_h5, o->split == DS_VAL ? "val" : "train");
        ldr_close(l);
        return rc;
    }
    size_t tile = (size_t)model->anyres.tile, b = (size_t)o->batch_pairs;
    l->pix_per_pair = (size_t)l->max_patches * 3 * tile * tile;
    for (int64_t j = 0; j < o->batch_pairs; j++) l->own_max += owns(o, j);
    size_t own = (size_t)(l->own_max ? l->own_max : 1);
    l->raw = mem_calloc((size_t)(l->max_raw ? l->max_raw : 1), sizeof(int32_t), "the loader's token buffer");
    l->img = mem_alloc((size_t)l->max_img, "the loader's image buffer");
    for (int k = 0; k < 2; k++) {
        l->slots[k].pairs = mem_calloc(b, sizeof(ldr_pair), "the loader's batch");
        l->slots[k].toks = mem_calloc(own * (size_t)l->max_tokens, sizeof(int32_t), "the loader's batch tokens");
        l->slots[k].pix = mem_calloc(own * l->pix_per_pair, sizeof(float), "the loader's batch pixels");
    }
    ldr_cursor c0 = {0, 0};
    if ((rc = start(l, c0))) {
        ldr_close(l);
        return rc;
    }
    *out = l;
    return ERR_OK;
}
