/* job_load — YAML job file (libyaml document API) + --set overrides -> validated job_config.
 *
 * Every problem becomes one diagnostic (FILE:LINE:COL: key.path: message); the walk never stops at
 * the first one, except after a YAML syntax error (libyaml cannot go on from there).
 * Order of a key's value: table default, then the job file, then each --set (last wins). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "io/mem.h"
#include "job/job.h"
#include "job/job_internal.h"

typedef struct where {
    const char *file; /* job file path, or "--set k=v" */
    int line, col;    /* 1-based; 0 for --set */
} where;

typedef struct sval {
    const char *s; /* NUL-terminated text */
    size_t len;    /* bytes (may differ from strlen when the YAML held a \0 escape) */
    int quoted;    /* quoted in the YAML: a string, never a number/bool */
    where at;
} sval;

typedef struct loader {
    const char *file;
    job_report *rep;
    job_config *cfg;
    char *cwd;
    yaml_document_t *doc;
    yaml_node_t *node[JOB_NKEYS]; /* value node of each key found in the file */
    where sec_at[16];             /* position of each section key in the file */
    int sec_seen[16];
    int sec_bad[16];              /* the section was not a mapping: its keys are not "missing" */
    int root_bad;                 /* empty file or not a mapping: one error says it all */
    int bad[JOB_NKEYS];           /* a given value was rejected (cross-checks skip the key) */
} loader;

