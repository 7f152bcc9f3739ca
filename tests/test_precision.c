/*
 * test_precision.c -- the precision modes (include/kqcl.h): the API and its environment
 * variable; Q8's activation quantization reproduced bit for bit by a host reference written from
 * the header's text; every mode's products against float64 references of the activations it
 * promises to multiply; the error against exact float64 no larger than ggml's own quantization
 * gives; kqcl_matmul_group against single calls, bit for bit; non-finite inputs.
 * Runs on kqcl's default device, or KQCL_DEVICES (tests/run-gpu-kernels.sh: the GPU family).
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const kqcl_type quant_types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K, KQCL_TYPE_Q4_0,
                                        KQCL_TYPE_Q4_1, KQCL_TYPE_Q5_0, KQCL_TYPE_Q5_1, KQCL_TYPE_Q8_0};
#define N_QUANT ((int)(sizeof quant_types / sizeof quant_types[0]))

/* ggml's CUDA quantization of activations (q8_1: blocks of 32, d = amax / 127, q = roundf(x /
 * d)) -- the error kqcl's Q8 is held to. */
static void ggml_q8_activations(const float *x, int n, int k, double *out)
{
    for (int b = 0; b < n * k / 32; b++) {
        const float *v = x + (size_t)b * 32;
        float amax = 0.0f;
        for (int i = 0; i < 32; i++)
            amax = fmaxf(amax, fabsf(v[i]));
        float d = amax / 127.0f;
        for (int i = 0; i < 32; i++)
            out[(size_t)b * 32 + i] = d == 0.0f ? 0.0 : (double)d * roundf(v[i] / d);
    }
}

static double rms_error(const float *got, const double *ref, size_t count)
{
    double e = 0;
    for (size_t i = 0; i < count; i++)
        e += (got[i] - ref[i]) * (got[i] - ref[i]);
    return sqrt(e / (double)count);
}

static double rms_error_d(const double *a, const double *b, size_t count)
{
    double e = 0;
    for (size_t i = 0; i < count; i++)
        e += (a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(e / (double)count);
}

/* Y = X . W^T on the device in `mode`; the result read back (the caller frees it). */
static float *device_product(kqcl_precision mode, kqcl_type wtype, const void *w, kqcl_type xtype, const void *x,
                             int64_t m, int64_t k, int n)
{
    TU_OK(kqcl_context_set_precision(tu_ctx, mode));
    kqcl_tensor *wt = tu_tensor(wtype, m, k, w), *xt = tu_tensor(xtype, n, k, x), *yt = tu_poisoned_f32(n, m);
    TU_OK(kqcl_matmul(tu_ctx, wt, xt, yt));
    float *got = tu_read_f32(yt);
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt);
    return got;
}

/* ---- the API ------------------------------------------------------------------------------- */

