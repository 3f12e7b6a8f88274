/* carve — one workspace cut into 64-byte aligned pieces in a fixed order. The same walk first sizes the
 * workspace (base NULL: nothing is handed out, only counted) and then hands out its pieces (base set), so the
 * size and the layout cannot disagree. The forward (llava_fwd.c) and the trainer (llava_train.c) carve theirs.
 *
 *   carve cv = {base, 0}        base NULL for the sizing walk; cv.used is the byte count after it
 *   carve_take(&cv, bytes)      the next piece (NULL in the sizing walk)
 *   carve_f32(&cv, n)           the next piece of n floats
 */
#ifndef ORPO_CARVE_H
#define ORPO_CARVE_H

#include <stddef.h>
#include <stdint.h>

typedef struct carve {
    char *base;
    size_t used;
} carve;

static inline void *carve_take(carve *cv, size_t bytes) {
    bytes = (bytes + 63) & ~(size_t)63;
    void *p = cv->base ? cv->base + cv->used : NULL;
    cv->used += bytes;
    return p;
}

static inline float *carve_f32(carve *cv, int64_t n) { return (float *)carve_take(cv, sizeof(float) * (size_t)n); }

#endif
