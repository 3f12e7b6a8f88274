/* pb — minimal protobuf wire-format reader; see pb.h. */
#include "data/pb.h"

#include "io/err.h"

#include <string.h>

static const char *wire_name(int wire) {
    switch (wire) {
    case PB_VARINT: return "varint";
    case PB_I64: return "fixed64";
    case PB_LEN: return "length-delimited";
    case PB_SGROUP: return "start-group";
    case PB_EGROUP: return "end-group";
    case PB_I32: return "fixed32";
    default: return "invalid";
    }
}

void pb_init(pb_reader *r, const void *buf, size_t len) {
    r->base = (const uint8_t *)buf;
    r->p = r->base;
    r->end = r->base + len;
}

int pb_done(const pb_reader *r) { return r->p >= r->end; }

size_t pb_pos(const pb_reader *r) { return (size_t)(r->p - r->base); }

int pb_varint(pb_reader *r, uint64_t *u) {
    uint64_t v = 0;
    *u = 0;
    size_t start = pb_pos(r);
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end)
            return err_set(ERR_DATA, "byte %zu: truncated varint (the data ends after %d of its bytes)", start, i);
        uint8_t b = *r->p++;
        if (i == 9 && b > 1)
            return err_set(ERR_DATA, "byte %zu: varint does not fit in 64 bits", start);
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *u = v;
            return ERR_OK;
        }
    }
    return err_set(ERR_DATA, "byte %zu: varint longer than 10 bytes", start);
}

int pb_next(pb_reader *r, uint32_t *field, int *wire) {
    if (r->p >= r->end) return 0;
    size_t at = pb_pos(r);
    uint64_t key = 0;
    if (pb_varint(r, &key)) return -ERR_DATA;
    *wire = (int)(key & 7);
    uint64_t f = key >> 3;
    if (f == 0 || f > 0x1fffffff) {
        err_set(ERR_DATA, "byte %zu: field number %llu out of range (expected 1..2^29-1)", at, (unsigned long long)f);
        return -ERR_DATA;
    }
    if (*wire > PB_I32) {
        err_set(ERR_DATA, "byte %zu: field %llu has wire type %d (expected 0..5)", at, (unsigned long long)f, *wire);
        return -ERR_DATA;
    }
    *field = (uint32_t)f;
    return 1;
}

static int need(pb_reader *r, size_t n, const char *what) {
    if ((size_t)(r->end - r->p) < n)
        return err_set(ERR_DATA, "byte %zu: truncated %s (needs %zu bytes, %zu left)", pb_pos(r), what, n,
                       (size_t)(r->end - r->p));
    return ERR_OK;
}

int pb_fixed32(pb_reader *r, uint32_t *u) {
    *u = 0;
    if (need(r, 4, "fixed32")) return ERR_DATA;
    *u = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return ERR_OK;
}

int pb_fixed64(pb_reader *r, uint64_t *u) {
    *u = 0;
    if (need(r, 8, "fixed64")) return ERR_DATA;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | r->p[i];
    r->p += 8;
    *u = v;
    return ERR_OK;
}

int pb_float(pb_reader *r, float *f) {
    uint32_t u;
    if (pb_fixed32(r, &u)) return ERR_DATA;
    memcpy(f, &u, sizeof *f);
    return ERR_OK;
}

int pb_bytes(pb_reader *r, const uint8_t **ptr, size_t *len) {
    size_t at = pb_pos(r);
    uint64_t n = 0;
    *ptr = NULL;
    *len = 0;
    if (pb_varint(r, &n)) return ERR_DATA;
    if (n > (uint64_t)(r->end - r->p))
        return err_set(ERR_DATA, "byte %zu: length-delimited value of %llu bytes runs past the end (%zu bytes left)",
                       at, (unsigned long long)n, (size_t)(r->end - r->p));
    *ptr = r->p;
    *len = (size_t)n;
    r->p += n;
    return ERR_OK;
}

int pb_sub(pb_reader *r, pb_reader *sub) {
    const uint8_t *p = NULL;
    size_t n = 0;
    if (pb_bytes(r, &p, &n)) return ERR_DATA;
    sub->base = r->base;
    sub->p = p;
    sub->end = p + n;
    return ERR_OK;
}

int pb_skip(pb_reader *r, int wire) {
    uint64_t u = 0;
    const uint8_t *p = NULL;
    size_t n = 0;
    switch (wire) {
    case PB_VARINT: return pb_varint(r, &u);
    case PB_I64: return need(r, 8, "fixed64") ? ERR_DATA : (r->p += 8, ERR_OK);
    case PB_I32: return need(r, 4, "fixed32") ? ERR_DATA : (r->p += 4, ERR_OK);
    case PB_LEN: return pb_bytes(r, &p, &n);
    default:
        return err_set(ERR_DATA, "byte %zu: cannot skip a value of wire type %s (groups are not supported)",
                       pb_pos(r), wire_name(wire));
    }
}

int pb_expect(const pb_reader *r, uint32_t field, int wire, int want) {
    if (wire == want) return ERR_OK;
    return err_set(ERR_DATA, "byte %zu: field %u has wire type %s, expected %s", pb_pos(r), field, wire_name(wire),
                   wire_name(want));
}
