/*
 * test_gguf.c -- the GGUF reader and writer: round trips through files, and hand-built
 * malformed files that must fail with the exact status (never crash, never read past the end).
 * Only the "load onto a device" case uses a device, and it skips itself when there is none.
 */
#define _XOPEN_SOURCE 700

#include "gguf/gguf.h"
#include "kqcl.h"
#include "testutil.h" /* TU_OK_CTX only: this suite does not link testutil.c */

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static char tmp_dir[256];

/* ------------------------------------------------------------------------------------------ */
/* Helpers: temp files and a byte builder for hand-made GGUF images                            */

static const char *tmp_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

static const char *write_file(const char *name, const void *bytes, size_t n)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static void *read_whole(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *bytes = malloc((size_t)size + 1);
    ck_assert_uint_eq(fread(bytes, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return bytes;
}

typedef struct builder {
    uint8_t bytes[16384];
    size_t n;
} builder;

static void b_raw(builder *b, const void *src, size_t n)
{
    ck_assert_uint_le(b->n + n, sizeof b->bytes);
    memcpy(b->bytes + b->n, src, n);
    b->n += n;
}

static void b_le(builder *b, uint64_t v, int size)
{
    for (int k = 0; k < size; k++) {
        uint8_t byte = (uint8_t)(v >> (8 * k));
        b_raw(b, &byte, 1);
    }
}

static void b_u32(builder *b, uint32_t v) { b_le(b, v, 4); }
static void b_u64(builder *b, uint64_t v) { b_le(b, v, 8); }

static void b_str(builder *b, const char *s)
{
    b_u64(b, strlen(s));
    b_raw(b, s, strlen(s));
}

static void b_header(builder *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    b_raw(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}

static void b_tensor(builder *b, const char *name, uint32_t n_dims, const int64_t *ne,
                     uint32_t type, uint64_t offset)
{
    b_str(b, name);
    b_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        b_u64(b, (uint64_t)ne[d]);
    b_u32(b, type);
    b_u64(b, offset);
}

static void b_pad(builder *b, size_t alignment)
{
    while (b->n % alignment != 0)
        b_le(b, 0, 1);
}

/* Open a hand-built image from a file and return the status (closing on success). */
static kqcl_status open_bytes(const builder *b)
{
    kqcl_gguf *g = (kqcl_gguf *)1;
    const char *path = write_file("built.gguf", b->bytes, b->n);
    kqcl_status st = kqcl_gguf_open(path, &g);
    if (st != KQCL_OK)
        ck_assert_ptr_null(g);
    else
        kqcl_gguf_close(g);
    return st;
}

#define ck_assert_error_has(text) \
    ck_assert_msg(strstr(kqcl_last_error(NULL), text) != NULL, "message '%s' lacks '%s'", \
                  kqcl_last_error(NULL), text)

/* ------------------------------------------------------------------------------------------ */
/* A writer with one of every metadata type                                                     */

static const uint8_t u8_values[] = {0, 1, 255};
static const int8_t i8_values[] = {-128, 0, 127};
static const uint16_t u16_values[] = {0, 65535};
static const int16_t i16_values[] = {-32768, 32767};
static const uint32_t u32_values[] = {0, 4000000000u};
static const int32_t i32_values[] = {INT32_MIN, -1, INT32_MAX};
static const float f32_values[] = {1.5f, -0.0f, 3.4e38f};
static const bool bool_values[] = {true, false, true};
static const uint64_t u64_values[] = {UINT64_MAX, 0};
static const int64_t i64_values[] = {INT64_MIN, INT64_MAX};
static const double f64_values[] = {3.141592653589793, -1e300};
static const char *const string_values[] = {"", "héllo", "tab\tquote\"", "end"};

static void add_every_type(kqcl_gguf_writer *w)
{
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_scalar(w, "t.u8", KQCL_GGUF_TYPE_UINT8, &u8));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_scalar(w, "t.i8", KQCL_GGUF_TYPE_INT8, &i8));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_scalar(w, "t.u16", KQCL_GGUF_TYPE_UINT16, &u16));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_scalar(w, "t.i16", KQCL_GGUF_TYPE_INT16, &i16));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_u32(w, "t.u32", 4000000000u));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_i32(w, "t.i32", -2000000000));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_f32(w, "t.f32", 0.25f));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_bool(w, "t.bool", 1));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_string(w, "t.string", "llama"));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_u64(w, "t.u64", UINT64_MAX));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_i64(w, "t.i64", INT64_MIN));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_f64(w, "t.f64", -2.5e-300));
#define SET_ARRAY(key, type, values) \
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_array(w, key, type, values, \
                                               sizeof values / sizeof values[0]))
    SET_ARRAY("a.u8", KQCL_GGUF_TYPE_UINT8, u8_values);
    SET_ARRAY("a.i8", KQCL_GGUF_TYPE_INT8, i8_values);
    SET_ARRAY("a.u16", KQCL_GGUF_TYPE_UINT16, u16_values);
    SET_ARRAY("a.i16", KQCL_GGUF_TYPE_INT16, i16_values);
    SET_ARRAY("a.u32", KQCL_GGUF_TYPE_UINT32, u32_values);
    SET_ARRAY("a.i32", KQCL_GGUF_TYPE_INT32, i32_values);
    SET_ARRAY("a.f32", KQCL_GGUF_TYPE_FLOAT32, f32_values);
    SET_ARRAY("a.bool", KQCL_GGUF_TYPE_BOOL, bool_values);
    SET_ARRAY("a.u64", KQCL_GGUF_TYPE_UINT64, u64_values);
    SET_ARRAY("a.i64", KQCL_GGUF_TYPE_INT64, i64_values);
    SET_ARRAY("a.f64", KQCL_GGUF_TYPE_FLOAT64, f64_values);
#undef SET_ARRAY
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_string_array(w, "a.string", string_values, 4));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_array(w, "a.empty", KQCL_GGUF_TYPE_UINT32, NULL, 0));
}

static kqcl_gguf *open_ok(const char *path)
{
    kqcl_gguf *g = NULL;
    kqcl_status st = kqcl_gguf_open(path, &g);
    ck_assert_msg(st == KQCL_OK, "open %s: %s", path, kqcl_last_error(NULL));
    ck_assert_ptr_nonnull(g);
    return g;
}

static kqcl_gguf_value value_of(const kqcl_gguf *g, const char *key, kqcl_gguf_type type)
{
    kqcl_gguf_value v;
    int64_t i = kqcl_gguf_find_key(g, key);
    ck_assert_msg(i >= 0, "key %s missing", key);
    ck_assert_str_eq(kqcl_gguf_key(g, i), key);
    ck_assert_int_eq(kqcl_gguf_kv_type(g, i), type);
    TU_OK_CTX(NULL, kqcl_gguf_get_value(g, i, &v));
    ck_assert_int_eq(v.type, type);
    return v;
}

static int64_t int_of(const kqcl_gguf *g, const char *key, kqcl_gguf_type type)
{
    int64_t out;
    kqcl_gguf_value v = value_of(g, key, type);
    TU_OK_CTX(NULL, kqcl_gguf_value_int64(&v, &out));
    return out;
}

