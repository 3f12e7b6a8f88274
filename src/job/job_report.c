/* job_report — the diagnostics of a job load, and small shared helpers (numbers, paths, names). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/mem.h"
#include "job/job.h"
#include "job/job_internal.h"

void job_report_init(job_report *rep) { memset(rep, 0, sizeof *rep); }

void job_report_free(job_report *rep) {
    if (!rep) return;
    for (int i = 0; i < rep->n; i++) {
        free(rep->d[i].file);
        free(rep->d[i].key);
        free(rep->d[i].msg);
    }
    free(rep->d);
    memset(rep, 0, sizeof *rep);
}

void job_report_add(job_report *rep, int severity, const char *file, int line, int col, const char *key,
                    const char *fmt, ...) {
    if (!rep) return;
    if (rep->n == rep->cap) {
        int cap = rep->cap ? rep->cap * 2 : 16;
        rep->d = mem_realloc(rep->d, (size_t)cap * sizeof *rep->d, "the job diagnostics");
        rep->cap = cap;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    job_diag *d = &rep->d[rep->n];
    d->severity = severity;
    d->file = mem_strdup(file ? file : "", "a job diagnostic");
    d->key = mem_strdup(key ? key : "", "a job diagnostic");
    d->msg = mem_strdup(msg, "a job diagnostic");
    d->line = line;
    d->col = col;
    rep->n++;
    if (severity == JOB_ERROR) rep->nerr++;
    else rep->nwarn++;
}

int job_report_errors(const job_report *rep) { return rep ? rep->nerr : 0; }
int job_report_warnings(const job_report *rep) { return rep ? rep->nwarn : 0; }

/* File positions first, in line/column order; then those without a position (--set), as added. */
static int diag_before(const job_diag *a, const job_diag *b) {
    if ((a->line == 0) != (b->line == 0)) return a->line != 0;
    if (a->line != b->line) return a->line < b->line;
    return a->col < b->col;
}

void job_report_print(const job_report *rep, FILE *fp) {
    if (!rep || rep->n == 0) return;
    int *ord = mem_alloc((size_t)rep->n * sizeof *ord, "sorting the job diagnostics");
    for (int i = 0; i < rep->n; i++) {  /* stable insertion sort: reports are short */
        int j = i;
        while (j > 0 && diag_before(&rep->d[i], &rep->d[ord[j - 1]])) {
            ord[j] = ord[j - 1];
            j--;
        }
        ord[j] = i;
    }
    for (int i = 0; i < rep->n; i++) {
        const job_diag *d = &rep->d[ord[i]];
        if (d->line > 0) fprintf(fp, "%s:%d:%d: ", d->file, d->line, d->col);
        else fprintf(fp, "%s: ", d->file);
        if (d->key[0]) fprintf(fp, "%s: ", d->key);
        fprintf(fp, "%s%s\n", d->severity == JOB_WARNING ? "warning: " : "", d->msg);
    }
    free(ord);
}

/* ---- numbers ---------------------------------------------------------------------------- */

void job_fmt_float(double x, char *buf, size_t n) {
    char tmp[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, x);
        if (strtod(tmp, NULL) == x) break;
    }
    /* YAML 1.1 readers (PyYAML) need a '.' in a float: "1e-05" -> "1.0e-05", "16" -> "16.0". */
    char *e = strchr(tmp, 'e');
    if (!strchr(tmp, '.')) {
        if (e) {
            char mant[64];
            size_t m = (size_t)(e - tmp);
            memcpy(mant, tmp, m);
            mant[m] = 0;
            snprintf(buf, n, "%s.0%s", mant, e);
            return;
        }
        snprintf(buf, n, "%s.0", tmp);
        return;
    }
    snprintf(buf, n, "%s", tmp);
}

