/* st — safetensors reader (see safetensors.h). */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/err.h"
#include "io/fsutil.h"
#include "io/h5x.h"
#include "io/mem.h"

#define ST_MAX_HEADER 100000000ull
#define ST_MAX_INT 9007199254740992.0 /* 2^53: from here on JSON numbers are not exact doubles */

struct st_file {
    char *path;
    unsigned char *map;
    size_t size;
    uint64_t hlen, data_len;
    const unsigned char *data;
    st_tensor *t;
    int n;
    char **mkey, **mval;
    int nmeta;
};

static const struct {
    const char *name;
    size_t size;
} g_dt[ST_NDTYPES] = {
    [ST_INVALID] = {"INVALID", 0}, [ST_BOOL] = {"BOOL", 1},         [ST_U8] = {"U8", 1},
    [ST_I8] = {"I8", 1},           [ST_F8_E4M3] = {"F8_E4M3", 1},   [ST_F8_E5M2] = {"F8_E5M2", 1},
    [ST_F8_E8M0] = {"F8_E8M0", 1}, [ST_I16] = {"I16", 2},           [ST_U16] = {"U16", 2},
    [ST_F16] = {"F16", 2},         [ST_BF16] = {"BF16", 2},         [ST_I32] = {"I32", 4},
    [ST_U32] = {"U32", 4},         [ST_F32] = {"F32", 4},           [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},         [ST_F64] = {"F64", 8},
};

const char *st_dtype_name(st_dtype dt) { return (int)dt > 0 && dt < ST_NDTYPES ? g_dt[dt].name : "INVALID"; }
size_t st_dtype_size(st_dtype dt) { return (int)dt > 0 && dt < ST_NDTYPES ? g_dt[dt].size : 0; }

st_dtype st_dtype_parse(const char *name) {
    for (int i = 1; i < ST_NDTYPES; i++)
        if (!strcmp(name, g_dt[i].name)) return (st_dtype)i;
    return ST_INVALID;
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->map && f->size) munmap(f->map, f->size);
    for (int i = 0; i < f->n; i++) free((char *)f->t[i].name);
    for (int i = 0; i < f->nmeta; i++) {
        free(f->mkey[i]);
        free(f->mval[i]);
    }
    free(f->t);
    free(f->mkey);
    free(f->mval);
    free(f->path);
    free(f);
}

/* a JSON number that is a non-negative integer below 2^53 */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0) || d >= ST_MAX_INT || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static void json_show(const cJSON *v, char *buf, size_t cap) {
    char *s = cJSON_PrintUnformatted(v);
    snprintf(buf, cap, "%s", s ? s : "?");
    if (strlen(buf) + 1 == cap && cap > 4) memcpy(buf + cap - 4, "...", 4);
    free(s);
}

static int parse_tensor(st_file *f, const cJSON *it, st_tensor *t) {
    const char *path = f->path, *name = it->string;
    char shown[128];
    if (!cJSON_IsObject(it)) {
        json_show(it, shown, sizeof shown);
        return err_set(ERR_DATA, "%s: tensor '%s': expected an object {dtype, shape, data_offsets}, got %s", path,
                       name, shown);
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(dt)) return err_set(ERR_DATA, "%s: tensor '%s': \"dtype\" missing or not a string", path, name);
    t->dtype = st_dtype_parse(dt->valuestring);
    if (t->dtype == ST_INVALID)
        return err_set(ERR_DATA, "%s: tensor '%s': unknown or unsupported dtype '%s'", path, name, dt->valuestring);
    if (!cJSON_IsArray(sh)) return err_set(ERR_DATA, "%s: tensor '%s': \"shape\" missing or not a list", path, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS)
        return err_set(ERR_DATA, "%s: tensor '%s': %d dimensions, at most %d supported", path, name, nd, ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int k = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh) {
        uint64_t v;
        if (!json_uint(d, &v)) {
            json_show(d, shown, sizeof shown);
            return err_set(ERR_DATA, "%s: tensor '%s': shape[%d] is %s, expected a non-negative integer", path, name,
                           k, shown);
        }
        if (v && numel > UINT64_MAX / v)
            return err_set(ERR_DATA, "%s: tensor '%s': the shape's element count overflows", path, name);
        numel *= v;
        t->shape[k++] = (int64_t)v;
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return err_set(ERR_DATA, "%s: tensor '%s': \"data_offsets\" missing or not a list [begin, end]", path, name);
    uint64_t b, e;
    if (!json_uint(cJSON_GetArrayItem(off, 0), &b) || !json_uint(cJSON_GetArrayItem(off, 1), &e)) {
        json_show(off, shown, sizeof shown);
        return err_set(ERR_DATA, "%s: tensor '%s': data_offsets %s, expected two non-negative integers", path, name,
                       shown);
    }
    if (b > e)
        return err_set(ERR_DATA, "%s: tensor '%s': data_offsets [%llu, %llu] ends before it begins", path, name,
                       (unsigned long long)b, (unsigned long long)e);
    size_t es = st_dtype_size(t->dtype);
    if (numel > UINT64_MAX / es)
        return err_set(ERR_DATA, "%s: tensor '%s': the byte size overflows", path, name);
    if (e - b != numel * es)
        return err_set(ERR_DATA,
                       "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but %s shape of %llu elements "
                       "needs %llu",
                       path, name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)(e - b),
                       st_dtype_name(t->dtype), (unsigned long long)numel, (unsigned long long)(numel * es));
    if (e > f->data_len)
        return err_set(ERR_DATA,
                       "%s: tensor '%s': data_offsets [%llu, %llu] go beyond the data section of %llu bytes "
                       "(file truncated?)",
                       path, name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)f->data_len);
    t->numel = (int64_t)numel;
    t->begin = b;
    t->end = e;
    t->nbytes = (size_t)(e - b);
    t->data = f->data + b;
    return ERR_OK;
}

