/*
 * test_buffer.c -- raw device memory and tensor views (kqcl_buffer_*, kqcl_tensor_view): byte
 * ranges written, read, filled and copied at odd offsets against a host mirror; every bad
 * argument; matmuls, conversions and reductions on views sharing one buffer, against the float64
 * host reference; destroy orders; the second device when the context has two (run-multi.sh runs
 * this suite with POCL_DEVICES="pthread pthread" KQCL_DEVICES=all).
 */
#include "ops/ops.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POISON 0xA5

static unsigned char *random_bytes(size_t n)
{
    unsigned char *p = tu_malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)tu_rand();
    return p;
}

static kqcl_buffer *new_buffer(kqcl_context *ctx, int device, size_t bytes)
{
    kqcl_buffer *b = NULL;
    TU_OK_CTX(ctx, kqcl_buffer_create(ctx, device, bytes, &b));
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(kqcl_buffer_size(b), bytes);
    return b;
}

/* The whole buffer equals the mirror. */
static void assert_mirror(kqcl_buffer *b, const unsigned char *mirror, size_t bytes, const char *what)
{
    unsigned char *got = tu_malloc(bytes);
    memset(got, POISON, bytes);
    TU_OK(kqcl_buffer_read(b, 0, got, bytes));
    for (size_t i = 0; i < bytes; i++)
        ck_assert_msg(got[i] == mirror[i], "%s: byte %zu is %u, want %u", what, i, got[i], mirror[i]);
    free(got);
}

/* ---- bytes: write, read, fill, copy against a host mirror ---------------------------------------- */

/* A random range of a buffer of `size` bytes: empty, one byte, the whole, or anything between. */
static void random_range(size_t size, size_t *offset, size_t *bytes)
{
    switch (tu_rand() % 6) {
    case 0: *offset = tu_rand() % (size + 1), *bytes = 0; return;
    case 1: *offset = tu_rand() % size, *bytes = 1; return;
    case 2: *offset = 0, *bytes = size; return;
    default:
        *offset = tu_rand() % size;
        *bytes = 1 + tu_rand() % (size - *offset);
    }
}

static void byte_ops_on(kqcl_context *ctx, int device, size_t size)
{
    kqcl_buffer *b = new_buffer(ctx, device, size);
    unsigned char *mirror = random_bytes(size);
    TU_OK(kqcl_buffer_write(b, 0, mirror, size));
    assert_mirror(b, mirror, size, "whole write");
    for (int step = 0; step < 60; step++) {
        size_t off, n, off2;
        random_range(size, &off, &n);
        char what[96];
        switch (step % 4) {
        case 0: { /* write */
            unsigned char *src = random_bytes(n + 1);
            TU_OK(kqcl_buffer_write(b, off, src, n));
            memcpy(mirror + off, src, n);
            memset(src, 0, n + 1); /* blocking: reusing src changes nothing */
            free(src);
            snprintf(what, sizeof what, "write [%zu, +%zu)", off, n);
            break;
        }
        case 1: { /* fill */
            uint8_t v = (uint8_t)tu_rand();
            TU_OK(kqcl_buffer_fill(b, off, v, n));
            memset(mirror + off, v, n);
            snprintf(what, sizeof what, "fill [%zu, +%zu) with %u", off, n, v);
            break;
        }
        case 2: { /* copy inside the buffer, overlapping or not */
            off2 = tu_rand() % (size - n + 1);
            TU_OK(kqcl_buffer_copy(b, off2, b, off, n));
            memmove(mirror + off2, mirror + off, n);
            snprintf(what, sizeof what, "copy [%zu, +%zu) to %zu", off, n, off2);
            break;
        }
        default: { /* read a range: only its bytes change in dst */
            unsigned char *dst = tu_malloc(n + 2);
            memset(dst, POISON, n + 2);
            TU_OK(kqcl_buffer_read(b, off, dst + 1, n));
            ck_assert_msg(dst[0] == POISON && dst[n + 1] == POISON, "read [%zu, +%zu) wrote outside dst", off, n);
            ck_assert_msg(memcmp(dst + 1, mirror + off, n) == 0, "read [%zu, +%zu) differs", off, n);
            free(dst);
            snprintf(what, sizeof what, "read [%zu, +%zu)", off, n);
        }
        }
        if (step % 10 == 9)
            assert_mirror(b, mirror, size, what);
    }
    assert_mirror(b, mirror, size, "after every step");
    kqcl_buffer_destroy(b);
    free(mirror);
}

START_TEST(bytes_round_trip_odd_offsets)
{
    tu_seed(11);
    static const size_t sizes[] = {1, 2, 3, 63, 1000, 4097, 65537};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        byte_ops_on(tu_ctx, 0, sizes[i]);
}
END_TEST

