#include "io/st_write.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "io/err.h"
#include "io/mem.h"
#include "io/safetensors.h"

typedef struct stw_tensor {
    char *name;
    char dtype[8];
    int ndim;
    int64_t shape[8];
    void *data;
    size_t nbytes;
} stw_tensor;

struct stw {
    stw_tensor *t;
    int n, cap;
    cJSON *meta;
};

stw *stw_new(void) { return mem_calloc(1, sizeof(stw), "the safetensors writer"); }

int stw_add(stw *w, const char *name, const char *dtype, int ndim, const int64_t *shape, const void *data) {
    st_dtype dt = st_dtype_parse(dtype);
    if (dt == ST_INVALID || ndim < 0 || ndim > 8)
        return err_set(ERR_INTERNAL, "stw_add %s: bad dtype %s or ndim %d", name, dtype, ndim);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 32;
        w->t = mem_realloc(w->t, sizeof *w->t * (size_t)w->cap, "the safetensors writer's tensor list");
    }
    stw_tensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = mem_strdup(name, "a tensor name");
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    t->nbytes = numel * st_dtype_size(dt);
    t->data = mem_alloc(t->nbytes, "a tensor copy for the safetensors writer");
    if (t->nbytes) memcpy(t->data, data, t->nbytes);
    return ERR_OK;
}

int stw_meta(stw *w, const char *key, const char *value) {
    if (!w->meta) w->meta = cJSON_CreateObject();
    cJSON_AddStringToObject(w->meta, key, value);
    return ERR_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const stw_tensor *)a)->name, ((const stw_tensor *)b)->name);
}

int stw_write(stw *w, const char *path) {
    qsort(w->t, (size_t)w->n, sizeof *w->t, by_name);
    cJSON *h = cJSON_CreateObject();
    if (w->meta) cJSON_AddItemReferenceToObject(h, "__metadata__", w->meta);
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        stw_tensor *t = &w->t[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "dtype", t->dtype);
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + t->nbytes)));
        cJSON_AddItemToObject(h, t->name, e);
        off += t->nbytes;
    }
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t hl = strlen(json), pad = (8 - hl % 8) % 8;
    atomic_file af;
    int rc = atomic_begin(&af, path);
    if (rc) {
        free(json);
        return rc;
    }
    FILE *f = fopen(af.tmp, "wb");
    if (!f) {
        free(json);
        atomic_abort(&af);
        return err_set(ERR_IO, "%s: cannot create", af.tmp);
    }
    uint64_t n = (uint64_t)(hl + pad);
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(n >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(json, 1, hl, f) == hl;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < w->n; i++)
        ok = w->t[i].nbytes == 0 || fwrite(w->t[i].data, 1, w->t[i].nbytes, f) == w->t[i].nbytes;
    ok = (fclose(f) == 0) && ok;
    free(json);
    if (!ok) {
        atomic_abort(&af);
        return err_set(ERR_IO, "%s: write failed (disk full?)", path);
    }
    return atomic_commit(&af);
}

void stw_free(stw *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    cJSON_Delete(w->meta);
    free(w);
}
