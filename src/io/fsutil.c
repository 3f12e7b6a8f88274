/* fsutil — small file-system helpers (see fsutil.h). */
#include "io/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/err.h"
#include "io/mem.h"

const char *fs_errno_msg(int e) {
    static _Thread_local char buf[256];
    snprintf(buf, sizeof buf, "%s%s", strerror(e),
             e == ENOSPC ? " (disk full)" : e == EDQUOT ? " (quota exceeded)" : "");
    return buf;
}

int fs_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int fs_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_size(const char *path, int64_t *bytes) {
    struct stat st;
    *bytes = 0;
    if (stat(path, &st) != 0) return err_set(ERR_IO, "%s: %s", path, fs_errno_msg(errno));
    if (!S_ISREG(st.st_mode)) return err_set(ERR_IO, "%s: not a regular file", path);
    *bytes = (int64_t)st.st_size;
    return ERR_OK;
}

int fs_mkdirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return err_set(ERR_ARGS, "%s: bad directory path (length %zu)", path, n);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char keep = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            return err_set(ERR_IO, "%s: cannot create directory %s: %s", path, buf, fs_errno_msg(e));
        }
        buf[i] = keep;
    }
    if (!fs_is_dir(path)) return err_set(ERR_IO, "%s: exists and is not a directory", path);
    return ERR_OK;
}

int fs_read_all(const char *path, char **out, size_t *n) {
    *out = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(ERR_IO, "%s: cannot open: %s", path, fs_errno_msg(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    char what[4200];
    snprintf(what, sizeof what, "the contents of %s", path);
    char *buf = mem_alloc(size + 1, what);
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return err_set(ERR_IO, "%s: read failed at byte %zu: %s", path, got, r < 0 ? fs_errno_msg(e) : "file shrank");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = '\0';
    *out = buf;
    *n = size;
    return ERR_OK;
}

const char *fs_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

const char *fs_dirname(const char *path, char *buf, size_t cap) {
    const char *s = strrchr(path, '/');
    if (!s) snprintf(buf, cap, ".");
    else if (s == path) snprintf(buf, cap, "/");
    else snprintf(buf, cap, "%.*s", (int)(s - path), path);
    return buf;
}

int fs_join(char *buf, size_t cap, const char *a, const char *b) {
    int n;
    if (b[0] == '/' || !a[0]) n = snprintf(buf, cap, "%s", b);
    else n = snprintf(buf, cap, "%s%s%s", a, a[strlen(a) - 1] == '/' ? "" : "/", b);
    if (n < 0 || (size_t)n >= cap) return err_set(ERR_ARGS, "path too long: %s/%s", a, b);
    return ERR_OK;
}

int fs_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return err_set(ERR_IO, "%s: cannot open directory for fsync: %s", dir, fs_errno_msg(errno));
    int rc = ERR_OK;
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        rc = err_set(ERR_IO, "%s: fsync of the directory failed: %s", dir, fs_errno_msg(errno));
    close(fd);
    return rc;
}
