/* template — llava-v1.6-mistral chat template on ids; see template.h. */
#include "data/template.h"

#include "io/err.h"
#include "io/mem.h"

#include <stdlib.h>
#include <string.h>

void tpl_free(tpl_seq *seq) {
    tok_ids_free(&seq->ids);
    free(seq->label);
    memset(seq, 0, sizeof *seq);
}

static char *concat(const char *a, const char *b, const char *c, const char *d, const char *e) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + strlen(d) + strlen(e);
    char *s = mem_alloc(n + 1, "chat template text");
    strcpy(s, a);
    strcat(s, b);
    strcat(s, c);
    strcat(s, d);
    strcat(s, e);
    return s;
}

/* Copy ids, expanding the one image id to n_image copies (n_image 0 keeps no image token). */
static int expand(const tok_ids *in, int32_t image_id, int32_t n_image, tok_ids *out, size_t *image_start) {
    *image_start = (size_t)-1;
    for (size_t i = 0; i < in->n; i++) {
        if (in->v[i] == image_id) {
            if (*image_start != (size_t)-1) return err_set(ERR_INTERNAL, "template: two <image> tokens");
            *image_start = out->n;
            for (int32_t k = 0; k < n_image; k++)
                if (tok_ids_push(out, image_id)) return ERR_INTERNAL;
        } else if (tok_ids_push(out, in->v[i])) {
            return ERR_INTERNAL;
        }
    }
    if (*image_start == (size_t)-1) *image_start = out->n;
    return ERR_OK;
}

int tpl_encode(const tok *t, const char *question, const char *answer, int32_t n_image, tpl_seq *seq) {
    memset(seq, 0, sizeof *seq);
    if (n_image < 0) return err_set(ERR_ARGS, "template: n_image %d < 0", n_image);
    if (strstr(question, "<image>") || strstr(answer, "<image>"))
        return err_set(ERR_ARGS, "template: the question or answer contains the text \"<image>\"");
    int32_t image_id = tok_piece_id(t, "<image>", 7);
    if (n_image > 0 && image_id < 0) return err_set(ERR_ARGS, "template: the tokenizer has no <image> token");
    if (tok_eos_id(t) < 0 || tok_bos_id(t) < 0) return err_set(ERR_ARGS, "template: the tokenizer lacks <s> or </s>");
    const char *head = n_image > 0 ? "[INST] <image>\n" : "[INST] ";
    char *prompt = concat(head, question, " [/INST]", "", "");
    char *full = concat(head, question, " [/INST] ", answer, "</s>");
    tok_ids p = {0}, f = {0};
    int rc = ERR_OK;
    size_t image_start = 0, pstart = 0;
    /* The tokenizer's own rules: from a tokenizer.json those of the tokenizers library on that file, which is what
     * transformers 5.25's LlavaNextProcessor uses (TokenizersBackend); from a tokenizer.model sentencepiece's. */
    int flags = TOK_ADD_BOS;
    if ((rc = tok_encode(t, prompt, strlen(prompt), flags, &p))) goto done;
    if ((rc = tok_encode(t, full, strlen(full), flags, &f))) goto done;
    if (f.n == 0 || f.v[f.n - 1] != tok_eos_id(t)) {
        rc = err_set(ERR_INTERNAL, "template: the text does not end with </s>");
        goto done;
    }
    size_t common = 0;
    while (common < p.n && common < f.n && p.v[common] == f.v[common]) common++;
    /* answer start in the unexpanded ids; the image token is in the prompt, before it */
    if ((rc = expand(&f, image_id, n_image, &seq->ids, &image_start))) goto done;
    pstart = common + (n_image > 0 ? (size_t)n_image - 1 : 0);
    seq->label = mem_calloc(seq->ids.n ? seq->ids.n : 1, 1, "chat template labels");
    for (size_t i = pstart; i < seq->ids.n; i++) seq->label[i] = 1;
    seq->answer_start = pstart;
    seq->image_start = image_start;
done:
    free(prompt);
    free(full);
    tok_ids_free(&p);
    tok_ids_free(&f);
    if (rc) tpl_free(seq);
    return rc;
}
