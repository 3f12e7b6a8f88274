/* job_write — what is derived from the key table for the outside: the JSON Schema, the docs table,
 * the effective configuration as YAML, and the hash of the result-changing keys. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/mem.h"
#include "job/job.h"
#include "job/job_internal.h"

static const void *cfield(const job_config *c, const job_key *k) { return (const char *)c + k->off; }

static void json_str(FILE *fp, const char *s) {
    fputc('"', fp);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(fp, "\\%c", c);
        else if (c == '\n') fputs("\\n", fp);
        else if (c < 0x20) fprintf(fp, "\\u%04x", c);
        else fputc(c, fp);
    }
    fputc('"', fp);
}

static void json_num(FILE *fp, const job_key *k, double v) {
    char b[64];
    if (k->type == JOB_T_INT) fprintf(fp, "%lld", (long long)v);
    else {
        job_fmt_float(v, b, sizeof b);
        fputs(b, fp);
    }
}

static void json_values(FILE *fp, const char *const *v) {
    fputc('[', fp);
    for (int i = 0; v[i]; i++) {
        if (i) fputs(", ", fp);
        json_str(fp, v[i]);
    }
    fputc(']', fp);
}

static void json_range(FILE *fp, const job_key *k, const char *ind) {
    if (k->flags & JOB_K_HAS_MIN) {
        fprintf(fp, ",\n%s\"%s\": ", ind, k->flags & JOB_K_MIN_EXCL ? "exclusiveMinimum" : "minimum");
        json_num(fp, k, k->min);
    }
    if (k->flags & JOB_K_HAS_MAX) {
        fprintf(fp, ",\n%s\"%s\": ", ind, k->flags & JOB_K_MAX_EXCL ? "exclusiveMaximum" : "maximum");
        json_num(fp, k, k->max);
    }
}

/* One key's schema, at 8 spaces of indentation for its members. */
static void json_key(FILE *fp, const job_key *k) {
    const char *I = "          ";
    fprintf(fp, "        ");
    json_str(fp, job_key_leaf(k));
    fprintf(fp, ": {\n%s\"description\": ", I);
    if (!strcmp(k->path, "job.output_dir")) {
        char d[512];
        snprintf(d, sizeof d, "%s (default: runs/<job.name> next to the job file)", k->doc);
        json_str(fp, d);
    } else {
        json_str(fp, k->doc);
    }
    switch (k->type) {
    case JOB_T_STR:
    case JOB_T_PATH:
        fprintf(fp, ",\n%s\"type\": \"string\",\n%s\"minLength\": 1", I, I);
        if (!strcmp(k->path, "job.name")) fprintf(fp, ",\n%s\"pattern\": \"%s\"", I, JOB_NAME_PATTERN);
        break;
    case JOB_T_INT:
    case JOB_T_FLOAT:
        fprintf(fp, ",\n%s\"type\": \"%s\"", I, k->type == JOB_T_INT ? "integer" : "number");
        json_range(fp, k, I);
        if (k->def) {
            fprintf(fp, ",\n%s\"default\": ", I);
            json_num(fp, k, strtod(k->def, NULL));
        }
        break;
    case JOB_T_BOOL:
        fprintf(fp, ",\n%s\"type\": \"boolean\",\n%s\"default\": %s", I, I, k->def);
        break;
    case JOB_T_ENUM:
        fprintf(fp, ",\n%s\"type\": \"string\",\n%s\"enum\": ", I, I);
        json_values(fp, k->values);
        fprintf(fp, ",\n%s\"default\": ", I);
        json_str(fp, k->def);
        break;
    case JOB_T_LIST: {
        fprintf(fp, ",\n%s\"type\": \"array\",\n%s\"uniqueItems\": true", I, I);
        if (k->flags & JOB_K_HAS_MIN) fprintf(fp, ",\n%s\"minItems\": %d", I, (int)k->min);
        fprintf(fp, ",\n%s\"items\": ", I);
        if (k->prefix) {
            fprintf(fp, "{\n%s  \"anyOf\": [\n%s    {\"enum\": ", I, I);
            json_values(fp, k->values);
            fprintf(fp, "},\n%s    {\"type\": \"string\", \"pattern\": \"^%s(", I, k->prefix);
            for (int i = 0; k->prefix_values[i]; i++) fprintf(fp, "%s%s", i ? "|" : "", k->prefix_values[i]);
            fprintf(fp, ")$\"}\n%s  ]\n%s}", I, I);
        } else {
            fprintf(fp, "{\"enum\": ");
            json_values(fp, k->values);
            fputc('}', fp);
        }
        fprintf(fp, ",\n%s\"default\": [", I);
        const char *p = k->def;
        while (*p) {
            const char *c = strchr(p, ',');
            size_t n = c ? (size_t)(c - p) : strlen(p);
            fprintf(fp, "%s\"%.*s\"", p == k->def ? "" : ", ", (int)n, p);
            p += n + (c ? 1 : 0);
        }
        fputc(']', fp);
        break;
    }
    case JOB_T_MAP:
        fprintf(fp, ",\n%s\"type\": \"object\",\n%s\"propertyNames\": {\"enum\": ", I, I);
        json_values(fp, k->values);
        fprintf(fp, "},\n%s\"additionalProperties\": {\"type\": \"number\"", I);
        if (k->flags & JOB_K_HAS_MIN) {
            fprintf(fp, ", \"%s\": ", k->flags & JOB_K_MIN_EXCL ? "exclusiveMinimum" : "minimum");
            json_num(fp, k, k->min);
        }
        if (k->flags & JOB_K_HAS_MAX) {
            fprintf(fp, ", \"%s\": ", k->flags & JOB_K_MAX_EXCL ? "exclusiveMaximum" : "maximum");
            json_num(fp, k, k->max);
        }
        fprintf(fp, "},\n%s\"default\": {}", I);
        break;
    }
    fprintf(fp, "\n        }");
}