static char *dupn(const char *s, size_t n) {
    char *p = mem_alloc(n + 1, "job text");
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static void *field(job_config *c, const job_key *k) { return (char *)c + k->off; }

static void err_at(loader *L, where at, const char *key, const char *fmt, ...) ERR_PRINTF(4, 5);
static void err_at(loader *L, where at, const char *key, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    job_report_add(L->rep, JOB_ERROR, at.file, at.line, at.col, key, "%s", msg);
}

static where node_at(loader *L, const yaml_node_t *n) {
    where w = {L->file, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
    return w;
}

static const char *node_kind(const yaml_node_t *n) {
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

static int is_null_text(const char *s, int quoted) {
    if (quoted) return 0;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static void free_list(job_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void free_map(job_lr_groups *m) {
    for (int i = 0; i < m->n; i++) free(m->name[i]);
    free(m->name);
    free(m->lr);
    memset(m, 0, sizeof *m);
}

/* ---- "did you mean" ------------------------------------------------------------------------ */

/* Best key path (or section name when sec is NULL and nothing else fits) for an unknown name. */
static const char *suggest(const char *sec, const char *leaf) {
    int n, ns;
    const job_key *K = job_keys(&n);
    const job_section *S = job_sections(&ns);
    const char *a = job_alias(leaf);
    if (a) return a;
    char full[256];
    if (sec) snprintf(full, sizeof full, "%s.%s", sec, leaf);
    else snprintf(full, sizeof full, "%s", leaf);
    const char *best = NULL;
    int bd = 1000;
    if (!sec) { /* a section name first */
        for (int i = 0; i < ns; i++) {
            int d = job_edit_distance(leaf, S[i].name);
            if (job_close(leaf, S[i].name) && d < bd) bd = d, best = S[i].name;
        }
        if (best) return best;
    }
    for (int i = 0; i < n; i++) { /* a key of the same section, or a whole dotted path */
        int d = job_edit_distance(full, K[i].path);
        if (job_close(full, K[i].path) && d < bd) bd = d, best = K[i].path;
    }
    if (best) return best;
    for (int i = 0; i < n; i++) /* the same name in another section */
        if (!strcmp(job_key_leaf(&K[i]), leaf)) return K[i].path;
    for (int i = 0; i < n; i++) {
        int d = job_edit_distance(leaf, job_key_leaf(&K[i]));
        if (job_close(leaf, job_key_leaf(&K[i])) && d < bd) bd = d, best = K[i].path;
    }
    return best;
}

static const char *suggest_value(const char *const *values, const char *s) {
    const char *best = NULL;
    int bd = 1000;
    for (int i = 0; values && values[i]; i++) {
        int d = job_edit_distance(s, values[i]);
        if (job_close(s, values[i]) && d < bd) bd = d, best = values[i];
    }
    return best;
}

static void list_values(const char *const *values, char *buf, size_t n) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; values && values[i] && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", values[i]);
}

/* ---- scalars ------------------------------------------------------------------------------- */

static int parse_int(const char *s, int64_t *out, int *overflow) {
    const char *p = s;
    *overflow = 0;
    if (*p == '+' || *p == '-') p++;
    if (!*p) return 0;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return 0;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE) {
        *overflow = 1;
        return 0;
    }
    *out = v;
    return 1;
}

/* [+-]? (digits [. digits*] | . digits) ([eE] [+-]? digits)?   — no inf/nan/hex */
static int parse_float(const char *s, double *out, int *overflow) {
    const char *p = s;
    int digits = 0;
    *overflow = 0;
    if (*p == '+' || *p == '-') p++;
    while (*p >= '0' && *p <= '9') p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') p++, digits++;
    }
    if (!digits) return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p) return 0;
    errno = 0;
    double v = strtod(s, NULL);
    if (errno == ERANGE && (v > 1 || v < -1)) {
        *overflow = 1;
        return 0;
    }
    *out = v;
    return 1;
}

static int in_range(const job_key *k, double v) {
    if (k->flags & JOB_K_HAS_MIN) {
        if (k->flags & JOB_K_MIN_EXCL ? !(v > k->min) : !(v >= k->min)) return 0;
    }
    if (k->flags & JOB_K_HAS_MAX) {
        if (k->flags & JOB_K_MAX_EXCL ? !(v < k->max) : !(v <= k->max)) return 0;
    }
    return 1;
}

/* A number (integer or float key, or a map value) from text; reports and returns -1 when bad. */
static int conv_number(loader *L, const job_key *k, int is_int, const sval *v, const char *key, double *dv,
                       int64_t *iv) {
    const char *what = is_int ? "an integer" : "a number";
    if (v->quoted) {
        err_at(L, v->at, key, "expected %s, got the string \"%s\" (remove the quotes)", what, v->s);
        return -1;
    }
    if (is_null_text(v->s, 0)) {
        err_at(L, v->at, key, "has no value; expected %s", what);
        return -1;
    }
    int of = 0;
    if (is_int) {
        int64_t x;
        if (!parse_int(v->s, &x, &of)) {
            double d;
            int of2;
            if (of) err_at(L, v->at, key, "integer %s is too large", v->s);
            else if (parse_float(v->s, &d, &of2)) err_at(L, v->at, key, "expected an integer, got %s", v->s);
            else err_at(L, v->at, key, "expected an integer, got '%s'", v->s);
            return -1;
        }
        *iv = x;
        *dv = (double)x;
    } else if (!parse_float(v->s, dv, &of)) {
        if (of) err_at(L, v->at, key, "number %s is too large", v->s);
        else err_at(L, v->at, key, "expected a number, got '%s'", v->s);
        return -1;
    }
    if (!in_range(k, *dv)) {
        char r[128];
        job_range_text(k, r, sizeof r);
        int interval = (k->flags & JOB_K_HAS_MIN) && (k->flags & JOB_K_HAS_MAX); /* "in [a, b]", else ">= a" */
        err_at(L, v->at, key, "must be %s%s, got %s", interval ? "in " : "", r, v->s);
        return -1;
    }
    return 0;
}

/* A scalar key (everything but lists and maps) from one value; stores it only when valid. */
static int conv_scalar(loader *L, int ki, const sval *v, int from_set) {
    const job_key *k = &job_keys(NULL)[ki];
    void *dst = field(L->cfg, k);
    if (strlen(v->s) != v->len) {
        err_at(L, v->at, k->path, "contains a NUL character");
        return -1;
    }
    switch (k->type) {
    case JOB_T_STR:
    case JOB_T_PATH: {
        if (is_null_text(v->s, v->quoted)) {
            err_at(L, v->at, k->path, "has no value; expected %s", k->type == JOB_T_PATH ? "a path" : "a string");
            return -1;
        }
        if (!v->s[0]) {
            err_at(L, v->at, k->path, "must not be empty");
            return -1;
        }
        if (ki == job_find_key("job.name") && !job_name_ok(v->s)) {
            err_at(L, v->at, k->path,
                   "'%s' is not a valid name: use 1 to 64 letters, digits, '.', '_' or '-', "
                   "starting with a letter or digit",
                   v->s);
            return -1;
        }
        char *s;
        if (k->type == JOB_T_PATH) s = job_path_join(from_set ? L->cwd : L->cfg->dir, v->s);
        else s = dupn(v->s, v->len);
        free(*(char **)dst);
        *(char **)dst = s;
        return 0;
    }
    case JOB_T_INT: {
        double d;
        int64_t x;
        if (conv_number(L, k, 1, v, k->path, &d, &x)) return -1;
        *(int64_t *)dst = x;
        return 0;
    }
    case JOB_T_FLOAT: {
        double d;
        int64_t x;
        if (conv_number(L, k, 0, v, k->path, &d, &x)) return -1;
        *(double *)dst = d;
        return 0;
    }
    case JOB_T_BOOL: {
        static const char *const t[] = {"true", "True", "TRUE", NULL}, *const f[] = {"false", "False", "FALSE", NULL};
        static const char *const yaml11[] = {"yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON",
                                             "off", "Off", "OFF", "y", "Y", "n", "N", NULL};
        if (!v->quoted) {
            for (int i = 0; t[i]; i++)
                if (!strcmp(v->s, t[i])) return *(int *)dst = 1, 0;
            for (int i = 0; f[i]; i++)
                if (!strcmp(v->s, f[i])) return *(int *)dst = 0, 0;
            for (int i = 0; yaml11[i]; i++)
                if (!strcmp(v->s, yaml11[i])) {
                    err_at(L, v->at, k->path, "expected true or false, got '%s' (YAML 1.1 spellings are not accepted)",
                           v->s);
                    return -1;
                }
        }
        if (is_null_text(v->s, v->quoted)) err_at(L, v->at, k->path, "has no value; expected true or false");
        else err_at(L, v->at, k->path, "expected true or false, got %s'%s'", v->quoted ? "the string " : "", v->s);
        return -1;
    }
    case JOB_T_ENUM: {
        for (int i = 0; k->values[i]; i++)
            if (!strcmp(v->s, k->values[i])) return *(int *)dst = i, 0;
        char all[256];
        list_values(k->values, all, sizeof all);
        const char *sug = suggest_value(k->values, v->s);
        if (is_null_text(v->s, v->quoted)) err_at(L, v->at, k->path, "has no value; expected one of %s", all);
        else if (sug) err_at(L, v->at, k->path, "'%s' is not one of %s; did you mean '%s'?", v->s, all, sug);
        else err_at(L, v->at, k->path, "'%s' is not one of %s", v->s, all);
        return -1;
    }
    default:
        err_at(L, v->at, k->path, "internal: not a scalar key");
        return -1;
    }
}

/* ---- lists and maps -------------------------------------------------------------------------- */

static int list_item_ok(const job_key *k, const char *s) {
    for (int i = 0; k->values[i]; i++)
        if (!strcmp(s, k->values[i])) return 1;
    if (k->prefix && !strncmp(s, k->prefix, strlen(k->prefix))) {
        const char *rest = s + strlen(k->prefix);
        for (int i = 0; k->prefix_values[i]; i++)
            if (!strcmp(rest, k->prefix_values[i])) return 1;
    }
    return 0;
}

static void list_item_error(loader *L, const job_key *k, const sval *v) {
    char all[512];
    list_values(k->values, all, sizeof all);
    if (k->prefix) {
        size_t o = strlen(all);
        o += (size_t)snprintf(all + o, sizeof all - o, ", %s<name> with <name> one of ", k->prefix);
        if (o < sizeof all) list_values(k->prefix_values, all + o, sizeof all - o);
    }
    const char *sug = suggest_value(k->values, v->s);
    char pre[128] = "";
    if (!sug && k->prefix && !strncmp(v->s, k->prefix, strlen(k->prefix))) {
        const char *s2 = suggest_value(k->prefix_values, v->s + strlen(k->prefix));
        if (s2) snprintf(pre, sizeof pre, "%s%s", k->prefix, s2), sug = pre;
    }
    if (sug) err_at(L, v->at, k->path, "'%s' is not allowed; did you mean '%s'? (allowed: %s)", v->s, sug, all);
    else err_at(L, v->at, k->path, "'%s' is not allowed (allowed: %s)", v->s, all);
}

/* Adds one item to tmp; returns -1 (reported) when it is bad. */
static int list_add(loader *L, const job_key *k, job_list *tmp, const sval *v) {
    if (v->quoted == 0 && is_null_text(v->s, 0)) {
        err_at(L, v->at, k->path, "empty list item");
        return -1;
    }
    if (strlen(v->s) != v->len || !list_item_ok(k, v->s)) {
        list_item_error(L, k, v);
        return -1;
    }
    for (int i = 0; i < tmp->n; i++)
        if (!strcmp(tmp->v[i], v->s)) {
            err_at(L, v->at, k->path, "'%s' is listed twice", v->s);
            return -1;
        }
    tmp->v = mem_realloc(tmp->v, (size_t)(tmp->n + 1) * sizeof *tmp->v, "a job list");
    tmp->v[tmp->n++] = dupn(v->s, v->len);
    return 0;
}

static int map_add(loader *L, const job_key *k, job_lr_groups *tmp, const sval *name, const sval *val) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", k->path, name->s);
    int ok = 0;
    for (int i = 0; k->values[i]; i++)
        if (!strcmp(name->s, k->values[i])) ok = 1;
    if (!ok || strlen(name->s) != name->len) {
        char all[256];
        list_values(k->values, all, sizeof all);
        const char *sug = suggest_value(k->values, name->s);
        if (sug) err_at(L, name->at, key, "unknown group; did you mean '%s'? (groups: %s)", sug, all);
        else err_at(L, name->at, key, "unknown group (groups: %s)", all);
        return -1;
    }
    for (int i = 0; i < tmp->n; i++)
        if (!strcmp(tmp->name[i], name->s)) {
            err_at(L, name->at, key, "group given twice");
            return -1;
        }
    double d;
    int64_t x;
    if (conv_number(L, k, 0, val, key, &d, &x)) return -1;
    tmp->name = mem_realloc(tmp->name, (size_t)(tmp->n + 1) * sizeof *tmp->name, "a job mapping");
    tmp->lr = mem_realloc(tmp->lr, (size_t)(tmp->n + 1) * sizeof *tmp->lr, "a job mapping");
    tmp->name[tmp->n] = dupn(name->s, name->len);
    tmp->lr[tmp->n++] = d;
    return 0;
}

