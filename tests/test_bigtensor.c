/*
 * test_bigtensor.c -- big tensors: a tensor larger than one allocation is held in several
 * buffers (row chunks) and every operation works across them. The test lowers every device's
 * largest allocation to 64 KiB (KQCL_TEST_MAX_ALLOC_BYTES, read when a context is created) so
 * that small tensors need many buffers, and compares with the host reference and with the same
 * call on an uncapped context, where every tensor is one buffer.
 */
#include "ops/ops.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP 65536
#define CAP_STRING "65536"

static const kqcl_type types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q6_K, KQCL_TYPE_F32, KQCL_TYPE_F16};
#define N_TYPES ((int)(sizeof types / sizeof types[0]))
static const int64_t K = 512; /* a q4_K row is 288 bytes (227 rows a buffer), an f32 row 2 KiB (32) */
static const int64_t M = 800;

/* A context without the cap: every tensor of this test is one buffer there. */
static kqcl_context *plain_context(const char *devices)
{
    unsetenv("KQCL_TEST_MAX_ALLOC_BYTES");
    kqcl_context *ctx = NULL;
    kqcl_status st = kqcl_context_create(devices, &ctx);
    setenv("KQCL_TEST_MAX_ALLOC_BYTES", CAP_STRING, 1);
    ck_assert_msg(st == KQCL_OK, "no plain context: %s", kqcl_last_error(NULL));
    return ctx;
}

static kqcl_tensor *make(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols, const void *host)
{
    kqcl_tensor *t = NULL;
    kqcl_status st = kqcl_tensor_create(ctx, type, rows, cols, &t);
    ck_assert_msg(st == KQCL_OK, "create %s %lld x %lld: %s", kqcl_type_name(type), (long long)rows, (long long)cols,
                  kqcl_last_error(ctx));
    if (host) {
        st = kqcl_tensor_write(t, host, kqcl_tensor_bytes(t));
        ck_assert_msg(st == KQCL_OK, "write: %s", kqcl_last_error(ctx));
    }
    return t;
}

static float *read_f32(kqcl_context *ctx, kqcl_tensor *t)
{
    float *out = tu_malloc(kqcl_tensor_bytes(t));
    kqcl_status st = kqcl_tensor_read(t, out, kqcl_tensor_bytes(t));
    ck_assert_msg(st == KQCL_OK, "read: %s", kqcl_last_error(ctx));
    return out;
}

static void assert_same_bits(const float *a, const float *b, size_t count, const char *what)
{
    for (size_t i = 0; i < count; i++)
        ck_assert_msg(memcmp(&a[i], &b[i], sizeof(float)) == 0, "%s: element %zu is %.9g, one buffer gives %.9g", what,
                      i, (double)a[i], (double)b[i]);
}

/* ---- the cap and placement ------------------------------------------------------------------------ */

START_TEST(the_cap_is_applied)
{
    kqcl_device_info info;
    TU_OK(kqcl_device_get_info(tu_ctx, 0, &info));
    ck_assert_uint_eq(info.max_alloc_bytes, CAP);
    kqcl_context *plain = plain_context(NULL);
    ck_assert_int_eq(kqcl_device_get_info(plain, 0, &info), KQCL_OK);
    ck_assert_uint_gt(info.max_alloc_bytes, CAP);
    kqcl_context_destroy(plain);
}
END_TEST