START_TEST(precision_names_and_settings)
{
    static const char *names[] = {"f32", "q8", "f16", "bf16", "auto"};
    for (int p = 0; p <= KQCL_PRECISION_AUTO; p++) {
        kqcl_precision got;
        ck_assert_str_eq(kqcl_precision_name((kqcl_precision)p), names[p]);
        ck_assert_int_eq(kqcl_precision_from_name(names[p], &got), KQCL_OK);
        ck_assert_int_eq(got, p);
    }
    kqcl_precision got;
    ck_assert_int_eq(kqcl_precision_from_name("BF16", &got), KQCL_OK);
    ck_assert_int_eq(got, KQCL_PRECISION_BF16);
    ck_assert_int_eq(kqcl_precision_from_name("q4", &got), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(NULL), "q4"));
    ck_assert_int_eq(kqcl_precision_from_name(NULL, &got), KQCL_ERR_INVALID_ARG);
    ck_assert_str_eq(kqcl_precision_name((kqcl_precision)9), "?");

    ck_assert_int_eq(kqcl_context_precision(tu_ctx), KQCL_PRECISION_F32); /* the default */
    TU_OK(kqcl_context_set_precision(tu_ctx, KQCL_PRECISION_Q8));
    ck_assert_int_eq(kqcl_context_precision(tu_ctx), KQCL_PRECISION_Q8);
    ck_assert_int_eq(kqcl_context_set_precision(tu_ctx, (kqcl_precision)5), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_context_set_precision(tu_ctx, (kqcl_precision)-1), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_context_precision(tu_ctx), KQCL_PRECISION_Q8); /* unchanged by a refusal */
    ck_assert_int_eq(kqcl_context_set_precision(NULL, KQCL_PRECISION_Q8), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_context_precision(NULL), KQCL_PRECISION_F32);

    /* what a call gets: Q8 where its kernel serves, BF16 elsewhere; AUTO resolved */
    kqcl_precision chosen;
    TU_OK(kqcl_precision_chosen(tu_ctx, 0, KQCL_TYPE_Q4_K, 1, &chosen));
    ck_assert_int_eq(chosen, KQCL_PRECISION_Q8);
    TU_OK(kqcl_precision_chosen(tu_ctx, 0, KQCL_TYPE_Q4_K, 9, &chosen));
    ck_assert_int_eq(chosen, KQCL_PRECISION_BF16);
    TU_OK(kqcl_precision_chosen(tu_ctx, 0, KQCL_TYPE_F16, 1, &chosen));
    ck_assert_int_eq(chosen, KQCL_PRECISION_BF16);
    TU_OK(kqcl_context_set_precision(tu_ctx, KQCL_PRECISION_AUTO));
    kqcl_device_info info;
    TU_OK(kqcl_device_get_info(tu_ctx, 0, &info));
    TU_OK(kqcl_precision_chosen(tu_ctx, 0, KQCL_TYPE_Q4_K, 8, &chosen));
    ck_assert_int_eq(chosen, info.is_gpu ? KQCL_PRECISION_Q8 : KQCL_PRECISION_F32);
    TU_OK(kqcl_precision_chosen(tu_ctx, 0, KQCL_TYPE_BF16, 1, &chosen));
    ck_assert_int_eq(chosen, info.is_gpu ? KQCL_PRECISION_BF16 : KQCL_PRECISION_F32);
    TU_OK(kqcl_precision_chosen(tu_ctx, 0, KQCL_TYPE_F32, 1, &chosen));
    ck_assert_int_eq(chosen, KQCL_PRECISION_F32);
    TU_OK(kqcl_precision_chosen(tu_ctx, 0, KQCL_TYPE_F16, 512, &chosen));
    ck_assert_int_eq(chosen, info.is_gpu ? KQCL_PRECISION_F16 : KQCL_PRECISION_F32);
    ck_assert_int_ne(chosen, KQCL_PRECISION_AUTO);
    ck_assert_int_eq(kqcl_precision_chosen(tu_ctx, 7, KQCL_TYPE_Q6_K, 8, &chosen), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_precision_chosen(tu_ctx, 0, KQCL_TYPE_Q6_K, 0, &chosen), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_precision_chosen(tu_ctx, 0, (kqcl_type)99, 1, &chosen), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_precision_chosen(NULL, 0, KQCL_TYPE_Q6_K, 1, &chosen), KQCL_ERR_INVALID_ARG);
}
END_TEST

START_TEST(precision_from_the_environment)
{
    kqcl_context *ctx = NULL;
    setenv("KQCL_PRECISION", "Q8", 1);
    ck_assert_int_eq(kqcl_context_create(NULL, &ctx), KQCL_OK);
    ck_assert_int_eq(kqcl_context_precision(ctx), KQCL_PRECISION_Q8);
    kqcl_context_destroy(ctx);
    setenv("KQCL_PRECISION", "fp8", 1);
    ck_assert_int_eq(kqcl_context_create(NULL, &ctx), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(ctx);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(NULL), "KQCL_PRECISION"));
    setenv("KQCL_PRECISION", "", 1);
    ck_assert_int_eq(kqcl_context_create(NULL, &ctx), KQCL_OK);
    ck_assert_int_eq(kqcl_context_precision(ctx), KQCL_PRECISION_F32);
    kqcl_context_destroy(ctx);
    unsetenv("KQCL_PRECISION");
}
END_TEST