int job_print_schema(FILE *fp) {
    int nk, ns;
    const job_key *K = job_keys(&nk);
    const job_section *S = job_sections(&ns);
    fprintf(fp, "{\n"
                "  \"$schema\": \"https://json-schema.org/draft/2020-12/schema\",\n"
                "  \"$id\": \"urn:orpo-hpc:job-schema:1\",\n"
                "  \"$comment\": \"Generated by 'orpo-hpc validate --print-schema' from src/job/job_keys.c; "
                "do not edit. See docs/jobs.md.\",\n"
                "  \"title\": \"orpo-hpc job file\",\n"
                "  \"type\": \"object\",\n"
                "  \"additionalProperties\": false,\n"
                "  \"required\": [");
    int first = 1;
    for (int s = 0; s < ns; s++)
        for (int i = 0; i < nk; i++)
            if (job_key_in_section(&K[i], S[s].name) && (K[i].flags & JOB_K_REQUIRED)) {
                fprintf(fp, "%s\"%s\"", first ? "" : ", ", S[s].name);
                first = 0;
                break;
            }
    fprintf(fp, "],\n  \"properties\": {\n");
    for (int s = 0; s < ns; s++) {
        fprintf(fp, "    \"%s\": {\n      \"description\": ", S[s].name);
        json_str(fp, S[s].doc);
        fprintf(fp, ",\n      \"type\": \"object\",\n      \"additionalProperties\": false,\n");
        int nreq = 0;
        for (int i = 0; i < nk; i++)
            if (job_key_in_section(&K[i], S[s].name) && (K[i].flags & JOB_K_REQUIRED)) {
                fprintf(fp, "%s\"%s\"", nreq ? ", " : "      \"required\": [", job_key_leaf(&K[i]));
                nreq++;
            }
        if (nreq) fprintf(fp, "],\n");
        fprintf(fp, "      \"properties\": {\n");
        int nkey = 0;
        for (int i = 0; i < nk; i++) {
            if (!job_key_in_section(&K[i], S[s].name)) continue;
            if (nkey++) fprintf(fp, ",\n");
            json_key(fp, &K[i]);
        }
        fprintf(fp, "\n      }\n    }%s\n", s + 1 < ns ? "," : "");
    }
    fprintf(fp, "  }\n}\n");
    return ferror(fp) ? err_set(ERR_IO, "writing the schema failed") : ERR_OK;
}

