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

/* run f in a child under a 512 MiB address-space limit; its stderr into buf; exit status returned. f returns the
 * rc of the call that should not have returned: the child exits 10 + rc then. */
static int child_status(int (*f)(void), char *buf, size_t cap) {
    int fd[2];
    if (pipe(fd)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        struct rlimit rl = {512ull << 20, 512ull << 20};
        setrlimit(RLIMIT_AS, &rl);
        int rc = f();
        fprintf(stderr, "returned %d: %s\n", rc, rc ? err_msg() : "");
        _exit(10 + rc);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t k;
    while (n + 1 < cap && (k = read(fd[0], buf + n, cap - 1 - n)) > 0) n += (size_t)k;
    buf[n] = '\0';
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *big_text(void) {
    char *s = mem_alloc(BIG + 1, "the test's text");
    memset(s, 'a', BIG);
    s[BIG] = '\0';
    return s;
}

static int encode_big(void) {
    tok_ids ids = {0};
    return tok_encode(g_tok, big_text(), BIG, 0, &ids);
}

static int template_big(void) {
    tpl_seq seq;
    return tpl_encode(g_tok, big_text(), "answer", 0, &seq);
}

int main(void) {
    CHECK_EQ_INT(tok_load_file(test_fixture("tokenizer/tokenizer.json"), &g_tok), ERR_OK);
    if (!g_tok) TEST_MAIN_END();
    if (UNDER_ASAN) {
        printf("skipped under ASan (no address-space limit)\n");
    } else {
        char msg[4096];
        CHECK_EQ_INT(child_status(encode_big, msg, sizeof msg), 4);
        CHECK_CONTAINS(msg, "out of memory: cannot allocate");
        CHECK_CONTAINS(msg, "for tokenizer text buffer");
        CHECK_EQ_INT(child_status(template_big, msg, sizeof msg), 4);
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