static int list_finish(loader *L, const job_key *k, job_list *tmp, int bad, where at) {
    if (!bad && (k->flags & JOB_K_HAS_MIN) && tmp->n < (int)k->min) {
        err_at(L, at, k->path, "needs at least %d item%s", (int)k->min, k->min == 1 ? "" : "s");
        bad = 1;
    }
    if (bad) {
        free_list(tmp);
        return -1;
    }
    job_list *dst = field(L->cfg, k);
    free_list(dst);
    *dst = *tmp;
    return 0;
}

static int map_finish(loader *L, const job_key *k, job_lr_groups *tmp, int bad) {
    if (bad) {
        free_map(tmp);
        return -1;
    }
    job_lr_groups *dst = field(L->cfg, k);
    free_map(dst);
    *dst = *tmp;
    return 0;
}

static sval scalar_sval(loader *L, yaml_node_t *n) {
    sval v = {(const char *)n->data.scalar.value, n->data.scalar.length,
              n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE, node_at(L, n)};
    return v;
}

/* A key's value from a YAML node. */
static int conv_node(loader *L, int ki, yaml_node_t *n) {
    const job_key *k = &job_keys(NULL)[ki];
    if (k->type == JOB_T_LIST) {
        if (n->type != YAML_SEQUENCE_NODE) {
            err_at(L, node_at(L, n), k->path, "expected a list such as [%s], got %s", k->values[0], node_kind(n));
            return -1;
        }
        job_list tmp = {0, NULL};
        int bad = 0;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            yaml_node_t *c = yaml_document_get_node(L->doc, *it);
            if (!c) continue;
            if (c->type != YAML_SCALAR_NODE) {
                err_at(L, node_at(L, c), k->path, "list item must be a name, got %s", node_kind(c));
                bad = 1;
                continue;
            }
            sval v = scalar_sval(L, c);
            if (list_add(L, k, &tmp, &v)) bad = 1;
        }
        return list_finish(L, k, &tmp, bad, node_at(L, n));
    }
    if (k->type == JOB_T_MAP) {
        if (n->type == YAML_SCALAR_NODE && is_null_text((const char *)n->data.scalar.value,
                                                         n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)) {
            job_lr_groups tmp = {0, NULL, NULL};
            return map_finish(L, k, &tmp, 0);
        }
        if (n->type != YAML_MAPPING_NODE) {
            err_at(L, node_at(L, n), k->path, "expected a mapping such as {%s: 2.0e-5}, got %s", k->values[0],
                   node_kind(n));
            return -1;
        }
        job_lr_groups tmp = {0, NULL, NULL};
        int bad = 0;
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
            yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
            if (!kn || !vn) continue;
            if (kn->type != YAML_SCALAR_NODE) {
                err_at(L, node_at(L, kn), k->path, "group names must be plain names, got %s", node_kind(kn));
                bad = 1;
                continue;
            }
            sval name = scalar_sval(L, kn);
            if (vn->type != YAML_SCALAR_NODE) {
                char key[256];
                snprintf(key, sizeof key, "%s.%s", k->path, name.s);
                err_at(L, node_at(L, vn), key, "expected a number, got %s", node_kind(vn));
                bad = 1;
                continue;
            }
            sval val = scalar_sval(L, vn);
            if (map_add(L, k, &tmp, &name, &val)) bad = 1;
        }
        return map_finish(L, k, &tmp, bad);
    }
    if (n->type != YAML_SCALAR_NODE) {
        static const char *const tn[] = {"a string", "a path", "an integer", "a number", "true or false", "a name"};
        err_at(L, node_at(L, n), k->path, "expected %s, got %s", tn[k->type], node_kind(n));
        return -1;
    }
    sval v = scalar_sval(L, n);
    return conv_scalar(L, ki, &v, 0);
}

