/* interrupt — signals of the commands that write one file through a temporary (import-data, import-model).
 *
 * `train` finishes its step and checkpoints on a signal (src/train, src/job); an importer has nothing worth
 * keeping half done, so on SIGTERM (Slurm's scancel / time limit), SIGINT (Ctrl-C) or SIGHUP it removes its
 * temporary at once, even when blocked in a read, prints
 *     orpo-hpc: import-data: interrupted by SIGTERM: removed the temporary DIR/.out.h5.tmp.HOST.PID; nothing was
 *     written at DIR/out.h5; run the command again
 * and exits 75 (ERR_INTERRUPTED: a requeued Slurm job simply redoes the import). A file-size limit (ulimit -f)
 * makes writes fail with EFBIG instead of killing the process with SIGXFSZ, so the usual error path reports it
 * (exit 4, naming the file) and removes the temporary. A temporary still guarded when the process exits (e.g.
 * mem_alloc's exit on out of memory) is removed too. After a kill -9 the temporary stays; the next run removes
 * it (atomic_cleanup_stale).
 *
 *   intr_install(cmd)          install the handlers; cmd names the command in the message ("import-data")
 *   intr_guard(tmp, final)     the temporary to remove on a signal or exit, and the file it will become
 *   intr_release()             nothing to remove any more (after the commit or the abort)
 *
 * One temporary at a time, guarded and released by the thread that writes it.
 */
#ifndef ORPO_INTERRUPT_H
#define ORPO_INTERRUPT_H

void intr_install(const char *cmd);
void intr_guard(const char *tmp, const char *final);
void intr_release(void);

#endif