/* ---- docs/jobs.md reference table ----------------------------------------------------------- */

static const char *type_name(const job_key *k) {
    static const char *const n[] = {"string", "path", "integer", "number", "boolean", "enum", "list", "mapping"};
    return n[k->type];
}

static void md_allowed(const job_key *k, char *buf, size_t n) {
    size_t o = 0;
    buf[0] = 0;
    if (k->type == JOB_T_ENUM || k->type == JOB_T_LIST || k->type == JOB_T_MAP) {
        for (int i = 0; k->values[i]; i++) o += (size_t)snprintf(buf + o, n - o, "%s`%s`", i ? ", " : "", k->values[i]);
        if (k->prefix) {
            o += (size_t)snprintf(buf + o, n - o, ", `%s<name>` with name ", k->prefix);
            for (int i = 0; k->prefix_values[i]; i++)
                o += (size_t)snprintf(buf + o, n - o, "%s`%s`", i ? ", " : "", k->prefix_values[i]);
        }
        if (k->type == JOB_T_LIST && (k->flags & JOB_K_HAS_MIN) && k->min > 0)
            o += (size_t)snprintf(buf + o, n - o, "; at least %d", (int)k->min);
        if (k->type == JOB_T_MAP) o += (size_t)snprintf(buf + o, n - o, " -> number ");
        else return;
    }
    if (k->type == JOB_T_STR && !strcmp(k->path, "job.name")) {
        snprintf(buf, n, "`%s`", JOB_NAME_PATTERN);
        return;
    }
    if (k->type != JOB_T_INT && k->type != JOB_T_FLOAT && k->type != JOB_T_MAP) return;
    if (o < n) job_range_text(k, buf + o, n - o);
}

/* Markdown text outside code spans: '<' would start an HTML tag. */
static void md_text(FILE *fp, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", fp);
        else if (*s == '>') fputs("&gt;", fp);
        else fputc(*s, fp);
    }
}

int job_print_keys_markdown(FILE *fp) {
    int nk;
    const job_key *K = job_keys(&nk);
    fprintf(fp, "| key | type | default | allowed | in hash | meaning |\n");
    fprintf(fp, "|---|---|---|---|---|---|\n");
    for (int i = 0; i < nk; i++) {
        char def[256], allowed[512];
        job_fmt_default(&K[i], def, sizeof def);
        md_allowed(&K[i], allowed, sizeof allowed);
        fprintf(fp, "| `%s` | %s | %s%s%s | %s | %s | ", K[i].path, type_name(&K[i]), K[i].def ? "`" : "", def,
                K[i].def ? "`" : "", allowed, (K[i].flags & JOB_K_RESULT) ? "yes" : "no");
        md_text(fp, K[i].doc);
        fputs(" |\n", fp);
    }
    return ferror(fp) ? err_set(ERR_IO, "writing the key table failed") : ERR_OK;
}

/* ---- effective configuration as YAML ------------------------------------------------------------ */

static void yaml_str(FILE *fp, const char *s) { json_str(fp, s); /* a JSON string is a YAML double-quoted scalar */ }

/* malloc'ed indices 0..n-1, in the order of names[] when sorted (a stable insertion sort: lists are short) */
static int *name_order(char *const *names, int n, int sorted) {
    int *ord = mem_alloc((size_t)n * sizeof *ord, "the order of a job list");
    for (int i = 0; i < n; i++) ord[i] = i;
    for (int i = 1; sorted && i < n; i++)
        for (int q = i; q > 0 && strcmp(names[ord[q - 1]], names[ord[q]]) > 0; q--) {
            int t = ord[q];
            ord[q] = ord[q - 1];
            ord[q - 1] = t;
        }
    return ord;
}

