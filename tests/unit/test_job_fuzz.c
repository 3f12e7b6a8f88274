/* Fuzz the job loader a little: every truncation and many random byte/bit mutations of the shipped
 * jobs must give either a clean load or errors with a place, never a crash or a leak (run under ASan). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job/job.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) { /* xorshift64*, deterministic */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

static char *slurp(const char *rel, size_t *n) {
    char path[1024];
    const char *src = getenv("ORPO_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/%s", src && *src ? src : ORPO_SOURCE_DIR, rel);
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    if (b && fread(b, 1, *n, fp) != *n) *n = 0;
    fclose(fp);
    return b;
}

static int ok_loads, err_loads, bad;
static const char PUNCT[] = ":-[]{}#&*!|>'\"%@`,? \t\n0.";
static const char SETCH[] = "0123456789.e-+,:[]{}=abq_ ";

/* one load; the result must be consistent */
static void one(const char *buf, size_t n, const job_override *ov, int nov) {
    job_report rep;
    job_config c;
    job_report_init(&rep);
    int rc = job_load_string(buf, n, "fuzz/job.yaml", ov, nov, 0, &c, &rep);
    if (rc == ERR_OK) {
        ok_loads++;
        if (rep.nerr != 0 || !c.job.name || !c.model.path || !c.data.path || !c.job.output_dir) bad++;
        /* a clean load must write a YAML that loads again to the same hash */
        char *out = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&out, &len);
        job_write_yaml(&c, fp);
        fclose(fp);
        job_config c2;
        job_report r2;
        job_report_init(&r2);
        if (job_load_string(out, len, "fuzz/frozen.yaml", NULL, 0, 0, &c2, &r2) != ERR_OK ||
            job_hash(&c2) != job_hash(&c)) {
            fprintf(stderr, "round trip failed for:\n%.*s\n--- wrote:\n%s\n", (int)n, buf, out);
            job_report_print(&r2, stderr);
            bad++;
        }
        job_free(&c2);
        job_report_free(&r2);
        free(out);
    } else {
        err_loads++;
        if (rc != ERR_ARGS || rep.nerr < 1 || c.job.name != NULL) bad++;
        for (int i = 0; i < rep.n; i++) /* every diagnostic of the file has a place inside it */
            if (!strcmp(rep.d[i].file, "fuzz/job.yaml") && (rep.d[i].line < 1 || rep.d[i].col < 1)) {
                fprintf(stderr, "diagnostic without a place: %s\n", rep.d[i].msg);
                bad++;
            }
        FILE *null = fopen("/dev/null", "w");
        job_report_print(&rep, null);
        fclose(null);
    }
    job_free(&c);
    job_report_free(&rep);
}

static void fuzz_file(const char *rel, int mutations) {
    size_t n = 0;
    char *orig = slurp(rel, &n);
    CHECK(orig != NULL);
    if (!orig) return;
    /* every truncation */
    for (size_t len = 0; len <= n; len++) one(orig, len, NULL, 0);
    char *buf = malloc(n + 1);
    for (int m = 0; m < mutations; m++) {
        memcpy(buf, orig, n);
        int k = 1 + (int)(next() % 4);
        for (int j = 0; j < k; j++) {
            size_t at = next() % n;
            switch (next() % 4) {
            case 0: buf[at] = (char)(next() & 0xff); break;           /* random byte */
            case 1: buf[at] ^= (char)(1u << (next() % 8)); break;     /* bit flip */
            case 2: buf[at] = PUNCT[next() % (sizeof PUNCT - 1)]; break; /* YAML punctuation */
            case 3: memmove(buf + at, buf + at + 1, n - at - 1); buf[n - 1] = ' '; break; /* delete */
            }
        }
        one(buf, n, NULL, 0);
    }
    /* random --set values over the clean file */
    static const char *const keys[] = {"lora.rank", "train.lr", "lora.targets", "train.lr_groups", "model.path",
                                       "job.name", "runtime.device", "lora.use_rslora", "data.val_fraction"};
    for (int m = 0; m < 300; m++) {
        char val[24];
        int l = (int)(next() % 20);
        for (int j = 0; j < l; j++) val[j] = SETCH[next() % (sizeof SETCH - 1)];
        val[l] = 0;
        job_override ov = {keys[next() % 9], val};
        one(orig, n, &ov, 1);
    }
    free(buf);
    free(orig);
}

int main(void) {
    fuzz_file("jobs/demo.yaml", 2000);
    fuzz_file("jobs/llava16-mistral7b-8gb.yaml", 2000);
    printf("%d clean loads, %d loads with errors\n", ok_loads, err_loads);
    CHECK_EQ_INT(bad, 0);
    CHECK(ok_loads > 100);  /* the fuzz reaches both outcomes */
    CHECK(err_loads > 1000);
    TEST_MAIN_END();
}
