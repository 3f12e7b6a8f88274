#include "io/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_level = -1;
static char g_name[64] = "orpo-hpc";

void log_set_name(const char *name) { snprintf(g_name, sizeof g_name, "%s", name); }

static int level_from_env(void) {
    const char *e = getenv("ORPO_LOG");
    if (!e) return LOG_INFO;
    if (!strcmp(e, "debug")) return LOG_DEBUG;
    if (!strcmp(e, "warn")) return LOG_WARN;
    if (!strcmp(e, "error")) return LOG_ERROR;
    return LOG_INFO;
}

void log_set_level(int level) { g_level = level; }

int log_level(void) {
    if (g_level < 0) g_level = level_from_env();
    return g_level;
}

static void vlog(int level, const char *word, const char *fmt, va_list ap) {
    if (level > log_level()) return;
    char line[8192];
    vsnprintf(line, sizeof line, fmt, ap);
    if (word) fprintf(stderr, "%s: %s: %s\n", g_name, word, line);
    else fprintf(stderr, "%s: %s\n", g_name, line);
}

#define LOG_FN(name, level, word)                 \
    void name(const char *fmt, ...) {             \
        va_list ap;                               \
        va_start(ap, fmt);                        \
        vlog(level, word, fmt, ap);               \
        va_end(ap);                               \
    }
LOG_FN(log_error, LOG_ERROR, "error")
LOG_FN(log_warn, LOG_WARN, "warning")
LOG_FN(log_info, LOG_INFO, NULL)
LOG_FN(log_debug, LOG_DEBUG, "debug")

void log_error_current(void) { log_error("%s", err_msg()); }

double log_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) { snprintf(buf, n, "--:--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

void progress_begin(progress *p, const char *what, uint64_t total) {
    memset(p, 0, sizeof *p);
    p->what = what;
    p->total = total;
    p->t0 = log_now();
    p->last_draw = p->t0;
    p->tty = isatty(STDERR_FILENO) && log_level() >= LOG_INFO;
}

static void progress_draw(progress *p, double now, int final) {
    double el = now - p->t0;
    double rate = el > 0 ? (double)p->done / el : 0.0;
    char eta[32], elapsed[32];
    fmt_duration(elapsed, sizeof elapsed, el);
    if (p->total && rate > 0) fmt_duration(eta, sizeof eta, (double)(p->total - p->done) / rate);
    else snprintf(eta, sizeof eta, "--:--");
    if (p->tty && !final) {
        char bar[31];
        int fill = p->total ? (int)(30.0 * (double)p->done / (double)p->total) : 0;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r%s [%s] %llu/%llu %.1f/s ETA %s ", p->what, bar,
                (unsigned long long)p->done, (unsigned long long)p->total, rate, eta);
        fflush(stderr);
    } else if (final) {
        if (p->tty) fprintf(stderr, "\r\033[K");
        fprintf(stderr, "orpo-hpc: %s: %llu done in %s (%.1f/s)\n", p->what,
                (unsigned long long)p->done, elapsed, rate);
    } else if (log_level() >= LOG_INFO) {
        fprintf(stderr, "orpo-hpc: %s: %llu/%llu, %.1f/s, elapsed %s, ETA %s\n", p->what,
                (unsigned long long)p->done, (unsigned long long)p->total, rate, elapsed, eta);
    }
}

void progress_update(progress *p, uint64_t done) {
    p->done = done;
    double now = log_now();
    double every = p->tty ? 0.2 : 10.0;
    if (now - p->last_draw < every) return;
    p->last_draw = now;
    progress_draw(p, now, 0);
}

void progress_end(progress *p) {
    if (log_level() < LOG_INFO) return;
    progress_draw(p, log_now(), 1);
}