/* ---- Q8: the activations, bit for bit -------------------------------------------------------- */

/* A q8_0 identity matrix (k x k): row r has quant 1 at column r, scale 1. Y = X . I^T makes the
 * device's d * q of every activation visible, rounded once to f32 (d * q * 1.0). */
static unsigned char *q8_0_identity(int k)
{
    size_t row = kqcl_row_size(KQCL_TYPE_Q8_0, k);
    unsigned char *w = calloc((size_t)k, row);
    ck_assert_ptr_nonnull(w);
    for (int r = 0; r < k; r++)
        for (int b = 0; b < k / 32; b++) {
            unsigned char *blk = w + (size_t)r * row + 34 * (size_t)b;
            blk[0] = 0x00, blk[1] = 0x3C; /* f16 1.0 */
            if (r / 32 == b)
                blk[2 + r % 32] = 1;
        }
    return w;
}

/* Blocks of 32 built to hit the rounding's edges: exact halves (q + 1/2) d of both signs, their
 * float neighbours, the block maximum itself, zeros, an all-zero block, tiny (down to subnormal)
 * and huge scales. */
static void edge_activations(float *x, int count)
{
    for (int b = 0; b < count / 32; b++) {
        float *v = x + 32 * b;
        /* tiny blocks too: below about 3.7e-37, 1/d overflows and d is subnormal */
        static const float amaxes[] = {127.0f, 1.0f, 3.0e-30f, 6.0e30f, 0.37f, 3.0e-37f, 2.0e-38f, 5.0e-40f};
        float amax = amaxes[b % 8];
        float d = amax * (1.0f / 127.0f);
        for (int i = 0; i < 32; i++) {
            int q = (int)(tu_rand() % 254) - 127;
            float half = (float)(((double)q + 0.5) * d);
            v[i] = i % 4 == 0 ? half : i % 4 == 1 ? nextafterf(half, INFINITY) : i % 4 == 2 ? nextafterf(half, -INFINITY)
                                                                                          : -half;
            if (fabsf(v[i]) > amax)
                v[i] = copysignf(amax, v[i]);
        }
        v[3] = amax;
        v[7] = -0.0f;
        if (b % 7 == 6)
            for (int i = 0; i < 32; i++)
                v[i] = 0.0f;
    }
}

START_TEST(q8_activations_bit_exact_with_the_header)
{
    tu_seed(41);
    const int k = 256, n = 3;
    float *x = tu_malloc((size_t)n * k * sizeof(float));
    edge_activations(x, n * k);
    for (int i = 0; i < 64; i++) /* and plain random values */
        x[(size_t)(n - 1) * k + i] = tu_uniform() * 3.0f;
    unsigned char *eye = q8_0_identity(k);
    double *want = tu_malloc((size_t)n * k * sizeof(double));
    tu_q8_activations(x, n, k, want, NULL);
    float *got = device_product(KQCL_PRECISION_Q8, KQCL_TYPE_Q8_0, eye, KQCL_TYPE_F32, x, k, k, n);
    int exact_halves = 0;
    for (int i = 0; i < n * k; i++) {
        float w = (float)want[i];
        ck_assert_msg(memcmp(&got[i], &w, 4) == 0, "activation %d (%.9g): device %.9g, header %.9g", i, (double)x[i],
                      (double)got[i], (double)w);
    }
    /* the edges were hit: some activations are exact halves of their block's d */
    float *dd = tu_malloc((size_t)n * k / 32 * sizeof(float));
    tu_q8_activations(x, n, k, want, dd);
    for (int i = 0; i < n * k; i++) {
        double q = (double)x[i] / dd[i / 32];
        exact_halves += dd[i / 32] > 0 && q - floor(q) == 0.5;
    }
    ck_assert_int_gt(exact_halves, 20);
    free(x), free(eye), free(want), free(got), free(dd);
}
END_TEST