/* ---- --set text ---------------------------------------------------------------------------- */

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

/* Strip one pair of matching quotes; returns 1 when there were quotes. */
static int unquote(char **s) {
    size_t n = strlen(*s);
    if (n >= 2 && ((*s)[0] == '"' || (*s)[0] == '\'') && (*s)[n - 1] == (*s)[0]) {
        (*s)[n - 1] = 0;
        (*s)++;
        return 1;
    }
    return 0;
}

/* "a,b" or "[a, b]" for lists; "g: 1e-4, h=2e-4" or "{g: 1e-4}" for maps; plain text otherwise. */
static int conv_text(loader *L, int ki, const char *text, where at) {
    const job_key *k = &job_keys(NULL)[ki];
    if (k->type == JOB_T_STR || k->type == JOB_T_PATH) { /* taken as written: spaces may belong to a path */
        sval v = {text, strlen(text), 0, at};
        return conv_scalar(L, ki, &v, 1);
    }
    if (k->type != JOB_T_LIST && k->type != JOB_T_MAP) {
        char *t = dupn(text, strlen(text));
        char *tt = trim(t);
        sval v = {tt, strlen(tt), 0, at};
        int r = conv_scalar(L, ki, &v, 1);
        free(t);
        return r;
    }
    char *buf = dupn(text, strlen(text));
    char *s = trim(buf);
    size_t n = strlen(s);
    char open = k->type == JOB_T_LIST ? '[' : '{', close = k->type == JOB_T_LIST ? ']' : '}';
    if (n && s[0] == open) {
        if (s[n - 1] != close) {
            err_at(L, at, k->path, "'%c' without a closing '%c'", open, close);
            free(buf);
            return -1;
        }
        s[n - 1] = 0;
        s = trim(s + 1);
    }
    int bad = 0, r;
    job_list tl = {0, NULL};
    job_lr_groups tm = {0, NULL, NULL};
    if (*s) {
        /* strtok_r would skip empty items; split by hand so "a,,b" is an error */
        char *item = s;
        for (;;) {
            char *comma = strchr(item, ',');
            if (comma) *comma = 0;
            char *it = trim(item);
            if (k->type == JOB_T_LIST) {
                int q = unquote(&it);
                sval v = {it, strlen(it), q, at};
                if (list_add(L, k, &tl, &v)) bad = 1;
            } else {
                char *sep = strpbrk(it, ":=");
                if (!sep) {
                    err_at(L, at, k->path, "expected group: value, got '%s'", it);
                    bad = 1;
                } else {
                    *sep = 0;
                    char *nm = trim(it), *vl = trim(sep + 1);
                    unquote(&nm);
                    sval name = {nm, strlen(nm), 0, at}, val = {vl, strlen(vl), 0, at};
                    if (map_add(L, k, &tm, &name, &val)) bad = 1;
                }
            }
            if (!comma) break;
            item = comma + 1;
        }
    }
    if (k->type == JOB_T_LIST) r = list_finish(L, k, &tl, bad, at);
    else r = map_finish(L, k, &tm, bad);
    free(buf);
    return r;
}

