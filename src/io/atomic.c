/* atomic — crash-safe file replacement (see atomic.h). */
#include "io/atomic.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/err.h"
#include "io/fsutil.h"

#define TMP_TAG ".tmp."

/* short host name, made safe for a file name (no dots) */
static void host_tag(char *buf, size_t cap) {
    char h[256];
    if (gethostname(h, sizeof h) != 0) h[0] = '\0';
    h[sizeof h - 1] = '\0';
    size_t n = 0;
    for (size_t i = 0; h[i] && h[i] != '.' && n + 1 < cap; i++) {
        unsigned char c = (unsigned char)h[i];
        buf[n++] = (char)(isalnum(c) || c == '-' || c == '_' ? c : '_');
    }
    if (n == 0 && cap > 4) {
        memcpy(buf, "host", 4);
        n = 4;
    }
    buf[n] = '\0';
}

int atomic_begin(atomic_file *af, const char *final_path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(final_path);
    if (n == 0 || n >= sizeof af->final || final_path[n - 1] == '/')
        return err_set(ERR_ARGS, "%s: not a file path", final_path);
    memcpy(af->final, final_path, n + 1);
    char dir[ATOMIC_PATH_MAX], host[128];
    fs_dirname(final_path, dir, sizeof dir);
    host_tag(host, sizeof host);
    int w = snprintf(af->tmp, sizeof af->tmp, "%s/.%s" TMP_TAG "%s.%ld", dir, fs_basename(final_path), host,
                     (long)getpid());
    if (w < 0 || (size_t)w >= sizeof af->tmp) return err_set(ERR_ARGS, "%s: path too long", final_path);
    if (!fs_is_dir(dir)) return err_set(ERR_IO, "%s: directory %s does not exist", final_path, dir);
    if (unlink(af->tmp) != 0 && errno != ENOENT)
        return err_set(ERR_IO, "%s: cannot remove the stale temporary: %s", af->tmp, fs_errno_msg(errno));
    af->active = 1;
    return ERR_OK;
}

void atomic_abort(atomic_file *af) {
    if (af->active) unlink(af->tmp);
    af->active = 0;
}

int atomic_commit(atomic_file *af) {
    if (!af->active) return err_set(ERR_INTERNAL, "%s: atomic_commit without atomic_begin", af->final);
    int fd = open(af->tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        atomic_abort(af);
        return err_set(ERR_IO, "%s: cannot open the temporary %s for fsync: %s", af->final, af->tmp, fs_errno_msg(e));
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        atomic_abort(af);
        return err_set(ERR_IO, "%s: fsync of %s failed: %s; the old file is unchanged", af->final, af->tmp,
                       fs_errno_msg(e));
    }
    close(fd);
    if (rename(af->tmp, af->final) != 0) {
        int e = errno;
        atomic_abort(af);
        return err_set(ERR_IO, "%s: rename from %s failed: %s; the old file is unchanged", af->final, af->tmp,
                       fs_errno_msg(e));
    }
    af->active = 0;
    char dir[ATOMIC_PATH_MAX];
    int rc = fs_fsync_dir(fs_dirname(af->final, dir, sizeof dir));
    if (rc) return err_push("%s: renamed, but not yet durable", af->final);
    return ERR_OK;
}

int atomic_write_file(const char *path, const void *buf, size_t n) {
    atomic_file af;
    int rc = atomic_begin(&af, path);
    if (rc) return rc;
    int fd = open(af.tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        int e = errno;
        atomic_abort(&af);
        return err_set(ERR_IO, "%s: cannot create %s: %s", path, af.tmp, fs_errno_msg(e));
    }
    const char *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            close(fd);
            atomic_abort(&af);
            return err_set(ERR_IO, "%s: write failed after %zu of %zu bytes: %s; the old file is unchanged", path,
                           done, n, fs_errno_msg(e));
        }
        done += (size_t)w;
    }
    if (close(fd) != 0) {
        int e = errno;
        atomic_abort(&af);
        return err_set(ERR_IO, "%s: close failed: %s; the old file is unchanged", path, fs_errno_msg(e));
    }
    return atomic_commit(&af);
}

/* ".<name>.tmp.<host>.<pid>": returns 1 and fills host/pid */
static int parse_temp(const char *name, char *host, size_t hcap, long *pid) {
    size_t n = strlen(name);
    if (n < 2 || name[0] != '.') return 0;
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || !dot[1]) return 0;
    for (const char *p = dot + 1; *p; p++)
        if (!isdigit((unsigned char)*p)) return 0;
    const char *h = dot - 1;
    while (h > name && *h != '.') h--;
    if (h == name || h + 1 == dot) return 0;
    /* h points at the dot before the host; "tmp" must precede it */
    if (h - name < 5 || strncmp(h - 4, TMP_TAG, 5) != 0) return 0;
    if (h - 4 == name) return 0; /* no file name */
    size_t hl = (size_t)(dot - h - 1);
    if (hl >= hcap) return 0;
    memcpy(host, h + 1, hl);
    host[hl] = '\0';
    *pid = strtol(dot + 1, NULL, 10);
    return 1;
}

int atomic_is_temp(const char *name) {
    char host[256];
    long pid;
    return parse_temp(name, host, sizeof host, &pid);
}

/* remove temporaries in dir (only those of the final name `only` when not NULL) of dead processes on this host,
 * or every one when all */
static int cleanup(const char *dir, const char *only, int all, int *nremoved) {
    if (nremoved) *nremoved = 0;
    size_t olen = only ? strlen(only) : 0;
    DIR *d = opendir(dir);
    if (!d) return err_set(ERR_IO, "%s: cannot list directory: %s", dir, fs_errno_msg(errno));
    char me[128];
    host_tag(me, sizeof me);
    int rc = ERR_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char host[256], path[ATOMIC_PATH_MAX];
        long pid;
        if (!parse_temp(e->d_name, host, sizeof host, &pid)) continue;
        if (only && (strncmp(e->d_name + 1, only, olen) || strncmp(e->d_name + 1 + olen, TMP_TAG, 5))) continue;
        int dead = !strcmp(host, me) && pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
        if (!all && !dead) continue;
        if (fs_join(path, sizeof path, dir, e->d_name)) continue;
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = err_set(ERR_IO, "%s: cannot remove stale temporary: %s", path, fs_errno_msg(errno));
            continue;
        }
        if (nremoved) (*nremoved)++;
    }
    closedir(d);
    return rc;
}

int atomic_cleanup(const char *dir, int all, int *nremoved) { return cleanup(dir, NULL, all, nremoved); }

int atomic_cleanup_stale(const char *final_path, int *nremoved) {
    char dir[ATOMIC_PATH_MAX];
    if (nremoved) *nremoved = 0;
    fs_dirname(final_path, dir, sizeof dir);
    if (!fs_is_dir(dir)) return ERR_OK; /* atomic_begin reports the missing directory */
    return cleanup(dir, fs_basename(final_path), 0, nremoved);
}