START_TEST(write_read_roundtrip)
{
    kqcl_type type = types[_i];
    size_t bytes = (size_t)M * kqcl_row_size(type, K);
    ck_assert_uint_gt(bytes, 3 * CAP); /* several buffers' worth */
    unsigned char *host = tu_malloc(bytes), *back = tu_malloc(bytes);
    for (size_t i = 0; i < bytes; i++)
        host[i] = (unsigned char)tu_rand();
    kqcl_tensor *t = make(tu_ctx, type, M, K, host);
    ck_assert_int_eq(kqcl_tensor_split(t), KQCL_SPLIT_NONE);
    ck_assert_uint_eq(kqcl_tensor_bytes(t), bytes);
    int64_t first = -1, count = -1;
    TU_OK(kqcl_tensor_part(t, 0, &first, &count));
    ck_assert_int_eq(first, 0);
    ck_assert_int_eq(count, M);
    memset(back, 0x5a, bytes);
    TU_OK(kqcl_tensor_read(t, back, bytes));
    ck_assert_msg(memcmp(back, host, bytes) == 0, "%s: bytes differ after write and read", kqcl_type_name(type));
    /* the same through the part calls, and a copy to another big tensor (part by part) */
    memset(back, 0x5a, bytes);
    TU_OK(kqcl_tensor_read_part(t, 0, back, bytes));
    ck_assert(memcmp(back, host, bytes) == 0);
    kqcl_tensor *u = make(tu_ctx, type, M, K, NULL);
    TU_OK(kqcl_tensor_copy(tu_ctx, t, u));
    memset(back, 0x5a, bytes);
    TU_OK(kqcl_tensor_read(u, back, bytes));
    ck_assert(memcmp(back, host, bytes) == 0);
    /* a wrong byte count is still refused */
    ck_assert_int_eq(kqcl_tensor_write(t, host, bytes - 1), KQCL_ERR_INVALID_ARG);
    kqcl_tensor_destroy(t), kqcl_tensor_destroy(u);
    free(host), free(back);
}
END_TEST

/* ---- matmul ------------------------------------------------------------------------------------------ */

static float *matmul_on(kqcl_context *ctx, kqcl_type type, const void *w, const float *x, int n, int force_tiled)
{
    kqcl_tensor *wt = make(ctx, type, M, K, w), *xt = make(ctx, KQCL_TYPE_F32, n, K, x);
    kqcl_tensor *yt = make(ctx, KQCL_TYPE_F32, n, M, NULL);
    size_t ybytes = kqcl_tensor_bytes(yt);
    unsigned char *nan_bytes = tu_malloc(ybytes);
    memset(nan_bytes, 0xff, ybytes);
    TU_OK(kqcl_tensor_write(yt, nan_bytes, ybytes));
    free(nan_bytes);
    kqcl_status st = kq_matmul_with(ctx, wt, xt, yt, force_tiled);
    ck_assert_msg(st == KQCL_OK, "matmul: %s", kqcl_last_error(ctx));
    float *y = read_f32(ctx, yt);
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt);
    return y;
}

START_TEST(matmul_across_buffers)
{
    kqcl_type type = types[_i];
    void *w = tu_random_weights(type, M, K);
    kqcl_context *plain = plain_context(NULL);
    const int ns[] = {1, 5, 70};
    for (int c = 0; c < 3; c++) {
        int n = ns[c];
        float *x = tu_random_floats((size_t)n * K);
        double *ref = tu_malloc((size_t)n * M * sizeof(double)), *mag = tu_malloc((size_t)n * M * sizeof(double));
        tu_host_matmul(type, w, KQCL_TYPE_F32, x, M, K, n, ref, mag);
        for (int kernel = 0; kernel < 2; kernel++) { /* by n (matvec for n <= 8), then tiled */
            if (kernel == 0 && n > KQ_MATVEC_MAX_N)
                continue;
            int force = kernel == 0 ? -1 : (n > KQ_MATVEC_MAX_N ? 0 : 1);
            float *got = matmul_on(tu_ctx, type, w, x, n, force);
            float *one = matmul_on(plain, type, w, x, n, force);
            char what[96];
            snprintf(what, sizeof what, "%s n=%d %s, 64 KiB buffers", kqcl_type_name(type), n,
                     kernel == 0 ? "matvec" : "tiled");
            tu_assert_close(got, ref, mag, (size_t)n * M, what);
            assert_same_bits(got, one, (size_t)n * M, what); /* every output computed as in one buffer */
            free(got), free(one);
        }
        free(x), free(ref), free(mag);
    }
    kqcl_context_destroy(plain);
    free(w);
}
END_TEST

