/* fsutil — small file-system helpers (POSIX) with err_set messages naming the path.
 *
 *   fs_exists(path)                  1 when path exists (any type)
 *   fs_is_dir(path)                  1 when path is a directory
 *   fs_size(path, &bytes)            size of a regular file (ERR_IO when missing)
 *   fs_mkdirs(path)                  mkdir -p (mode 0777 & umask)
 *   fs_read_all(path, &buf, &n)      whole file, malloc'ed and NUL-terminated (n excludes the NUL)
 *   fs_dirname(path, buf, cap)       "a/b/c" -> "a/b", "c" -> "."
 *   fs_basename(path)                pointer to the last component inside path
 *   fs_join(buf, cap, a, b)          "a/b" (b absolute: b); ERR_ARGS when it does not fit
 *   fs_fsync_dir(dir)                fsync a directory (make renames/creates durable)
 *   fs_errno_msg(e)                  strerror(e) plus " (disk full)" for ENOSPC, " (quota exceeded)" for EDQUOT
 */
#ifndef ORPO_FSUTIL_H
#define ORPO_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

int fs_exists(const char *path);
int fs_is_dir(const char *path);
int fs_size(const char *path, int64_t *bytes);
int fs_mkdirs(const char *path);
int fs_read_all(const char *path, char **buf, size_t *n);
const char *fs_dirname(const char *path, char *buf, size_t cap);
const char *fs_basename(const char *path);
int fs_join(char *buf, size_t cap, const char *a, const char *b);
int fs_fsync_dir(const char *dir);
const char *fs_errno_msg(int e);

#endif
