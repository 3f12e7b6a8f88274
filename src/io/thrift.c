/* thrift — compact protocol decoder; see thrift.h. */
#include "io/thrift.h"

#include <string.h>

#include "io/err.h"

void thr_init(thr_reader *r, const void *buf, size_t len) {
    memset(r, 0, sizeof *r);
    r->buf = (const uint8_t *)buf;
    r->len = len;
}

size_t thr_pos(const thr_reader *r) { return r->pos; }
int thr_failed(const thr_reader *r) { return r->failed; }

const char *thr_type_name(int type) {
    static const char *names[] = {"stop", "bool(true)", "bool(false)", "i8", "i16", "i32", "i64",
                                  "double", "binary", "list", "set", "map", "struct", "uuid"};
    if (type >= 0 && type < (int)(sizeof names / sizeof names[0])) return names[type];
    return "invalid";
}

/* Record the first failure; later reads fail without changing the message. */
static int fail(thr_reader *r, int eof, const char *what) {
    if (!r->failed) {
        r->failed = 1;
        r->eof = eof;
        err_set(ERR_DATA, "thrift compact protocol, byte %zu of %zu: %s", r->pos, r->len, what);
    }
    return ERR_DATA;
}

static int need(thr_reader *r, size_t n) {
    if (r->failed) return ERR_DATA;
    if (n > r->len - r->pos) return fail(r, 1, "unexpected end of data");
    return ERR_OK;
}

int thr_read_varint(thr_reader *r, uint64_t *out) {
    uint64_t v = 0;
    *out = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (need(r, 1)) return ERR_DATA;
        uint8_t b = r->buf[r->pos++];
        if (shift == 63 && (b & 0x7e)) return fail(r, 0, "varint overflows 64 bits");
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return ERR_OK;
        }
    }
    return fail(r, 0, "varint longer than 10 bytes");
}

static int read_zigzag(thr_reader *r, int64_t *out) {
    uint64_t u;
    *out = 0;
    if (thr_read_varint(r, &u)) return ERR_DATA;
    *out = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
    return ERR_OK;
}

int thr_read_i8(thr_reader *r, int8_t *out) {
    *out = 0;
    if (need(r, 1)) return ERR_DATA;
    *out = (int8_t)r->buf[r->pos++];
    return ERR_OK;
}

int thr_read_i16(thr_reader *r, int16_t *out) {
    int64_t v;
    *out = 0;
    if (read_zigzag(r, &v)) return ERR_DATA;
    if (v < INT16_MIN || v > INT16_MAX) return fail(r, 0, "i16 value out of range");
    *out = (int16_t)v;
    return ERR_OK;
}

int thr_read_i32(thr_reader *r, int32_t *out) {
    int64_t v;
    *out = 0;
    if (read_zigzag(r, &v)) return ERR_DATA;
    if (v < INT32_MIN || v > INT32_MAX) return fail(r, 0, "i32 value out of range");
    *out = (int32_t)v;
    return ERR_OK;
}

int thr_read_i64(thr_reader *r, int64_t *out) { return read_zigzag(r, out); }

int thr_read_double(thr_reader *r, double *out) {
    uint64_t u = 0;
    *out = 0;
    if (need(r, 8)) return ERR_DATA;
    for (int i = 7; i >= 0; i--) u = (u << 8) | r->buf[r->pos + (size_t)i];
    r->pos += 8;
    memcpy(out, &u, sizeof u);
    return ERR_OK;
}

int thr_read_binary(thr_reader *r, const uint8_t **ptr, uint32_t *len) {
    uint64_t n;
    *ptr = NULL;
    *len = 0;
    if (thr_read_varint(r, &n)) return ERR_DATA;
    if (n > UINT32_MAX) return fail(r, 0, "binary length above 4 GiB");
    if (need(r, (size_t)n)) return ERR_DATA;
    *ptr = r->buf + r->pos;
    *len = (uint32_t)n;
    r->pos += (size_t)n;
    return ERR_OK;
}

int thr_read_bool_elem(thr_reader *r, int *out) {
    *out = 0;
    if (need(r, 1)) return ERR_DATA;
    uint8_t b = r->buf[r->pos++];
    /* 1 = true; 0 and 2 = false (both occur in the wild) */
    if (b > 2) return fail(r, 0, "bool element is not 0, 1 or 2");
    *out = b == 1;
    return ERR_OK;
}

int thr_struct_begin(thr_reader *r) {
    if (r->failed) return ERR_DATA;
    if (r->depth >= THR_MAX_DEPTH) return fail(r, 0, "structs nested deeper than the limit");
    r->depth++;
    r->last_id[r->depth] = 0;
    return ERR_OK;
}

int thr_struct_end(thr_reader *r) {
    if (r->failed) return ERR_DATA;
    if (r->depth <= 0) return fail(r, 0, "struct end without a struct");
    r->depth--;
    return ERR_OK;
}