START_TEST(test_metadata_round_trip)
{
    kqcl_gguf_writer *w;
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    add_every_type(w);
    const char *path = tmp_path("meta.gguf");
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(w, path));
    kqcl_gguf_writer_destroy(w);

    kqcl_gguf *g = open_ok(path);
    ck_assert_int_eq(kqcl_gguf_version(g), 3);
    ck_assert_int_eq(kqcl_gguf_kv_count(g), 25);
    ck_assert_int_eq(kqcl_gguf_tensor_count(g), 0);
    ck_assert_str_eq(kqcl_gguf_key(g, 0), "t.u8");
    ck_assert_ptr_null(kqcl_gguf_key(g, 25));
    ck_assert_int_eq(kqcl_gguf_kv_type(g, -1), KQCL_GGUF_TYPE_NONE);
    ck_assert_int_eq(kqcl_gguf_find_key(g, "absent"), -1);

    ck_assert_int_eq(int_of(g, "t.u8", KQCL_GGUF_TYPE_UINT8), 200);
    ck_assert_int_eq(int_of(g, "t.i8", KQCL_GGUF_TYPE_INT8), -100);
    ck_assert_int_eq(int_of(g, "t.u16", KQCL_GGUF_TYPE_UINT16), 60000);
    ck_assert_int_eq(int_of(g, "t.i16", KQCL_GGUF_TYPE_INT16), -30000);
    ck_assert_int_eq(int_of(g, "t.u32", KQCL_GGUF_TYPE_UINT32), 4000000000);
    ck_assert_int_eq(int_of(g, "t.i32", KQCL_GGUF_TYPE_INT32), -2000000000);
    ck_assert_int_eq(int_of(g, "t.i64", KQCL_GGUF_TYPE_INT64), INT64_MIN);

    kqcl_gguf_value v = value_of(g, "t.u64", KQCL_GGUF_TYPE_UINT64);
    uint64_t u;
    int64_t s;
    double d;
    int flag;
    const char *text;
    size_t length;
    TU_OK_CTX(NULL, kqcl_gguf_value_uint64(&v, &u));
    ck_assert_uint_eq(u, UINT64_MAX);
    ck_assert_int_eq(kqcl_gguf_value_int64(&v, &s), KQCL_ERR_INVALID_ARG); /* does not fit */
    v = value_of(g, "t.i8", KQCL_GGUF_TYPE_INT8);
    ck_assert_int_eq(kqcl_gguf_value_uint64(&v, &u), KQCL_ERR_INVALID_ARG); /* negative */
    TU_OK_CTX(NULL, kqcl_gguf_value_double(&v, &d));
    ck_assert(d == -100.0);

    v = value_of(g, "t.f32", KQCL_GGUF_TYPE_FLOAT32);
    TU_OK_CTX(NULL, kqcl_gguf_value_double(&v, &d));
    ck_assert(d == 0.25);
    ck_assert_int_eq(kqcl_gguf_value_int64(&v, &s), KQCL_ERR_INVALID_ARG);
    v = value_of(g, "t.f64", KQCL_GGUF_TYPE_FLOAT64);
    TU_OK_CTX(NULL, kqcl_gguf_value_double(&v, &d));
    ck_assert(d == -2.5e-300);
    v = value_of(g, "t.bool", KQCL_GGUF_TYPE_BOOL);
    TU_OK_CTX(NULL, kqcl_gguf_value_bool(&v, &flag));
    ck_assert_int_eq(flag, 1);
    ck_assert_int_eq(kqcl_gguf_value_int64(&v, &s), KQCL_ERR_INVALID_ARG);
    v = value_of(g, "t.string", KQCL_GGUF_TYPE_STRING);
    TU_OK_CTX(NULL, kqcl_gguf_value_string(&v, &text, &length));
    ck_assert_str_eq(text, "llama");
    ck_assert_uint_eq(length, 5);
    ck_assert_int_eq(kqcl_gguf_value_double(&v, &d), KQCL_ERR_INVALID_ARG);

    /* The shorthands by index. */
    TU_OK_CTX(NULL, kqcl_gguf_get_string(g, kqcl_gguf_find_key(g, "t.string"), &text, NULL));
    ck_assert_str_eq(text, "llama");
    TU_OK_CTX(NULL, kqcl_gguf_get_uint64(g, kqcl_gguf_find_key(g, "t.u32"), &u));
    ck_assert_uint_eq(u, 4000000000u);
    ck_assert_int_eq(kqcl_gguf_get_int64(g, 999, &s), KQCL_ERR_INVALID_ARG);
    TU_OK_CTX(NULL, kqcl_gguf_get_bool(g, kqcl_gguf_find_key(g, "t.bool"), &flag));
    TU_OK_CTX(NULL, kqcl_gguf_get_double(g, kqcl_gguf_find_key(g, "t.u16"), &d));
    ck_assert(d == 60000.0);
    kqcl_gguf_close(g);
}
END_TEST

/* Element j of array `key` as int64 / double. */
static kqcl_gguf_value item_of(const kqcl_gguf *g, const char *key, uint64_t j,
                               kqcl_gguf_type elem_type, uint64_t length)
{
    kqcl_gguf_value a = value_of(g, key, KQCL_GGUF_TYPE_ARRAY), e;
    ck_assert_int_eq(a.elem_type, elem_type);
    ck_assert_uint_eq(a.length, length);
    TU_OK_CTX(NULL, kqcl_gguf_value_item(&a, j, &e));
    ck_assert_int_eq(e.type, elem_type);
    return e;
}

START_TEST(test_array_round_trip)
{
    kqcl_gguf_writer *w;
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    add_every_type(w);
    const char *path = tmp_path("arrays.gguf");
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(w, path));
    kqcl_gguf_writer_destroy(w);
    kqcl_gguf *g = open_ok(path);
    int64_t s;
    uint64_t u;
    double d;
    int flag;
    const char *text;
    size_t length;
    kqcl_gguf_value e;

#define CHECK_INT_ARRAY(key, type, values) \
    for (uint64_t j = 0; j < sizeof values / sizeof values[0]; j++) { \
        e = item_of(g, key, j, type, sizeof values / sizeof values[0]); \
        TU_OK_CTX(NULL, kqcl_gguf_value_int64(&e, &s)); \
        ck_assert_int_eq(s, (int64_t)values[j]); \
    }
    CHECK_INT_ARRAY("a.u8", KQCL_GGUF_TYPE_UINT8, u8_values);
    CHECK_INT_ARRAY("a.i8", KQCL_GGUF_TYPE_INT8, i8_values);
    CHECK_INT_ARRAY("a.u16", KQCL_GGUF_TYPE_UINT16, u16_values);
    CHECK_INT_ARRAY("a.i16", KQCL_GGUF_TYPE_INT16, i16_values);
    CHECK_INT_ARRAY("a.u32", KQCL_GGUF_TYPE_UINT32, u32_values);
    CHECK_INT_ARRAY("a.i32", KQCL_GGUF_TYPE_INT32, i32_values);
    CHECK_INT_ARRAY("a.i64", KQCL_GGUF_TYPE_INT64, i64_values);
#undef CHECK_INT_ARRAY
    for (uint64_t j = 0; j < 2; j++) {
        e = item_of(g, "a.u64", j, KQCL_GGUF_TYPE_UINT64, 2);
        TU_OK_CTX(NULL, kqcl_gguf_value_uint64(&e, &u));
        ck_assert_uint_eq(u, u64_values[j]);
        e = item_of(g, "a.f64", j, KQCL_GGUF_TYPE_FLOAT64, 2);
        TU_OK_CTX(NULL, kqcl_gguf_value_double(&e, &d));
        ck_assert(d == f64_values[j]);
    }
    for (uint64_t j = 0; j < 3; j++) {
        e = item_of(g, "a.f32", j, KQCL_GGUF_TYPE_FLOAT32, 3);
        TU_OK_CTX(NULL, kqcl_gguf_value_double(&e, &d));
        ck_assert(d == (double)f32_values[j] && !signbit(d) == !signbit(f32_values[j]));
        e = item_of(g, "a.bool", j, KQCL_GGUF_TYPE_BOOL, 3);
        TU_OK_CTX(NULL, kqcl_gguf_value_bool(&e, &flag));
        ck_assert_int_eq(flag, bool_values[j]);
    }
    for (uint64_t j = 0; j < 4; j++) {
        e = item_of(g, "a.string", j, KQCL_GGUF_TYPE_STRING, 4);
        TU_OK_CTX(NULL, kqcl_gguf_value_string(&e, &text, &length));
        ck_assert_str_eq(text, string_values[j]);
        ck_assert_uint_eq(length, strlen(string_values[j]));
    }
    kqcl_gguf_value a = value_of(g, "a.empty", KQCL_GGUF_TYPE_ARRAY);
    ck_assert_uint_eq(a.length, 0);
    ck_assert_int_eq(kqcl_gguf_value_item(&a, 0, &e), KQCL_ERR_INVALID_ARG);
    a = value_of(g, "a.u8", KQCL_GGUF_TYPE_ARRAY);
    ck_assert_int_eq(kqcl_gguf_value_item(&a, 3, &e), KQCL_ERR_INVALID_ARG);
    kqcl_gguf_close(g);
}
END_TEST

/* Copying every pair into a new writer reproduces the file byte for byte. */
START_TEST(test_copy_kv_is_exact)
{
    kqcl_gguf_writer *w, *copy;
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    add_every_type(w);
    char *first = strdup(tmp_path("copy_a.gguf"));
    char *second = strdup(tmp_path("copy_b.gguf"));
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(w, first));
    kqcl_gguf_writer_destroy(w);
    kqcl_gguf *g = open_ok(first);
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&copy));
    for (int64_t i = 0; i < kqcl_gguf_kv_count(g); i++)
        TU_OK_CTX(NULL, kqcl_gguf_writer_copy_kv(copy, g, i));
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(copy, second));
    kqcl_gguf_writer_destroy(copy);
    kqcl_gguf_close(g);
    size_t n1, n2;
    void *b1 = read_whole(first, &n1), *b2 = read_whole(second, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert(memcmp(b1, b2, n1) == 0);
    free(b1);
    free(b2);
    free(first);
    free(second);
}
END_TEST

START_TEST(test_set_replaces_in_place)
{
    kqcl_gguf_writer *w;
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_u32(w, "a", 1));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_u32(w, "b", 2));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_string(w, "a", "now a string"));
    const char *path = tmp_path("replace.gguf");
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(w, path));
    kqcl_gguf_writer_destroy(w);
    kqcl_gguf *g = open_ok(path);
    ck_assert_int_eq(kqcl_gguf_kv_count(g), 2);
    ck_assert_str_eq(kqcl_gguf_key(g, 0), "a");
    ck_assert_int_eq(kqcl_gguf_kv_type(g, 0), KQCL_GGUF_TYPE_STRING);
    kqcl_gguf_close(g);
}
END_TEST

/* Nested arrays (which the writer only makes by copying) read, copy and read again. */
static void build_nested(builder *b, uint32_t version)
{
    b_header(b, version, 0, 1);
    b_str(b, "nested");
    b_u32(b, KQCL_GGUF_TYPE_ARRAY);
    b_u32(b, KQCL_GGUF_TYPE_ARRAY); /* outer: 2 arrays */
    b_u64(b, 2);
    b_u32(b, KQCL_GGUF_TYPE_UINT32); /* [7, 8, 9] */
    b_u64(b, 3);
    b_u32(b, 7);
    b_u32(b, 8);
    b_u32(b, 9);
    b_u32(b, KQCL_GGUF_TYPE_STRING); /* ["x", "yz"] */
    b_u64(b, 2);
    b_str(b, "x");
    b_str(b, "yz");
}