/* ---- every mode against the activations it promises ------------------------------------------ */

/* Weight type i x mode: random odd shapes, n = 1..8 (decode) and 9, 33 (prefill). */
static void check_mode(kqcl_precision mode, kqcl_type wtype, int n, int64_t m, int64_t k)
{
    void *w = tu_random_weights(wtype, m, k);
    float *x = tu_random_floats((size_t)n * k);
    double *xs = tu_malloc((size_t)n * k * sizeof(double)), *want = tu_malloc((size_t)n * m * sizeof(double)),
           *mag = tu_malloc((size_t)n * m * sizeof(double));
    kqcl_precision used;
    TU_OK(kqcl_context_set_precision(tu_ctx, mode));
    TU_OK(kqcl_precision_chosen(tu_ctx, 0, wtype, n, &used));
    tu_promised_x(used, x, n, (int)k, xs);
    tu_host_matmul_xd(wtype, w, xs, m, k, n, want, mag);
    float *got = device_product(mode, wtype, w, KQCL_TYPE_F32, x, m, k, n);
    char what[96];
    snprintf(what, sizeof what, "%s weights, %s mode (%s), n = %d, %lld x %lld", kqcl_type_name(wtype),
             kqcl_precision_name(mode), kqcl_precision_name(used), n, (long long)m, (long long)k);
    tu_assert_close(got, want, mag, (size_t)n * m, what);
    free(w), free(x), free(xs), free(want), free(mag), free(got);
}

START_TEST(q8_mode_every_quant_type)
{
    tu_seed(100 + (uint64_t)_i);
    kqcl_type wtype = quant_types[_i];
    int64_t k = kqcl_block_size(wtype) == 256 ? 256 * 3 : 32 * 13;
    static const int ns[] = {1, 2, 3, 5, 8, 9};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        check_mode(KQCL_PRECISION_Q8, wtype, ns[i], 37 + 2 * (int64_t)i, k);
    static const int more_ns[] = {4, 6, 7, 33}; /* the 32-value blocks: every decode n, and 33 */
    for (size_t i = 0; kqcl_block_size(wtype) == 32 && i < sizeof more_ns / sizeof more_ns[0]; i++)
        check_mode(KQCL_PRECISION_Q8, wtype, more_ns[i], 35, k);
}
END_TEST

START_TEST(f16_bf16_auto_modes_every_type)
{
    static const kqcl_type types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K,
                                      KQCL_TYPE_Q4_0, KQCL_TYPE_Q4_1, KQCL_TYPE_Q5_0, KQCL_TYPE_Q5_1,
                                      KQCL_TYPE_Q8_0, KQCL_TYPE_F16,  KQCL_TYPE_BF16, KQCL_TYPE_F32};
    static const kqcl_precision modes[] = {KQCL_PRECISION_F16, KQCL_PRECISION_BF16, KQCL_PRECISION_AUTO};
    tu_seed(200 + (uint64_t)_i);
    kqcl_type wtype = types[_i];
    int64_t k = kqcl_block_size(wtype) == 256 ? 512 : kqcl_block_size(wtype) == 32 ? 96 : 72;
    for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
        check_mode(modes[mi], wtype, 1, 41, k);
        check_mode(modes[mi], wtype, 4, 19, k);
        check_mode(modes[mi], wtype, 17, 33, k);
    }
}
END_TEST

/* The rounding happens: in BF16 mode the result is within f32's bound of the bf16-rounded
 * product and measurably away from the exact one; Q8's error is ggml's, not more. */
