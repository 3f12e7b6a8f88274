/* atomic — crash-safe replacement of a file: write a temporary in the same directory, close it,
 * fsync it, rename it over the final name, fsync the directory (spec hpc-patterns §2.2).
 * After a kill -9 at any instant the final path holds either the complete old file or the
 * complete new one; a leftover temporary is removed by atomic_cleanup().
 *
 *   atomic_begin(&af, final_path)        fills af.tmp = "<dir>/.<name>.tmp.<host>.<pid>" (removes a stale one)
 *   atomic_commit(&af)                   caller has closed af.tmp: fsync, rename to final, fsync dir
 *   atomic_abort(&af)                    unlink the temporary (safe to call twice or after commit)
 *   atomic_write_file(path, buf, n)      whole small file from a buffer, atomically
 *   atomic_cleanup(dir, all, &nremoved)  remove temporaries of dead processes on this host (all=1: every one)
 *   atomic_cleanup_stale(final_path, &nremoved)   remove the temporaries of final_path left by dead processes on
 *                                        this host (a kill -9 during a previous write); others are left alone
 *   atomic_is_temp(name)                 1 when a file name (no directory) looks like one of our temporaries
 *
 * Errors are ERR_IO naming the path and strerror; ENOSPC adds "(disk full)". A failed commit
 * leaves the old final file untouched and removes the temporary.
 */
#ifndef ORPO_ATOMIC_H
#define ORPO_ATOMIC_H

#include <stddef.h>

#define ATOMIC_PATH_MAX 4096

typedef struct atomic_file {
    char final[ATOMIC_PATH_MAX];
    char tmp[ATOMIC_PATH_MAX];
    int active; /* the temporary may exist */
} atomic_file;

int atomic_begin(atomic_file *af, const char *final_path);
int atomic_commit(atomic_file *af);
void atomic_abort(atomic_file *af);
int atomic_write_file(const char *path, const void *buf, size_t n);
int atomic_cleanup(const char *dir, int all, int *nremoved);
int atomic_cleanup_stale(const char *final_path, int *nremoved);
int atomic_is_temp(const char *name);

#endif