static void check_nested(const kqcl_gguf *g)
{
    kqcl_gguf_value outer = value_of(g, "nested", KQCL_GGUF_TYPE_ARRAY), inner, e;
    int64_t s;
    const char *text;
    ck_assert_int_eq(outer.elem_type, KQCL_GGUF_TYPE_ARRAY);
    ck_assert_uint_eq(outer.length, 2);
    TU_OK_CTX(NULL, kqcl_gguf_value_item(&outer, 0, &inner));
    ck_assert_int_eq(inner.elem_type, KQCL_GGUF_TYPE_UINT32);
    ck_assert_uint_eq(inner.length, 3);
    TU_OK_CTX(NULL, kqcl_gguf_value_item(&inner, 2, &e));
    TU_OK_CTX(NULL, kqcl_gguf_value_int64(&e, &s));
    ck_assert_int_eq(s, 9);
    TU_OK_CTX(NULL, kqcl_gguf_value_item(&outer, 1, &inner));
    ck_assert_int_eq(inner.elem_type, KQCL_GGUF_TYPE_STRING);
    TU_OK_CTX(NULL, kqcl_gguf_value_item(&inner, 1, &e));
    TU_OK_CTX(NULL, kqcl_gguf_value_string(&e, &text, NULL));
    ck_assert_str_eq(text, "yz");
}

START_TEST(test_nested_arrays_and_v2)
{
    builder b = {0};
    build_nested(&b, 2);
    kqcl_gguf *g = open_ok(write_file("nested.gguf", b.bytes, b.n));
    ck_assert_int_eq(kqcl_gguf_version(g), 2);
    check_nested(g);
    kqcl_gguf_writer *w;
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    TU_OK_CTX(NULL, kqcl_gguf_writer_copy_kv(w, g, 0));
    const char *path = tmp_path("nested_copy.gguf");
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(w, path));
    kqcl_gguf_writer_destroy(w);
    kqcl_gguf_close(g);
    g = open_ok(path);
    ck_assert_int_eq(kqcl_gguf_version(g), 3);
    check_nested(g);
    kqcl_gguf_close(g);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Tensors                                                                                      */

static uint8_t f32_data[2 * 4 * 4], f16_data[5 * 2], q4k_data[2 * 144], q8k_data[3 * 292],
    bf16_data[4 * 2], q81_data[36];

static void fill_patterns(void)
{
    uint8_t *all[] = {f32_data, f16_data, q4k_data, q8k_data, bf16_data, q81_data};
    size_t sizes[] = {sizeof f32_data, sizeof f16_data, sizeof q4k_data, sizeof q8k_data,
                      sizeof bf16_data, sizeof q81_data};
    for (int t = 0; t < 6; t++)
        for (size_t k = 0; k < sizes[t]; k++)
            all[t][k] = (uint8_t)(k * 7 + (size_t)t * 13 + 1);
}

static void add_tensors(kqcl_gguf_writer *w)
{
    const int64_t f32_ne[] = {4, 2}, f16_ne[] = {5}, q4k_ne[] = {256, 2}, q8k_ne[] = {256, 1, 3, 1},
                  bf16_ne[] = {2, 2}, q81_ne[] = {32};
    fill_patterns();
    TU_OK_CTX(NULL, kqcl_gguf_writer_add_tensor(w, "w.f32", KQCL_TYPE_F32, 2, f32_ne, f32_data,
                                                sizeof f32_data));
    TU_OK_CTX(NULL, kqcl_gguf_writer_add_tensor(w, "w.f16", KQCL_TYPE_F16, 1, f16_ne, f16_data,
                                                sizeof f16_data));
    TU_OK_CTX(NULL, kqcl_gguf_writer_add_tensor(w, "w.q4_K", KQCL_TYPE_Q4_K, 2, q4k_ne,
                                                q4k_data, sizeof q4k_data));
    TU_OK_CTX(NULL, kqcl_gguf_writer_add_tensor(w, "w.q8_K", KQCL_TYPE_Q8_K, 4, q8k_ne,
                                                q8k_data, sizeof q8k_data));
    TU_OK_CTX(NULL, kqcl_gguf_writer_add_tensor(w, "w.bf16", KQCL_TYPE_BF16, 2, bf16_ne,
                                                bf16_data, sizeof bf16_data));
    /* q8_1 (ggml type 9, 36 bytes a 32 values) is a type kqcl does not compute: written as
     * given, read back as unknown. */
    TU_OK_CTX(NULL, kqcl_gguf_writer_add_tensor(w, "w.q8_1", 9, 1, q81_ne, q81_data,
                                                sizeof q81_data));
}

static void check_tensor(const kqcl_gguf *g, const char *name, uint32_t type, int n_dims,
                         int64_t ne0, int64_t ne1, int64_t ne2, const void *data, size_t nbytes,
                         int known)
{
    kqcl_gguf_tensor t;
    int64_t i = kqcl_gguf_find_tensor(g, name);
    ck_assert_msg(i >= 0, "tensor %s missing", name);
    TU_OK_CTX(NULL, kqcl_gguf_tensor_info(g, i, &t));
    ck_assert_str_eq(t.name, name);
    ck_assert_uint_eq(t.type, type);
    ck_assert_int_eq(t.known, known);
    ck_assert_int_eq(t.n_dims, n_dims);
    ck_assert_int_eq(t.ne[0], ne0);
    ck_assert_int_eq(t.ne[1], ne1);
    ck_assert_int_eq(t.ne[2], ne2);
    ck_assert_uint_eq(t.offset % kqcl_gguf_alignment(g), 0);
    ck_assert_uint_eq(((uintptr_t)t.data) % kqcl_gguf_alignment(g), 0);
    ck_assert_uint_eq(t.nbytes, nbytes); /* every type ggml defines is sized, known or not */
    ck_assert(memcmp(t.data, data, nbytes) == 0);
}

START_TEST(test_tensor_round_trip)
{
    kqcl_gguf_writer *w;
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_string(w, "general.architecture", "test"));
    add_tensors(w);
    const char *path = tmp_path("tensors.gguf");
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(w, path));
    kqcl_gguf_writer_destroy(w);
    kqcl_gguf *g = open_ok(path);
    ck_assert_int_eq(kqcl_gguf_tensor_count(g), 6);
    ck_assert_uint_eq(kqcl_gguf_alignment(g), 32);
    ck_assert_uint_eq(kqcl_gguf_data_offset(g) % 32, 0);
    check_tensor(g, "w.f32", KQCL_TYPE_F32, 2, 4, 2, 1, f32_data, sizeof f32_data, 1);
    check_tensor(g, "w.f16", KQCL_TYPE_F16, 1, 5, 1, 1, f16_data, sizeof f16_data, 1);
    check_tensor(g, "w.q4_K", KQCL_TYPE_Q4_K, 2, 256, 2, 1, q4k_data, sizeof q4k_data, 1);
    check_tensor(g, "w.q8_K", KQCL_TYPE_Q8_K, 4, 256, 1, 3, q8k_data, sizeof q8k_data, 1);
    check_tensor(g, "w.bf16", KQCL_TYPE_BF16, 2, 2, 2, 1, bf16_data, sizeof bf16_data, 1);
    check_tensor(g, "w.q8_1", 9, 1, 32, 1, 1, q81_data, sizeof q81_data, 0);
    ck_assert_int_eq(kqcl_gguf_find_tensor(g, "nope"), -1);
    kqcl_gguf_tensor t;
    ck_assert_int_eq(kqcl_gguf_tensor_info(g, 6, &t), KQCL_ERR_INVALID_ARG);
    kqcl_tensor *dev = (kqcl_tensor *)1;
    ck_assert_int_eq(kqcl_gguf_load_tensor(NULL, g, 0, &dev), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(dev);
    kqcl_gguf_close(g);
}
END_TEST

/* kqcl_gguf_load_tensor: shape flattening to 2-D and the upload, on the default device. */
START_TEST(test_load_tensor)
{
    kqcl_gguf_writer *w;
    kqcl_context *ctx = NULL;
    if (kqcl_context_create(NULL, &ctx) != KQCL_OK) {
        fprintf(stderr, "test_load_tensor: skipped, no device (%s)\n", kqcl_last_error(NULL));
        return;
    }
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    add_tensors(w);
    const char *path = tmp_path("load.gguf");
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(w, path));
    kqcl_gguf_writer_destroy(w);
    kqcl_gguf *g = open_ok(path);
    kqcl_tensor *t = NULL;
    uint8_t back[sizeof q8k_data];
    TU_OK_CTX(ctx, kqcl_gguf_load_tensor(ctx, g, kqcl_gguf_find_tensor(g, "w.q8_K"), &t));
    ck_assert_int_eq(kqcl_tensor_rows(t), 3); /* ne = {256, 1, 3, 1} */
    ck_assert_int_eq(kqcl_tensor_cols(t), 256);
    ck_assert_int_eq(kqcl_tensor_type(t), KQCL_TYPE_Q8_K);
    TU_OK_CTX(ctx, kqcl_tensor_read(t, back, sizeof back));
    ck_assert(memcmp(back, q8k_data, sizeof back) == 0);
    kqcl_tensor_destroy(t);
    t = (kqcl_tensor *)1;
    ck_assert_int_eq(kqcl_gguf_load_tensor(ctx, g, kqcl_gguf_find_tensor(g, "w.q8_1"), &t),
                     KQCL_ERR_UNSUPPORTED);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(kqcl_gguf_load_tensor(ctx, g, 99, &t), KQCL_ERR_INVALID_ARG);
    kqcl_gguf_close(g);
    kqcl_context_destroy(ctx);
}
END_TEST

