/* thrift — a bounds-checked decoder for the Thrift compact protocol (read only).
 *
 * Used by the Parquet reader for the footer (FileMetaData) and the page headers.
 * The reader walks a byte buffer it does not own; every read is checked against
 * the end of the buffer, nesting is limited to THR_MAX_DEPTH, and the first
 * failure is sticky: later reads fail too, so a caller may check once at the end.
 * On failure the message (err.h) names the byte offset and what was expected;
 * `r->eof` tells a truncated buffer apart from malformed bytes.
 *
 *   thr_init(r, buf, len)              start reading buf[0..len)
 *   thr_pos(r)                         bytes consumed so far
 *   thr_failed(r)                      nonzero once any read failed
 *   thr_read_varint(r, &u)             ULEB128 unsigned varint (at most 10 bytes)
 *   thr_read_i8/i16/i32/i64(r, &v)     one byte / zigzag varints, range-checked
 *   thr_read_double(r, &d)             8 bytes little-endian IEEE 754
 *   thr_read_binary(r, &ptr, &len)     varint length + bytes; ptr points into the buffer
 *   thr_read_bool_elem(r, &b)          a bool inside a list/set/map (one byte)
 *   thr_struct_begin(r) / thr_struct_end(r)   enter / leave a struct (keeps the field-id base)
 *   thr_field_next(r, &id, &type)      next field header; returns 0 at STOP, 1 for a field, -1 on error
 *   thr_field_bool(type)               value of a bool *field* (it lives in the type nibble)
 *   thr_list_begin(r, &elem_type, &n)  list/set header; n is checked against the bytes left
 *   thr_int_field(r, type, &v)         read a field of any integer type (i8/i16/i32/i64) as int64
 *   thr_skip(r, type)                  skip one value of any type (nested, depth-limited)
 *   thr_type_name(type)                "i32", "struct", ... for messages
 */
#ifndef ORPO_THRIFT_H
#define ORPO_THRIFT_H

#include <stddef.h>
#include <stdint.h>

/* compact-protocol type codes (the low nibble of a field header) */
enum {
    THR_STOP = 0,
    THR_TRUE = 1,    /* bool field with value true; also the bool element type in lists */
    THR_FALSE = 2,   /* bool field with value false */
    THR_I8 = 3,
    THR_I16 = 4,
    THR_I32 = 5,
    THR_I64 = 6,
    THR_DOUBLE = 7,
    THR_BINARY = 8,
    THR_LIST = 9,
    THR_SET = 10,
    THR_MAP = 11,
    THR_STRUCT = 12,
    THR_UUID = 13
};

#define THR_MAX_DEPTH 32

typedef struct thr_reader {
    const uint8_t *buf;
    size_t len, pos;
    int depth;                     /* structs / containers currently open */
    int16_t last_id[THR_MAX_DEPTH + 1];
    int failed;                    /* sticky: a read failed */
    int eof;                       /* the failure was running past the end of the buffer */
} thr_reader;

void thr_init(thr_reader *r, const void *buf, size_t len);
size_t thr_pos(const thr_reader *r);
int thr_failed(const thr_reader *r);

int thr_read_varint(thr_reader *r, uint64_t *out);
int thr_read_i8(thr_reader *r, int8_t *out);
int thr_read_i16(thr_reader *r, int16_t *out);
int thr_read_i32(thr_reader *r, int32_t *out);
int thr_read_i64(thr_reader *r, int64_t *out);
int thr_read_double(thr_reader *r, double *out);
int thr_read_binary(thr_reader *r, const uint8_t **ptr, uint32_t *len);
int thr_read_bool_elem(thr_reader *r, int *out);

int thr_struct_begin(thr_reader *r);
int thr_struct_end(thr_reader *r);
int thr_field_next(thr_reader *r, int16_t *id, int *type);
int thr_field_bool(int type);
int thr_list_begin(thr_reader *r, int *elem_type, uint32_t *count);
int thr_int_field(thr_reader *r, int type, int64_t *out);
int thr_skip(thr_reader *r, int type);
const char *thr_type_name(int type);

#endif