/* ---- the walk ------------------------------------------------------------------------------- */

static int section_index(const char *name) {
    int ns;
    const job_section *S = job_sections(&ns);
    for (int i = 0; i < ns; i++)
        if (!strcmp(S[i].name, name)) return i;
    return -1;
}

static void section_keys(const char *sec, char *buf, size_t n) {
    int nk;
    const job_key *K = job_keys(&nk);
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < nk && o < n; i++)
        if (job_key_in_section(&K[i], sec))
            o += (size_t)snprintf(buf + o, n - o, "%s%s", o ? ", " : "", job_key_leaf(&K[i]));
}

static void unknown_key(loader *L, where at, const char *sec, const char *name) {
    char path[256];
    if (sec) snprintf(path, sizeof path, "%s.%s", sec, name);
    else snprintf(path, sizeof path, "%s", name);
    if (!sec && job_find_key(name) >= 0) {
        const char *dot = strchr(name, '.');
        err_at(L, at, path, "dotted keys are not read; write it nested: %.*s: then %s: on the next line, indented",
               (int)(dot - name), name, dot + 1);
        return;
    }
    const char *sug = suggest(sec, name);
    if (sug) {
        err_at(L, at, path, "unknown %s; did you mean '%s'?", sec ? "key" : "section", sug);
    } else if (sec) {
        char keys[512];
        section_keys(sec, keys, sizeof keys);
        err_at(L, at, path, "unknown key (keys of %s: %s)", sec, keys);
    } else {
        int ns;
        const job_section *S = job_sections(&ns);
        char all[256];
        size_t o = 0;
        for (int i = 0; i < ns; i++) o += (size_t)snprintf(all + o, sizeof all - o, "%s%s", i ? ", " : "", S[i].name);
        err_at(L, at, path, "unknown section (sections: %s)", all);
    }
}

/* Duplicate check inside one mapping: a key equal to an earlier key of the same mapping. */
static yaml_node_t *earlier_same_key(loader *L, yaml_node_t *map, yaml_node_pair_t *p, const char *name) {
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, q->key);
        if (kn && kn->type == YAML_SCALAR_NODE && !strcmp((const char *)kn->data.scalar.value, name)) return kn;
    }
    return NULL;
}

static void walk_section(loader *L, const char *sec, yaml_node_t *map) {
    int nk;
    const job_key *K = job_keys(&nk);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
        if (!kn || !vn) continue;
        if (kn->type != YAML_SCALAR_NODE) {
            err_at(L, node_at(L, kn), sec, "keys must be plain names, got %s", node_kind(kn));
            continue;
        }
        const char *name = (const char *)kn->data.scalar.value;
        char path[256];
        snprintf(path, sizeof path, "%s.%s", sec, name);
        yaml_node_t *first = earlier_same_key(L, map, p, name);
        if (first) {
            err_at(L, node_at(L, kn), path, "duplicate key (first given at line %d, column %d)",
                   (int)first->start_mark.line + 1, (int)first->start_mark.column + 1);
            continue;
        }
        int ki = job_find_key(path);
        if (ki < 0 || !job_key_in_section(&K[ki], sec)) {
            unknown_key(L, node_at(L, kn), sec, name);
            continue;
        }
        L->node[ki] = vn;
    }
}

static void walk_root(loader *L, yaml_node_t *root) {
    if (!root) {
        where w = {L->file, 1, 1};
        err_at(L, w, "", "the job file is empty; expected a mapping with the sections job, model, data, ...");
        L->root_bad = 1;
        return;
    }
    if (root->type != YAML_MAPPING_NODE) {
        err_at(L, node_at(L, root), "", "expected a mapping with the sections job, model, data, ...; got %s",
               node_kind(root));
        L->root_bad = 1;
        return;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
        if (!kn || !vn) continue;
        if (kn->type != YAML_SCALAR_NODE) {
            err_at(L, node_at(L, kn), "", "section names must be plain names, got %s", node_kind(kn));
            continue;
        }
        const char *name = (const char *)kn->data.scalar.value;
        yaml_node_t *first = earlier_same_key(L, root, p, name);
        if (first) {
            err_at(L, node_at(L, kn), name, "duplicate section (first given at line %d, column %d)",
                   (int)first->start_mark.line + 1, (int)first->start_mark.column + 1);
            continue;
        }
        int si = section_index(name);
        if (si < 0) {
            unknown_key(L, node_at(L, kn), NULL, name);
            continue;
        }
        L->sec_seen[si] = 1;
        L->sec_at[si] = node_at(L, kn);
        if (vn->type == YAML_SCALAR_NODE &&
            is_null_text((const char *)vn->data.scalar.value, vn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE))
            continue; /* "lora:" with nothing under it: all defaults */
        if (vn->type != YAML_MAPPING_NODE) {
            char keys[512];
            section_keys(name, keys, sizeof keys);
            err_at(L, node_at(L, vn), name, "expected a mapping (keys: %s), got %s", keys, node_kind(vn));
            L->sec_bad[si] = 1;
            continue;
        }
        walk_section(L, name, vn);
    }
}

/* ---- cross-key checks ----------------------------------------------------------------------- */