void job_fmt_default(const job_key *k, char *buf, size_t n) {
    if (!k->def) {
        snprintf(buf, n, "%s", (k->flags & JOB_K_REQUIRED) ? "(required)" : "(not set)");
        return;
    }
    if (k->type == JOB_T_FLOAT) {
        job_fmt_float(strtod(k->def, NULL), buf, n);
        return;
    }
    if (k->type == JOB_T_LIST) {
        if (!k->def[0]) snprintf(buf, n, "[]");
        else {
            size_t o = (size_t)snprintf(buf, n, "[");
            for (const char *p = k->def; *p && o + 3 < n; p++) {
                buf[o++] = *p;
                if (*p == ',') buf[o++] = ' ';
            }
            buf[o] = 0;
            snprintf(buf + o, n - o, "]");
        }
        return;
    }
    if (k->type == JOB_T_MAP && !k->def[0]) {
        snprintf(buf, n, "{}");
        return;
    }
    snprintf(buf, n, "%s", k->def);
}

void job_range_text(const job_key *k, char *buf, size_t n) {
    char a[48], b[48];
    if (k->type == JOB_T_INT) {
        snprintf(a, sizeof a, "%lld", (long long)k->min);
        snprintf(b, sizeof b, "%lld", (long long)k->max);
    } else {
        snprintf(a, sizeof a, "%g", k->min);
        snprintf(b, sizeof b, "%g", k->max);
    }
    int hmin = k->flags & JOB_K_HAS_MIN, hmax = k->flags & JOB_K_HAS_MAX;
    if (hmin && hmax)
        snprintf(buf, n, "%c%s, %s%c", k->flags & JOB_K_MIN_EXCL ? '(' : '[', a, b, k->flags & JOB_K_MAX_EXCL ? ')' : ']');
    else if (hmin) snprintf(buf, n, "%s %s", k->flags & JOB_K_MIN_EXCL ? ">" : ">=", a);
    else if (hmax) snprintf(buf, n, "%s %s", k->flags & JOB_K_MAX_EXCL ? "<" : "<=", b);
    else if (n) buf[0] = 0;
}

/* ---- paths ------------------------------------------------------------------------------- */

char *job_cwd(void) {
    size_t cap = 256;
    for (;;) {
        char *b = mem_alloc(cap, "the current directory");
        if (getcwd(b, cap)) return b;
        free(b);
        if (errno != ERANGE || cap > (1u << 20)) return NULL;
        cap *= 2;
    }
}

/* Join and normalise lexically: drop "." and empty parts, ".." removes the previous part. */
char *job_path_join(const char *dir, const char *rel) {
    size_t ld = dir ? strlen(dir) : 0, lr = strlen(rel);
    char *in = mem_alloc(ld + lr + 3, "a path");
    if (rel[0] == '/' || !dir) snprintf(in, ld + lr + 3, "%s", rel);
    else snprintf(in, ld + lr + 3, "%s/%s", dir, rel);
    size_t n = strlen(in);
    char *out = mem_alloc(n + 2, "a path");
    int absolute = in[0] == '/';
    size_t o = 0;
    char *save = NULL;
    for (char *part = strtok_r(in, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        if (!strcmp(part, ".")) continue;
        if (!strcmp(part, "..")) {
            size_t back = o;  /* the previous part, unless it is itself ".." of a relative path */
            while (back > 0 && out[back - 1] != '/') back--;
            if (o > 0 && strcmp(out + back, "..") != 0) {
                o = back > 0 ? back - 1 : 0;
                out[o] = 0;
                continue;
            }
            if (absolute) continue; /* "/.." is "/" */
        }
        if (o > 0) out[o++] = '/';
        size_t lp = strlen(part);
        memcpy(out + o, part, lp);
        o += lp;
        out[o] = 0;
    }
    free(in);
    if (absolute) {
        memmove(out + 1, out, o + 1);
        out[0] = '/';
    } else if (o == 0) {
        out[0] = '.';
        out[1] = 0;
    } else {
        out[o] = 0;
    }
    return out;
}

int job_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64 || !isalnum((unsigned char)s[0])) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '.' || c == '_' || c == '-')) return 0;
    }
    return 1;
}
