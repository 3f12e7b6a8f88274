/* sched: transformers' warm-up + cosine / constant / linear factors at hand-computed points. */
#include <string.h>

#include "io/err.h"
#include "test.h"
#include "train/sched.h"

int main(void) {
    /* cosine, warm-up 10, total 110: linear ramp, then 0.5 (1 + cos(pi * progress)) */
    CHECK_NEAR(sched_factor(SCHED_COSINE, 0, 10, 110), 0.0, 0);
    CHECK_NEAR(sched_factor(SCHED_COSINE, 1, 10, 110), 0.1, 1e-16);
    CHECK_NEAR(sched_factor(SCHED_COSINE, 5, 10, 110), 0.5, 1e-16);
    CHECK_NEAR(sched_factor(SCHED_COSINE, 10, 10, 110), 1.0, 0);
    CHECK_NEAR(sched_factor(SCHED_COSINE, 35, 10, 110), 0.5 * (1 + cos(M_PI / 4)), 1e-15);
    CHECK_NEAR(sched_factor(SCHED_COSINE, 60, 10, 110), 0.5, 1e-15);
    CHECK_NEAR(sched_factor(SCHED_COSINE, 110, 10, 110), 0.0, 1e-16);
    CHECK_NEAR(sched_factor(SCHED_COSINE, 0, 0, 4), 1.0, 0); /* no warm-up: the first step has the peak lr */
    CHECK_NEAR(sched_factor(SCHED_COSINE, 3, 0, 4), 0.5 * (1 + cos(M_PI * 0.75)), 1e-15);
    /* monotone decay after warm-up, never negative */
    double prev = 2;
    for (int s = 10; s <= 110; s++) {
        double f = sched_factor(SCHED_COSINE, s, 10, 110);
        CHECK(f <= prev && f >= 0);
        prev = f;
    }
    /* constant with warm-up */
    CHECK_NEAR(sched_factor(SCHED_CONSTANT, 3, 4, 100), 0.75, 0);
    CHECK_NEAR(sched_factor(SCHED_CONSTANT, 4, 4, 100), 1.0, 0);
    CHECK_NEAR(sched_factor(SCHED_CONSTANT, 1000, 4, 100), 1.0, 0);
    CHECK_NEAR(sched_factor(SCHED_CONSTANT, 0, 0, 100), 1.0, 0);
    /* linear */
    CHECK_NEAR(sched_factor(SCHED_LINEAR, 2, 4, 12), 0.5, 0);
    CHECK_NEAR(sched_factor(SCHED_LINEAR, 8, 4, 12), 0.5, 0);
    CHECK_NEAR(sched_factor(SCHED_LINEAR, 13, 4, 12), 0.0, 0);
    /* lr = base * factor, pure in the step */
    CHECK_NEAR(sched_lr(SCHED_COSINE, 2e-4, 60, 10, 110), 1e-4, 1e-19);
    CHECK(sched_lr(SCHED_COSINE, 2e-4, 37, 10, 110) == sched_lr(SCHED_COSINE, 2e-4, 37, 10, 110));
    /* names */
    int k = -1;
    CHECK_EQ_INT(sched_parse("constant", &k), ERR_OK);
    CHECK_EQ_INT(k, SCHED_CONSTANT);
    CHECK_EQ_INT(sched_parse("cosine", &k), ERR_OK);
    CHECK_EQ_INT(k, SCHED_COSINE);
    CHECK_EQ_STR(sched_name(SCHED_LINEAR), "linear");
    CHECK_EQ_STR(sched_name(7), "?");
    CHECK_EQ_INT(sched_parse("cosin", &k), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "\"cosin\": expected one of cosine, constant, linear");
    TEST_MAIN_END();
}