/* W in one buffer, X and Y in several (n rows cut), and the other way round. */
START_TEST(matmul_big_activations)
{
    kqcl_type type = KQCL_TYPE_Q4_K;
    const int64_t m = 200; /* 57,600 bytes of q4_K: one buffer */
    const int n = 70;      /* x 143 KiB, y 56 KiB: x in several */
    void *w = tu_random_weights(type, m, K);
    float *x = tu_random_floats((size_t)n * K);
    double *ref = tu_malloc((size_t)n * m * sizeof(double)), *mag = tu_malloc((size_t)n * m * sizeof(double));
    tu_host_matmul(type, w, KQCL_TYPE_F32, x, m, K, n, ref, mag);
    kqcl_tensor *wt = make(tu_ctx, type, m, K, w), *xt = make(tu_ctx, KQCL_TYPE_F32, n, K, x);
    kqcl_tensor *yt = make(tu_ctx, KQCL_TYPE_F32, n, m, NULL);
    TU_OK(kqcl_matmul(tu_ctx, wt, xt, yt));
    float *got = read_f32(tu_ctx, yt);
    tu_assert_close(got, ref, mag, (size_t)n * m, "q4_K, x in several buffers");
    free(got);
    /* y of 400 rows x 200: several buffers, x cut to fit */
    const int n2 = 400;
    float *x2 = tu_random_floats((size_t)n2 * K);
    double *ref2 = tu_malloc((size_t)n2 * m * sizeof(double)), *mag2 = tu_malloc((size_t)n2 * m * sizeof(double));
    tu_host_matmul(type, w, KQCL_TYPE_F32, x2, m, K, n2, ref2, mag2);
    kqcl_tensor *xt2 = make(tu_ctx, KQCL_TYPE_F32, n2, K, x2), *yt2 = make(tu_ctx, KQCL_TYPE_F32, n2, m, NULL);
    TU_OK(kqcl_matmul(tu_ctx, wt, xt2, yt2));
    got = read_f32(tu_ctx, yt2);
    tu_assert_close(got, ref2, mag2, (size_t)n2 * m, "q4_K, x and y in several buffers");
    free(got);
    /* data parallel: W replicated (one buffer a device), X and Y split by rows, each share in
     * several buffers */
    kqcl_tensor *wr = NULL, *xr = NULL, *yr = NULL;
    TU_OK(kqcl_tensor_create_split(tu_ctx, type, m, K, KQCL_SPLIT_REPLICATE, &wr));
    TU_OK(kqcl_tensor_write(wr, w, kqcl_tensor_bytes(wr)));
    TU_OK(kqcl_tensor_create_split(tu_ctx, KQCL_TYPE_F32, n2, K, KQCL_SPLIT_ROWS, &xr));
    TU_OK(kqcl_tensor_write(xr, x2, kqcl_tensor_bytes(xr)));
    TU_OK(kqcl_tensor_create_split(tu_ctx, KQCL_TYPE_F32, n2, m, KQCL_SPLIT_ROWS, &yr));
    TU_OK(kqcl_matmul(tu_ctx, wr, xr, yr));
    got = read_f32(tu_ctx, yr);
    tu_assert_close(got, ref2, mag2, (size_t)n2 * m, "q4_K data parallel, x and y in several buffers");
    free(got);
    kqcl_tensor_destroy(wr), kqcl_tensor_destroy(xr), kqcl_tensor_destroy(yr);
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt);
    kqcl_tensor_destroy(xt2), kqcl_tensor_destroy(yt2);
    free(w), free(x), free(ref), free(mag), free(x2), free(ref2), free(mag2);
}
END_TEST

/* ---- convert and reduce ------------------------------------------------------------------------------ */

