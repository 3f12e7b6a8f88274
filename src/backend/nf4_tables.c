/* nf4_tables — the NF4 code book and the 8-bit dynamic map (see nf4_tables.h, which holds their values). */
#include "backend/nf4_tables.h"

const float nf4_code[16] = NF4_CODE_INIT;
const float nf4_dynamic_map[256] = NF4_DYNAMIC_MAP_INIT;