static where key_at(loader *L, int ki, const job_override *ov, int nov) {
    const job_config *c = L->cfg;
    where w = {L->file, c->pos[ki].line, c->pos[ki].col};
    if (c->pos[ki].from == JOB_FROM_SET) {
        /* the last --set of this key, named like the diagnostics of --set */
        static char buf[8][512];
        static int slot;
        const char *path = job_keys(NULL)[ki].path;
        for (int i = nov - 1; i >= 0; i--)
            if (!strcmp(ov[i].key, path)) {
                slot = (slot + 1) % 8;
                snprintf(buf[slot], sizeof buf[slot], "--set %s=%s", ov[i].key, ov[i].value);
                w.file = buf[slot];
                break;
            }
        w.line = w.col = 0;
    } else if (c->pos[ki].from == JOB_FROM_DEFAULT) {
        const char *path = job_keys(NULL)[ki].path;
        char sec[32];
        snprintf(sec, sizeof sec, "%.*s", (int)(strchr(path, '.') - path), path);
        int si = section_index(sec);
        if (si >= 0 && L->sec_seen[si]) w = L->sec_at[si];
        else w.line = 1, w.col = 1;
    }
    return w;
}

static int has_item(const job_list *l, const char *s) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], s)) return 1;
    return 0;
}

static void cross_checks(loader *L, const job_override *ov, int nov) {
    job_config *c = L->cfg;
    int k_targets = job_find_key("lora.targets"), k_full = job_find_key("train.full_modules");
    int k_vl = job_find_key("lora.vision_layers"), k_groups = job_find_key("train.lr_groups");
    int k_dp = job_find_key("runtime.data_parallel"), k_dev = job_find_key("runtime.device");
    if (!L->bad[k_targets] && !L->bad[k_full])
        for (int i = 0; i < c->train.full_modules.n; i++)
            if (has_item(&c->lora.targets, c->train.full_modules.v[i]))
                err_at(L, key_at(L, k_full, ov, nov), "train.full_modules",
                       "'%s' is also in lora.targets; a module is trained either in full or with LoRA",
                       c->train.full_modules.v[i]);
    int vision = 0, decoder = 0;
    for (int i = 0; i < c->lora.targets.n; i++) {
        if (!strncmp(c->lora.targets.v[i], "vision:", 7)) vision = 1;
        else if (strcmp(c->lora.targets.v[i], "mm_projector")) decoder = 1;
    }
    if (!L->bad[k_vl] && !L->bad[k_targets] && c->lora.vision_layers > 0 && !vision)
        job_report_add(L->rep, JOB_WARNING, key_at(L, k_vl, ov, nov).file, key_at(L, k_vl, ov, nov).line,
                       key_at(L, k_vl, ov, nov).col, "lora.vision_layers",
                       "has no effect: lora.targets has no vision:* target");
    if (!L->bad[k_groups] && !L->bad[k_targets]) {
        for (int i = 0; i < c->train.lr_groups.n; i++) {
            const char *g = c->train.lr_groups.name[i];
            int used = !strcmp(g, "lora")               ? decoder
                       : !strcmp(g, "vision_lora")      ? vision
                       : !strcmp(g, "mm_projector")     ? has_item(&c->lora.targets, "mm_projector") ||
                                                              has_item(&c->train.full_modules, "mm_projector")
                       : !strcmp(g, "token_embeddings") ? c->lora.train_new_token_embeddings
                                                        : 1;
            if (!used) {
                char key[128];
                snprintf(key, sizeof key, "train.lr_groups.%s", g);
                where w = key_at(L, k_groups, ov, nov);
                job_report_add(L->rep, JOB_WARNING, w.file, w.line, w.col, key,
                               "has no effect: nothing of this job is trained in group %s", g);
            }
        }
    }
    if (!L->bad[k_dp] && !L->bad[k_dev]) {
        if (c->runtime.data_parallel == JOB_DP_NCCL && c->runtime.device == JOB_DEVICE_CPU)
            err_at(L, key_at(L, k_dp, ov, nov), "runtime.data_parallel",
                   "nccl needs GPUs, but runtime.device is cpu (use mpi, auto or none)");
        if (c->runtime.data_parallel == JOB_DP_MPI && c->runtime.device == JOB_DEVICE_CUDA)
            err_at(L, key_at(L, k_dp, ov, nov), "runtime.data_parallel",
                   "mpi is the CPU backend, but runtime.device is cuda (use nccl, auto or none)");
    }
}

static void check_files(loader *L, const job_override *ov, int nov, int require) {
    int nk;
    const job_key *K = job_keys(&nk);
    for (int i = 0; i < nk; i++) {
        if (!(K[i].flags & JOB_K_FILE) || L->bad[i]) continue;
        const char *p = *(char **)field(L->cfg, &K[i]);
        if (!p) continue;
        struct stat st;
        if (stat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                job_report_add(L->rep, require ? JOB_ERROR : JOB_WARNING, key_at(L, i, ov, nov).file,
                               key_at(L, i, ov, nov).line, key_at(L, i, ov, nov).col, K[i].path,
                               "%s is a directory; expected an HDF5 file", p);
            continue;
        }
        const char *how = !strcmp(K[i].path, "model.path") ? "orpo-hpc import-model or make-demo"
                                                            : "orpo-hpc import-data or make-demo";
        where w = key_at(L, i, ov, nov);
        job_report_add(L->rep, require ? JOB_ERROR : JOB_WARNING, w.file, w.line, w.col, K[i].path,
                       "%s: %s (it is made by %s)", p, strerror(errno), how);
    }
}

/* ---- entry points ---------------------------------------------------------------------------- */