START_TEST(convert_across_buffers)
{
    /* q4_K (227 rows a buffer) and q6_K (156) to f32 (32) and f16 (64): cut at different rows */
    kqcl_type from[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q6_K, KQCL_TYPE_F32, KQCL_TYPE_F16};
    for (int s = 0; s < 4; s++) {
        void *w = tu_random_weights(from[s], M, K);
        float *want = tu_malloc((size_t)M * K * sizeof(float));
        TU_OK(kqcl_dequantize(from[s], w, want, M, K));
        kqcl_tensor *src = make(tu_ctx, from[s], M, K, w);
        /* to f32: bit-exact with the host codec */
        kqcl_tensor *f32 = make(tu_ctx, KQCL_TYPE_F32, M, K, NULL);
        TU_OK(kqcl_convert(tu_ctx, src, f32));
        float *got = read_f32(tu_ctx, f32);
        ck_assert_msg(memcmp(got, want, (size_t)M * K * sizeof(float)) == 0, "%s -> f32 differs from the host",
                      kqcl_type_name(from[s]));
        /* to f16: as the host quantizes the f32 values */
        kqcl_tensor *f16 = make(tu_ctx, KQCL_TYPE_F16, M, K, NULL);
        TU_OK(kqcl_convert(tu_ctx, src, f16));
        size_t hbytes = (size_t)M * kqcl_row_size(KQCL_TYPE_F16, K);
        unsigned char *h = tu_malloc(hbytes), *hwant = tu_malloc(hbytes);
        TU_OK(kqcl_tensor_read(f16, h, hbytes));
        TU_OK(kqcl_quantize(KQCL_TYPE_F16, want, hwant, M, K));
        ck_assert_msg(memcmp(h, hwant, hbytes) == 0, "%s -> f16 differs from the host", kqcl_type_name(from[s]));
        free(got), free(h), free(hwant), free(want), free(w);
        kqcl_tensor_destroy(src), kqcl_tensor_destroy(f32), kqcl_tensor_destroy(f16);
    }
}
END_TEST

START_TEST(reduce_across_buffers)
{
    const int64_t rows = 300, cols = 700; /* 2,800-byte rows: 23 a buffer */
    float *x = tu_random_floats((size_t)rows * cols);
    kqcl_context *plain = plain_context(NULL);
    kqcl_tensor *src = make(tu_ctx, KQCL_TYPE_F32, rows, cols, x), *dst = make(tu_ctx, KQCL_TYPE_F32, rows, 1, NULL);
    kqcl_tensor *psrc = make(plain, KQCL_TYPE_F32, rows, cols, x), *pdst = make(plain, KQCL_TYPE_F32, rows, 1, NULL);
    for (int op = KQCL_REDUCE_SUM; op <= KQCL_REDUCE_SUMSQ; op++) {
        TU_OK(kqcl_reduce(tu_ctx, (kqcl_reduce_op)op, src, dst));
        ck_assert_int_eq(kqcl_reduce(plain, (kqcl_reduce_op)op, psrc, pdst), KQCL_OK);
        float *got = read_f32(tu_ctx, dst), *one = read_f32(plain, pdst);
        for (int64_t r = 0; r < rows; r++) {
            double s = 0, sq = 0, mx = -INFINITY, mn = INFINITY;
            for (int64_t c = 0; c < cols; c++) {
                double v = x[r * cols + c];
                s += v, sq += v * v, mx = fmax(mx, v), mn = fmin(mn, v);
            }
            double want = op == KQCL_REDUCE_SUM ? s : op == KQCL_REDUCE_MAX ? mx : op == KQCL_REDUCE_MIN ? mn
                        : op == KQCL_REDUCE_MEAN ? s / cols : sq;
            ck_assert_msg(fabs(got[r] - want) <= 1e-5 * (fabs(want) + 1), "op %d row %lld: %.9g, want %.9g", op,
                          (long long)r, (double)got[r], want);
        }
        assert_same_bits(got, one, (size_t)rows, "reduce");
        free(got), free(one);
    }
    /* a big dst too: rows x 1 of 20,000 rows is 80,000 bytes */
    const int64_t many = 20000, few = 16;
    float *x2 = tu_random_floats((size_t)many * few);
    kqcl_tensor *src2 = make(tu_ctx, KQCL_TYPE_F32, many, few, x2), *dst2 = make(tu_ctx, KQCL_TYPE_F32, many, 1, NULL);
    TU_OK(kqcl_reduce(tu_ctx, KQCL_REDUCE_MAX, src2, dst2));
    float *got = read_f32(tu_ctx, dst2);
    for (int64_t r = 0; r < many; r++) {
        float mx = -INFINITY;
        for (int64_t c = 0; c < few; c++)
            mx = fmaxf(mx, x2[r * few + c]);
        ck_assert_msg(got[r] == mx, "max of row %lld: %g, want %g", (long long)r, (double)got[r], (double)mx);
    }
    free(got), free(x2), free(x);
    kqcl_tensor_destroy(src), kqcl_tensor_destroy(dst), kqcl_tensor_destroy(psrc), kqcl_tensor_destroy(pdst);
    kqcl_tensor_destroy(src2), kqcl_tensor_destroy(dst2);
    kqcl_context_destroy(plain);
}
END_TEST