START_TEST(modes_round_as_promised_and_q8_error_is_ggmls)
{
    tu_seed(300);
    const int n = 4;
    const int64_t m = 64, k = 1024;
    void *w = tu_random_weights(KQCL_TYPE_Q4_K, m, k);
    float *x = tu_random_floats((size_t)n * k);
    double *exact = tu_malloc((size_t)n * k * sizeof(double)), *want = tu_malloc((size_t)n * m * sizeof(double)),
           *ggml = tu_malloc((size_t)n * m * sizeof(double)), *xs = tu_malloc((size_t)n * k * sizeof(double));
    for (size_t i = 0; i < (size_t)n * k; i++)
        exact[i] = x[i];
    tu_host_matmul_xd(KQCL_TYPE_Q4_K, w, exact, m, k, n, want, NULL);

    float *bf = device_product(KQCL_PRECISION_BF16, KQCL_TYPE_Q4_K, w, KQCL_TYPE_F32, x, m, k, n);
    double e_bf = rms_error(bf, want, (size_t)n * m);
    float *f32 = device_product(KQCL_PRECISION_F32, KQCL_TYPE_Q4_K, w, KQCL_TYPE_F32, x, m, k, n);
    double e_f32 = rms_error(f32, want, (size_t)n * m);
    ck_assert_msg(e_bf > 30 * e_f32, "bf16 mode error %.3g is not well above f32's %.3g: not rounded?", e_bf, e_f32);

    float *q8 = device_product(KQCL_PRECISION_Q8, KQCL_TYPE_Q4_K, w, KQCL_TYPE_F32, x, m, k, n);
    ggml_q8_activations(x, n, (int)k, xs);
    tu_host_matmul_xd(KQCL_TYPE_Q4_K, w, xs, m, k, n, ggml, NULL);
    double e_q8 = rms_error(q8, want, (size_t)n * m), e_ggml = rms_error_d(ggml, want, (size_t)n * m);
    ck_assert_msg(e_q8 <= 1.02 * e_ggml, "Q8 error %.4g above ggml's %.4g", e_q8, e_ggml);
    ck_assert_msg(e_q8 > 10 * e_f32, "Q8 error %.3g not above f32's %.3g: not quantized?", e_q8, e_f32);
    free(w), free(x), free(exact), free(want), free(ggml), free(xs), free(bf), free(f32), free(q8);
}
END_TEST

/* A device too small for every Q8 kernel (KQCL_TEST_LOCAL_MEM_BYTES caps PoCL's local memory
 * below the smallest candidate's) runs the call in BF16: a mode is never refused. */
START_TEST(q8_falls_back_where_no_kernel_fits)
{
    tu_seed(450);
    const int n = 4;
    const int64_t m = 40, k = 512;
    kqcl_context_destroy(tu_ctx);
    setenv("KQCL_TEST_LOCAL_MEM_BYTES", "16", 1);
    kqcl_status st = kqcl_context_create(NULL, &tu_ctx);
    unsetenv("KQCL_TEST_LOCAL_MEM_BYTES");
    TU_OK(st);
    kqcl_device_info info;
    TU_OK(kqcl_device_get_info(tu_ctx, 0, &info));
    if (strstr(info.variant, "CPU family") == NULL) /* the GPU family needs local memory on every
                                                      * path; the CPU family's f32 kernels none */
        return;
    void *w = tu_random_weights(KQCL_TYPE_Q4_K, m, k);
    float *x = tu_random_floats((size_t)n * k);
    double *xs = tu_malloc((size_t)n * k * sizeof(double)), *want = tu_malloc((size_t)n * m * sizeof(double)),
           *mag = tu_malloc((size_t)n * m * sizeof(double));
    tu_promised_x(KQCL_PRECISION_BF16, x, n, (int)k, xs);
    tu_host_matmul_xd(KQCL_TYPE_Q4_K, w, xs, m, k, n, want, mag);
    float *got = device_product(KQCL_PRECISION_Q8, KQCL_TYPE_Q4_K, w, KQCL_TYPE_F32, x, m, k, n);
    tu_assert_close(got, want, mag, (size_t)n * m, "q8 on a device no Q8 kernel fits (bf16 expected)");
    free(w), free(x), free(xs), free(want), free(mag), free(got);
}
END_TEST