static char *dir_of(const char *path, const char *cwd) {
    const char *slash = strrchr(path, '/');
    char *d;
    if (!slash) d = dupn(".", 1);
    else if (slash == path) d = dupn("/", 1);
    else d = dupn(path, (size_t)(slash - path));
    char *abs = job_path_join(cwd, d);
    free(d);
    return abs;
}

static void syntax_error(loader *L, const yaml_parser_t *parser, const char *text, size_t len) {
    where w = {L->file, (int)parser->problem_mark.line + 1, (int)parser->problem_mark.column + 1};
    const char *tab = parser->problem_mark.index < len && text[parser->problem_mark.index] == '\t'
                          ? "; a tab: YAML indents with spaces only"
                          : "";
    const char *problem = parser->problem ? parser->problem : "?";
    if (parser->error == YAML_MEMORY_ERROR) err_at(L, w, "", "out of memory (libyaml)");
    else if (parser->context)
        err_at(L, w, "", "YAML syntax error: %s (%s at line %d, column %d)%s", problem, parser->context,
               (int)parser->context_mark.line + 1, (int)parser->context_mark.column + 1, tab);
    else err_at(L, w, "", "YAML syntax error: %s%s", problem, tab);
}

int job_load_string(const char *text, size_t len, const char *path, const job_override *ov, int nov,
                    int require_files, job_config *out, job_report *rep) {
    job_report own;
    job_report_init(&own);
    if (!rep) rep = &own;
    int errs0 = rep->nerr;
    memset(out, 0, sizeof *out);
    loader L;
    memset(&L, 0, sizeof L);
    L.file = path;
    L.rep = rep;
    L.cfg = out;
    L.cwd = job_cwd();
    if (!L.cwd) {
        job_report_free(&own);
        return err_set(ERR_IO, "%s: cannot read the current directory: %s", path, strerror(errno));
    }
    out->file = dupn(path, strlen(path));
    out->dir = dir_of(path, L.cwd);
    int nk;
    const job_key *K = job_keys(&nk);

    /* 1. defaults (a required key has none; job.output_dir is derived below) */
    for (int i = 0; i < nk; i++) {
        if (!K[i].def || !strcmp(K[i].path, "job.output_dir")) continue;
        where w = {"(default)", 0, 0};
        if (conv_text(&L, i, K[i].def, w)) err_at(&L, w, K[i].path, "internal: the default does not parse");
    }

    /* 2. the file */
    yaml_parser_t parser;
    yaml_document_t doc;
    int syntax_ok = 0;
    memset(&doc, 0, sizeof doc);
    if (!yaml_parser_initialize(&parser)) {
        err_at(&L, (where){path, 0, 0}, "", "out of memory (libyaml)");
    } else {
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
        if (!yaml_parser_load(&parser, &doc)) {
            syntax_error(&L, &parser, text, len);
        } else {
            syntax_ok = 1;
            L.doc = &doc;
            walk_root(&L, yaml_document_get_root_node(&doc));
            for (int i = 0; i < nk; i++) {
                if (!L.node[i]) continue;
                if (conv_node(&L, i, L.node[i])) {
                    L.bad[i] = 1;
                    continue;
                }
                out->pos[i].from = JOB_FROM_FILE;
                out->pos[i].line = (int)L.node[i]->start_mark.line + 1;
                out->pos[i].col = (int)L.node[i]->start_mark.column + 1;
            }
            /* a second document in the same file is a mistake, not something to ignore silently */
            yaml_document_t doc2;
            if (yaml_parser_load(&parser, &doc2)) {
                yaml_node_t *r2 = yaml_document_get_root_node(&doc2);
                if (r2) err_at(&L, node_at(&L, r2), "", "a second YAML document; a job file holds exactly one");
                yaml_document_delete(&doc2);
            } else {
                syntax_error(&L, &parser, text, len);
            }
        }
        yaml_parser_delete(&parser);
    }

    /* 3. --set, in order (the last one of a key wins) */
    for (int o = 0; o < nov; o++) {
        char name[512];
        snprintf(name, sizeof name, "--set %s=%s", ov[o].key, ov[o].value);
        where w = {name, 0, 0};
        int ki = job_find_key(ov[o].key);
        if (ki < 0) {
            const char *dot = strchr(ov[o].key, '.');
            const char *sug;
            if (dot) {
                char sec[128];
                snprintf(sec, sizeof sec, "%.*s", (int)(dot - ov[o].key), ov[o].key);
                sug = suggest(sec, dot + 1);
            } else {
                sug = suggest(NULL, ov[o].key);
            }
            if (sug && job_find_key(sug) >= 0)
                err_at(&L, w, ov[o].key, "unknown key in --set; did you mean '%s'?", sug);
            else err_at(&L, w, ov[o].key, "unknown key in --set (keys are section.name, e.g. train.lr)");
            continue;
        }
        if (conv_text(&L, ki, ov[o].value, w)) {
            L.bad[ki] = 1;
        } else {
            L.bad[ki] = 0;
            out->pos[ki].from = JOB_FROM_SET;
            out->pos[ki].line = out->pos[ki].col = 0;
        }
    }

    /* 4. required keys, the derived output directory, cross-checks, files */
    if (syntax_ok) {
        for (int i = 0; i < nk; i++) {
            if (!(K[i].flags & JOB_K_REQUIRED) || out->pos[i].from != JOB_FROM_DEFAULT || L.bad[i]) continue;
            L.bad[i] = 1;
            char sec[32];
            snprintf(sec, sizeof sec, "%.*s", (int)(strchr(K[i].path, '.') - K[i].path), K[i].path);
            int si = section_index(sec);
            if (L.root_bad || (si >= 0 && L.sec_bad[si])) continue; /* already reported */
            where w = key_at(&L, i, ov, nov);
            err_at(&L, w, K[i].path, "required key is missing: the %s", K[i].doc);
        }
        int kod = job_find_key("job.output_dir"), kname = job_find_key("job.name");
        if (!out->job.output_dir && out->job.name && !L.bad[kname]) {
            char rel[128];
            snprintf(rel, sizeof rel, "runs/%s", out->job.name);
            out->job.output_dir = job_path_join(out->dir, rel);
        }
        if (!out->job.output_dir) L.bad[kod] = 1;
        cross_checks(&L, ov, nov);
        check_files(&L, ov, nov, require_files);
    }
    if (L.doc) yaml_document_delete(&doc);
    free(L.cwd);

    int nerr = rep->nerr - errs0;
    if (nerr) {
        job_free(out);
        if (rep == &own) {
            const job_diag *d = NULL;
            for (int i = 0; i < own.n && !d; i++)
                if (own.d[i].severity == JOB_ERROR) d = &own.d[i];
            err_set(ERR_ARGS, "%s: %d error%s in the job file; first: %s:%d:%d: %s%s%s", path, nerr,
                    nerr == 1 ? "" : "s", d ? d->file : path, d ? d->line : 0, d ? d->col : 0, d ? d->key : "",
                    d && d->key[0] ? ": " : "", d ? d->msg : "");
        } else {
            err_set(ERR_ARGS, "%s: %d error%s in the job file", path, nerr, nerr == 1 ? "" : "s");
        }
        job_report_free(&own);
        return ERR_ARGS;
    }
    job_report_free(&own);
    return ERR_OK;
}