/* The files written by the gguf Python package, as llama.cpp's converters write them
 * (tests/data/make-legacy-quants.py): legacy.gguf with q8_0, q4_0 and f32 tensors,
 * legacy-q4_1-q5.gguf with q4_1, q5_0 and q5_1 ones, each the top-left 32 x 256 corner of
 * w.f32: listed with the right types, shapes and sizes, loaded onto the device, and every matmul
 * against the host within f32 accumulation. */
static const struct {
    const char *file;
    struct { const char *name; uint32_t type; size_t bytes; } tensors[3];
} python_files[] = {
    {"legacy.gguf",
     {{"blk.0.attn_q.weight", KQCL_TYPE_Q8_0, 32 * 8 * 34},
      {"blk.0.attn_k.weight", KQCL_TYPE_Q4_0, 32 * 8 * 18},
      {"blk.0.attn_v.weight", KQCL_TYPE_F32, 32 * 256 * 4}}},
    {"legacy-q4_1-q5.gguf",
     {{"blk.0.attn_q.weight", KQCL_TYPE_Q4_1, 32 * 8 * 20},
      {"blk.0.attn_k.weight", KQCL_TYPE_Q5_0, 32 * 8 * 22},
      {"blk.0.attn_v.weight", KQCL_TYPE_Q5_1, 32 * 8 * 24}}},
};

START_TEST(test_python_written_files)
{
    enum { M = 32, K = 256, N = 3, W_COLS = 1024 };
    char path[1024];
    const char *dir = getenv("KQCL_TEST_DATA");
    dir = dir && *dir ? dir : "tests/data";
    static float corner[M * K], deq[M * K];
    float row[W_COLS];
    snprintf(path, sizeof path, "%s/w.f32", dir);
    FILE *wf = fopen(path, "rb");
    ck_assert_msg(wf != NULL, "%s: %s", path, strerror(errno));
    for (int r = 0; r < M; r++) {
        ck_assert_uint_eq(fread(row, sizeof row, 1, wf), 1);
        memcpy(corner + r * K, row, K * sizeof(float));
    }
    fclose(wf);
    snprintf(path, sizeof path, "%s/%s", dir, python_files[_i].file);
    kqcl_gguf *g = open_ok(path);
    ck_assert_int_eq(kqcl_gguf_tensor_count(g), 3);
    kqcl_context *ctx = NULL;
    ck_assert_msg(kqcl_context_create(NULL, &ctx) == KQCL_OK, "%s", kqcl_last_error(NULL));
    float x[N * K], y[N * M];
    for (int i = 0; i < N * K; i++)
        x[i] = (float)((i * 37 % 101) - 50) / 50.0f;
    for (int i = 0; i < 3; i++) {
        const char *name = python_files[_i].tensors[i].name;
        kqcl_gguf_tensor t;
        TU_OK_CTX(NULL, kqcl_gguf_tensor_info(g, kqcl_gguf_find_tensor(g, name), &t));
        ck_assert_uint_eq(t.type, python_files[_i].tensors[i].type);
        ck_assert_int_eq(t.known, 1);
        ck_assert_int_eq(t.ne[0], K);
        ck_assert_int_eq(t.ne[1], M);
        ck_assert_uint_eq(t.nbytes, python_files[_i].tensors[i].bytes);
        TU_OK_CTX(NULL, kqcl_dequantize((kqcl_type)t.type, t.data, deq, M, K));
        for (int j = 0; j < M * K; j++) { /* gguf's blocks are w's corner, within one quant step */
            float amax = 0; /* of the value's 32-value block: q4_0's step is amax / 8, the others' less */
            for (int b = j / 32 * 32; b < j / 32 * 32 + 32; b++)
                amax = fabsf(corner[b]) > amax ? fabsf(corner[b]) : amax;
            ck_assert_msg(fabsf(deq[j] - corner[j]) <= amax / 8 * 1.001f, "%s %s value %d: %g vs %g",
                          python_files[_i].file, name, j, deq[j], corner[j]);
        }
        kqcl_tensor *wt = NULL, *xt = NULL, *yt = NULL;
        TU_OK_CTX(ctx, kqcl_gguf_load_tensor(ctx, g, kqcl_gguf_find_tensor(g, name), &wt));
        TU_OK_CTX(ctx, kqcl_tensor_create(ctx, KQCL_TYPE_F32, N, K, &xt));
        TU_OK_CTX(ctx, kqcl_tensor_create(ctx, KQCL_TYPE_F32, N, M, &yt));
        TU_OK_CTX(ctx, kqcl_tensor_write(xt, x, sizeof x));
        ck_assert_msg(kqcl_matmul(ctx, wt, xt, yt) == KQCL_OK, "%s", kqcl_last_error(ctx));
        TU_OK_CTX(ctx, kqcl_tensor_read(yt, y, sizeof y));
        for (int n = 0; n < N; n++)
            for (int r = 0; r < M; r++) {
                double ref = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    ref += (double)deq[r * K + k] * x[n * K + k];
                    mag += fabs((double)deq[r * K + k] * x[n * K + k]);
                }
                ck_assert_msg(fabs(y[n * M + r] - ref) <= 1e-5 * mag + 1e-6, "%s y[%d,%d] = %.9g, want %.9g", name, n,
                              r, y[n * M + r], ref);
            }
        kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt);
    }
    kqcl_context_destroy(ctx);
    kqcl_gguf_close(g);
}
END_TEST

START_TEST(test_alignment_key)
{
    kqcl_gguf_writer *w;
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_u32(w, "general.alignment", 64));
    add_tensors(w);
    const char *path = tmp_path("align64.gguf");
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(w, path));
    kqcl_gguf *g = open_ok(path);
    ck_assert_uint_eq(kqcl_gguf_alignment(g), 64);
    check_tensor(g, "w.q8_K", KQCL_TYPE_Q8_K, 4, 256, 1, 3, q8k_data, sizeof q8k_data, 1);
    kqcl_gguf_close(g);
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_u32(w, "general.alignment", 48));
    ck_assert_int_eq(kqcl_gguf_writer_write(w, path), KQCL_ERR_INVALID_ARG);
    kqcl_gguf_writer_destroy(w);
}
END_TEST

START_TEST(test_writer_rejects)
{
    kqcl_gguf_writer *w;
    const int64_t ne[] = {256, 2, 1, 1, 1}, odd[] = {100, 2};
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "a", KQCL_TYPE_Q4_K, 2, ne, q4k_data, 100),
                     KQCL_ERR_INVALID_ARG);   /* nbytes != 2 * 144 */
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "a", KQCL_TYPE_Q4_K, 2, odd, q4k_data, 288),
                     KQCL_ERR_INVALID_ARG);   /* 100 is not a whole number of blocks */
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "a", KQCL_TYPE_Q4_K, 5, ne, q4k_data, 288),
                     KQCL_ERR_INVALID_ARG);   /* n_dims 5 */
    TU_OK_CTX(NULL, kqcl_gguf_writer_add_tensor(w, "a", KQCL_TYPE_Q4_K, 2, ne, q4k_data, 288));
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "a", KQCL_TYPE_Q4_K, 2, ne, q4k_data, 288),
                     KQCL_ERR_INVALID_ARG);   /* twice */
    char long_name[80];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, long_name, KQCL_TYPE_Q4_K, 2, ne, q4k_data,
                                                 288), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_gguf_writer_set_scalar(w, "s", KQCL_GGUF_TYPE_STRING, "x"),
                     KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_gguf_writer_set_array(w, "s", KQCL_GGUF_TYPE_ARRAY, ne, 1),
                     KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_gguf_writer_set_string(w, NULL, "x"), KQCL_ERR_INVALID_ARG);
    kqcl_gguf_value bogus = {0};
    bogus.type = KQCL_GGUF_TYPE_UINT32;
    ck_assert_int_eq(kqcl_gguf_writer_set_value(w, "v", &bogus), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_gguf_writer_write(w, "/nonexistent-dir/x.gguf"), KQCL_ERR_IO);
    kqcl_gguf_writer_destroy(w);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Malformed input                                                                              */

/* A small valid file holding every metadata type, a nested array and two tensors, whose last
 * tensor ends exactly at the end of the file (its 288 bytes need no padding): so every shorter
 * prefix is incomplete. */
static size_t build_small_valid(const char *path)
{
    kqcl_gguf_writer *w;
    builder nested = {0};
    kqcl_gguf *g;
    build_nested(&nested, 3);
    g = open_ok(write_file("small_nested.gguf", nested.bytes, nested.n));
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    add_every_type(w);
    TU_OK_CTX(NULL, kqcl_gguf_writer_copy_kv(w, g, 0));
    const int64_t ne_a[] = {8}, ne_b[] = {256, 2};
    fill_patterns();
    TU_OK_CTX(NULL, kqcl_gguf_writer_add_tensor(w, "a", KQCL_TYPE_F32, 1, ne_a, f32_data, 32));
    TU_OK_CTX(NULL, kqcl_gguf_writer_add_tensor(w, "b", KQCL_TYPE_Q4_K, 2, ne_b, q4k_data, 288));
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(w, path));
    kqcl_gguf_writer_destroy(w);
    kqcl_gguf_close(g);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (size_t)st.st_size;
}

