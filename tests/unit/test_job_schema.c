/* The key table is the one source of truth: the committed schemas/job.schema.json must be exactly what
 * the table prints, and docs/jobs.md must document exactly the keys of the schema (no more, no fewer),
 * with the generated reference table unchanged. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job/job.h"
#include "test.h"

static const char *src_dir(void) {
    const char *s = getenv("ORPO_SOURCE_DIR");
    return s && *s ? s : ORPO_SOURCE_DIR;
}

static char *slurp(const char *rel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", src_dir(), rel);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, fp) != (size_t)n) n = 0;
    if (b) b[n] = 0;
    fclose(fp);
    return b;
}

static char *printed(int (*fn)(FILE *)) {
    char *out = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&out, &len);
    fn(fp);
    fclose(fp);
    return out;
}

static void first_difference(const char *a, const char *b, const char *what) {
    int line = 1;
    const char *la = a, *lb = b;
    while (*a && *a == *b) {
        if (*a == '\n') line++, la = a + 1, lb = b + 1;
        a++, b++;
    }
    fprintf(stderr, "%s differs at line %d:\n  committed: %.*s\n  table:     %.*s\n", what, line,
            (int)strcspn(la, "\n"), la, (int)strcspn(lb, "\n"), lb);
}

/* key paths "section.key" of the schema, in order */
static int schema_keys(cJSON *root, char keys[][64], int max) {
    int n = 0;
    cJSON *props = cJSON_GetObjectItemCaseSensitive(root, "properties"), *sec, *key;
    cJSON_ArrayForEach(sec, props) {
        cJSON *kp = cJSON_GetObjectItemCaseSensitive(sec, "properties");
        cJSON_ArrayForEach(key, kp) {
            if (n < max) snprintf(keys[n], 64, "%s.%s", sec->string, key->string);
            n++;
        }
    }
    return n;
}

int main(void) {
    int nk;
    const job_key *K = job_keys(&nk);

    /* 1. committed schema == printed schema, byte for byte */
    char *committed = slurp("schemas/job.schema.json"), *schema = printed(job_print_schema);
    CHECK(committed != NULL);
    if (committed && strcmp(committed, schema)) {
        first_difference(committed, schema, "schemas/job.schema.json (regenerate: orpo-hpc validate --print-schema)");
        CHECK(0);
    }

    /* 2. the schema's keys, required lists and enums are the table's */
    cJSON *root = committed ? cJSON_Parse(committed) : NULL;
    CHECK(root != NULL);
    static char skeys[256][64];
    int ns = root ? schema_keys(root, skeys, 256) : 0;
    CHECK_EQ_INT(ns, nk);
    for (int i = 0; i < ns && i < nk; i++) CHECK_EQ_STR(skeys[i], K[i].path);
    if (root) {
        CHECK_EQ_STR(cJSON_GetObjectItemCaseSensitive(root, "$schema")->valuestring,
                     "https://json-schema.org/draft/2020-12/schema");
        cJSON *req = cJSON_GetObjectItemCaseSensitive(root, "required");
        CHECK_EQ_INT(cJSON_GetArraySize(req), 3);
        CHECK_EQ_STR(cJSON_GetArrayItem(req, 0)->valuestring, "job");
        CHECK_EQ_STR(cJSON_GetArrayItem(req, 2)->valuestring, "data");
        cJSON *lora = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "properties"), "lora");
        cJSON *dropout = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(lora, "properties"), "dropout");
        CHECK_NEAR(cJSON_GetObjectItemCaseSensitive(dropout, "exclusiveMaximum")->valuedouble, 1.0, 0);
        CHECK_NEAR(cJSON_GetObjectItemCaseSensitive(dropout, "minimum")->valuedouble, 0.0, 0);
        CHECK_NEAR(cJSON_GetObjectItemCaseSensitive(dropout, "default")->valuedouble, 0.05, 0);
        CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(lora, "additionalProperties")));
    }

    /* 3. docs/jobs.md: the generated block is unchanged, and its rows are exactly the schema's keys */
    char *doc = slurp("docs/jobs.md"), *table = printed(job_print_keys_markdown);
    CHECK(doc != NULL);
    const char *begin = doc ? strstr(doc, "<!-- BEGIN KEYS") : NULL, *end = doc ? strstr(doc, "<!-- END KEYS -->") : NULL;
    CHECK(begin && end && begin < end);
    if (begin && end && begin < end) {
        begin = strchr(begin, '\n') + 1;
        size_t n = (size_t)(end - begin);
        if (n != strlen(table) || strncmp(begin, table, n)) {
            char *blk = strndup(begin, n);
            first_difference(blk, table, "the key table of docs/jobs.md (regenerate: orpo-hpc validate --print-keys)");
            free(blk);
            CHECK(0);
        }
    }
    /* every "| `a.b` |" row anywhere in the page is a schema key, and every schema key has one row */
    int rows = 0, *seen = calloc((size_t)ns + 1, sizeof *seen);
    for (const char *p = doc; p && (p = strstr(p, "\n| `")); p++) {
        const char *k = p + 4, *e = strchr(k, '`');
        if (!e) break;
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(e - k), k);
        if (!strchr(key, '.') || strchr(key, ' ')) continue; /* not a key row (e.g. the list of shipped jobs) */
        if (!strncmp(key, "jobs/", 5)) continue;
        rows++;
        int found = -1;
        for (int i = 0; i < ns; i++)
            if (!strcmp(skeys[i], key)) found = i;
        if (found < 0) fprintf(stderr, "docs/jobs.md documents '%s', which is not in the schema\n", key);
        CHECK(found >= 0);
        if (found >= 0) seen[found]++;
    }
    CHECK_EQ_INT(rows, ns);
    for (int i = 0; i < ns; i++) {
        if (seen[i] != 1) fprintf(stderr, "schema key '%s' has %d rows in docs/jobs.md\n", skeys[i], seen[i]);
        CHECK_EQ_INT(seen[i], 1);
    }
    free(seen);
    cJSON_Delete(root);
    free(committed);
    free(schema);
    free(doc);
    free(table);
    TEST_MAIN_END();
}