/* Copies between two buffers: separate ones, and fill's last byte and copy's first/last bytes. */
START_TEST(copy_between_buffers)
{
    tu_seed(12);
    size_t na = 5001, nb = 3333;
    kqcl_buffer *a = new_buffer(tu_ctx, 0, na), *b = new_buffer(tu_ctx, 0, nb);
    unsigned char *ma = random_bytes(na), *mb = random_bytes(nb);
    TU_OK(kqcl_buffer_write(a, 0, ma, na));
    TU_OK(kqcl_buffer_write(b, 0, mb, nb));
    TU_OK(kqcl_buffer_copy(b, 7, a, 1, 3000));
    memcpy(mb + 7, ma + 1, 3000);
    TU_OK(kqcl_buffer_copy(a, na - 1, b, nb - 1, 1));
    ma[na - 1] = mb[nb - 1];
    TU_OK(kqcl_buffer_copy(a, 0, b, 0, nb));
    memcpy(ma, mb, nb);
    TU_OK(kqcl_buffer_copy(a, 17, a, 17, 100)); /* onto itself: nothing */
    TU_OK(kqcl_buffer_copy(a, 0, b, nb, 0));    /* empty at the very end */
    assert_mirror(a, ma, na, "a");
    assert_mirror(b, mb, nb, "b");
    kqcl_buffer_destroy(a), kqcl_buffer_destroy(b);
    free(ma), free(mb);
}
END_TEST

/* ---- bad arguments ------------------------------------------------------------------------------- */

#define EXPECT(expr, status, ctx, needle)                                                                        \
    do {                                                                                                       \
        kqcl_status st_ = (expr);                                                                              \
        ck_assert_msg(st_ == (status), "%s gave %s, want %s", #expr, kqcl_status_string(st_),                 \
                      kqcl_status_string(status));                                                            \
        ck_assert_msg(strstr(kqcl_last_error(ctx), (needle)) != NULL, "%s: message \"%s\" lacks \"%s\"", #expr, \
                      kqcl_last_error(ctx), (needle));                                                         \
    } while (0)