/* ---- non-finite inputs in Q8 ------------------------------------------------------------------- */

START_TEST(q8_non_finite_activations)
{
    tu_seed(400 + (uint64_t)_i);
    kqcl_type wtype = quant_types[_i];
    const int n = 3;
    const int64_t m = 20, k = kqcl_block_size(wtype) == 256 ? 512 : 128;
    void *w = tu_random_weights(wtype, m, k);
    float *x = tu_random_floats((size_t)n * k);
    x[5] = NAN;              /* row 0: NaN */
    x[k + 40] = INFINITY;    /* row 1: Inf */
    float *got = device_product(KQCL_PRECISION_Q8, wtype, w, KQCL_TYPE_F32, x, m, k, n);
    for (int64_t r = 0; r < m; r++) {
        ck_assert_msg(isnan(got[r]), "%s: NaN row, output %lld is %g", kqcl_type_name(wtype), (long long)r,
                      (double)got[r]);
        ck_assert_msg(!isfinite(got[m + r]), "%s: Inf row, output %lld is %g", kqcl_type_name(wtype), (long long)r,
                      (double)got[m + r]);
        ck_assert_msg(isfinite(got[2 * m + r]), "%s: finite row, output %lld is %g", kqcl_type_name(wtype),
                      (long long)r, (double)got[2 * m + r]);
    }
    free(w), free(x), free(got);
}
END_TEST

/* ---- kqcl_matmul_group ----------------------------------------------------------------------- */

/* Six weights sharing X (more than one launch holds), three types mixed (a k-quant run, a
 * q6_K, a small-block q4_1), heights off the kernels' rows a work-group (21): each output the
 * bits of a single call, in every mode, for decode and prefill. */
START_TEST(group_matches_single_calls)
{
    static const kqcl_precision modes[] = {KQCL_PRECISION_F32, KQCL_PRECISION_Q8, KQCL_PRECISION_BF16,
                                           KQCL_PRECISION_F16};
    static const int ns[] = {1, 5, 12};
    tu_seed(500);
    const int count = 6;
    const int64_t k = 512;
    const int64_t ms[6] = {64, 24, 21, 40, 8, 72};
    kqcl_tensor *w[6], *y[6], *single = NULL;
    for (int i = 0; i < count; i++) {
        kqcl_type t = i == 4 ? KQCL_TYPE_Q6_K : i == 5 ? KQCL_TYPE_Q4_1 : KQCL_TYPE_Q4_K;
        void *h = tu_random_weights(t, ms[i], k);
        w[i] = tu_tensor(t, ms[i], k, h);
        free(h);
    }
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
        int n = ns[ni];
        float *xh = tu_random_floats((size_t)n * k);
        kqcl_tensor *x = tu_tensor(KQCL_TYPE_F32, n, k, xh);
        for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
            TU_OK(kqcl_context_set_precision(tu_ctx, modes[mi]));
            for (int i = 0; i < count; i++)
                y[i] = tu_poisoned_f32(n, ms[i]);
            TU_OK(kqcl_matmul_group(tu_ctx, count, (const kqcl_tensor *const *)w, x, y));
            for (int i = 0; i < count; i++) {
                single = tu_poisoned_f32(n, ms[i]);
                TU_OK(kqcl_matmul(tu_ctx, w[i], x, single));
                float *a = tu_read_f32(y[i]), *b = tu_read_f32(single);
                ck_assert_msg(memcmp(a, b, (size_t)n * ms[i] * sizeof(float)) == 0,
                              "%s mode, n = %d: weight %d of the group differs from its single call",
                              kqcl_precision_name(modes[mi]), n, i);
                free(a), free(b);
                kqcl_tensor_destroy(single);
                kqcl_tensor_destroy(y[i]);
            }
        }
        kqcl_tensor_destroy(x);
        free(xh);
    }
    for (int i = 0; i < count; i++)
        kqcl_tensor_destroy(w[i]);
}
END_TEST