int job_load(const char *path, const job_override *ov, int nov, int require_files, job_config *out,
             job_report *rep) {
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        job_report_add(rep, JOB_ERROR, path, 0, 0, "", "cannot open the job file: %s", strerror(e));
        return err_set(e == ENOENT || e == ENOTDIR ? ERR_ARGS : ERR_IO, "%s: cannot open the job file: %s", path,
                       strerror(e));
    }
    size_t cap = 4096, n = 0;
    char *buf = mem_alloc(cap, "the job file");
    for (;;) {
        if (n == cap) {
            if (cap >= (16u << 20)) {
                fclose(fp);
                free(buf);
                job_report_add(rep, JOB_ERROR, path, 0, 0, "", "the job file is larger than 16 MiB");
                return err_set(ERR_ARGS, "%s: the job file is larger than 16 MiB", path);
            }
            buf = mem_realloc(buf, cap * 2, "the job file");
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, fp);
        n += r;
        if (r == 0) break;
    }
    int rd_err = ferror(fp);
    fclose(fp);
    if (rd_err) {
        free(buf);
        job_report_add(rep, JOB_ERROR, path, 0, 0, "", "read error");
        return err_set(ERR_IO, "%s: read error", path);
    }
    int rc = job_load_string(buf, n, path, ov, nov, require_files, out, rep);
    free(buf);
    return rc;
}

void job_free(job_config *j) {
    if (!j) return;
    int nk;
    const job_key *K = job_keys(&nk);
    for (int i = 0; i < nk; i++) {
        void *f = field(j, &K[i]);
        if (K[i].type == JOB_T_STR || K[i].type == JOB_T_PATH) free(*(char **)f);
        else if (K[i].type == JOB_T_LIST) free_list(f);
        else if (K[i].type == JOB_T_MAP) free_map(f);
    }
    free(j->file);
    free(j->dir);
    memset(j, 0, sizeof *j);
}

/* ---- --set arguments ------------------------------------------------------------------------- */

void job_free_overrides(job_override *ov, int nov) {
    for (int i = 0; i < nov; i++) {
        free((char *)ov[i].key);
        free((char *)ov[i].value);
    }
    free(ov);
}

int job_parse_set_args(int *argc, char **argv, job_override **ov, int *nov) {
    *ov = NULL;
    *nov = 0;
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        const char *kv = NULL;
        if (!strcmp(argv[i], "--set")) {
            if (i + 1 >= *argc) {
                job_free_overrides(*ov, *nov);
                *ov = NULL, *nov = 0;
                return err_set(ERR_ARGS, "--set needs key.path=value after it");
            }
            kv = argv[++i];
        } else if (!strncmp(argv[i], "--set=", 6)) {
            kv = argv[i] + 6;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv) {
            job_free_overrides(*ov, *nov);
            *ov = NULL, *nov = 0;
            return err_set(ERR_ARGS, "--set '%s': expected key.path=value (e.g. --set train.lr=1e-4)", kv);
        }
        job_override *n = mem_realloc(*ov, (size_t)(*nov + 1) * sizeof *n, "the --set overrides");
        char *k = dupn(kv, (size_t)(eq - kv)), *v = dupn(eq + 1, strlen(eq + 1));
        *ov = n;
        char *kt = trim(k);
        memmove(k, kt, strlen(kt) + 1);
        n[*nov].key = k;
        n[*nov].value = v;
        (*nov)++;
    }
    if (out < *argc) argv[out] = NULL;
    *argc = out;
    return ERR_OK;
}