/* ---- what is refused ------------------------------------------------------------------------------------ */

START_TEST(refused_cleanly)
{
    kqcl_tensor *t = (kqcl_tensor *)1;
    /* one row larger than one buffer */
    ck_assert_int_eq(kqcl_tensor_create(tu_ctx, KQCL_TYPE_F32, 4, CAP / 4 + 256, &t), KQCL_ERR_UNSUPPORTED);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(kqcl_last_error(tu_ctx), "row") != NULL, "message: %s", kqcl_last_error(tu_ctx));
    /* a row of exactly one buffer is fine */
    t = make(tu_ctx, KQCL_TYPE_F32, 3, CAP / 4, NULL);
    kqcl_tensor_destroy(t);
    /* more than the device's memory: out of memory, before any buffer */
    kqcl_device_info info;
    TU_OK(kqcl_device_get_info(tu_ctx, 0, &info));
    ck_assert_int_eq(kqcl_tensor_create(tu_ctx, KQCL_TYPE_F32, (int64_t)(info.global_mem_bytes / 1024) + 1, 256, &t),
                     KQCL_ERR_OUT_OF_MEMORY);
    /* replicas and column parts are one buffer a device */
    ck_assert_int_eq(kqcl_tensor_create_split(tu_ctx, KQCL_TYPE_F32, 100, 256, KQCL_SPLIT_REPLICATE, &t),
                     KQCL_ERR_UNSUPPORTED);
    ck_assert_int_eq(kqcl_tensor_create_split(tu_ctx, KQCL_TYPE_F32, 100 * kqcl_device_count(tu_ctx), 256,
                                              KQCL_SPLIT_COLS, &t),
                     KQCL_ERR_UNSUPPORTED);
    /* the collectives take one buffer a device */
    t = make(tu_ctx, KQCL_TYPE_F32, 100, 256, NULL);
    ck_assert_int_eq(kqcl_allreduce(tu_ctx, t, KQCL_REDUCE_SUM), KQCL_ERR_UNSUPPORTED);
    /* conversions between placements that differ by device are still refused */
    if (kqcl_device_count(tu_ctx) > 1) {
        kqcl_tensor *u = NULL;
        TU_OK(kqcl_tensor_create_on(tu_ctx, KQCL_TYPE_F16, 100, 256, 1, &u));
        ck_assert_int_eq(kqcl_convert(tu_ctx, t, u), KQCL_ERR_INVALID_ARG);
        kqcl_tensor_destroy(u);
    }
    kqcl_tensor_destroy(t);
}
END_TEST

/* Whether every device of ctx is the same kind of device as device 0 (name, vendor, driver and
 * kernels): only then must a split give one device's bits. "all" on a GPU machine is a GPU and
 * PoCL's CPU device. */
static bool devices_alike(kqcl_context *ctx)
{
    kqcl_device_info first, other;
    ck_assert_int_eq(kqcl_device_get_info(ctx, 0, &first), KQCL_OK);
    for (int d = 1; d < kqcl_device_count(ctx); d++) {
        ck_assert_int_eq(kqcl_device_get_info(ctx, d, &other), KQCL_OK);
        if (strcmp(first.name, other.name) != 0 || strcmp(first.vendor, other.vendor) != 0 ||
            strcmp(first.driver, other.driver) != 0 || strcmp(first.variant, other.variant) != 0)
            return false;
    }
    return true;
}