static void value_text(const job_config *j, const job_key *k, int ki, FILE *fp, int for_hash) {
    const void *f = cfield(j, k);
    char b[64];
    switch (k->type) {
    case JOB_T_STR: yaml_str(fp, *(char *const *)f ? *(char *const *)f : ""); break;
    case JOB_T_PATH: {
        const char *p = *(char *const *)f ? *(char *const *)f : "";
        if (for_hash) { /* by file name: a moved directory or another mount point is the same input */
            const char *slash = strrchr(p, '/');
            yaml_str(fp, slash ? slash + 1 : p);
        } else {
            yaml_str(fp, p);
        }
        break;
    }
    case JOB_T_INT: fprintf(fp, "%" PRId64, *(const int64_t *)f); break;
    case JOB_T_FLOAT:
        job_fmt_float(*(const double *)f, b, sizeof b);
        fputs(b, fp);
        break;
    case JOB_T_BOOL: fputs(*(const int *)f ? "true" : "false", fp); break;
    case JOB_T_ENUM: fputs(job_enum_name(ki, *(const int *)f), fp); break;
    case JOB_T_LIST: {
        const job_list *l = f;
        int *ord = name_order(l->v, l->n, for_hash); /* for the hash the order of a list never matters */
        fputc('[', fp);
        for (int i = 0; i < l->n; i++) {
            if (i) fputs(", ", fp);
            yaml_str(fp, l->v[ord[i]]);
        }
        fputc(']', fp);
        free(ord);
        break;
    }
    case JOB_T_MAP: {
        const job_lr_groups *m = f;
        int *ord = name_order(m->name, m->n, 1);
        fputc('{', fp);
        for (int i = 0; i < m->n; i++) {
            job_fmt_float(m->lr[ord[i]], b, sizeof b);
            fprintf(fp, "%s%s: %s", i ? ", " : "", m->name[ord[i]], b);
        }
        fputc('}', fp);
        free(ord);
        break;
    }
    }
}

int job_write_yaml(const job_config *j, FILE *fp) {
    int nk, ns;
    const job_key *K = job_keys(&nk);
    const job_section *S = job_sections(&ns);
    fprintf(fp, "# effective configuration of ");
    yaml_str(fp, j->file ? j->file : "?");
    fprintf(fp, " (orpo-hpc %s); paths are resolved\n", ORPO_VERSION);
    fprintf(fp, "# result hash: %016" PRIx64 "\n", job_hash(j));
    for (int s = 0; s < ns; s++) {
        fprintf(fp, "%s:\n", S[s].name);
        for (int i = 0; i < nk; i++) {
            if (!job_key_in_section(&K[i], S[s].name)) continue;
            if (K[i].type == JOB_T_PATH && !*(char *const *)cfield(j, &K[i])) {
                /* an optional path that is not set (runtime.vision_cache): no value to write, "" would not load */
                fprintf(fp, "  # %s: not set\n", job_key_leaf(&K[i]));
                continue;
            }
            fprintf(fp, "  %s: ", job_key_leaf(&K[i]));
            value_text(j, &K[i], i, fp, 0);
            if (j->pos[i].from == JOB_FROM_SET) fputs("  # --set", fp);
            else if (j->pos[i].from == JOB_FROM_DEFAULT) fputs("  # default", fp);
            fputc('\n', fp);
        }
    }
    return ferror(fp) ? err_set(ERR_IO, "writing the configuration failed") : ERR_OK;
}

/* ---- hash ---------------------------------------------------------------------------------- */

uint64_t job_hash(const job_config *j) {
    int nk;
    const job_key *K = job_keys(&nk);
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp) mem_fail(0, "the text of the job hash");
    fputs("orpo-hpc job hash v1\n", fp);
    for (int i = 0; i < nk; i++) {
        if (!(K[i].flags & JOB_K_RESULT)) continue;
        fprintf(fp, "%s=", K[i].path);
        value_text(j, &K[i], i, fp, 1);
        fputc('\n', fp);
    }
    int grown = !ferror(fp);
    if (fclose(fp) || !grown) mem_fail(len, "the text of the job hash"); /* a partial text would hash wrong */
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)buf[i];
        h *= 0x100000001b3ull;
    }
    free(buf);
    return h;
}

double job_lr_for_group(const job_config *j, const char *group) {
    for (int i = 0; i < j->train.lr_groups.n; i++)
        if (!strcmp(j->train.lr_groups.name[i], group)) return j->train.lr_groups.lr[i];
    return j->train.lr;
}