START_TEST(buffer_calls_reject_bad_arguments)
{
    const kqcl_status INVAL = KQCL_ERR_INVALID_ARG;
    kqcl_buffer *b = (kqcl_buffer *)&b; /* not NULL: must be set to NULL on failure */
    EXPECT(kqcl_buffer_create(NULL, 0, 64, &b), INVAL, NULL, "ctx");
    ck_assert_ptr_null(b);
    EXPECT(kqcl_buffer_create(tu_ctx, 0, 64, NULL), INVAL, tu_ctx, "out");
    EXPECT(kqcl_buffer_create(tu_ctx, -1, 64, &b), INVAL, tu_ctx, "device -1");
    EXPECT(kqcl_buffer_create(tu_ctx, kqcl_device_count(tu_ctx), 64, &b), INVAL, tu_ctx, "out of range");
    EXPECT(kqcl_buffer_create(tu_ctx, 0, 0, &b), INVAL, tu_ctx, "bytes is 0");
    EXPECT(kqcl_buffer_create(tu_ctx, 0, SIZE_MAX, &b), KQCL_ERR_UNSUPPORTED, tu_ctx, "largest allocation");
    ck_assert_ptr_null(b);

    size_t size = 1024;
    b = new_buffer(tu_ctx, 0, size);
    unsigned char host[2048];
    memset(host, 0, sizeof host);
    EXPECT(kqcl_buffer_write(NULL, 0, host, 1), INVAL, NULL, "buffer is NULL");
    EXPECT(kqcl_buffer_read(NULL, 0, host, 1), INVAL, NULL, "buffer is NULL");
    EXPECT(kqcl_buffer_fill(NULL, 0, 0, 1), INVAL, NULL, "buffer is NULL");
    EXPECT(kqcl_buffer_write(b, 0, NULL, 1), INVAL, tu_ctx, "host pointer");
    EXPECT(kqcl_buffer_read(b, 0, NULL, 1), INVAL, tu_ctx, "host pointer");
    EXPECT(kqcl_buffer_write(b, 0, host, size + 1), INVAL, tu_ctx, "outside the buffer");
    EXPECT(kqcl_buffer_write(b, size, host, 1), INVAL, tu_ctx, "outside");
    EXPECT(kqcl_buffer_write(b, size + 1, host, 0), INVAL, tu_ctx, "outside");
    EXPECT(kqcl_buffer_read(b, 1, host, size), INVAL, tu_ctx, "outside");
    EXPECT(kqcl_buffer_read(b, SIZE_MAX, host, 2), INVAL, tu_ctx, "outside");
    EXPECT(kqcl_buffer_read(b, 2, host, SIZE_MAX), INVAL, tu_ctx, "outside");
    EXPECT(kqcl_buffer_fill(b, SIZE_MAX, 1, SIZE_MAX), INVAL, tu_ctx, "outside");
    EXPECT(kqcl_buffer_fill(b, 1000, 1, 25), INVAL, tu_ctx, "outside");

    kqcl_buffer *c = new_buffer(tu_ctx, 0, 16);
    EXPECT(kqcl_buffer_copy(NULL, 0, b, 0, 1), INVAL, NULL, "dst is NULL");
    EXPECT(kqcl_buffer_copy(b, 0, NULL, 0, 1), INVAL, tu_ctx, "src is NULL");
    EXPECT(kqcl_buffer_copy(c, 0, b, 0, 17), INVAL, tu_ctx, "dst range");
    EXPECT(kqcl_buffer_copy(b, 0, c, 1, 16), INVAL, tu_ctx, "src range");
    EXPECT(kqcl_buffer_copy(b, SIZE_MAX, c, 0, 2), INVAL, tu_ctx, "dst range");
    EXPECT(kqcl_buffer_copy(c, 0, b, SIZE_MAX - 1, 2), INVAL, tu_ctx, "src range");

    /* views */
    size_t align = kqcl_buffer_alignment(tu_ctx, 0);
    ck_assert_uint_ge(align, 64);
    ck_assert_uint_eq(align & (align - 1), 0);
    ck_assert_uint_eq(kqcl_buffer_alignment(NULL, 0), 0);
    ck_assert_uint_eq(kqcl_buffer_alignment(tu_ctx, -1), 0);
    ck_assert_uint_eq(kqcl_buffer_alignment(tu_ctx, kqcl_device_count(tu_ctx)), 0);
    kqcl_buffer *big = new_buffer(tu_ctx, 0, 4 * align);
    kqcl_tensor *v = (kqcl_tensor *)&v;
    EXPECT(kqcl_tensor_view(NULL, 0, KQCL_TYPE_F32, 1, 1, &v), INVAL, NULL, "buffer is NULL");
    ck_assert_ptr_null(v);
    EXPECT(kqcl_tensor_view(big, 0, KQCL_TYPE_F32, 1, 1, NULL), INVAL, tu_ctx, "out is NULL");
    EXPECT(kqcl_tensor_view(big, 1, KQCL_TYPE_F32, 1, 1, &v), INVAL, tu_ctx, "multiple of");
    EXPECT(kqcl_tensor_view(big, align / 2, KQCL_TYPE_F32, 1, 1, &v), INVAL, tu_ctx, "multiple of");
    EXPECT(kqcl_tensor_view(big, 4 * align, KQCL_TYPE_F32, 1, 1, &v), INVAL, tu_ctx, "outside");
    EXPECT(kqcl_tensor_view(big, 3 * align, KQCL_TYPE_F32, 1, align / 4 + 1, &v), INVAL, tu_ctx, "outside");
    EXPECT(kqcl_tensor_view(big, 0, KQCL_TYPE_F32, 4 * (int64_t)align / 4 + 1, 1, &v), INVAL, tu_ctx, "outside");
    EXPECT(kqcl_tensor_view(big, SIZE_MAX - SIZE_MAX % align, KQCL_TYPE_F32, 1, (int64_t)align, &v), INVAL, tu_ctx,
           "outside"); /* offset + bytes overflows */
    EXPECT(kqcl_tensor_view(big, 0, KQCL_TYPE_F32, 0, 1, &v), INVAL, tu_ctx, "shape");
    EXPECT(kqcl_tensor_view(big, 0, KQCL_TYPE_F32, 1, -1, &v), INVAL, tu_ctx, "shape");
    EXPECT(kqcl_tensor_view(big, 0, KQCL_TYPE_Q4_K, 1, 100, &v), INVAL, tu_ctx, "shape");
    EXPECT(kqcl_tensor_view(big, 0, (kqcl_type)99, 1, 1, &v), INVAL, tu_ctx, "unknown type");
    EXPECT(kqcl_tensor_view(big, 0, KQCL_TYPE_F32, (int64_t)1 << 40, 1, &v), KQCL_ERR_UNSUPPORTED, tu_ctx,
           "too large");
    ck_assert_ptr_null(v);
    /* the largest view that fits, exactly to the end */
    TU_OK(kqcl_tensor_view(big, align, KQCL_TYPE_F32, 3, (int64_t)align / 4, &v));
    kqcl_tensor_destroy(v);

    /* a buffer of another context: refused by the calls that take both */
    kqcl_context *other = NULL;
    TU_OK_CTX(NULL, kqcl_context_create(NULL, &other));
    kqcl_buffer *ob = new_buffer(other, 0, 1024);
    EXPECT(kqcl_buffer_copy(b, 0, ob, 0, 1), INVAL, tu_ctx, "different contexts");
    EXPECT(kqcl_buffer_copy(ob, 0, b, 0, 1), INVAL, other, "different contexts");
    kqcl_tensor *ov = NULL, *t = NULL;
    TU_OK_CTX(other, kqcl_tensor_view(ob, 0, KQCL_TYPE_F32, 4, 64, &ov));
    TU_OK(kqcl_tensor_create(tu_ctx, KQCL_TYPE_F32, 4, 64, &t));
    EXPECT(kqcl_tensor_copy(tu_ctx, ov, t), INVAL, tu_ctx, "another context");
    EXPECT(kqcl_matmul(tu_ctx, ov, t, t), INVAL, tu_ctx, "another context");

    /* the context destroyed first: the buffer and its view are detached, destroy still works */
    kqcl_context_destroy(other);
    ck_assert_uint_eq(kqcl_buffer_size(ob), 1024);
    EXPECT(kqcl_buffer_write(ob, 0, host, 1), INVAL, NULL, "outlived its context");
    EXPECT(kqcl_buffer_read(ob, 0, host, 1), INVAL, NULL, "outlived its context");
    EXPECT(kqcl_buffer_fill(ob, 0, 0, 1), INVAL, NULL, "outlived its context");
    EXPECT(kqcl_buffer_copy(ob, 0, b, 0, 1), INVAL, NULL, "outlived its context");
    EXPECT(kqcl_buffer_copy(b, 0, ob, 0, 1), INVAL, tu_ctx, "outlived its context");
    EXPECT(kqcl_tensor_view(ob, 0, KQCL_TYPE_F32, 1, 1, &v), INVAL, NULL, "outlived its context");
    EXPECT(kqcl_tensor_read(ov, host, 4 * 64 * 4), INVAL, NULL, "context was destroyed");
    kqcl_tensor_destroy(ov);
    kqcl_buffer_destroy(ob);

    kqcl_buffer_destroy(NULL);
    ck_assert_uint_eq(kqcl_buffer_size(NULL), 0);
    kqcl_tensor_destroy(t);
    kqcl_buffer_destroy(big), kqcl_buffer_destroy(c), kqcl_buffer_destroy(b);
}
END_TEST