START_TEST(test_every_truncation_fails)
{
    char *full_path = strdup(tmp_path("small.gguf"));
    size_t n = build_small_valid(full_path), size;
    uint8_t *bytes = read_whole(full_path, &size);
    ck_assert_uint_eq(size, n);
    ck_assert_uint_eq(n % 32, 0); /* 288 = 2 q4_K rows = 9 x 32: no padding after "b" */
    for (size_t len = 0; len < n; len++) {
        kqcl_gguf *g = (kqcl_gguf *)1;
        kqcl_status st = kqcl_gguf_open(write_file("prefix.gguf", bytes, len), &g);
        ck_assert_msg(st == KQCL_ERR_FORMAT, "prefix of %zu of %zu bytes: status %d (%s)", len, n,
                      st, kqcl_last_error(NULL));
        ck_assert_ptr_null(g);
        /* The in-memory entry point must agree (it is what the fuzzer drives). */
        ck_assert_int_eq(kq_gguf_open_memory(bytes, len, &g), KQCL_ERR_FORMAT);
    }
    kqcl_gguf *g = open_ok(full_path);
    kqcl_gguf_close(g);
    free(bytes);
    free(full_path);
}
END_TEST

START_TEST(test_bad_magic_and_versions)
{
    builder b = {0};
    b_header(&b, 3, 0, 0);
    TU_OK_CTX(NULL, open_bytes(&b));
    b.bytes[0] = 'X';
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("magic");
    b.bytes[0] = 'G';
    b.bytes[4] = 1;
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_UNSUPPORTED);
    b.bytes[4] = 99;
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_UNSUPPORTED);
    b.bytes[4] = 0;
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    b.bytes[7] = 3; /* 0x03000000: a big-endian v3 header */
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_UNSUPPORTED);
    ck_assert_error_has("big-endian");
    b.bytes[7] = 0;
    b.bytes[4] = 2;
    TU_OK_CTX(NULL, open_bytes(&b));
}
END_TEST

START_TEST(test_files_and_arguments)
{
    kqcl_gguf *g = (kqcl_gguf *)1;
    ck_assert_int_eq(kqcl_gguf_open(tmp_path("does-not-exist.gguf"), &g), KQCL_ERR_IO);
    ck_assert_ptr_null(g);
    ck_assert_error_has("does-not-exist.gguf");
    ck_assert_int_eq(kqcl_gguf_open(tmp_dir, &g), KQCL_ERR_IO); /* a directory */
    ck_assert_int_eq(kqcl_gguf_open(write_file("empty.gguf", "", 0), &g), KQCL_ERR_FORMAT);
    ck_assert_int_eq(kqcl_gguf_open(NULL, &g), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_gguf_open(tmp_dir, NULL), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_gguf_version(NULL), 0);
    ck_assert_int_eq(kqcl_gguf_kv_count(NULL), 0);
    ck_assert_int_eq(kqcl_gguf_find_key(NULL, "x"), -1);
    kqcl_gguf_close(NULL);
    kqcl_gguf_writer_destroy(NULL);
}
END_TEST

START_TEST(test_lying_counts)
{
    builder b = {0};
    b_header(&b, 3, (uint64_t)1 << 62, 0);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("tensor count");
    b.n = 0;
    b_header(&b, 3, 0, (uint64_t)1 << 62);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("metadata count");
    b.n = 0;
    b_header(&b, 3, UINT64_MAX, UINT64_MAX);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    /* Counts that fit the bytes left but whose items are not there. */
    b.n = 0;
    b_header(&b, 3, 0, 2);
    b_str(&b, "k");
    b_u32(&b, KQCL_GGUF_TYPE_UINT32);
    b_u32(&b, 5);
    b_raw(&b, "zzzzzzzzzzzzz", 13);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("metadata key 1");
}
END_TEST

START_TEST(test_strings_past_the_end)
{
    builder b = {0};
    b_header(&b, 3, 0, 1);
    b_u64(&b, UINT64_MAX); /* key length */
    b_raw(&b, "abcdefghijklm", 13);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("runs past the end");
    b.n = 0;
    b_header(&b, 3, 0, 1);
    b_str(&b, "key");
    b_u32(&b, KQCL_GGUF_TYPE_STRING);
    b_u64(&b, 6); /* a string that stops 1 byte short */
    b_raw(&b, "hello", 5);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("'key'");
    b.n = 0;
    b_header(&b, 3, 1, 0);
    b_u64(&b, ((uint64_t)1 << 63) + 3); /* tensor name length */
    b_raw(&b, "0123456789abcdefghijklmnop", 26);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("tensor 0");
}
END_TEST

static void b_nested_arrays(builder *b, int depth)
{
    b_header(b, 3, 0, 1);
    b_str(b, "deep");
    b_u32(b, KQCL_GGUF_TYPE_ARRAY);
    for (int level = 1; level < depth; level++) {
        b_u32(b, KQCL_GGUF_TYPE_ARRAY);
        b_u64(b, 1);
    }
    b_u32(b, KQCL_GGUF_TYPE_UINT8);
    b_u64(b, 1);
    b_le(b, 42, 1);
}

START_TEST(test_nested_arrays_bounded)
{
    builder b = {0};
    b_nested_arrays(&b, 16);
    TU_OK_CTX(NULL, open_bytes(&b));
    b.n = 0;
    b_nested_arrays(&b, 17);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("nested deeper");
    b.n = 0;
    b_nested_arrays(&b, 10000 / 12);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);

    /* Huge counts: of arrays, of strings, and of u64s whose byte count wraps around 2^64. */
    uint32_t elem_types[] = {KQCL_GGUF_TYPE_ARRAY, KQCL_GGUF_TYPE_STRING,
                             KQCL_GGUF_TYPE_UINT64, KQCL_GGUF_TYPE_UINT16};
    uint64_t counts[] = {(uint64_t)1 << 60, (uint64_t)1 << 59, ((uint64_t)1 << 61) + 1,
                         ((uint64_t)1 << 63) + 2};
    for (int k = 0; k < 4; k++) {
        b.n = 0;
        b_header(&b, 3, 0, 1);
        b_str(&b, "huge");
        b_u32(&b, KQCL_GGUF_TYPE_ARRAY);
        b_u32(&b, elem_types[k]);
        b_u64(&b, counts[k]);
        b_u64(&b, 0);
        b_u64(&b, 0);
        ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    }
}
END_TEST

START_TEST(test_unknown_value_types)
{
    builder b = {0};
    b_header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, 13);
    b_u64(&b, 0);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("unknown value type 13");
    b.n = 0;
    b_header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, KQCL_GGUF_TYPE_ARRAY);
    b_u32(&b, 0xFFFFFFFFu);
    b_u64(&b, 0);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
}
END_TEST

START_TEST(test_duplicates)
{
    builder b = {0};
    b_header(&b, 3, 0, 2);
    for (int k = 0; k < 2; k++) {
        b_str(&b, "same");
        b_u32(&b, KQCL_GGUF_TYPE_UINT8);
        b_le(&b, 1, 1);
    }
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("repeats");
    const int64_t ne[] = {8};
    b.n = 0;
    b_header(&b, 3, 2, 0);
    b_tensor(&b, "t", 1, ne, KQCL_TYPE_F32, 0);
    b_tensor(&b, "t", 1, ne, KQCL_TYPE_F32, 32);
    b_pad(&b, 32);
    b_raw(&b, f32_data, 24);
    b_raw(&b, f32_data, 24);
    b_raw(&b, f32_data, 16);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
}
END_TEST

/* One tensor with the given shape, type and offset, and `data_bytes` of data. */
static kqcl_status open_one_tensor(uint32_t n_dims, const int64_t *ne, uint32_t type,
                                   uint64_t offset, size_t data_bytes)
{
    builder b = {0};
    b_header(&b, 3, 1, 0);
    b_tensor(&b, "blk.0.w", n_dims, ne, type, offset);
    b_pad(&b, 32);
    for (size_t k = 0; k < data_bytes; k++)
        b_le(&b, k, 1);
    return open_bytes(&b);
}

START_TEST(test_tensor_offsets)
{
    const int64_t ne[] = {8};
    TU_OK_CTX(NULL, open_one_tensor(1, ne, KQCL_TYPE_F32, 0, 32));
    ck_assert_int_eq(open_one_tensor(1, ne, KQCL_TYPE_F32, 0, 31), KQCL_ERR_FORMAT);
    ck_assert_error_has("blk.0.w");
    ck_assert_int_eq(open_one_tensor(1, ne, KQCL_TYPE_F32, 32, 32), KQCL_ERR_FORMAT);
    ck_assert_int_eq(open_one_tensor(1, ne, KQCL_TYPE_F32, 16, 64), KQCL_ERR_FORMAT);
    ck_assert_error_has("not a multiple of the alignment");
    ck_assert_int_eq(open_one_tensor(1, ne, KQCL_TYPE_F32, UINT64_MAX - 31, 32),
                     KQCL_ERR_FORMAT);
    ck_assert_int_eq(open_one_tensor(1, ne, 8, (uint64_t)1 << 40, 32), KQCL_ERR_FORMAT);
}
END_TEST

