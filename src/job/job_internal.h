/* job_internal — helpers shared by the files of the job module (not for other modules).
 *
 *   job_sections(&n)            the top-level sections with a one-line doc
 *   job_alias(name)             our key for a name from HF/TRL/PEFT configs, or NULL
 *   job_key_leaf(k)             "rank" for "lora.rank"
 *   job_key_in_section(k, sec)  1 when k is sec.<something>
 *   job_edit_distance(a, b)     optimal-string-alignment distance
 *   job_close(a, b)             close enough for a "did you mean" suggestion
 *   job_fmt_float(x, buf, n)    shortest text that reads back as x, always with '.' or 'e' (YAML 1.1 safe)
 *   job_fmt_default(k, buf, n)  the default of k as shown in docs ("[]", "{}", "(required)", "(not set)")
 *   job_range_text(k, buf, n)   the allowed range of a number key: "[1, 8]", "(0, 1]", ">= 0", "< 1" or ""
 *   job_path_join(dir, rel)     malloc'ed absolute, lexically normalised path (rel may be absolute)
 *   job_cwd()                   malloc'ed current directory, NULL when getcwd fails
 * (out of memory exits with status 4, io/mem.h: no function here returns NULL for it)
 *   job_name_ok(s)              job.name rule: [A-Za-z0-9][A-Za-z0-9._-]{0,63}
 */
#ifndef ORPO_JOB_INTERNAL_H
#define ORPO_JOB_INTERNAL_H

#include <stddef.h>

#include "job/job.h"

typedef struct job_section {
    const char *name;
    const char *doc;
} job_section;

#define JOB_NAME_PATTERN "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

const job_section *job_sections(int *n);
const char *job_alias(const char *leaf);
const char *job_key_leaf(const job_key *k);
int job_key_in_section(const job_key *k, const char *sec);
int job_edit_distance(const char *a, const char *b);
int job_close(const char *a, const char *b);
void job_fmt_float(double x, char *buf, size_t n);
void job_fmt_default(const job_key *k, char *buf, size_t n);
void job_range_text(const job_key *k, char *buf, size_t n);
char *job_path_join(const char *dir, const char *rel);
char *job_cwd(void);
int job_name_ok(const char *s);

#endif