START_TEST(group_rejects_bad_input)
{
    float *xh = tu_random_floats(2 * 256);
    void *wh = tu_random_weights(KQCL_TYPE_Q4_K, 16, 256), *wn = tu_random_weights(KQCL_TYPE_Q4_K, 16, 512);
    kqcl_tensor *x = tu_tensor(KQCL_TYPE_F32, 2, 256, xh), *w = tu_tensor(KQCL_TYPE_Q4_K, 16, 256, wh);
    kqcl_tensor *narrow = tu_tensor(KQCL_TYPE_Q4_K, 16, 512, wn);
    kqcl_tensor *y0 = tu_poisoned_f32(2, 16), *y1 = tu_poisoned_f32(2, 16);
    const kqcl_tensor *ws[17];
    kqcl_tensor *ys[17];
    for (int i = 0; i < 17; i++)
        ws[i] = w, ys[i] = i % 2 ? y1 : y0;
    ck_assert_int_eq(kqcl_matmul_group(tu_ctx, 0, ws, x, ys), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_matmul_group(tu_ctx, 17, ws, x, ys), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_matmul_group(tu_ctx, 2, NULL, x, ys), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_matmul_group(tu_ctx, 2, ws, x, NULL), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_matmul_group(NULL, 2, ws, x, ys), KQCL_ERR_INVALID_ARG);
    ys[1] = y0; /* two outputs in one tensor */
    ck_assert_int_eq(kqcl_matmul_group(tu_ctx, 2, ws, x, ys), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(tu_ctx), "aliases"));
    ys[1] = y1;
    ws[1] = narrow; /* a width that is not X's */
    ck_assert_int_eq(kqcl_matmul_group(tu_ctx, 2, ws, x, ys), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(tu_ctx), "weight 1"));
    ws[1] = NULL;
    ck_assert_int_eq(kqcl_matmul_group(tu_ctx, 2, ws, x, ys), KQCL_ERR_INVALID_ARG);
    ws[1] = w; /* and still usable */
    TU_OK(kqcl_matmul_group(tu_ctx, 2, ws, x, ys));
    free(xh), free(wh), free(wn);
    kqcl_tensor_destroy(x), kqcl_tensor_destroy(w), kqcl_tensor_destroy(narrow);
    kqcl_tensor_destroy(y0), kqcl_tensor_destroy(y1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("precision");
    TCase *tc = tu_context_case("api");
    tcase_add_test(tc, precision_names_and_settings);
    tcase_add_test(tc, precision_from_the_environment);
    suite_add_tcase(s, tc);
    tc = tu_context_case("q8");
    tcase_add_test(tc, q8_activations_bit_exact_with_the_header);
    tcase_add_loop_test(tc, q8_mode_every_quant_type, 0, N_QUANT);
    tcase_add_loop_test(tc, q8_non_finite_activations, 0, N_QUANT);
    tcase_add_test(tc, q8_falls_back_where_no_kernel_fits);
    suite_add_tcase(s, tc);
    tc = tu_context_case("modes");
    tcase_add_loop_test(tc, f16_bf16_auto_modes_every_type, 0, 9);
    tcase_add_test(tc, modes_round_as_promised_and_q8_error_is_ggmls);
    suite_add_tcase(s, tc);
    tc = tu_context_case("group");
    tcase_add_test(tc, group_matches_single_calls);
    tcase_add_test(tc, group_rejects_bad_input);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
