/* The demo's hallucination benchmark (src/demo/demo_halluc.c) and its table in metrics.h5:
 *  - on 600 held-out items the scorer agrees with the generator's own labels: the true answer (what make-demo writes
 *    as `chosen`) states nothing false and names no absent object; the hallucinated answer (`rejected`) states
 *    something false; description answers that add an object count it as absent (CHAIR);
 *  - "a small blue shape" is an object of that colour, whatever its outline; coverage counts the scene's objects a
 *    description names;
 *  - an answer with no parseable claim is not answered and not false; a fixed scene scores hand-written answers;
 *  - the items are not make-demo's scenes (another index stream) and are the same on every call;
 *  - met_halluc_row + met_close("eval") writes one halluc row that met_read_halluc reads back; a file without the
 *    table reads as 0 rows, and a trainer's later met_open/met_close keeps the row. */
#include <stdio.h>
#include <string.h>

#include "demo/demo.h"
#include "io/err.h"
#include "train/metrics.h"
#include "test.h"

int main(void) {
    int agree_true = 0, agree_false = 0, absent_desc = 0, n = 600;
    for (int i = 0; i < n; i++) {
        demo_scene s, s2;
        demo_pair p, p2;
        demo_halluc_item(1, i, &s, &p);
        demo_halluc_item(1, i, &s2, &p2);
        if (i < 5) CHECK(!memcmp(&s, &s2, sizeof s) && !strcmp(p.question, p2.question));
        demo_halluc_result r;
        demo_halluc_score(&s, &p, p.chosen, &r);
        agree_true += r.answered && !r.false_claim && r.absent == 0;
        if (!(r.answered && !r.false_claim && r.absent == 0))
            printf("  item %d: true answer '%s' to '%s' scored false=%d absent=%d answered=%d\n", i, p.chosen,
                   p.question, r.false_claim, r.absent, r.answered);
        demo_halluc_score(&s, &p, p.rejected, &r);
        agree_false += r.false_claim;
        if (!r.false_claim) printf("  item %d: hallucinated answer '%s' to '%s' scored not false\n", i, p.rejected, p.question);
        if (p.kind == DEMO_Q_DESCRIBE && r.absent) absent_desc++;
    }
    printf("true answers scored true: %d/%d; hallucinated scored false: %d/%d; descriptions with an absent object: %d\n",
           agree_true, n, agree_false, n, absent_desc);
    CHECK_EQ_INT(agree_true, n);
    CHECK_EQ_INT(agree_false, n);
    CHECK(absent_desc > 0);
    /* not make-demo's scene 0 */
    demo_scene s0, h0;
    demo_pair p0;
    demo_scene_make(1, 0, &s0);
    demo_halluc_item(1, 0, &h0, &p0);
    CHECK(memcmp(&s0, &h0, sizeof s0) != 0);

    /* a fixed scene: a big red circle on the left, a small blue square */
    demo_scene s;
    memset(&s, 0, sizeof s);
    s.h = s.w = 112;
    s.nobj = 2;
    s.obj[0] = (demo_obj){DEMO_CIRCLE, DEMO_RED, DEMO_LEFT, 1};
    s.obj[1] = (demo_obj){DEMO_SQUARE, DEMO_BLUE, DEMO_RIGHT, 0};
    demo_pair q;
    memset(&q, 0, sizeof q);
    q.kind = DEMO_Q_DESCRIBE;
    snprintf(q.question, sizeof q.question, "Describe the image.");
    demo_halluc_result r;
    demo_halluc_score(&s, &q, "A big red circle and a small green triangle and a small blue square.", &r);
    CHECK_EQ_INT(r.mentions, 3);
    CHECK_EQ_INT(r.absent, 1);
    CHECK_EQ_INT(r.false_claim, 1);
    CHECK(r.objects == 2 && r.covered == 2); /* red circle, blue square */
    /* make-demo's descriptions: an object by size and colour ("a small blue shape"), whatever its outline */
    demo_halluc_score(&s, &q, "A big red shape and a small blue shape on a white background.", &r);
    CHECK(r.answered && !r.false_claim && r.mentions == 2 && r.absent == 0 && r.covered == 2);
    demo_halluc_score(&s, &q, "A big red shape on a white background.", &r); /* leaves the blue one out */
    CHECK(r.answered && !r.false_claim && r.mentions == 1 && r.covered == 1 && r.objects == 2);
    /* the demo model's error: a second object in the big one's colour; the sizes tell it from the big one */
    demo_halluc_score(&s, &q, "A big red shape and a small red shape on a white background.", &r);
    CHECK(r.false_claim && r.mentions == 2 && r.absent == 1 && r.covered == 1);
    demo_halluc_score(&s, &q, "A small red circle.", &r); /* the red circle is the big one */
    CHECK(r.false_claim && r.absent == 1);
    demo_halluc_score(&s, &q, "A red circle and a blue square.", &r); /* no size: any */
    CHECK(!r.false_claim && r.covered == 2);
    demo_halluc_score(&s, &q, "A big red shape and a small green shape on a white background.", &r);
    CHECK(r.false_claim && r.absent == 1 && r.covered == 1);
    demo_halluc_score(&s, &q, "A big red square and a small blue shape.", &r); /* the outline, named and wrong */
    CHECK(r.false_claim && r.absent == 1 && r.covered == 1);
    demo_halluc_score(&s, &q, "xq zz ]] [INST", &r);
    CHECK_EQ_INT(r.answered, 0);
    CHECK_EQ_INT(r.false_claim, 0);
    q.kind = DEMO_Q_EXIST;
    snprintf(q.question, sizeof q.question, "Is there a green circle?");
    demo_halluc_score(&s, &q, "No, there is no green circle.", &r);
    CHECK(r.answered && !r.false_claim && r.mentions == 0);
    demo_halluc_score(&s, &q, "Yes, there is a green circle.", &r);
    CHECK(r.false_claim && r.absent == 1);
    /* make-demo's form: the colour, then the verdict; a claim about another colour is judged as that */
    demo_halluc_score(&s, &q, "Green absent.", &r);
    CHECK(r.answered && !r.false_claim && r.mentions == 0);
    demo_halluc_score(&s, &q, "Green present.", &r);
    CHECK(r.answered && r.false_claim);
    demo_halluc_score(&s, &q, "Red present.", &r);
    CHECK(r.answered && !r.false_claim);
    demo_halluc_score(&s, &q, "Red absent.", &r);
    CHECK(r.answered && r.false_claim);
    snprintf(q.question, sizeof q.question, "Is there a red circle?");
    demo_halluc_score(&s, &q, "Red present.", &r);
    CHECK(r.answered && !r.false_claim);
    q.kind = DEMO_Q_COUNT;
    snprintf(q.question, sizeof q.question, "How many shapes are there?");
    demo_halluc_score(&s, &q, "There are two shapes.", &r);
    CHECK(r.answered && !r.false_claim);
    demo_halluc_score(&s, &q, "There are three shapes.", &r);
    CHECK(r.false_claim);
    CHECK(r.objects == 0 && r.covered == 0); /* coverage is of descriptions only */
    /* "The big shape is red" names no object by outline; "the big shape" is not "a ... shape" */
    q.kind = DEMO_Q_COLOUR;
    snprintf(q.question, sizeof q.question, "What color is the big shape?");
    demo_halluc_score(&s, &q, "The big shape is red.", &r);
    CHECK(r.answered && !r.false_claim && r.mentions == 0);

    /* the halluc table */
    const char *dir = test_tmpdir();
    met_log *m = NULL;
    CHECK_EQ_INT(met_open(dir, 0, &m), 0);
    CHECK_EQ_INT(met_close(m, "done"), 0);
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.h5", dir);
    met_halluc *rows = NULL;
    int64_t nr = -1;
    CHECK_EQ_INT(met_read_halluc(path, &rows, &nr), 0);
    CHECK_EQ_INT((int)nr, 0);
    CHECK_EQ_INT(met_open_eval(dir, &m), 0);
    met_halluc h = {250, 120, 118, 60, 77, 51, 0.5, 51.0 / 77.0, 0};
    CHECK_EQ_INT(met_halluc_row(m, &h), 0);
    CHECK_EQ_INT(met_close(m, "eval"), 0);
    CHECK_EQ_INT(met_open(dir, 0, &m), 0); /* a trainer starting over keeps it (never superseded) */
    CHECK_EQ_INT(met_close(m, "done"), 0);
    CHECK_EQ_INT(met_read_halluc(path, &rows, &nr), 0);
    CHECK_EQ_INT((int)nr, 1);
    if (nr == 1) {
        CHECK_EQ_INT((int)rows[0].step, 250);
        CHECK_EQ_INT((int)rows[0].false_answers, 60);
        CHECK_NEAR(rows[0].chair, 51.0 / 77.0, 1e-15);
        CHECK_EQ_INT((int)rows[0].segment, 2);
    }
    free(rows);
    TEST_MAIN_END();
}