/* ---- views: shared bytes, compute ------------------------------------------------------------------ */

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* Bytes through the buffer are seen through the view and back; the bytes around it untouched. */
START_TEST(view_and_buffer_share_bytes)
{
    tu_seed(21);
    int64_t rows = 3, cols = 256; /* q4_K: 3 rows of 144 bytes */
    size_t vbytes = (size_t)rows * kqcl_row_size(KQCL_TYPE_Q4_K, cols);
    size_t align = kqcl_buffer_alignment(tu_ctx, 0), off = 2 * align, off3 = round_up(off + vbytes, align) + align;
    size_t size = off3 + vbytes / 3 + 77;
    kqcl_buffer *b = new_buffer(tu_ctx, 0, size);
    unsigned char *mirror = random_bytes(size);
    TU_OK(kqcl_buffer_write(b, 0, mirror, size));
    kqcl_tensor *v = NULL;
    TU_OK(kqcl_tensor_view(b, off, KQCL_TYPE_Q4_K, rows, cols, &v));
    ck_assert_int_eq(kqcl_tensor_rows(v), rows);
    ck_assert_int_eq(kqcl_tensor_cols(v), cols);
    ck_assert_int_eq(kqcl_tensor_type(v), KQCL_TYPE_Q4_K);
    ck_assert_uint_eq(kqcl_tensor_bytes(v), vbytes);
    ck_assert_int_eq(kqcl_tensor_split(v), KQCL_SPLIT_NONE);

    unsigned char *got = tu_malloc(vbytes);
    TU_OK(kqcl_tensor_read(v, got, vbytes)); /* buffer -> view */
    ck_assert(memcmp(got, mirror + off, vbytes) == 0);

    unsigned char *fresh = random_bytes(vbytes); /* view -> buffer */
    TU_OK(kqcl_tensor_write(v, fresh, vbytes));
    memcpy(mirror + off, fresh, vbytes);
    assert_mirror(b, mirror, size, "after kqcl_tensor_write on the view");

    TU_OK(kqcl_buffer_fill(b, off + 5, 0x3c, 11)); /* fill -> view */
    memset(mirror + off + 5, 0x3c, 11);
    TU_OK(kqcl_tensor_read(v, got, vbytes));
    ck_assert(memcmp(got, mirror + off, vbytes) == 0);

    /* two views over the same bytes see each other */
    kqcl_tensor *v2 = NULL;
    TU_OK(kqcl_tensor_view(b, off, KQCL_TYPE_Q4_K, 1, cols, &v2));
    unsigned char *row = random_bytes(vbytes / 3);
    TU_OK(kqcl_tensor_write(v2, row, vbytes / 3));
    TU_OK(kqcl_tensor_read(v, got, vbytes));
    ck_assert(memcmp(got, row, vbytes / 3) == 0);
    ck_assert(memcmp(got + vbytes / 3, mirror + off + vbytes / 3, vbytes - vbytes / 3) == 0);

    /* kqcl_tensor_copy: view -> plain tensor -> another view elsewhere in the buffer */
    kqcl_tensor *plain = tu_tensor(KQCL_TYPE_Q4_K, rows, cols, NULL), *v3 = NULL;
    TU_OK(kqcl_tensor_copy(tu_ctx, v, plain));
    TU_OK(kqcl_tensor_view(b, off3, KQCL_TYPE_Q4_K, 1, cols, &v3));
    kqcl_tensor *plain1 = tu_tensor(KQCL_TYPE_Q4_K, 1, cols, row);
    TU_OK(kqcl_tensor_copy(tu_ctx, plain1, v3));
    memcpy(mirror + off3, row, vbytes / 3);
    memcpy(mirror + off, row, vbytes / 3);
    assert_mirror(b, mirror, size, "after the copies");
    unsigned char *got2 = tu_malloc(vbytes);
    TU_OK(kqcl_tensor_read(plain, got2, vbytes));
    TU_OK(kqcl_tensor_read(v, got, vbytes));
    ck_assert(memcmp(got, got2, vbytes) == 0);

    kqcl_tensor_destroy(v), kqcl_tensor_destroy(v2), kqcl_tensor_destroy(v3);
    kqcl_tensor_destroy(plain), kqcl_tensor_destroy(plain1);
    assert_mirror(b, mirror, size, "destroying the views leaves the bytes");
    kqcl_buffer_destroy(b);
    free(mirror), free(got), free(got2), free(fresh), free(row);
}
END_TEST

