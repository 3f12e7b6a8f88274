/* Unit test: the model and the CPU ops fail with a message, never a crash (src/model, src/backend):
 *   - a config.json whose attention heads are wider than the ops take (OPS_ATTN_MAX_HEAD_DIM) is refused when it
 *     is read (ERR_DATA naming the key), for the decoder (head_dim) and for the vision tower;
 *   - the CPU attention given such a head anyway stops with "internal error ... head dimension" and exit 1 (it
 *     used to abort() without a word);
 *   - the trainer out of memory (the trainable token id table of a huge vocabulary, under a 512 MiB address-space
 *     limit) exits 4 with "out of memory ... for trainable token ids" (it used to write through NULL). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/ops.h"
#include "io/err.h"
#include "model/llava.h"
#include "model/llava_params.h"
#include "model/llava_train.h"
#include "test.h"

#ifndef OPS_ATTN_MAX_HEAD_DIM
#define OPS_ATTN_MAX_HEAD_DIM 512 /* the limit before backend/ops.h named it */
#endif

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#else
#define UNDER_ASAN 0
#endif

static void wide_attention(void) {
    enum { HD = OPS_ATTN_MAX_HEAD_DIM + 8 };
    static float q[HD], k[HD], v[HD], out[HD], lse[1];
    seq_desc sd = {0, 1, 0, -1};
    opctx cx;
    memset(&cx, 0, sizeof cx);
    ops_cpu()->attn_fwd(&cx, out, lse, q, k, v, &sd, 1, 1, 1, 1, HD, 1);
}

static void huge_vocab_trainer(void) {
    static llava_model m;
    static vis_layer vis[1];
    static dec_layer dec[1];
    memset(&m, 0, sizeof m);
    m.cfg.t_layers = 1;
    m.cfg.v_run_layers = 1;
    m.cfg.t_hidden = 8;
    m.cfg.vocab = 2000000000; /* the id table alone is 8 GB */
    m.cfg.src_vocab = m.cfg.vocab;
    m.cfg.image_token = 5;
    m.cfg.pad_token = 6;
    m.w.vis = vis;
    m.w.dec = dec;
    lt_spec sp;
    lt_spec_default(&sp);
    sp.targets = 0;
    sp.train_token_rows = 1;
    llava_trainer t;
    lt_init(&t, &m, &sp);
}

static const char *config_json(int head_dim, int vision_heads) {
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"architectures\": [\"LlavaNextForConditionalGeneration\"], \"model_type\": \"llava_next\","
             " \"image_token_index\": 300, \"image_grid_pinpoints\": [[56, 112], [112, 56], [112, 112]],"
             " \"projector_hidden_act\": \"gelu\", \"vision_feature_layer\": -2,"
             " \"vision_feature_select_strategy\": \"default\","
             " \"text_config\": {\"model_type\": \"mistral\", \"hidden_size\": 64, \"intermediate_size\": 128,"
             " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": %d,"
             " \"vocab_size\": 320, \"pad_token_id\": 301},"
             " \"vision_config\": {\"model_type\": \"clip_vision_model\", \"hidden_size\": 1040,"
             " \"intermediate_size\": 64, \"num_hidden_layers\": 3, \"num_attention_heads\": %d,"
             " \"image_size\": 56, \"patch_size\": 14}}",
             head_dim, vision_heads);
    return buf;
}

int main(void) {
    llava_config cfg;
    const char *j = config_json(16, 2); /* heads of 16 and 520 */
    int rc = llava_config_from_json("wide.json", j, strlen(j), &cfg);
    CHECK_EQ_INT(rc, ERR_DATA);
    CHECK_CONTAINS(err_msg(), "hidden_size / num_attention_heads = 520, at most 512");
    j = config_json(520, 4);
    rc = llava_config_from_json("wide.json", j, strlen(j), &cfg);
    CHECK_EQ_INT(rc, ERR_DATA);
    CHECK_CONTAINS(err_msg(), "head_dim: 520, at most 512");
    j = config_json(512, 4); /* the widest allowed, both towers (1040 / 4 = 260) */
    rc = llava_config_from_json("ok.json", j, strlen(j), &cfg);
    if (rc) printf("%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);

    char msg[4096];
    CHECK_EQ_INT(test_child(wide_attention, 0, msg, sizeof msg), ERR_INTERNAL);
    CHECK_CONTAINS(msg, "internal error: cpu attention: head dimension 520, expected 1..512");

    if (UNDER_ASAN) {
        printf("the out-of-memory case runs outside ASan only (its shadow memory is over any address-space limit)\n");
    } else {
        CHECK_EQ_INT(test_child(huge_vocab_trainer, (size_t)512 << 20, msg, sizeof msg), ERR_IO);
        CHECK_CONTAINS(msg, "out of memory: cannot allocate");
        CHECK_CONTAINS(msg, "for trainable token ids");
    }
    TEST_MAIN_END();
}
