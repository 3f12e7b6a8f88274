/* Unit test: Thrift compact protocol decoder on hand-made byte strings. */
#include "io/err.h"
#include "io/thrift.h"
#include "test.h"

#include <stdint.h>
#include <string.h>

#define INIT(r, ...)                                   \
    static const uint8_t buf_[] = {__VA_ARGS__};       \
    thr_init(&(r), buf_, sizeof buf_)

static void test_varints(void) {
    {
        thr_reader r;
        INIT(r, 0x00, 0x7f, 0x80, 0x01, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
        uint64_t u;
        CHECK_EQ_INT(thr_read_varint(&r, &u), ERR_OK); CHECK_EQ_INT(u, 0);
        CHECK_EQ_INT(thr_read_varint(&r, &u), ERR_OK); CHECK_EQ_INT(u, 127);
        CHECK_EQ_INT(thr_read_varint(&r, &u), ERR_OK); CHECK_EQ_INT(u, 128);
        CHECK_EQ_INT(thr_read_varint(&r, &u), ERR_OK); CHECK_EQ_INT(u, 300);
        CHECK_EQ_INT(thr_read_varint(&r, &u), ERR_OK); CHECK(u == UINT64_MAX);
        CHECK_EQ_INT(thr_pos(&r), 16);
        CHECK_EQ_INT(thr_read_varint(&r, &u), ERR_DATA); /* end of buffer */
        CHECK(r.eof);
        CHECK_CONTAINS(err_msg(), "byte 16 of 16");
    }
    {
        thr_reader r; /* 11 continuation bytes: too long */
        INIT(r, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01);
        uint64_t u;
        CHECK_EQ_INT(thr_read_varint(&r, &u), ERR_DATA);
        CHECK(!r.eof);
    }
    {
        thr_reader r; /* 10th byte with bits beyond 64 */
        INIT(r, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02);
        uint64_t u;
        CHECK_EQ_INT(thr_read_varint(&r, &u), ERR_DATA);
    }
}

static void test_zigzag(void) {
    thr_reader r;
    /* zigzag: 0->0, 1->-1, 2->1, 3->-2, 4294967294->2147483647, 4294967295->-2147483648 */
    INIT(r, 0x00, 0x01, 0x02, 0x03, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f,
         0x80, 0x80, 0x80, 0x80, 0x10, /* 2^32 -> i64 2^31 (out of i32 range) */
         0x8e, 0x02, /* i16 zigzag 270 -> 135 */
         0xfe, /* i8 = -2 */
         0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f); /* double 1.5 */
    int32_t v;
    int64_t w;
    int16_t s;
    int8_t c;
    double d;
    CHECK_EQ_INT(thr_read_i32(&r, &v), ERR_OK); CHECK_EQ_INT(v, 0);
    CHECK_EQ_INT(thr_read_i32(&r, &v), ERR_OK); CHECK_EQ_INT(v, -1);
    CHECK_EQ_INT(thr_read_i32(&r, &v), ERR_OK); CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(thr_read_i32(&r, &v), ERR_OK); CHECK_EQ_INT(v, -2);
    CHECK_EQ_INT(thr_read_i32(&r, &v), ERR_OK); CHECK_EQ_INT(v, 2147483647);
    CHECK_EQ_INT(thr_read_i32(&r, &v), ERR_OK); CHECK_EQ_INT(v, -2147483647 - 1);
    size_t at = thr_pos(&r);
    CHECK_EQ_INT(thr_read_i64(&r, &w), ERR_OK); CHECK_EQ_INT(w, 2147483648LL);
    CHECK_EQ_INT(thr_read_i16(&r, &s), ERR_OK); CHECK_EQ_INT(s, 135);
    CHECK_EQ_INT(thr_read_i8(&r, &c), ERR_OK); CHECK_EQ_INT(c, -2);
    CHECK_EQ_INT(thr_read_double(&r, &d), ERR_OK); CHECK(d == 1.5);
    CHECK_EQ_INT(thr_pos(&r), sizeof buf_);
    /* the same bytes as i32 are out of range */
    thr_reader r2;
    thr_init(&r2, buf_ + at, 5);
    CHECK_EQ_INT(thr_read_i32(&r2, &v), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "i32 value out of range");
}

/* struct { 1: i32 = 5; 2: binary "ab"; 4: bool true; 5: struct { 1: i64 = -3; 20: bool false };
 *          6: list<i32> [1,2,3]; 300: i16 = 7; 7(after 300? no: absolute) } */
static void test_struct(void) {
    thr_reader r;
    INIT(r,
         0x15, 0x0a,             /* delta 1, i32, zigzag 10 = 5 */
         0x18, 0x02, 'a', 'b',   /* delta 1 -> id 2, binary len 2 */
         0x21,                   /* delta 2 -> id 4, bool true */
         0x1c,                   /* delta 1 -> id 5, struct */
           0x16, 0x05,           /*   id 1, i64 zigzag 5 = -3 */
           0x02, 0x28,           /*   long form: type bool false, id zigzag 40 = 20 */
           0x00,                 /*   stop */
         0x19, 0x35, 0x02, 0x04, 0x06, /* id 6, list: 3 x i32 [1,2,3] */
         0x04, 0xd8, 0x04, 0x0e, /* long form i16 field, id zigzag 600 = 300, value 7 */
         0x12,                   /* delta 1 -> id 301 (delta is relative to 300), bool false */
         0x00);
    int16_t id;
    int t;
    int64_t v;
    CHECK_EQ_INT(thr_struct_begin(&r), ERR_OK);
    CHECK_EQ_INT(thr_field_next(&r, &id, &t), 1); CHECK_EQ_INT(id, 1); CHECK_EQ_INT(t, THR_I32);
    CHECK_EQ_INT(thr_int_field(&r, t, &v), ERR_OK); CHECK_EQ_INT(v, 5);
    CHECK_EQ_INT(thr_field_next(&r, &id, &t), 1); CHECK_EQ_INT(id, 2); CHECK_EQ_INT(t, THR_BINARY);
    const uint8_t *p;
    uint32_t n;
    CHECK_EQ_INT(thr_read_binary(&r, &p, &n), ERR_OK);
    CHECK_EQ_INT(n, 2); CHECK(n == 2 && !memcmp(p, "ab", 2));
    CHECK_EQ_INT(thr_field_next(&r, &id, &t), 1); CHECK_EQ_INT(id, 4);
    CHECK(thr_field_bool(t) == 1);
    CHECK_EQ_INT(thr_field_next(&r, &id, &t), 1); CHECK_EQ_INT(id, 5); CHECK_EQ_INT(t, THR_STRUCT);
    CHECK_EQ_INT(thr_struct_begin(&r), ERR_OK);
    CHECK_EQ_INT(thr_field_next(&r, &id, &t), 1); CHECK_EQ_INT(id, 1);
    CHECK_EQ_INT(thr_int_field(&r, t, &v), ERR_OK); CHECK_EQ_INT(v, -3);
    CHECK_EQ_INT(thr_field_next(&r, &id, &t), 1); CHECK_EQ_INT(id, 20);
    CHECK(thr_field_bool(t) == 0); CHECK_EQ_INT(t, THR_FALSE);
    CHECK_EQ_INT(thr_field_next(&r, &id, &t), 0);
    CHECK_EQ_INT(thr_struct_end(&r), ERR_OK);
    /* the outer struct's field-id base is restored: delta 1 after id 5 is id 6 */
    CHECK_EQ_INT(thr_field_next(&r, &id, &t), 1); CHECK_EQ_INT(id, 6); CHECK_EQ_INT(t, THR_LIST);
    int et;
    uint32_t cnt;
    CHECK_EQ_INT(thr_list_begin(&r, &et, &cnt), ERR_OK);
    CHECK_EQ_INT(et, THR_I32); CHECK_EQ_INT(cnt, 3);
    for (uint32_t i = 0; i < cnt; i++) {
        int32_t x;
        CHECK_EQ_INT(thr_read_i32(&r, &x), ERR_OK);
        CHECK_EQ_INT(x, (int)i + 1);
    }
    CHECK_EQ_INT(thr_field_next(&r, &id, &t), 1); CHECK_EQ_INT(id, 300); CHECK_EQ_INT(t, THR_I16);
    CHECK_EQ_INT(thr_int_field(&r, t, &v), ERR_OK); CHECK_EQ_INT(v, 7);
    CHECK_EQ_INT(thr_field_next(&r, &id, &t), 1); CHECK_EQ_INT(id, 301); CHECK_EQ_INT(t, THR_FALSE);
    CHECK_EQ_INT(thr_field_next(&r, &id, &t), 0);
    CHECK_EQ_INT(thr_struct_end(&r), ERR_OK);
    CHECK_EQ_INT(thr_pos(&r), sizeof buf_);
    CHECK(!thr_failed(&r));

    /* the same struct skipped as a whole */
    thr_reader s;
    thr_init(&s, buf_, sizeof buf_);
    CHECK_EQ_INT(thr_skip(&s, THR_STRUCT), ERR_OK);
    CHECK_EQ_INT(thr_pos(&s), sizeof buf_);
    CHECK_EQ_INT(s.depth, 0);
}

static void test_skip_kinds(void) {
    /* struct with: 1: list<bool>[t,f,t], 2: map<binary,i32>{"k":1,"xy":-1}, 3: double, 4: set<struct>(2 empty),
     * 5: list with long count (17 x i8), 6: uuid, then 7: i32 that we do read */
    uint8_t b[256];
    size_t n = 0;
    b[n++] = 0x19; b[n++] = 0x31; b[n++] = 1; b[n++] = 0; b[n++] = 1;           /* list<bool> */
    b[n++] = 0x1b; b[n++] = 0x02; b[n++] = 0x85;                                 /* map 2 x (binary, i32) */
    b[n++] = 1; b[n++] = 'k'; b[n++] = 0x02;
    b[n++] = 2; b[n++] = 'x'; b[n++] = 'y'; b[n++] = 0x01;
    b[n++] = 0x17; for (int i = 0; i < 8; i++) b[n++] = (uint8_t)i;             /* double */
    b[n++] = 0x1a; b[n++] = 0x2c; b[n++] = 0x00; b[n++] = 0x00;                 /* set<struct> 2 empty */
    b[n++] = 0x19; b[n++] = 0xf3; b[n++] = 17; for (int i = 0; i < 17; i++) b[n++] = (uint8_t)i; /* list<i8> */
    b[n++] = 0x1d; for (int i = 0; i < 16; i++) b[n++] = 0xaa;                  /* uuid */
    b[n++] = 0x15; b[n++] = 0x54;                                                /* id 7 i32 = 42 */
    b[n++] = 0x00;
    thr_reader r;
    thr_init(&r, b, n);
    int16_t id;
    int t;
    int got42 = 0, fields = 0;
    CHECK_EQ_INT(thr_struct_begin(&r), ERR_OK);
    while (thr_field_next(&r, &id, &t) == 1) {
        fields++;
        if (id == 7) {
            int64_t v;
            CHECK_EQ_INT(thr_int_field(&r, t, &v), ERR_OK);
            got42 = v == 42;
        } else {
            CHECK_EQ_INT(thr_skip(&r, t), ERR_OK);
        }
    }
    CHECK(!thr_failed(&r));
    CHECK_EQ_INT(thr_struct_end(&r), ERR_OK);
    CHECK_EQ_INT(fields, 7);
    CHECK(got42);
    CHECK_EQ_INT(thr_pos(&r), n);

    /* every truncation of it fails cleanly (eof), never reads past the end */
    for (size_t cut = 0; cut < n; cut++) {
        thr_reader q;
        thr_init(&q, b, cut);
        int rc = thr_skip(&q, THR_STRUCT);
        CHECK(rc == ERR_DATA && q.eof);
    }
}

static void test_errors(void) {
    {   /* nesting bomb: 100 nested struct fields */
        uint8_t b[200];
        for (int i = 0; i < 100; i++) b[i] = 0x1c;
        memset(b + 100, 0, 100);
        thr_reader r;
        thr_init(&r, b, sizeof b);
        CHECK_EQ_INT(thr_skip(&r, THR_STRUCT), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "deeper than the limit");
    }
    {   /* list claims a million elements in a 6-byte buffer */
        thr_reader r;
        INIT(r, 0xf5, 0xc0, 0x84, 0x3d, 0x00, 0x00);
        int et;
        uint32_t cnt;
        CHECK_EQ_INT(thr_list_begin(&r, &et, &cnt), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "list count larger than the bytes left");
    }
    {   /* binary longer than the buffer */
        thr_reader r;
        INIT(r, 0x05, 'a', 'b');
        const uint8_t *p;
        uint32_t n;
        CHECK_EQ_INT(thr_read_binary(&r, &p, &n), ERR_DATA);
        CHECK(r.eof);
        CHECK(p == NULL);
    }
    {   /* unknown field type 14 */
        thr_reader r;
        INIT(r, 0x1e, 0x00);
        int16_t id;
        int t;
        thr_struct_begin(&r);
        CHECK_EQ_INT(thr_field_next(&r, &id, &t), -1);
        CHECK_CONTAINS(err_msg(), "unknown field type");
        /* sticky: further reads fail too */
        int64_t v;
        CHECK_EQ_INT(thr_read_i64(&r, &v), ERR_DATA);
    }
    {   /* bool element must be 0/1/2 */
        thr_reader r;
        INIT(r, 0x07);
        int bv;
        CHECK_EQ_INT(thr_read_bool_elem(&r, &bv), ERR_DATA);
    }
    {   /* integer accessor refuses a binary field */
        thr_reader r;
        INIT(r, 0x01, 'a');
        int64_t v;
        CHECK_EQ_INT(thr_int_field(&r, THR_BINARY, &v), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "expected an integer field");
    }
    {   /* stop byte with a delta */
        thr_reader r;
        INIT(r, 0x10);
        int16_t id;
        int t;
        thr_struct_begin(&r);
        CHECK_EQ_INT(thr_field_next(&r, &id, &t), -1);
    }
}

int main(void) {
    test_varints();
    test_zigzag();
    test_struct();
    test_skip_kinds();
    test_errors();
    TEST_MAIN_END();
}
