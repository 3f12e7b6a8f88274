/* llava_random — a model of a given config with seeded random weights, laid out as mh5_load lays out an imported
 * model.h5 (llava_params.h llava_model_random): benchmarks of a shape need no checkpoint.
 *
 *   - fp32 weights: linear and conv weights uniform with std 1/sqrt(fan-in); norm weights 1, biases 0; embeddings,
 *     class and position embeddings and image_newline uniform with std 0.02.
 *   - NF4 (the decoder's linears when nf4_decoder, as `import-model --quant nf4 --quant-scope decoder` stores them):
 *     random nibbles and 8-bit absmax codes, absmax2 and offset such that each 64-block's absmax lies within 10% of
 *     1.8 / sqrt(fan-in) (uniform NF4 codes have a std of about 0.55 absmax, so the weights' std is about
 *     1/sqrt(fan-in)); the same packed / qabsmax / absmax2 layout in one arena as mh5_load. The values are not a
 *     quantised random matrix (quantising 7 B values would take minutes): only their layout and sizes are. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/tensor.h"
#include "io/err.h"
#include "io/mem.h"
#include "model/llava_params.h"
#include "model/llava_size.h"
#include "model/nf4.h"

static uint64_t next(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void fill_uniform(float *x, int64_t n, double std, uint64_t *s) {
    const float a = (float)(std * sqrt(3.0)); /* uniform on [-a, a) has std a / sqrt(3) */
    for (int64_t i = 0; i < n; i++) x[i] = a * ((float)(next(s) >> 40) / (float)(1 << 23) - 1.0f);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int llava_model_random(const llava_config *cfg, int nf4_decoder, uint64_t seed, llava_model *m) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    llava_param *ps = NULL;
    int np = 0;
    int rc = llava_model_setup(m, &ps, &np);
    if (rc) return rc;
    char *quant = mem_calloc((size_t)np, 1, "model parameter list");
    size_t qtotal = 0;
    for (int i = 0; i < np; i++) {
        quant[i] = nf4_decoder && ps[i].is_linear && ps[i].is_decoder;
        if (quant[i]) qtotal += ls_nf4_bytes(ps[i].numel);
    }
    llava_model_arena(m, ps, np, quant);
    m->qarena = mem_calloc(qtotal ? qtotal : 1, 1, "model weights (NF4)");
    m->qbytes = qtotal;
    uint8_t *qcur = m->qarena;
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x5151;
    for (int i = 0; i < np; i++) {
        llava_param *p = &ps[i];
        int64_t fan_in = p->ndim >= 2 ? p->numel / p->shape[0] : 1;
        if (quant[i]) {
            lin_w *lin = (lin_w *)((char *)p->slot - offsetof(lin_w, w));
            int64_t nb = nf4_nblocks(p->numel, NF4_BLOCKSIZE), nb2 = nf4_nblocks(nb, NF4_BLOCKSIZE2);
            int64_t nbytes = (p->numel + 1) / 2;
            uint8_t *packed = qcur, *qabs = packed + ((nbytes + 63) & ~63LL);
            float *absmax2 = (float *)(qabs + ((nb + 63) & ~63LL));
            qcur = (uint8_t *)(absmax2 + ((nb2 + 15) & ~15LL));
            for (int64_t j = 0; j < nbytes; j += 8) {
                uint64_t r = next(&s);
                memcpy(packed + j, &r, (size_t)(nbytes - j < 8 ? nbytes - j : 8));
            }
            for (int64_t j = 0; j < nb; j++) qabs[j] = (uint8_t)(next(&s) >> 56);
            const float target = (float)(1.8 / sqrt((double)fan_in));
            for (int64_t j = 0; j < nb2; j++) absmax2[j] = 0.1f * target; /* |dynamic map| <= 1 */
            lin->dtype = DT_NF4;
            lin->w = packed;
            lin->qabsmax = qabs;
            lin->absmax2 = absmax2;
            lin->offset = target;
            continue;
        }
        float *x = (float *)*p->slot;
        if (p->ndim == 1 && ends_with(p->name, ".bias")) continue; /* zeros */
        if (p->ndim == 1 && ends_with(p->name, ".weight")) {    /* norms */
            for (int64_t j = 0; j < p->numel; j++) x[j] = 1.0f;
            continue;
        }
        int embedding = ends_with(p->name, "embed_tokens.weight") || ends_with(p->name, "class_embedding") ||
                        ends_with(p->name, "position_embedding.weight") || !strcmp(p->name, "image_newline");
        fill_uniform(x, p->numel, embedding ? 0.02 : 1.0 / sqrt((double)fan_in), &s);
    }
    free(quant);
    free(ps);
    return ERR_OK;
}