START_TEST(test_absurd_shapes)
{
    const int64_t overflow[] = {(int64_t)1 << 62, (int64_t)1 << 62},
                  negative[] = {8, -1}, five[] = {8, 1, 1, 1, 1},
                  not_blocks[] = {100, 1}, huge_rows[] = {(int64_t)1 << 40, (int64_t)1 << 22},
                  zero[] = {0, 4}, scalar[] = {0};
    ck_assert_int_eq(open_one_tensor(2, overflow, KQCL_TYPE_F32, 0, 32), KQCL_ERR_FORMAT);
    ck_assert_error_has("overflows");
    ck_assert_int_eq(open_one_tensor(2, overflow, 9999, 0, 32), KQCL_ERR_FORMAT);
    ck_assert_int_eq(open_one_tensor(2, negative, KQCL_TYPE_F32, 0, 32), KQCL_ERR_FORMAT);
    ck_assert_error_has("negative");
    ck_assert_int_eq(open_one_tensor(5, five, KQCL_TYPE_F32, 0, 32), KQCL_ERR_FORMAT);
    ck_assert_error_has("n_dims = 5");
    ck_assert_int_eq(open_one_tensor(2, not_blocks, KQCL_TYPE_Q4_K, 0, 144), KQCL_ERR_FORMAT);
    ck_assert_error_has("not a multiple");
    ck_assert_int_eq(open_one_tensor(2, huge_rows, KQCL_TYPE_Q6_K, 0, 256), KQCL_ERR_FORMAT);
    TU_OK_CTX(NULL, open_one_tensor(2, zero, KQCL_TYPE_F32, 0, 0)); /* empty */
    TU_OK_CTX(NULL, open_one_tensor(0, scalar, KQCL_TYPE_F32, 0, 4)); /* a scalar */
}
END_TEST

START_TEST(test_unknown_tensor_types_listed)
{
    builder b = {0};
    const int64_t ne[] = {32, 2}, ne_f32[] = {8};
    b_header(&b, 3, 3, 0);
    b_tensor(&b, "q8_0", 2, ne, 8, 0);
    b_tensor(&b, "future", 2, ne, 12345, 96);
    b_tensor(&b, "f32", 1, ne_f32, KQCL_TYPE_F32, 128);
    b_pad(&b, 32);
    for (int k = 0; k < 160; k++)
        b_le(&b, (uint64_t)k, 1);
    const char *path = write_file("unknown_types.gguf", b.bytes, b.n);
    kqcl_gguf *g = open_ok(path);
    kqcl_gguf_tensor t;
    ck_assert_int_eq(kqcl_gguf_tensor_count(g), 3);
    TU_OK_CTX(NULL, kqcl_gguf_tensor_info(g, 1, &t));
    ck_assert_str_eq(t.name, "future");
    ck_assert_uint_eq(t.type, 12345);
    ck_assert_int_eq(t.known, 0);
    ck_assert_uint_eq(t.nbytes, 0);
    ck_assert_uint_eq(t.offset, 96);
    TU_OK_CTX(NULL, kqcl_gguf_tensor_info(g, 2, &t));
    ck_assert_int_eq(t.known, 1);
    ck_assert_uint_eq(t.nbytes, 32);
    ck_assert_uint_eq(((const uint8_t *)t.data)[0], 128);
    kqcl_gguf_close(g);
}
END_TEST

START_TEST(test_bad_alignment_key)
{
    uint32_t values[] = {0, 3, 48};
    for (int k = 0; k < 3; k++) {
        builder b = {0};
        b_header(&b, 3, 0, 1);
        b_str(&b, "general.alignment");
        b_u32(&b, KQCL_GGUF_TYPE_UINT32);
        b_u32(&b, values[k]);
        ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
        ck_assert_error_has("power of two");
    }
    builder b = {0};
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, KQCL_GGUF_TYPE_STRING);
    b_str(&b, "32");
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("not a u32");
}
END_TEST

/* Issue 12, item 8: general.alignment = 2^31 in a 64-byte file with no tensors was accepted,
 * its data section past the end (and `kqcl quantize` wrote 2 GiB). The alignment is bounded
 * (1 MiB) and the data section must start inside the file. */
START_TEST(test_absurd_alignment_refused)
{
    builder b = {0};
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, KQCL_GGUF_TYPE_UINT32);
    b_u32(&b, 0x80000000u);
    b_pad(&b, 64); /* a 64-byte file */
    ck_assert_uint_eq(b.n, 64);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("alignment");
    /* a power of two within the bound, but the data section would start past the end */
    b.n = 0;
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, KQCL_GGUF_TYPE_UINT32);
    b_u32(&b, 1u << 20);
    b_pad(&b, 64);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("past the end");
    /* a file that ends with its (tensor-less) header needs no padding: still fine */
    b.n = 0;
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, KQCL_GGUF_TYPE_UINT32);
    b_u32(&b, 4096);
    TU_OK_CTX(NULL, open_bytes(&b));
    /* the writer refuses what the reader would */
    kqcl_gguf_writer *w;
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_u32(w, "general.alignment", 0x80000000u));
    ck_assert_int_eq(kqcl_gguf_writer_write(w, tmp_path("huge_align.gguf")), KQCL_ERR_INVALID_ARG);
    kqcl_gguf_writer_destroy(w);
    ck_assert_int_ne(access(tmp_path("huge_align.gguf"), F_OK), 0);
}
END_TEST

/* Issue 12, item 13: keys differing only after an embedded NUL ("k\0a", "k\0b") read back as
 * the same key "k"; keys and tensor names with a NUL byte are refused. */
static void b_raw_str(builder *b, const char *s, size_t n)
{
    b_u64(b, n);
    b_raw(b, s, n);
}

START_TEST(test_embedded_nul_refused)
{
    builder b = {0};
    b_header(&b, 3, 0, 2);
    b_raw_str(&b, "k\0a", 3);
    b_u32(&b, KQCL_GGUF_TYPE_UINT8);
    b_le(&b, 1, 1);
    b_raw_str(&b, "k\0b", 3);
    b_u32(&b, KQCL_GGUF_TYPE_UINT8);
    b_le(&b, 2, 1);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("NUL");
    /* one such key alone too: kqcl_gguf_key would show a different key than the file holds */
    b.n = 0;
    b_header(&b, 3, 0, 1);
    b_raw_str(&b, "general.name\0evil", 17);
    b_u32(&b, KQCL_GGUF_TYPE_UINT8);
    b_le(&b, 1, 1);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    /* tensor names the same way */
    const int64_t ne[] = {8};
    b.n = 0;
    b_header(&b, 3, 2, 0);
    b_raw_str(&b, "t\0a", 3);
    b_u32(&b, 1);
    b_u64(&b, 8);
    b_u32(&b, KQCL_TYPE_F32);
    b_u64(&b, 0);
    b_tensor(&b, "t", 1, ne, KQCL_TYPE_F32, 32);
    b_pad(&b, 32);
    for (int k = 0; k < 64; k++)
        b_le(&b, 0, 1);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("NUL");
}
END_TEST

/* Issue 12, item 7: the data range of every tensor is checked for every ggml type, not only
 * those kqcl computes with (a q8_0 tensor cut to half its size was accepted and `kqcl quantize`
 * copied process memory into its output). Sizes per block from ggml's type traits. */
static const struct {
    uint32_t id;
    int64_t block_values;
    size_t block_bytes;
} ggml_sizes[] = {
    {0, 1, 4},     {1, 1, 2},     {2, 32, 18},   {3, 32, 20},   {6, 32, 22},   {7, 32, 24},
    {8, 32, 34},   {9, 32, 36},   {10, 256, 84}, {11, 256, 110}, {12, 256, 144}, {13, 256, 176},
    {14, 256, 210}, {15, 256, 292}, {16, 256, 66}, {17, 256, 74}, {18, 256, 98}, {19, 256, 50},
    {20, 32, 18},  {21, 256, 110}, {22, 256, 82}, {23, 256, 136}, {24, 1, 1},   {25, 1, 2},
    {26, 1, 4},    {27, 1, 8},    {28, 1, 8},    {29, 256, 56}, {30, 1, 2},    {34, 256, 54},
    {35, 256, 66},
};

START_TEST(test_every_ggml_type_bounded)
{
    for (size_t k = 0; k < sizeof ggml_sizes / sizeof ggml_sizes[0]; k++) {
        const int64_t ne[] = {2 * ggml_sizes[k].block_values, 3};
        size_t full = 6 * ggml_sizes[k].block_bytes;
        /* whole: opens, sized */
        builder b = {0};
        b_header(&b, 3, 1, 0);
        b_tensor(&b, "w", 2, ne, ggml_sizes[k].id, 0);
        b_pad(&b, 32);
        size_t data_at = b.n;
        for (size_t j = 0; j < full; j++)
            b_le(&b, j, 1);
        kqcl_gguf *g = NULL;
        ck_assert_msg(kq_gguf_open_memory(b.bytes, b.n, &g) == KQCL_OK, "type %u whole: %s",
                      ggml_sizes[k].id, kqcl_last_error(NULL));
        kqcl_gguf_tensor t;
        TU_OK_CTX(NULL, kqcl_gguf_tensor_info(g, 0, &t));
        ck_assert_msg(t.nbytes == full, "type %u: nbytes %llu, want %zu", ggml_sizes[k].id,
                      (unsigned long long)t.nbytes, full);
        kqcl_gguf_close(g);
        /* cut to half, and by one byte: a format error naming the tensor */
        size_t cuts[] = {data_at + full / 2, data_at + full - 1};
        for (int c = 0; c < 2; c++) {
            ck_assert_msg(kq_gguf_open_memory(b.bytes, cuts[c], &g) == KQCL_ERR_FORMAT,
                          "type %u cut to %zu of %zu data bytes: accepted", ggml_sizes[k].id,
                          cuts[c] - data_at, full);
            ck_assert_error_has("runs past the end");
        }
        /* a row that is not a whole number of blocks */
        if (ggml_sizes[k].block_values > 1) {
            const int64_t odd[] = {ggml_sizes[k].block_values + 1, 1};
            b.n = 0;
            b_header(&b, 3, 1, 0);
            b_tensor(&b, "w", 2, odd, ggml_sizes[k].id, 0);
            b_pad(&b, 32);
            for (size_t j = 0; j < 2 * ggml_sizes[k].block_bytes; j++)
                b_le(&b, j, 1);
            ck_assert_int_eq(kq_gguf_open_memory(b.bytes, b.n, &g), KQCL_ERR_FORMAT);
        }
    }
    /* ids ggml does not define are listed unsized and never read */
    const int64_t ne[] = {32, 2};
    builder b = {0};
    b_header(&b, 3, 1, 0);
    b_tensor(&b, "w", 2, ne, 4, 0);
    b_pad(&b, 32);
    kqcl_gguf *g = NULL;
    TU_OK_CTX(NULL, kq_gguf_open_memory(b.bytes, b.n, &g));
    kqcl_gguf_tensor t;
    TU_OK_CTX(NULL, kqcl_gguf_tensor_info(g, 0, &t));
    ck_assert_uint_eq(t.nbytes, 0);
    kqcl_gguf_close(g);
}
END_TEST