static const kqcl_type view_wtypes[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q4_0, KQCL_TYPE_Q8_0, KQCL_TYPE_F16, KQCL_TYPE_F32};
#define N_VIEW_WTYPES ((int)(sizeof view_wtypes / sizeof view_wtypes[0]))

/* Y = X . W^T with W, X and Y views into one buffer on `device`, at aligned offsets with gaps,
 * the rest of the buffer poisoned (0xff: NaN floats) and checked untouched afterwards. */
static void matmul_in_one_buffer(int device, kqcl_type wtype, int n, kqcl_precision mode)
{
    int64_t m = 67, k = kqcl_block_size(wtype) == 256 ? 512 : 320;
    size_t align = kqcl_buffer_alignment(tu_ctx, device);
    size_t wbytes = (size_t)m * kqcl_row_size(wtype, k), xbytes = (size_t)n * k * sizeof(float),
           ybytes = (size_t)n * m * sizeof(float);
    size_t xoff = align, woff = round_up(xoff + xbytes, align) + 2 * align, yoff = round_up(woff + wbytes, align) + align;
    size_t size = yoff + ybytes + 13;

    void *w = tu_random_weights(wtype, m, k);
    float *x = tu_random_floats((size_t)n * k);
    double *xs = tu_malloc((size_t)n * k * sizeof(double)), *want = tu_malloc((size_t)n * m * sizeof(double)),
           *mag = tu_malloc((size_t)n * m * sizeof(double));
    kqcl_precision used = KQCL_PRECISION_F32;
    TU_OK(kqcl_context_set_precision(tu_ctx, mode));
    TU_OK(kqcl_precision_chosen(tu_ctx, device, wtype, n, &used));
    tu_promised_x(used, x, n, (int)k, xs);
    tu_host_matmul_xd(wtype, w, xs, m, k, n, want, mag);

    kqcl_buffer *b = new_buffer(tu_ctx, device, size);
    unsigned char *mirror = tu_malloc(size);
    memset(mirror, 0xff, size);
    TU_OK(kqcl_buffer_fill(b, 0, 0xff, size));
    TU_OK(kqcl_buffer_write(b, woff, w, wbytes));
    memcpy(mirror + woff, w, wbytes);
    kqcl_tensor *wv = NULL, *xv = NULL, *yv = NULL;
    TU_OK(kqcl_tensor_view(b, woff, wtype, m, k, &wv));
    TU_OK(kqcl_tensor_view(b, xoff, KQCL_TYPE_F32, n, k, &xv));
    TU_OK(kqcl_tensor_view(b, yoff, KQCL_TYPE_F32, n, m, &yv));
    TU_OK(kqcl_tensor_write(xv, x, xbytes)); /* X through the view, W through the buffer */
    memcpy(mirror + xoff, x, xbytes);
    TU_OK(kqcl_matmul(tu_ctx, wv, xv, yv));

    float *got = tu_malloc(ybytes);
    TU_OK(kqcl_buffer_read(b, yoff, got, ybytes));
    char what[128];
    snprintf(what, sizeof what, "device %d: %s views, n = %d, %s mode (%s)", device, kqcl_type_name(wtype), n,
             kqcl_precision_name(mode), kqcl_precision_name(used));
    tu_assert_close(got, want, mag, (size_t)n * m, what);
    float *got2 = tu_read_f32(yv);
    ck_assert(memcmp(got, got2, ybytes) == 0);
    memcpy(mirror + yoff, got, ybytes);
    assert_mirror(b, mirror, size, what); /* nothing outside Y written */

    /* the same product again after the buffer destroyed: the views hold the memory */
    kqcl_buffer_destroy(b);
    TU_OK(kqcl_tensor_write(yv, mirror, ybytes)); /* NaN again */
    TU_OK(kqcl_matmul(tu_ctx, wv, xv, yv));
    float *got3 = tu_read_f32(yv);
    ck_assert(memcmp(got, got3, ybytes) == 0);
    TU_OK(kqcl_context_set_precision(tu_ctx, KQCL_PRECISION_F32));

    kqcl_tensor_destroy(wv), kqcl_tensor_destroy(xv), kqcl_tensor_destroy(yv);
    free(w), free(x), free(xs), free(want), free(mag), free(got), free(got2), free(got3), free(mirror);
}

START_TEST(matmul_on_views_of_one_buffer)
{
    tu_seed(300 + (uint64_t)_i);
    matmul_in_one_buffer(0, view_wtypes[_i], 1, KQCL_PRECISION_F32);  /* decode */
    matmul_in_one_buffer(0, view_wtypes[_i], 20, KQCL_PRECISION_F32); /* prefill */
}
END_TEST

/* Q8 decode quantizes X into the device's scratch, not into the view's buffer. */
START_TEST(matmul_on_views_q8_and_bf16_modes)
{
    tu_seed(400 + (uint64_t)_i);
    matmul_in_one_buffer(0, view_wtypes[_i], 1, KQCL_PRECISION_Q8);
    matmul_in_one_buffer(0, view_wtypes[_i], 3, KQCL_PRECISION_Q8);
    matmul_in_one_buffer(0, view_wtypes[_i], 20, KQCL_PRECISION_BF16);
}
END_TEST

