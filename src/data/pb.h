/* pb — a minimal, bounds-checked reader of the protobuf wire format (read only).
 *
 * Enough for SentencePiece's ModelProto: varints, 32/64-bit fixed fields and
 * length-delimited fields (strings, bytes, embedded messages). A reader walks a
 * byte range it does not own; an embedded message is read with a sub-reader over
 * its bytes, which keeps the offsets absolute (relative to the outermost buffer),
 * so messages name the byte offset in the file. Every read is checked against the
 * end of its range; on failure the message (err.h) names the offset and what was
 * expected, and the status is ERR_DATA.
 *
 *   pb_init(r, buf, len)               read buf[0..len) (offset 0 = buf[0])
 *   pb_done(r)                         1 when every byte has been consumed
 *   pb_pos(r)                          absolute offset of the next byte
 *   pb_next(r, &field, &wire)          next field key: returns 1 for a field, 0 at end, <0 (ERR_DATA) on error
 *   pb_varint(r, &u)                   a varint value (at most 10 bytes)
 *   pb_fixed32(r, &u) / pb_fixed64     little-endian 4 / 8 bytes
 *   pb_float(r, &f)                    a fixed32 reinterpreted as IEEE float
 *   pb_bytes(r, &ptr, &len)            a length-delimited value; ptr points into the buffer
 *   pb_sub(r, &sub)                    a length-delimited value as a sub-reader (embedded message)
 *   pb_skip(r, wire)                   skip one value of the given wire type
 *   pb_expect(r, field, wire, want)    ERR_DATA naming the field if wire != want
 */
#ifndef ORPO_PB_H
#define ORPO_PB_H

#include <stddef.h>
#include <stdint.h>

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_SGROUP = 3, PB_EGROUP = 4, PB_I32 = 5 };

typedef struct pb_reader {
    const uint8_t *p, *end;  /* the unread part of this reader's range */
    const uint8_t *base;     /* byte 0 of the outermost buffer (for offsets in messages) */
} pb_reader;

void pb_init(pb_reader *r, const void *buf, size_t len);
int pb_done(const pb_reader *r);
size_t pb_pos(const pb_reader *r);
int pb_next(pb_reader *r, uint32_t *field, int *wire);
int pb_varint(pb_reader *r, uint64_t *u);
int pb_fixed32(pb_reader *r, uint32_t *u);
int pb_fixed64(pb_reader *r, uint64_t *u);
int pb_float(pb_reader *r, float *f);
int pb_bytes(pb_reader *r, const uint8_t **ptr, size_t *len);
int pb_sub(pb_reader *r, pb_reader *sub);
int pb_skip(pb_reader *r, int wire);
int pb_expect(const pb_reader *r, uint32_t field, int wire, int want);

#endif