/* ---- several devices ---------------------------------------------------------------------------------- */

/* With two or more devices (KQCL_DEVICES=all and, on PoCL, POCL_DEVICES="pthread pthread"): W split
 * by rows, each device's share in several buffers. Skipped with one device. */
START_TEST(row_split_over_devices)
{
    kqcl_context *ctx = NULL;
    if (kqcl_context_create("all", &ctx) != KQCL_OK || kqcl_device_count(ctx) < 2) {
        fprintf(stderr, "test_bigtensor: fewer than two devices: row_split_over_devices skipped\n");
        kqcl_context_destroy(ctx);
        return;
    }
    kqcl_context *plain = plain_context("all");
    kqcl_type type = types[_i];
    void *w = tu_random_weights(type, M, K);
    size_t bytes = (size_t)M * kqcl_row_size(type, K);
    kqcl_tensor *wt = NULL;
    ck_assert_int_eq(kqcl_tensor_create_split(ctx, type, M, K, KQCL_SPLIT_ROWS, &wt), KQCL_OK);
    ck_assert_int_eq(kqcl_tensor_write(wt, w, bytes), KQCL_OK);
    /* each device's share: consecutive rows, also through the part calls */
    int64_t at = 0;
    for (int d = 0; d < kqcl_device_count(ctx); d++) {
        int64_t first, count;
        ck_assert_int_eq(kqcl_tensor_part(wt, d, &first, &count), KQCL_OK);
        if (count == 0)
            continue;
        ck_assert_int_eq(first, at);
        size_t part_bytes = (size_t)count * kqcl_row_size(type, K);
        unsigned char *back = tu_malloc(part_bytes);
        ck_assert_int_eq(kqcl_tensor_read_part(wt, d, back, part_bytes), KQCL_OK);
        ck_assert(memcmp(back, (unsigned char *)w + (size_t)first * kqcl_row_size(type, K), part_bytes) == 0);
        free(back);
        at += count;
    }
    ck_assert_int_eq(at, M);
    unsigned char *back = tu_malloc(bytes);
    ck_assert_int_eq(kqcl_tensor_read(wt, back, bytes), KQCL_OK);
    ck_assert(memcmp(back, w, bytes) == 0);
    free(back);
    kqcl_tensor *pw = NULL;
    ck_assert_int_eq(kqcl_tensor_create_on(plain, type, M, K, 0, &pw), KQCL_OK);
    ck_assert_int_eq(kqcl_tensor_write(pw, w, bytes), KQCL_OK);
    const int ns[] = {1, 5, 70};
    for (int c = 0; c < 3; c++) {
        int n = ns[c];
        float *x = tu_random_floats((size_t)n * K);
        double *ref = tu_malloc((size_t)n * M * sizeof(double)), *mag = tu_malloc((size_t)n * M * sizeof(double));
        tu_host_matmul(type, w, KQCL_TYPE_F32, x, M, K, n, ref, mag);
        kqcl_split y_splits[] = {KQCL_SPLIT_NONE, KQCL_SPLIT_ROWS};
        for (int ys = 0; ys < 2; ys++) {
            kqcl_tensor *xt = NULL, *yt = NULL, *px = NULL, *py = NULL;
            ck_assert_int_eq(kqcl_tensor_create(ctx, KQCL_TYPE_F32, n, K, &xt), KQCL_OK);
            ck_assert_int_eq(kqcl_tensor_write(xt, x, kqcl_tensor_bytes(xt)), KQCL_OK);
            ck_assert_int_eq(kqcl_tensor_create_split(ctx, KQCL_TYPE_F32, n, M, y_splits[ys], &yt), KQCL_OK);
            kqcl_status st = kqcl_matmul(ctx, wt, xt, yt);
            ck_assert_msg(st == KQCL_OK, "matmul: %s", kqcl_last_error(ctx));
            float *got = read_f32(ctx, yt);
            char what[96];
            snprintf(what, sizeof what, "%s row split n=%d y split %d", kqcl_type_name(type), n, (int)y_splits[ys]);
            tu_assert_close(got, ref, mag, (size_t)n * M, what);
            /* against one whole device 0 without the cap (the devices are of one kind) */
            ck_assert_int_eq(kqcl_tensor_create_on(plain, KQCL_TYPE_F32, n, K, 0, &px), KQCL_OK);
            ck_assert_int_eq(kqcl_tensor_write(px, x, kqcl_tensor_bytes(px)), KQCL_OK);
            ck_assert_int_eq(kqcl_tensor_create_on(plain, KQCL_TYPE_F32, n, M, 0, &py), KQCL_OK);
            ck_assert_int_eq(kqcl_matmul(plain, pw, px, py), KQCL_OK);
            float *one = read_f32(plain, py);
            if (devices_alike(ctx)) /* devices of different kinds round differently */
                assert_same_bits(got, one, (size_t)n * M, what);
            free(got), free(one);
            kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt), kqcl_tensor_destroy(px), kqcl_tensor_destroy(py);
        }
        free(x), free(ref), free(mag);
    }
    /* convert and reduce part by part, row ranges cut differently */
    kqcl_tensor *f32 = NULL, *sums = NULL;
    ck_assert_int_eq(kqcl_tensor_create_split(ctx, KQCL_TYPE_F32, M, K, KQCL_SPLIT_ROWS, &f32), KQCL_OK);
    ck_assert_int_eq(kqcl_convert(ctx, wt, f32), KQCL_OK);
    float *got = read_f32(ctx, f32), *want = tu_malloc((size_t)M * K * sizeof(float));
    ck_assert_int_eq(kqcl_dequantize(type, w, want, M, K), KQCL_OK);
    ck_assert_msg(memcmp(got, want, (size_t)M * K * sizeof(float)) == 0, "row split convert differs");
    ck_assert_int_eq(kqcl_tensor_create_split(ctx, KQCL_TYPE_F32, M, 1, KQCL_SPLIT_ROWS, &sums), KQCL_OK);
    ck_assert_int_eq(kqcl_reduce(ctx, KQCL_REDUCE_MAX, f32, sums), KQCL_OK);
    float *mx = read_f32(ctx, sums);
    for (int64_t r = 0; r < M; r++) {
        float m = -INFINITY;
        for (int64_t c = 0; c < K; c++)
            m = fmaxf(m, want[r * K + c]);
        ck_assert_msg(mx[r] == m, "row %lld max %g, want %g", (long long)r, (double)mx[r], (double)m);
    }
    free(got), free(want), free(mx), free(w);
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(pw), kqcl_tensor_destroy(f32), kqcl_tensor_destroy(sums);
    kqcl_context_destroy(plain);
    kqcl_context_destroy(ctx);
}
END_TEST

static Suite *bigtensor_suite(void)
{
    Suite *s = suite_create("bigtensor");
    TCase *tc = tcase_create("capped");
    tcase_add_checked_fixture(tc, tu_context_setup, tu_context_teardown);
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, the_cap_is_applied);
    tcase_add_loop_test(tc, write_read_roundtrip, 0, N_TYPES);
    tcase_add_loop_test(tc, matmul_across_buffers, 0, N_TYPES);
    tcase_add_test(tc, matmul_big_activations);
    tcase_add_test(tc, convert_across_buffers);
    tcase_add_test(tc, reduce_across_buffers);
    tcase_add_test(tc, refused_cleanly);
    tcase_add_loop_test(tc, row_split_over_devices, 0, N_TYPES);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Every context this test makes has its devices' largest allocation cut to 64 KiB. */
    setenv("KQCL_TEST_MAX_ALLOC_BYTES", CAP_STRING, 1);
    tu_seed(42);
    return tu_run_suite(bigtensor_suite());
}