int thr_field_next(thr_reader *r, int16_t *id, int *type) {
    *id = 0;
    *type = THR_STOP;
    if (r->failed) return -1;
    if (r->depth <= 0) {
        fail(r, 0, "field read outside a struct");
        return -1;
    }
    if (need(r, 1)) return -1;
    uint8_t b = r->buf[r->pos++];
    int t = b & 0x0f;
    if (t == THR_STOP) {
        if (b != 0) {
            fail(r, 0, "stop byte with a nonzero field delta");
            return -1;
        }
        return 0;
    }
    if (t > THR_UUID) {
        r->pos--;
        fail(r, 0, "unknown field type code");
        return -1;
    }
    int delta = b >> 4;
    int16_t fid;
    if (delta) {
        int v = r->last_id[r->depth] + delta;
        if (v > INT16_MAX) {
            fail(r, 0, "field id overflows i16");
            return -1;
        }
        fid = (int16_t)v;
    } else if (thr_read_i16(r, &fid)) {
        return -1;
    }
    r->last_id[r->depth] = fid;
    *id = fid;
    *type = t;
    return 1;
}

int thr_field_bool(int type) { return type == THR_TRUE; }

int thr_list_begin(thr_reader *r, int *elem_type, uint32_t *count) {
    *elem_type = 0;
    *count = 0;
    if (need(r, 1)) return ERR_DATA;
    uint8_t b = r->buf[r->pos++];
    uint64_t n = b >> 4;
    int t = b & 0x0f;
    if (n == 15 && thr_read_varint(r, &n)) return ERR_DATA;
    if (t < THR_TRUE || t > THR_UUID) return fail(r, 0, "unknown list element type");
    /* every element takes at least one byte: a count above the bytes left is corrupt */
    if (n > r->len - r->pos) return fail(r, 1, "list count larger than the bytes left");
    *elem_type = t;
    *count = (uint32_t)n;
    return ERR_OK;
}

int thr_int_field(thr_reader *r, int type, int64_t *out) {
    *out = 0;
    switch (type) {
    case THR_I8: {
        int8_t v;
        if (thr_read_i8(r, &v)) return ERR_DATA;
        *out = v;
        return ERR_OK;
    }
    case THR_I16: case THR_I32: case THR_I64:
        return read_zigzag(r, out);
    default:
        return fail(r, 0, "expected an integer field");
    }
}

static int skip_value(thr_reader *r, int type, int level) {
    if (r->failed) return ERR_DATA;
    if (level + r->depth > THR_MAX_DEPTH) return fail(r, 0, "values nested deeper than the limit");
    uint64_t u;
    switch (type) {
    case THR_TRUE: case THR_FALSE:
        return ERR_OK; /* a bool field: the value lived in the type nibble */
    case THR_I8:
        return need(r, 1) ? ERR_DATA : (r->pos++, ERR_OK);
    case THR_I16: case THR_I32: case THR_I64:
        return thr_read_varint(r, &u);
    case THR_DOUBLE:
        return need(r, 8) ? ERR_DATA : (r->pos += 8, ERR_OK);
    case THR_UUID:
        return need(r, 16) ? ERR_DATA : (r->pos += 16, ERR_OK);
    case THR_BINARY: {
        const uint8_t *p;
        uint32_t n;
        return thr_read_binary(r, &p, &n);
    }
    case THR_LIST: case THR_SET: {
        int et;
        uint32_t n;
        if (thr_list_begin(r, &et, &n)) return ERR_DATA;
        for (uint32_t i = 0; i < n; i++) {
            if (et == THR_TRUE || et == THR_FALSE) {
                int b;
                if (thr_read_bool_elem(r, &b)) return ERR_DATA;
            } else if (skip_value(r, et, level + 1)) {
                return ERR_DATA;
            }
        }
        return ERR_OK;
    }
    case THR_MAP: {
        if (thr_read_varint(r, &u)) return ERR_DATA;
        if (u == 0) return ERR_OK;
        if (u > (r->len - r->pos) / 2) return fail(r, 1, "map count larger than the bytes left");
        if (need(r, 1)) return ERR_DATA;
        uint8_t kv = r->buf[r->pos++];
        int kt = kv >> 4, vt = kv & 0x0f;
        if (kt < THR_TRUE || kt > THR_UUID || vt < THR_TRUE || vt > THR_UUID)
            return fail(r, 0, "unknown map key or value type");
        for (uint64_t i = 0; i < u; i++) {
            for (int k = 0; k < 2; k++) {
                int t = k ? vt : kt;
                if (t == THR_TRUE || t == THR_FALSE) {
                    int b;
                    if (thr_read_bool_elem(r, &b)) return ERR_DATA;
                } else if (skip_value(r, t, level + 1)) {
                    return ERR_DATA;
                }
            }
        }
        return ERR_OK;
    }
    case THR_STRUCT: {
        if (thr_struct_begin(r)) return ERR_DATA;
        for (;;) {
            int16_t id;
            int t;
            int k = thr_field_next(r, &id, &t);
            if (k < 0) return ERR_DATA;
            if (k == 0) break;
            if (skip_value(r, t, level + 1)) return ERR_DATA;
        }
        return thr_struct_end(r);
    }
    default:
        return fail(r, 0, "cannot skip a value of unknown type");
    }
}

int thr_skip(thr_reader *r, int type) { return skip_value(r, type, 0); }