static int parse_meta(st_file *f, const cJSON *m) {
    if (!cJSON_IsObject(m)) return err_set(ERR_DATA, "%s: __metadata__ is not an object of strings", f->path);
    int n = cJSON_GetArraySize(m);
    f->mkey = mem_calloc((size_t)n + 1, sizeof *f->mkey, "safetensors metadata");
    f->mval = mem_calloc((size_t)n + 1, sizeof *f->mval, "safetensors metadata");
    const cJSON *v;
    cJSON_ArrayForEach(v, m) {
        if (!cJSON_IsString(v)) {
            char shown[128];
            json_show(v, shown, sizeof shown);
            return err_set(ERR_DATA, "%s: __metadata__ '%s' is %s, expected a string", f->path, v->string, shown);
        }
        f->mkey[f->nmeta] = mem_strdup(v->string, "safetensors metadata");
        f->mval[f->nmeta] = mem_strdup(v->valuestring, "safetensors metadata");
        f->nmeta++;
    }
    return ERR_OK;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_off(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* tensors sorted by offset must tile [0, data_len) exactly */
static int check_coverage(st_file *f) {
    if (f->n == 0) {
        if (f->data_len)
            return err_set(ERR_DATA, "%s: no tensors, but %llu bytes of data follow the header", f->path,
                           (unsigned long long)f->data_len);
        return ERR_OK;
    }
    st_tensor **by = mem_alloc((size_t)f->n * sizeof *by, "the safetensors tensors sorted by offset");
    for (int i = 0; i < f->n; i++) by[i] = &f->t[i];
    qsort(by, (size_t)f->n, sizeof *by, cmp_off);
    uint64_t at = 0;
    int rc = ERR_OK;
    for (int i = 0; i < f->n && !rc; i++) {
        const st_tensor *t = by[i];
        if (t->begin < at)
            rc = err_set(ERR_DATA, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                         f->path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end, by[i - 1]->name,
                         (unsigned long long)by[i - 1]->begin, (unsigned long long)by[i - 1]->end);
        else if (t->begin > at)
            rc = err_set(ERR_DATA, "%s: tensor '%s': data_offsets [%llu, %llu] leave a hole: bytes [%llu, %llu) of "
                         "the data section belong to no tensor",
                         f->path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                         (unsigned long long)at, (unsigned long long)t->begin);
        at = t->end;
    }
    if (!rc && at != f->data_len)
        rc = err_set(ERR_DATA, "%s: the tensors cover %llu bytes, but the data section after the header has %llu "
                     "(trailing bytes at file offset %llu)",
                     f->path, (unsigned long long)at, (unsigned long long)f->data_len,
                     (unsigned long long)(8 + f->hlen + at));
    free(by);
    return rc;
}

static int parse_header(st_file *f) {
    const char *hdr = (const char *)f->map + 8;
    size_t n = (size_t)f->hlen;
    size_t i = 0;
    while (i < n && (hdr[i] == ' ' || hdr[i] == '\t' || hdr[i] == '\n' || hdr[i] == '\r')) i++;
    if (i >= n || hdr[i] != '{')
        return err_set(ERR_DATA, "%s: header at byte 8: expected a JSON object starting with '{'", f->path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, n, &end, 0);
    if (!root) {
        size_t pos = end && end >= hdr && end <= hdr + n ? (size_t)(end - hdr) : 0;
        return err_set(ERR_DATA, "%s: header JSON is invalid near header byte %zu (file byte %zu)", f->path, pos, pos + 8);
    }
    size_t pos = (size_t)(end - hdr);
    for (; pos < n; pos++) {
        if (hdr[pos] != ' ' && hdr[pos] != '\t' && hdr[pos] != '\n' && hdr[pos] != '\r' && hdr[pos] != '\0') {
            cJSON_Delete(root);
            return err_set(ERR_DATA, "%s: header has unexpected bytes after the JSON object at header byte %zu", f->path,
                           pos);
        }
    }
    int rc = ERR_OK;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_set(ERR_DATA, "%s: header is not a JSON object", f->path);
    }
    int total = cJSON_GetArraySize(root);
    f->t = mem_calloc((size_t)total + 1, sizeof *f->t, "the safetensors tensor list");
    const cJSON *it;
    int seen_meta = 0;
    cJSON_ArrayForEach(it, root) {
        if (!it->string) continue;
        if (!strcmp(it->string, "__metadata__")) {
            if (seen_meta++) {
                rc = err_set(ERR_DATA, "%s: __metadata__ appears twice", f->path);
                break;
            }
            if ((rc = parse_meta(f, it))) break;
            continue;
        }
        st_tensor *t = &f->t[f->n];
        t->name = mem_strdup(it->string, "a safetensors tensor name");
        f->n++;
        if ((rc = parse_tensor(f, it, t))) break;
    }
    cJSON_Delete(root);
    if (rc) return rc;
    qsort(f->t, (size_t)f->n, sizeof *f->t, cmp_name);
    for (int k = 1; k < f->n; k++)
        if (!strcmp(f->t[k].name, f->t[k - 1].name))
            return err_set(ERR_DATA, "%s: tensor '%s' appears twice in the header", f->path, f->t[k].name);
    return check_coverage(f);
}

int st_open(const char *path, st_file **out) {
    *out = NULL;
    st_file *f = mem_calloc(1, sizeof *f, "a safetensors file handle");
    f->path = mem_strdup(path, "a safetensors file handle");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        st_close(f);
        return err_set(ERR_IO, "%s: cannot open: %s", path, fs_errno_msg(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        st_close(f);
        return err_set(ERR_IO, "%s: not a regular file", path);
    }
    f->size = (size_t)st.st_size;
    if (f->size < 8) {
        close(fd);
        st_close(f);
        return err_set(ERR_DATA, "%s: %zu bytes; a safetensors file starts with an 8-byte header length", path,
                       (size_t)st.st_size);
    }
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) {
        f->size = 0;
        st_close(f);
        return err_set(ERR_IO, "%s: mmap failed: %s", path, fs_errno_msg(e));
    }
    f->map = m;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->map[i];
    int rc = ERR_OK;
    if (n > f->size - 8)
        rc = err_set(ERR_DATA, "%s: header length %llu (bytes 0..7) exceeds the %zu bytes that follow it", path,
                     (unsigned long long)n, f->size - 8);
    else if (n > ST_MAX_HEADER)
        rc = err_set(ERR_DATA, "%s: header length %llu (bytes 0..7) is above the 100 MB limit", path,
                     (unsigned long long)n);
    else if (n < 2)
        rc = err_set(ERR_DATA, "%s: header length %llu (bytes 0..7) is too short for a JSON object", path,
                     (unsigned long long)n);
    if (!rc) {
        f->hlen = n;
        f->data = f->map + 8 + n;
        f->data_len = f->size - 8 - n;
        rc = parse_header(f);
    }
    if (rc) {
        st_close(f);
        return rc;
    }
    *out = f;
    return ERR_OK;
}

int st_count(const st_file *f) { return f->n; }
const st_tensor *st_at(const st_file *f, int i) { return i >= 0 && i < f->n ? &f->t[i] : NULL; }
const char *st_path(const st_file *f) { return f->path; }
int st_meta_count(const st_file *f) { return f->nmeta; }

void st_meta_at(const st_file *f, int i, const char **key, const char **val) {
    *key = i >= 0 && i < f->nmeta ? f->mkey[i] : NULL;
    *val = i >= 0 && i < f->nmeta ? f->mval[i] : NULL;
}

const char *st_meta_get(const st_file *f, const char *key) {
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->mkey[i], key)) return f->mval[i];
    return NULL;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->t[mid].name, name);
        if (!c) return &f->t[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

int st_to_f32(const st_file *f, const st_tensor *t, float *out) {
    const unsigned char *p = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case ST_F32: memcpy(out, p, n * 4); return ERR_OK;
    case ST_BF16:
    case ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            out[i] = t->dtype == ST_BF16 ? h5x_bf16_to_f32(h) : h5x_f16_to_f32(h);
        }
        return ERR_OK;
    default:
        return err_set(ERR_DATA, "%s: tensor '%s' has dtype %s; expected F32, F16 or BF16", f->path, t->name,
                       st_dtype_name(t->dtype));
    }
}