/* Every kernel on views, whatever n would pick: the matrix-vector and the tiled kernels forced,
 * and the unfused path (device dequantization into scratch, then CLBlast) where built. */
START_TEST(every_kernel_on_views)
{
    kqcl_type wtype = view_wtypes[_i];
    tu_seed(420 + (uint64_t)_i);
    int64_t m = 45, k = kqcl_block_size(wtype) == 256 ? 512 : 320;
    int n = 5;
    size_t align = kqcl_buffer_alignment(tu_ctx, 0), wbytes = (size_t)m * kqcl_row_size(wtype, k);
    size_t xoff = round_up(wbytes, align), yoff = xoff + round_up((size_t)n * k * 4, align);
    kqcl_buffer *b = new_buffer(tu_ctx, 0, yoff + (size_t)n * m * 4);
    void *w = tu_random_weights(wtype, m, k);
    float *x = tu_random_floats((size_t)n * k);
    double *want = tu_malloc((size_t)n * m * sizeof(double)), *mag = tu_malloc((size_t)n * m * sizeof(double));
    tu_host_matmul(wtype, w, KQCL_TYPE_F32, x, m, k, n, want, mag);
    TU_OK(kqcl_buffer_write(b, 0, w, wbytes));
    TU_OK(kqcl_buffer_write(b, xoff, x, (size_t)n * k * 4));
    kqcl_tensor *wv = NULL, *xv = NULL, *yv = NULL;
    TU_OK(kqcl_tensor_view(b, 0, wtype, m, k, &wv));
    TU_OK(kqcl_tensor_view(b, xoff, KQCL_TYPE_F32, n, k, &xv));
    TU_OK(kqcl_tensor_view(b, yoff, KQCL_TYPE_F32, n, m, &yv));
    static const kq_kernel_choice choices[] = {KQ_KERNEL_MATVEC, KQ_KERNEL_TILED};
    for (int c = 0; c < 3; c++) {
        TU_OK(kqcl_buffer_fill(b, yoff, 0xff, (size_t)n * m * 4));
        kqcl_status st = c < 2 ? kq_matmul_with(tu_ctx, wv, xv, yv, choices[c]) : kq_matmul_unfused(tu_ctx, wv, xv, yv);
        if (c == 2 && st == KQCL_ERR_UNSUPPORTED) {
            printf("every_kernel_on_views: unfused path skipped: %s\n", kqcl_last_error(tu_ctx));
            continue;
        }
        TU_OK(st);
        float *got = tu_read_f32(yv);
        char what[64];
        snprintf(what, sizeof what, "%s views, %s", kqcl_type_name(wtype), c == 0 ? "matvec" : c == 1 ? "tiled" : "unfused");
        tu_assert_close(got, want, mag, (size_t)n * m, what);
        free(got);
    }
    kqcl_tensor_destroy(wv), kqcl_tensor_destroy(xv), kqcl_tensor_destroy(yv);
    kqcl_buffer_destroy(b);
    free(w), free(x), free(want), free(mag);
}
END_TEST

/* kqcl_matmul_group with every weight and output a view of one buffer. */
START_TEST(matmul_group_on_views)
{
    tu_seed(450);
    int64_t m = 40, k = 256;
    int n = 2;
    size_t align = kqcl_buffer_alignment(tu_ctx, 0), wbytes = (size_t)m * kqcl_row_size(KQCL_TYPE_Q4_K, k);
    size_t xbytes = (size_t)n * k * 4, ybytes = (size_t)n * m * 4, slot = round_up(wbytes + xbytes + ybytes, align);
    kqcl_buffer *b = new_buffer(tu_ctx, 0, 4 * slot);
    float *x = tu_random_floats((size_t)n * k);
    kqcl_tensor *xv = NULL, *w[3], *y[3];
    TU_OK(kqcl_tensor_view(b, 3 * slot, KQCL_TYPE_F32, n, k, &xv));
    TU_OK(kqcl_tensor_write(xv, x, xbytes));
    void *wh[3];
    for (int i = 0; i < 3; i++) {
        wh[i] = tu_random_weights(KQCL_TYPE_Q4_K, m, k);
        TU_OK(kqcl_buffer_write(b, i * slot, wh[i], wbytes));
        TU_OK(kqcl_tensor_view(b, i * slot, KQCL_TYPE_Q4_K, m, k, &w[i]));
        TU_OK(kqcl_tensor_view(b, i * slot + round_up(wbytes, align), KQCL_TYPE_F32, n, m, &y[i]));
    }
    TU_OK(kqcl_matmul_group(tu_ctx, 3, (const kqcl_tensor *const *)w, xv, y));
    double *want = tu_malloc((size_t)n * m * sizeof(double)), *mag = tu_malloc((size_t)n * m * sizeof(double));
    for (int i = 0; i < 3; i++) {
        tu_host_matmul(KQCL_TYPE_Q4_K, wh[i], KQCL_TYPE_F32, x, m, k, n, want, mag);
        float *got = tu_read_f32(y[i]);
        tu_assert_close(got, want, mag, (size_t)n * m, "kqcl_matmul_group on views");
        free(got), free(wh[i]);
        kqcl_tensor_destroy(w[i]), kqcl_tensor_destroy(y[i]);
    }
    kqcl_tensor_destroy(xv);
    kqcl_buffer_destroy(b);
    free(x), free(want), free(mag);
}
END_TEST