/* kqcl_ggml_type_info, the table the reader and the tool size ggml types with. */
START_TEST(test_ggml_type_info)
{
    for (size_t k = 0; k < sizeof ggml_sizes / sizeof ggml_sizes[0]; k++) {
        const char *name = NULL;
        int64_t values = 0;
        size_t bytes = 0;
        TU_OK_CTX(NULL, kqcl_ggml_type_info(ggml_sizes[k].id, &name, &values, &bytes));
        ck_assert_ptr_nonnull(name);
        ck_assert_int_eq(values, ggml_sizes[k].block_values);
        ck_assert_uint_eq(bytes, ggml_sizes[k].block_bytes);
        if (kqcl_type_name((kqcl_type)ggml_sizes[k].id) != NULL) /* kqcl's own names agree */
            ck_assert_str_eq(name, kqcl_type_name((kqcl_type)ggml_sizes[k].id));
    }
    const char *name = NULL;
    TU_OK_CTX(NULL, kqcl_ggml_type_info(8, &name, NULL, NULL));
    ck_assert_str_eq(name, "q8_0");
    ck_assert_int_eq(kqcl_ggml_type_info(4, NULL, NULL, NULL), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_ggml_type_info(31, NULL, NULL, NULL), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_ggml_type_info(UINT32_MAX, NULL, NULL, NULL), KQCL_ERR_INVALID_ARG);
}
END_TEST

/* Issue 12, item 3: kqcl_gguf_open hung on a FIFO (a blocking open waits for a writer). It
 * must refuse it at once with KQCL_ERR_IO; this test case has a 10 s timeout. */
START_TEST(test_fifo_refused)
{
    const char *path = tmp_path("fifo.gguf");
    unlink(path);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    kqcl_gguf *g = (kqcl_gguf *)1;
    ck_assert_int_eq(kqcl_gguf_open(path, &g), KQCL_ERR_IO);
    ck_assert_ptr_null(g);
    ck_assert_error_has("not a regular file");
    unlink(path);
    /* a character device too */
    ck_assert_int_eq(kqcl_gguf_open("/dev/null", &g), KQCL_ERR_IO);
}
END_TEST

/* Peak resident memory of this process so far, KiB (Check runs each test in its own process). */
static long peak_rss_kib(void)
{
    struct rusage usage;
    ck_assert_int_eq(getrusage(RUSAGE_SELF, &usage), 0);
    return usage.ru_maxrss;
}

/* The built header at the start of a sparse file of `size` bytes (no disk used for the rest). */
static const char *write_sparse(const builder *b, off_t size)
{
    const char *path = write_file("sparse.gguf", b->bytes, b->n);
    ck_assert_int_eq(truncate(path, size), 0);
    return path;
}

/* Open a header built into a sparse 1 GiB file: the status, and the message holds `says`. The
 * open may not make this process more than 64 MiB bigger (the first read is 1 MiB). */
static void open_sparse_fails(const builder *b, const char *says)
{
    const char *path = write_sparse(b, (off_t)1 << 30);
    long before = peak_rss_kib();
    kqcl_gguf *g = (kqcl_gguf *)1;
    kqcl_status st = kqcl_gguf_open(path, &g);
    long grown_mib = (peak_rss_kib() - before) / 1024;
    ck_assert_msg(st == KQCL_ERR_FORMAT, "'%s': status %d (%s)", says, st, kqcl_last_error(NULL));
    ck_assert_ptr_null(g);
    ck_assert_error_has(says);
    ck_assert_msg(grown_mib < 64, "'%s': the open took %ld MiB", says, grown_mib);
    unlink(path);
}

/* Issue 23: a length field the file could not back made kqcl_gguf_open read the whole file
 * into memory before refusing it (2.3 GB for a 2 GiB sparse file): a claim longer than the
 * first read doubled the read until the claim fit or the file ended. A claim past the end of
 * the file, a string longer than a GGUF string may be, or a header longer than one may be is
 * refused from the first read. */
START_TEST(test_claims_bounded_before_reading)
{
    /* a small file: the claim is measured against the file, not against what was read */
    builder b = {0};
    b_header(&b, 3, 0, 1);
    b_str(&b, "key");
    b_u32(&b, KQCL_GGUF_TYPE_STRING);
    b_u64(&b, (uint64_t)1 << 40);
    b_raw(&b, "short", 5);
    ck_assert_int_eq(open_bytes(&b), KQCL_ERR_FORMAT);
    ck_assert_error_has("string length 1099511627776 runs past the end of the file (5 bytes left)");
    /* the key's length: more than the 1 GiB file holds */
    b.n = 0;
    b_header(&b, 3, 0, 1);
    b_u64(&b, (uint64_t)1 << 40);
    open_sparse_fails(&b, "runs past the end of the file");
    /* within the file, but longer than any string a GGUF file needs */
    b.n = 0;
    b_header(&b, 3, 0, 1);
    b_u64(&b, 900u << 20);
    open_sparse_fails(&b, "longer than the 64 MiB a GGUF string may take");
    /* a u8 array within the file, but past the most a header may take */
    b.n = 0;
    b_header(&b, 3, 0, 1);
    b_str(&b, "bytes");
    b_u32(&b, KQCL_GGUF_TYPE_ARRAY);
    b_u32(&b, KQCL_GGUF_TYPE_UINT8);
    b_u64(&b, 900u << 20);
    open_sparse_fails(&b, "the 256 MiB a GGUF header may take");
    /* 2^30 strings of at least 8 bytes each: more than the file holds */
    b.n = 0;
    b_header(&b, 3, 0, 1);
    b_str(&b, "strings");
    b_u32(&b, KQCL_GGUF_TYPE_ARRAY);
    b_u32(&b, KQCL_GGUF_TYPE_STRING);
    b_u64(&b, (uint64_t)1 << 30);
    open_sparse_fails(&b, "strings (8 bytes each at least) runs past the end of the file");
    /* a tensor count the file cannot hold */
    b.n = 0;
    b_header(&b, 3, (uint64_t)1 << 28, 0);
    open_sparse_fails(&b, "tensor count");
    /* a header longer than the first read, that the file does hold, is still read whole */
    size_t long_length = (size_t)3 << 20;
    char *text = malloc(long_length + 1);
    ck_assert_ptr_nonnull(text);
    memset(text, 'x', long_length);
    text[long_length] = '\0';
    kqcl_gguf_writer *w;
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_string(w, "tokenizer.huggingface.json", text));
    const char *path = tmp_path("long_header.gguf");
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(w, path));
    kqcl_gguf_writer_destroy(w);
    kqcl_gguf *g = open_ok(path);
    kqcl_gguf_value v = value_of(g, "tokenizer.huggingface.json", KQCL_GGUF_TYPE_STRING);
    ck_assert_uint_eq(v.length, long_length);
    kqcl_gguf_close(g);
    free(text);
}
END_TEST

/* A file of one 1 MiB f32 tensor and a string, for the truncation test. */
static const char *write_big_file(const char *name, float **data, size_t *bytes)
{
    kqcl_gguf_writer *w;
    const int64_t ne[] = {1024, 256};
    *bytes = 1024 * 256 * sizeof(float);
    *data = malloc(*bytes);
    ck_assert_ptr_nonnull(*data);
    for (size_t i = 0; i < *bytes / sizeof(float); i++)
        (*data)[i] = (float)i * 0.25f;
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    TU_OK_CTX(NULL, kqcl_gguf_writer_set_string(w, "general.name", "shrinking"));
    TU_OK_CTX(NULL, kqcl_gguf_writer_add_tensor(w, "big", KQCL_TYPE_F32, 2, ne, *data, *bytes));
    const char *path = tmp_path(name);
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(w, path));
    kqcl_gguf_writer_destroy(w);
    return path;
}

/* Issue 12, item 5: a GGUF file truncated after it was opened made kqcl_gguf_load_tensor die of
 * SIGBUS (it read through the mapping). Tensor data is read with pread: KQCL_ERR_IO, and the
 * metadata, held in memory, stays readable. */
