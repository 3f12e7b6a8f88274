/* tok, template: running out of memory while encoding exits 4 with "out of memory: cannot allocate N bytes ... for
 * WHAT" (src/io/mem.h), never a NULL pointer, a segfault or an "internal error" return. A child process under a
 * 512 MiB address-space limit encodes a 160 MiB text (sentencepiece's normalized copy needs 3 bytes per byte). Under
 * ASan the limit cannot be set (its shadow memory is far over it): the children are skipped there. */
#include <sys/resource.h>
#include <sys/wait.h>

#include "data/template.h"
#include "io/err.h"
#include "io/mem.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#else
#define UNDER_ASAN 0
#endif

#define BIG ((size_t)160 << 20)

static tok *g_tok;

static char *big_text(void) {
    char *s = mem_alloc(BIG + 1, "the test's text");
    memset(s, 'a', BIG);
    s[BIG] = '\0';
    return s;
}

/* the call must not return: when it does (an error instead of the out-of-memory exit), the child says so and
 * exits 10 + its status */
static void returned(int rc) {
    fprintf(stderr, "returned %d: %s\n", rc, rc ? err_msg() : "");
    _exit(10 + rc);
}

static void encode_big(void) {
    tok_ids ids = {0};
    returned(tok_encode(g_tok, big_text(), BIG, 0, &ids));
}

static void template_big(void) {
    tpl_seq seq;
    returned(tpl_encode(g_tok, big_text(), "answer", 0, &seq));
}

int main(void) {
    CHECK_EQ_INT(tok_load_file(test_fixture("tokenizer/tokenizer.json"), &g_tok), ERR_OK);
    if (!g_tok) TEST_MAIN_END();
    if (UNDER_ASAN) {
        printf("skipped under ASan (no address-space limit)\n");
    } else {
        char msg[4096];
        CHECK_EQ_INT(test_child(encode_big, (size_t)512 << 20, msg, sizeof msg), 4);
        CHECK_CONTAINS(msg, "out of memory: cannot allocate");
        CHECK_CONTAINS(msg, "for tokenizer text buffer");
        CHECK_EQ_INT(test_child(template_big, (size_t)512 << 20, msg, sizeof msg), 4);
        CHECK_CONTAINS(msg, "out of memory: cannot allocate");
        fprintf(stderr, "template child: %s", msg);
    }
    /* an ordinary encode still works in the parent */
    tok_ids ids = {0};
    CHECK_EQ_INT(tok_encode(g_tok, "<s> a", 5, 0, &ids), ERR_OK);
    CHECK(ids.n == 3 && ids.v[0] == 1 && ids.v[1] == 28705 && ids.v[2] == 264);
    tok_ids_free(&ids);
    tok_free(g_tok);
    TEST_MAIN_END();
}
