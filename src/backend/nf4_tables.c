/* nf4_tables — the NF4 code book and the 8-bit dynamic map (see nf4_tables.h, which holds their values). */
#include "backend/nf4_tables.h"

#include "backend/ops.h"
#include "backend/tensor.h"
#include "io/err.h"

const float nf4_code[16] = NF4_CODE_INIT;
const float nf4_dynamic_map[256] = NF4_DYNAMIC_MAP_INIT;

int nf4_dequant_args_ok(struct opctx *c, int out_dtype, int64_t n, int bs, int bs2) {
    if (out_dtype != DT_F32 && out_dtype != DT_BF16) {
        opctx_fail(c, ERR_INTERNAL, "nf4_dequant: output dtype %d: expected f32 or bf16", out_dtype);
        return 0;
    }
    if (n < 0 || bs < 1 || bs2 < 1) {
        opctx_fail(c, ERR_INTERNAL, "nf4_dequant: %lld values in blocks of %d / %d: expected n >= 0 and blocks >= 1",
                   (long long)n, bs, bs2);
        return 0;
    }
    return 1;
}