START_TEST(test_file_truncated_after_open)
{
    kqcl_context *ctx = NULL;
    if (kqcl_context_create(NULL, &ctx) != KQCL_OK) {
        fprintf(stderr, "test_file_truncated_after_open: skipped, no device (%s)\n",
                kqcl_last_error(NULL));
        return;
    }
    float *data;
    size_t bytes;
    char *path = strdup(write_big_file("shrinking.gguf", &data, &bytes));
    kqcl_gguf *g = open_ok(path);
    kqcl_tensor *t = NULL;
    /* intact: loads, and the bytes are right */
    TU_OK_CTX(ctx, kqcl_gguf_load_tensor(ctx, g, 0, &t));
    float *back = malloc(bytes);
    TU_OK_CTX(ctx, kqcl_tensor_read(t, back, bytes));
    ck_assert(memcmp(back, data, bytes) == 0);
    kqcl_tensor_destroy(t);
    /* someone truncates the file to its header */
    ck_assert_int_eq(truncate(path, (off_t)kqcl_gguf_data_offset(g)), 0);
    t = (kqcl_tensor *)1;
    kqcl_status st = kqcl_gguf_load_tensor(ctx, g, 0, &t);
    ck_assert_msg(st == KQCL_ERR_IO, "load after truncation: %s (%s)", kqcl_status_string(st),
                  kqcl_last_error(ctx));
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(kqcl_last_error(ctx), "shorter") != NULL, "message: %s",
                  kqcl_last_error(ctx));
    const char *text;
    TU_OK_CTX(NULL, kqcl_gguf_get_string(g, kqcl_gguf_find_key(g, "general.name"), &text, NULL));
    ck_assert_str_eq(text, "shrinking");
    kqcl_gguf_close(g);
    /* a file cut while opened is refused at open as any truncated file is */
    kqcl_gguf *h = (kqcl_gguf *)1;
    ck_assert_int_eq(kqcl_gguf_open(path, &h), KQCL_ERR_FORMAT);
    free(back);
    free(data);
    free(path);
    kqcl_context_destroy(ctx);
}
END_TEST

/* A writer whose one tensor (64 KiB) makes any file larger than 4 KiB. */
static kqcl_gguf_writer *writer_of_64k(void *buffer)
{
    kqcl_gguf_writer *w;
    const int64_t ne[] = {16384};
    memset(buffer, 0x5a, 65536);
    TU_OK_CTX(NULL, kqcl_gguf_writer_create(&w));
    TU_OK_CTX(NULL, kqcl_gguf_writer_add_tensor(w, "t", KQCL_TYPE_F32, 1, ne, buffer, 65536));
    return w;
}

static int count_dir_entries(void)
{
    DIR *dir = opendir(tmp_dir);
    struct dirent *entry;
    int n = 0;
    ck_assert_ptr_nonnull(dir);
    while ((entry = readdir(dir)) != NULL)
        n += entry->d_name[0] != '.';
    closedir(dir);
    return n;
}

/* Issue 12, item 6: a failing write removed its output path: an existing file was lost, and as
 * root `kqcl quantize in.gguf /dev/full q4_K` unlinked the device node. The writer writes a
 * temporary file beside the target and renames it on success; on failure only that temporary
 * file goes. A failure is forced with RLIMIT_FSIZE (Check runs each test in its own process). */
START_TEST(test_failed_write_keeps_what_was_there)
{
    static uint8_t buffer[65536];
    kqcl_gguf_writer *w = writer_of_64k(buffer);
    const char *path = write_file("precious.gguf", "precious\n", 9);
    int before = count_dir_entries();
    struct rlimit old, small = {4096, 4096};
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN); /* the write fails with EFBIG instead of killing us */
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    kqcl_status st = kqcl_gguf_writer_write(w, path);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    ck_assert_int_eq(st, KQCL_ERR_IO);
    size_t n;
    char *text = read_whole(path, &n);
    ck_assert_msg(n == 9 && memcmp(text, "precious\n", 9) == 0, "the existing file was changed "
                  "(%zu bytes)", n);
    free(text);
    ck_assert_int_eq(count_dir_entries(), before); /* no temporary file left behind */
    /* success replaces it, keeping its permissions */
    ck_assert_int_eq(chmod(path, 0640), 0);
    TU_OK_CTX(NULL, kqcl_gguf_writer_write(w, path));
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_gt((size_t)sb.st_size, 65536);
    ck_assert_int_eq(sb.st_mode & 07777, 0640);
    ck_assert_int_eq(count_dir_entries(), before);
    /* not a regular file: refused, left as it is (no device node is ever replaced) */
    ck_assert_int_eq(kqcl_gguf_writer_write(w, "/dev/null"), KQCL_ERR_IO);
    ck_assert_error_has("not a regular file");
    const char *fifo = tmp_path("fifo.out");
    unlink(fifo);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_eq(kqcl_gguf_writer_write(w, fifo), KQCL_ERR_IO);
    ck_assert_int_eq(stat(fifo, &sb), 0);
    ck_assert(S_ISFIFO(sb.st_mode));
    unlink(fifo);
    if (geteuid() == 0) { /* a device node of our own, like /dev/full (1, 7) */
        const char *node = tmp_path("full.node");
        unlink(node);
        if (mknod(node, S_IFCHR | 0600, makedev(1, 7)) == 0) {
            ck_assert_int_eq(kqcl_gguf_writer_write(w, node), KQCL_ERR_IO);
            ck_assert_int_eq(stat(node, &sb), 0);
            ck_assert_msg(S_ISCHR(sb.st_mode), "the device node was replaced or removed");
            unlink(node);
        }
    }
    kqcl_gguf_writer_destroy(w);
}
END_TEST

/* Issue 23, item 8: the temporary file was named "TARGET.kqcl-tmp-PID-N", 17 or more bytes
 * longer than the target's own name, so a target whose name had 231 to 255 bytes (NAME_MAX)
 * could not be written: ENAMETOOLONG, reported as an I/O error. */
START_TEST(test_write_names_up_to_name_max)
{
    static uint8_t buffer[65536];
    kqcl_gguf_writer *w = writer_of_64k(buffer);
    int before = count_dir_entries();
    for (size_t length = 230; length <= 255; length += 5) {
        char name[256];
        memset(name, 'q', length - 5);
        memcpy(name + length - 5, ".gguf", 6);
        const char *path = tmp_path(name);
        kqcl_status st = kqcl_gguf_writer_write(w, path);
        ck_assert_msg(st == KQCL_OK, "a name of %zu bytes: %s", length, kqcl_last_error(NULL));
        kqcl_gguf *g = open_ok(path);
        ck_assert_int_eq(kqcl_gguf_tensor_count(g), 1);
        kqcl_gguf_close(g);
        ck_assert_int_eq(count_dir_entries(), before + 1); /* the file, no temporary one */
        ck_assert_int_eq(unlink(path), 0);
    }
    kqcl_gguf_writer_destroy(w);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */

static void remove_tmp_dir(void)
{
    DIR *dir = opendir(tmp_dir);
    struct dirent *entry;
    if (dir == NULL)
        return;
    while ((entry = readdir(dir)) != NULL)
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
            unlink(tmp_path(entry->d_name));
    closedir(dir);
    rmdir(tmp_dir);
}

static Suite *gguf_suite(void)
{
    Suite *s = suite_create("gguf");
    TCase *round_trip = tcase_create("round trips");
    tcase_add_test(round_trip, test_metadata_round_trip);
    tcase_add_test(round_trip, test_array_round_trip);
    tcase_add_test(round_trip, test_copy_kv_is_exact);
    tcase_add_test(round_trip, test_set_replaces_in_place);
    tcase_add_test(round_trip, test_nested_arrays_and_v2);
    tcase_add_test(round_trip, test_tensor_round_trip);
    tcase_add_test(round_trip, test_alignment_key);
    tcase_add_test(round_trip, test_writer_rejects);
    suite_add_tcase(s, round_trip);

    TCase *device = tcase_create("load onto a device");
    tcase_set_timeout(device, 300);
    tcase_add_test(device, test_load_tensor);
    tcase_add_loop_test(device, test_python_written_files, 0, (int)(sizeof python_files / sizeof python_files[0]));
    suite_add_tcase(s, device);

    TCase *malformed = tcase_create("malformed files fail cleanly");
    tcase_set_timeout(malformed, 120);
    tcase_add_test(malformed, test_every_truncation_fails);
    tcase_add_test(malformed, test_bad_magic_and_versions);
    tcase_add_test(malformed, test_files_and_arguments);
    tcase_add_test(malformed, test_lying_counts);
    tcase_add_test(malformed, test_strings_past_the_end);
    tcase_add_test(malformed, test_nested_arrays_bounded);
    tcase_add_test(malformed, test_unknown_value_types);
    tcase_add_test(malformed, test_duplicates);
    tcase_add_test(malformed, test_tensor_offsets);
    tcase_add_test(malformed, test_absurd_shapes);
    tcase_add_test(malformed, test_unknown_tensor_types_listed);
    tcase_add_test(malformed, test_bad_alignment_key);
    tcase_add_test(malformed, test_absurd_alignment_refused);
    tcase_add_test(malformed, test_embedded_nul_refused);
    tcase_add_test(malformed, test_every_ggml_type_bounded);
    tcase_add_test(malformed, test_ggml_type_info);
    tcase_add_test(malformed, test_failed_write_keeps_what_was_there);
    tcase_add_test(malformed, test_write_names_up_to_name_max);
    suite_add_tcase(s, malformed);

    /* Issue 12: files that change or are not files. A hang is the failure here: short timeout. */
    TCase *hostile = tcase_create("hostile files");
    tcase_set_timeout(hostile, 10);
    tcase_add_test(hostile, test_fifo_refused);
    tcase_add_test(hostile, test_claims_bounded_before_reading);
    suite_add_tcase(s, hostile);
    TCase *shrink = tcase_create("a file truncated while open");
    tcase_set_timeout(shrink, 300);
    tcase_add_test(shrink, test_file_truncated_after_open);
    suite_add_tcase(s, shrink);
    return s;
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/kqcl-gguf-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(tmp_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    SRunner *runner = srunner_create(gguf_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    remove_tmp_dir();
    return failed == 0 ? 0 : 1;
}