/* kqcl_convert and kqcl_reduce from a view into a view of the same buffer. */
START_TEST(convert_and_reduce_on_views)
{
    tu_seed(500);
    int64_t rows = 5, cols = 300;
    size_t align = kqcl_buffer_alignment(tu_ctx, 0), fbytes = (size_t)rows * cols * 4;
    kqcl_buffer *b = new_buffer(tu_ctx, 0, 4 * round_up(fbytes, align));
    float *x = tu_random_floats((size_t)rows * cols);
    kqcl_tensor *src = NULL, *half = NULL, *sum = NULL;
    TU_OK(kqcl_tensor_view(b, align, KQCL_TYPE_F32, rows, cols, &src));
    TU_OK(kqcl_tensor_view(b, round_up(align + fbytes, align), KQCL_TYPE_F16, rows, cols, &half));
    TU_OK(kqcl_tensor_view(b, 3 * round_up(fbytes, align), KQCL_TYPE_F32, rows, 1, &sum));
    TU_OK(kqcl_buffer_write(b, align, x, fbytes));
    TU_OK(kqcl_convert(tu_ctx, src, half));
    uint16_t *want = tu_malloc((size_t)rows * cols * 2), *got = tu_malloc((size_t)rows * cols * 2);
    ck_assert_int_eq(kqcl_quantize(KQCL_TYPE_F16, x, want, rows, cols), KQCL_OK);
    TU_OK(kqcl_tensor_read(half, got, (size_t)rows * cols * 2));
    ck_assert(memcmp(got, want, (size_t)rows * cols * 2) == 0);
    TU_OK(kqcl_reduce(tu_ctx, KQCL_REDUCE_SUM, src, sum));
    float s[5];
    TU_OK(kqcl_tensor_read(sum, s, sizeof s));
    for (int r = 0; r < rows; r++) {
        double ref = 0, mag = 0;
        for (int64_t c = 0; c < cols; c++)
            ref += x[r * cols + c], mag += fabs(x[r * cols + c]);
        ck_assert_msg(fabs(s[r] - ref) <= 1e-6 * mag + 1e-6, "row %d: sum %.9g, want %.9g", r, s[r], ref);
    }
    kqcl_tensor_destroy(src), kqcl_tensor_destroy(half), kqcl_tensor_destroy(sum);
    kqcl_buffer_destroy(b);
    free(x), free(want), free(got);
}
END_TEST

/* ---- destroy orders ----------------------------------------------------------------------------- */

START_TEST(buffer_destroyed_before_its_views)
{
    tu_seed(600);
    kqcl_buffer *b = new_buffer(tu_ctx, 0, 4096);
    size_t align = kqcl_buffer_alignment(tu_ctx, 0);
    kqcl_tensor *v1 = NULL, *v2 = NULL;
    TU_OK(kqcl_tensor_view(b, 0, KQCL_TYPE_F32, 2, 8, &v1));
    TU_OK(kqcl_tensor_view(b, align, KQCL_TYPE_F32, 2, 8, &v2));
    float a[16], c[16];
    for (int i = 0; i < 16; i++)
        a[i] = (float)i;
    TU_OK(kqcl_tensor_write(v1, a, sizeof a));
    kqcl_buffer_destroy(b);
    TU_OK(kqcl_tensor_copy(tu_ctx, v1, v2));
    TU_OK(kqcl_tensor_read(v2, c, sizeof c));
    ck_assert(memcmp(a, c, sizeof a) == 0);
    kqcl_tensor_destroy(v2);
    kqcl_tensor_destroy(v1);

    /* views left to the context: released with it (ASan/LSan: nothing leaks) */
    b = new_buffer(tu_ctx, 0, 4096);
    TU_OK(kqcl_tensor_view(b, 0, KQCL_TYPE_F32, 2, 8, &v1));
    TU_OK(kqcl_tensor_view(b, align, KQCL_TYPE_F32, 2, 8, &v2));
    kqcl_tensor_destroy(v2);
    kqcl_context_destroy(tu_ctx);
    tu_ctx = NULL;
    kqcl_tensor_destroy(v1);
    kqcl_buffer_destroy(b);
}
END_TEST

/* ---- the second device ---------------------------------------------------------------------------- */

