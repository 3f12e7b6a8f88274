/* interrupt — remove the temporary and exit 75 on SIGTERM/SIGINT/SIGHUP (see interrupt.h). */
#include "io/interrupt.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/err.h"

#define INTR_PATH_MAX 4096

/* Written by the main thread with g_armed 0, read by the handler only when g_armed is 1. */
static char g_cmd[64] = "orpo-hpc";
static char g_tmp[INTR_PATH_MAX], g_final[INTR_PATH_MAX];
static volatile sig_atomic_t g_armed;

/* only async-signal-safe calls from here to the end of on_signal: write, unlink, _exit */
static void say(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void on_signal(int sig) {
    const char *name = sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP" : "a signal";
    say("orpo-hpc: ");
    say(g_cmd);
    say(": interrupted by ");
    say(name);
    if (g_armed) {
        g_armed = 0;
        if (unlink(g_tmp) == 0) {
            say(": removed the temporary ");
            say(g_tmp);
            say("; nothing was written at ");
            say(g_final);
        } else { /* already renamed: the file is complete, but the command did not finish its report */
            say(" while finishing ");
            say(g_final);
        }
    }
    say("; run the command again\n");
    _exit(ERR_INTERRUPTED);
}

static void at_exit(void) {
    if (g_armed) {
        g_armed = 0;
        unlink(g_tmp);
    }
}

void intr_install(const char *cmd) {
    snprintf(g_cmd, sizeof g_cmd, "%s", cmd ? cmd : "orpo-hpc");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask); /* one handler at a time */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* a write past ulimit -f fails with EFBIG (reported, exit 4) instead of killing the process */
    signal(SIGXFSZ, SIG_IGN);
    static int registered;
    if (!registered) registered = !atexit(at_exit);
}

void intr_guard(const char *tmp, const char *final) {
    g_armed = 0;
    snprintf(g_tmp, sizeof g_tmp, "%s", tmp);
    snprintf(g_final, sizeof g_final, "%s", final);
    atomic_signal_fence(memory_order_seq_cst); /* the paths are in place before the handler may read them */
    g_armed = 1;
}

void intr_release(void) { g_armed = 0; }
