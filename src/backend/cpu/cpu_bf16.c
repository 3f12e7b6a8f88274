/* cpu_bf16 — placeholder */
#include "backend/cpu/cpu_ops.h"
const ops *ops_cpu_bf16(void) { return NULL; }