START_TEST(second_device_views_and_copies)
{
    if (kqcl_device_count(tu_ctx) < 2) {
        printf("second_device_views_and_copies: one device, skipped (run-multi.sh gives two)\n");
        return;
    }
    tu_seed(700);
    byte_ops_on(tu_ctx, 1, 7001);
    matmul_in_one_buffer(1, KQCL_TYPE_Q4_K, 1, KQCL_PRECISION_F32);
    matmul_in_one_buffer(1, KQCL_TYPE_Q8_0, 20, KQCL_PRECISION_F32);

    /* copies across devices, staged through the host */
    size_t n0 = 40000, n1 = 30011;
    kqcl_buffer *b0 = new_buffer(tu_ctx, 0, n0), *b1 = new_buffer(tu_ctx, 1, n1);
    unsigned char *m0 = random_bytes(n0), *m1 = random_bytes(n1);
    TU_OK(kqcl_buffer_write(b0, 0, m0, n0));
    TU_OK(kqcl_buffer_write(b1, 0, m1, n1));
    TU_OK(kqcl_buffer_copy(b1, 3, b0, 1001, 25000));
    memcpy(m1 + 3, m0 + 1001, 25000);
    TU_OK(kqcl_buffer_copy(b0, 0, b1, n1 - 1, 1));
    m0[0] = m1[n1 - 1];
    assert_mirror(b0, m0, n0, "device 0");
    assert_mirror(b1, m1, n1, "device 1");

    /* a view on device 1 <-> a tensor on device 0 */
    kqcl_tensor *v1 = NULL, *t0 = NULL;
    TU_OK(kqcl_tensor_view(b1, kqcl_buffer_alignment(tu_ctx, 1), KQCL_TYPE_F32, 4, 100, &v1));
    TU_OK(kqcl_tensor_create_on(tu_ctx, KQCL_TYPE_F32, 4, 100, 0, &t0));
    int64_t first = -1, count = -1;
    TU_OK(kqcl_tensor_part(v1, 1, &first, &count));
    ck_assert_int_eq(count, 4);
    TU_OK(kqcl_tensor_part(v1, 0, &first, &count));
    ck_assert_int_eq(count, 0);
    TU_OK(kqcl_tensor_copy(tu_ctx, v1, t0));
    float got[400];
    TU_OK(kqcl_tensor_read(t0, got, sizeof got));
    ck_assert(memcmp(got, m1 + kqcl_buffer_alignment(tu_ctx, 1), sizeof got) == 0);
    kqcl_tensor_destroy(v1), kqcl_tensor_destroy(t0);

    /* one product over both devices: W and Y views on device 1, X a tensor on device 0 (staged) */
    int64_t m = 33, k = 256;
    int n = 3;
    void *w = tu_random_weights(KQCL_TYPE_Q4_K, m, k);
    float *x = tu_random_floats((size_t)n * k);
    double *want = tu_malloc((size_t)n * m * sizeof(double)), *mag = tu_malloc((size_t)n * m * sizeof(double));
    tu_host_matmul(KQCL_TYPE_Q4_K, w, KQCL_TYPE_F32, x, m, k, n, want, mag);
    size_t align = kqcl_buffer_alignment(tu_ctx, 1), wbytes = (size_t)m * kqcl_row_size(KQCL_TYPE_Q4_K, k);
    kqcl_buffer *b = new_buffer(tu_ctx, 1, round_up(wbytes, align) + (size_t)n * m * 4);
    kqcl_tensor *wv = NULL, *yv = NULL, *xt = NULL;
    TU_OK(kqcl_tensor_view(b, 0, KQCL_TYPE_Q4_K, m, k, &wv));
    TU_OK(kqcl_tensor_view(b, round_up(wbytes, align), KQCL_TYPE_F32, n, m, &yv));
    TU_OK(kqcl_tensor_write(wv, w, wbytes));
    TU_OK(kqcl_tensor_create_on(tu_ctx, KQCL_TYPE_F32, n, k, 0, &xt));
    TU_OK(kqcl_tensor_write(xt, x, (size_t)n * k * 4));
    TU_OK(kqcl_matmul(tu_ctx, wv, xt, yv));
    float *y = tu_read_f32(yv);
    tu_assert_close(y, want, mag, (size_t)n * m, "W, Y views on device 1, X on device 0");
    kqcl_tensor_destroy(wv), kqcl_tensor_destroy(yv), kqcl_tensor_destroy(xt);
    kqcl_buffer_destroy(b);
    free(w), free(x), free(want), free(mag), free(y);
    kqcl_buffer_destroy(b0), kqcl_buffer_destroy(b1);
    free(m0), free(m1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("buffer");
    TCase *tc = tu_context_case("bytes");
    tcase_add_test(tc, bytes_round_trip_odd_offsets);
    tcase_add_test(tc, copy_between_buffers);
    tcase_add_test(tc, buffer_calls_reject_bad_arguments);
    suite_add_tcase(s, tc);
    tc = tu_context_case("views");
    tcase_add_test(tc, view_and_buffer_share_bytes);
    tcase_add_loop_test(tc, matmul_on_views_of_one_buffer, 0, N_VIEW_WTYPES);
    tcase_add_loop_test(tc, matmul_on_views_q8_and_bf16_modes, 0, 3); /* the quantized types */
    tcase_add_loop_test(tc, every_kernel_on_views, 0, N_VIEW_WTYPES);
    tcase_add_test(tc, matmul_group_on_views);
    tcase_add_test(tc, convert_and_reduce_on_views);
    tcase_add_test(tc, buffer_destroyed_before_its_views);
    tcase_add_test(tc, second_device_views_and_copies);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
