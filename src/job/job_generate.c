/* job_generate — orpo-hpc generate: answers of a job's model (base + the chosen checkpoint's adapters) to one image
 * and question, or to every pair of a split of data.h5, written as JSONL (docs/cli.md, docs/formats.md). */
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>

#include "data/dataset.h"
#include "data/image.h"
#include "demo/demo.h"
#include "io/atomic.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/log.h"
#include "job/job_run.h"
#include "train/generate.h"
#include "train/trainer.h"

/* a JSON string (RFC 8259): quotes, backslash and control characters escaped, UTF-8 passed through */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p == '\r') fputs("\\r", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

typedef struct jsonl_ctx {
    FILE *f;
    int64_t n;
} jsonl_ctx;

static int write_answer(void *ctx, const gen_answer *a) {
    jsonl_ctx *c = ctx;
    fprintf(c->f, "{\"id\": %lld, \"image\": %lld, \"prompt\": ", (long long)a->index, (long long)a->image);
    json_str(c->f, a->prompt);
    fputs(", \"answer\": ", c->f);
    json_str(c->f, a->answer);
    fputs(", \"chosen\": ", c->f);
    json_str(c->f, a->chosen);
    fputs(", \"rejected\": ", c->f);
    json_str(c->f, a->rejected);
    fprintf(c->f, ", \"tokens\": %d}\n", a->tokens);
    c->n++;
    if (ferror(c->f)) return err_set(ERR_IO, "writing the answers failed (disk full?)");
    return ERR_OK;
}

int job_generate(trainer *t, const job_run_opts *o) {
    lt_gen_opts g;
    lt_gen_opts_default(&g);
    g.max_new = o->max_new > 0 ? o->max_new : 128;
    g.temperature = (float)o->temperature;
    g.top_p = o->top_p > 0 ? (float)o->top_p : 1.0f;
    g.seed = o->seed;
    int rc;
    if (o->image) {
        char *buf = NULL;
        size_t n = 0;
        img_rgb im;
        memset(&im, 0, sizeof im);
        if ((rc = fs_read_all(o->image, &buf, &n))) return rc;
        rc = img_decode(buf, n, o->image, -1, &im);
        free(buf);
        char *answer = NULL;
        int ntok = 0;
        if (!rc) rc = gen_image(t, &im, o->prompt, &g, &answer, &ntok);
        img_free(&im);
        if (!rc) {
            printf("%s\n", answer);
            log_info("generate: %d new tokens", ntok);
        }
        free(answer);
        return rc;
    }
    atomic_file af;
    FILE *f = stdout;
    if (o->out) {
        if ((rc = atomic_begin(&af, o->out))) return rc;
        if (!(f = fopen(af.tmp, "w"))) return err_set(ERR_IO, "%s: cannot create: %s", af.tmp, strerror(errno));
    }
    jsonl_ctx c = {f, 0};
    rc = gen_split(t, o->split, o->max_pairs, &g, write_answer, &c);
    if (o->out) {
        if (fclose(f) && !rc) rc = err_set(ERR_IO, "%s: writing failed (disk full?)", af.tmp);
        if (!rc) rc = atomic_commit(&af);
        if (rc) atomic_abort(&af);
        else log_info("generate: %lld answers written to %s", (long long)c.n, o->out);
    } else {
        fflush(stdout);
    }
    return rc;
}

/* ---- the hallucination benchmark of the demo (eval --hallucination) ------------------------------------------ */

static const char *kind_names[DEMO_NQ] = {"colour", "shape", "count", "position", "existence", "description"};

int job_halluc(trainer *t, const job_run_opts *o, int64_t step, job_halluc_result *res) {
    lt_gen_opts g;
    lt_gen_opts_default(&g);
    g.max_new = 48;
    int n = o->halluc_items > 0 ? o->halluc_items : 120;
    memset(res, 0, sizeof *res);
    res->step = step;
    int by_n[DEMO_NQ] = {0}, by_false[DEMO_NQ] = {0};
    FILE *js = o->json ? stdout : NULL;
    if (js) fprintf(js, "{\"step\": %lld, \"answers\": [\n", (long long)step);
    int rc = ERR_OK;
    for (int i = 0; !rc && i < n; i++) {
        demo_scene s;
        demo_pair p;
        demo_halluc_item(1, i, &s, &p);
        img_rgb im = {s.w, s.h, NULL};
        if ((rc = demo_scene_draw(&s, &im.px))) break;
        char *answer = NULL;
        rc = gen_image(t, &im, p.question, &g, &answer, NULL);
        img_free(&im);
        if (rc) break;
        demo_halluc_result r;
        demo_halluc_score(&s, &p, answer, &r);
        res->answers++;
        res->answered += r.answered;
        res->false_answers += r.false_claim;
        res->mentions += r.mentions;
        res->absent += r.absent;
        res->objects += r.objects;
        res->covered += r.covered;
        by_n[p.kind]++;
        by_false[p.kind] += r.false_claim;
        if (js) {
            fprintf(js, "  {\"item\": %d, \"kind\": \"%s\", \"question\": ", i, kind_names[p.kind]);
            json_str(js, p.question);
            fputs(", \"answer\": ", js);
            json_str(js, answer);
            fputs(", \"truth\": ", js);
            json_str(js, p.chosen);
            fprintf(js, ", \"false\": %d, \"mentions\": %d, \"absent\": %d", r.false_claim, r.mentions, r.absent);
            if (r.objects) fprintf(js, ", \"objects\": %d, \"covered\": %d", r.objects, r.covered);
            fprintf(js, "}%s\n", i + 1 < n ? "," : "");
        }
        free(answer);
    }
    if (rc) return rc;
    res->rate = res->answers ? (double)res->false_answers / (double)res->answers : 0;
    res->chair = res->mentions ? (double)res->absent / (double)res->mentions : 0;
    res->coverage = res->objects ? (double)res->covered / (double)res->objects : 0;
    if (js) {
        fprintf(js, "], \"n\": %lld, \"answered\": %lld, \"false\": %lld, \"mentions\": %lld, \"absent\": %lld, "
                "\"rate\": %.6f, \"chair\": %.6f, \"objects\": %lld, \"covered\": %lld, \"coverage\": %.6f, "
                "\"rate_by_kind\": {", (long long)res->answers, (long long)res->answered, (long long)res->false_answers,
                (long long)res->mentions, (long long)res->absent, res->rate, res->chair, (long long)res->objects,
                (long long)res->covered, res->coverage);
        for (int k = 0; k < DEMO_NQ; k++)
            fprintf(js, "%s\"%s\": %.6f", k ? ", " : "", kind_names[k], by_n[k] ? (double)by_false[k] / by_n[k] : 0.0);
        fputs("}}\n", js);
    } else {
        printf("hallucination benchmark at step %lld: %lld held-out demo scenes\n  rate %.4f  (%lld answers state "
               "something false)\n  chair %.4f  (%lld of %lld objects mentioned are absent)\n  coverage %.4f  (%lld of "
               "the %lld objects of the described scenes are named)\n  answered %lld\n",
               (long long)step, (long long)res->answers, res->rate, (long long)res->false_answers, res->chair,
               (long long)res->absent, (long long)res->mentions, res->coverage, (long long)res->covered,
               (long long)res->objects, (long long)res->answered);
        for (int k = 0; k < DEMO_NQ; k++)
            if (by_n[k]) printf("  %-11s %.3f of %d\n", kind_names[k], (double)by_false[k] / by_n[k], by_n[k]);
    }
    return ERR_OK;
}