/* ---- model.safetensors.index.json ----------------------------------------------------- */

struct st_index {
    char **name, **shard;
    int n;
    char **shards;
    int nshards;
};

void st_index_close(st_index *ix) {
    if (!ix) return;
    for (int i = 0; i < ix->n; i++) {
        free(ix->name[i]);
        free(ix->shard[i]);
    }
    for (int i = 0; i < ix->nshards; i++) free(ix->shards[i]);
    free(ix->name);
    free(ix->shard);
    free(ix->shards);
    free(ix);
}

typedef struct pair {
    char *name, *shard;
} pair;

static int cmp_pair(const void *a, const void *b) { return strcmp(((const pair *)a)->name, ((const pair *)b)->name); }
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int st_index_open(const char *path, st_index **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = fs_read_all(path, &text, &len);
    if (rc) return rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t pos = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        free(text);
        return err_set(ERR_DATA, "%s: invalid JSON near byte %zu", path, pos);
    }
    free(text);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(root);
        return err_set(ERR_DATA, "%s: \"weight_map\" missing or not an object of tensor name -> shard file", path);
    }
    int n = cJSON_GetArraySize(wm);
    st_index *ix = mem_calloc(1, sizeof *ix, "the safetensors index");
    pair *pr = mem_calloc((size_t)n + 1, sizeof *pr, "the safetensors weight map");
    int k = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, wm) {
        if (!cJSON_IsString(v) || !v->valuestring[0]) {
            rc = err_set(ERR_DATA, "%s: weight_map '%s': expected a shard file name (string)", path, v->string);
            break;
        }
        const char *s = v->valuestring;
        if (strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..")) {
            rc = err_set(ERR_DATA, "%s: weight_map '%s': shard '%s' must be a plain file name in the same directory",
                         path, v->string, s);
            break;
        }
        pr[k].name = mem_strdup(v->string, "the safetensors weight map");
        pr[k].shard = mem_strdup(s, "the safetensors weight map");
        k++;
    }
    cJSON_Delete(root);
    if (!rc && k == 0) rc = err_set(ERR_DATA, "%s: weight_map is empty", path);
    if (!rc) {
        qsort(pr, (size_t)k, sizeof *pr, cmp_pair);
        for (int i = 1; i < k && !rc; i++)
            if (!strcmp(pr[i].name, pr[i - 1].name))
                rc = err_set(ERR_DATA, "%s: weight_map names tensor '%s' twice", path, pr[i].name);
    }
    ix->name = mem_calloc((size_t)k + 1, sizeof *ix->name, "the safetensors index");
    ix->shard = mem_calloc((size_t)k + 1, sizeof *ix->shard, "the safetensors index");
    ix->shards = mem_calloc((size_t)k + 1, sizeof *ix->shards, "the safetensors index");
    for (int i = 0; i < k; i++) {
        if (!rc) {
            ix->name[i] = pr[i].name;
            ix->shard[i] = pr[i].shard;
            ix->n++;
        } else {
            free(pr[i].name);
            free(pr[i].shard);
        }
    }
    free(pr);
    if (!rc) {
        /* distinct shard names, sorted */
        for (int i = 0; i < ix->n; i++) ix->shards[i] = ix->shard[i];
        qsort(ix->shards, (size_t)ix->n, sizeof *ix->shards, cmp_str);
        int m = 0;
        for (int i = 0; i < ix->n; i++)
            if (m == 0 || strcmp(ix->shards[m - 1], ix->shards[i])) ix->shards[m++] = ix->shards[i];
        for (int i = 0; i < m; i++) ix->shards[i] = mem_strdup(ix->shards[i], "the safetensors index");
        ix->nshards = m;
    }
    if (rc) {
        st_index_close(ix);
        return rc;
    }
    *out = ix;
    return ERR_OK;
}

int st_index_count(const st_index *ix) { return ix->n; }

void st_index_at(const st_index *ix, int i, const char **name, const char **shard) {
    *name = i >= 0 && i < ix->n ? ix->name[i] : NULL;
    *shard = i >= 0 && i < ix->n ? ix->shard[i] : NULL;
}

const char *st_index_shard(const st_index *ix, const char *name) {
    int lo = 0, hi = ix->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(ix->name[mid], name);
        if (!c) return ix->shard[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

int st_index_nshards(const st_index *ix) { return ix->nshards; }
const char *st_index_shard_at(const st_index *ix, int i) { return i >= 0 && i < ix->nshards ? ix->shards[i] : NULL; }
