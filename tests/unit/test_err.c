/* err: the message buffer may be quoted in the new message (err_set(c, "...: %s", err_msg())), err_push keeps
 * the old message after the prefix, err_recode changes only the code, long messages are cut, not overrun. */
#include "io/err.h"
#include "test.h"

int main(void) {
    /* a message that quotes the current one: formatted from a copy, not from the buffer being written */
    err_set(ERR_IO, "image 3: truncated JPEG");
    CHECK_EQ_INT(err_set(ERR_DATA, "data.h5: pair 7: %s", err_msg()), ERR_DATA);
    CHECK_EQ_STR(err_msg(), "data.h5: pair 7: image 3: truncated JPEG");
    CHECK_EQ_INT(err_code(), ERR_DATA);

    /* the current message twice, and after other text */
    err_set(ERR_DATA, "abc");
    err_set(ERR_DATA, "%s-%s-%d", err_msg(), err_msg(), 5);
    CHECK_EQ_STR(err_msg(), "abc-abc-5");

    /* err_push quoting the current message in its prefix */
    err_set(ERR_DATA, "inner");
    CHECK_EQ_INT(err_push("outer (%s)", err_msg()), ERR_DATA);
    CHECK_EQ_STR(err_msg(), "outer (inner): inner");

    /* err_recode: same message, new code */
    err_set(ERR_ARGS, "tokenizer.json: line 1, column 5: expected a string");
    err_push("model.h5:/source/tokenizer.json");
    CHECK_EQ_INT(err_recode(ERR_DATA), ERR_DATA);
    CHECK_EQ_INT(err_code(), ERR_DATA);
    CHECK_EQ_STR(err_msg(), "model.h5:/source/tokenizer.json: tokenizer.json: line 1, column 5: expected a string");

    /* a message longer than the buffer, quoted into itself: cut, NUL-terminated, the prefix intact */
    static char big[10000];
    memset(big, 'x', sizeof big - 1);
    err_set(ERR_DATA, "%s", big);
    CHECK(strlen(err_msg()) < sizeof big - 1);
    size_t n = strlen(err_msg());
    err_set(ERR_DATA, "p: %s", err_msg());
    CHECK_EQ_INT(strlen(err_msg()), n);
    CHECK(!strncmp(err_msg(), "p: xxxx", 7));
    err_push("q");
    CHECK(!strncmp(err_msg(), "q: p: xxx", 9));

    err_clear();
    CHECK_EQ_INT(err_code(), ERR_OK);
    CHECK_EQ_STR(err_msg(), "");
    TEST_MAIN_END();
}
