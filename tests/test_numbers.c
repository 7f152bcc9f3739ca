/*
 * test_numbers.c -- numbers at the edges: NaN and Inf in weight scales and in activations,
 * subnormal scales, the largest shapes the API takes, and requests beyond them.
 *
 * The reference is the host's: kqcl_dequantize, then float64 dot products. An output whose
 * reference is NaN must be NaN; one whose reference is +-Inf must not be finite (an infinite
 * scale's rows are marked so: Inf x 0 may be NaN or +-Inf, include/kqcl.h); every other output
 * must be finite and within the usual f32-accumulation bound of the reference.
 */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const kqcl_type kquants[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K};
/* Types with a scale set_scale can reach: the k-quants, and the 32-value block types (d at each
 * block's start, q4_1/q5_1's min m after it; set_scale sets the first 32-value block of a
 * 256-value span). */
static const kqcl_type scaled_types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K, KQCL_TYPE_Q4_0,
                                         KQCL_TYPE_Q4_1, KQCL_TYPE_Q5_0, KQCL_TYPE_Q5_1, KQCL_TYPE_Q8_0};
#define COUNT(a) ((int)(sizeof a / sizeof a[0]))
static const kqcl_type weight_types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K,
                                         KQCL_TYPE_Q4_0, KQCL_TYPE_Q4_1, KQCL_TYPE_Q5_0, KQCL_TYPE_Q5_1,
                                         KQCL_TYPE_Q8_0,
                                         KQCL_TYPE_F16,  KQCL_TYPE_BF16, KQCL_TYPE_F32};
static const kqcl_type float_types[] = {KQCL_TYPE_F32, KQCL_TYPE_F16, KQCL_TYPE_BF16};

#define HALF_NAN 0x7e00
#define HALF_INF 0x7c00
#define HALF_NEG_INF 0xfc00

/* ---- helpers ------------------------------------------------------------------------------------ */

static void *quantized(kqcl_type type, const float *f, int64_t rows, int64_t cols)
{
    void *q = tu_malloc((size_t)rows * kqcl_row_size(type, cols));
    ck_assert_int_eq(kqcl_quantize(type, f, q, rows, cols), KQCL_OK);
    return q;
}

/* The f16 super-block scale d (which = 0) or dmin (which = 1; q4_1/q5_1: the min m) of block b
 * of row r. q8_K's d is an f32: it gets the f32 value of the half. */
static void set_scale(kqcl_type type, unsigned char *w, int64_t k, int64_t r, int64_t b, int which, uint16_t half)
{
    unsigned char *block = w + (size_t)r * kqcl_row_size(type, k) + (size_t)b * kqcl_row_size(type, 256);
    if (type == KQCL_TYPE_Q8_K) {
        float f;
        ck_assert_int_eq(kqcl_dequantize(KQCL_TYPE_F16, &half, &f, 1, 1), KQCL_OK);
        memcpy(block, &f, sizeof f);
        return;
    }
    size_t at = type == KQCL_TYPE_Q6_K ? 208 : (size_t)which * 2;
    ck_assert(!(type == KQCL_TYPE_Q6_K && which == 1)); /* q6_K has no dmin */
    block[at] = (unsigned char)(half & 0xff);
    block[at + 1] = (unsigned char)(half >> 8);
}

/* Run y = x . w^T on the device; the f32 result as a new array. */
static float *device_matmul(kqcl_type wtype, const void *w, kqcl_type xtype, const void *x, int64_t m, int64_t k,
                            int n)
{
    kqcl_tensor *wt = tu_tensor(wtype, m, k, w), *xt = tu_tensor(xtype, n, k, x), *y = tu_poisoned_f32(n, m);
    TU_OK(kqcl_matmul(tu_ctx, wt, xt, y));
    float *got = tu_read_f32(y);
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(y);
    return got;
}

/* Compare as the file's header says; `bound_scale` widens the finite bound (1 = 1e-6 sum|w x|). */
static void assert_ieee_close(const float *got, const double *ref, const double *mag, int n, int64_t m,
                              double bound_scale, double floor, const char *what)
{
    for (int j = 0; j < n; j++)
        for (int64_t r = 0; r < m; r++) {
            size_t i = (size_t)j * m + r;
            if (isnan(ref[i]))
                ck_assert_msg(isnan(got[i]), "%s: y[%d,%lld] = %g, want NaN", what, j, (long long)r, got[i]);
            else if (!isfinite(ref[i]))
                ck_assert_msg(!isfinite(got[i]), "%s: y[%d,%lld] = %g, want non-finite (%g)", what, j, (long long)r,
                              got[i], ref[i]);
            else {
                double bound = bound_scale * 1e-6 * mag[i] + floor;
                ck_assert_msg(isfinite(got[i]) && fabs(got[i] - ref[i]) <= bound,
                              "%s: y[%d,%lld] = %.9g, want %.9g (bound %.3g)", what, j, (long long)r, got[i], ref[i],
                              bound);
            }
        }
}

static const int ns[] = {1, 3, 9, 33};

/* ---- NaN and Inf in the weights' scales ---------------------------------------------------------- */

START_TEST(nan_and_inf_scales_poison_only_their_rows)
{
    kqcl_type type = scaled_types[_i];
    enum { M = 7, K = 512 };
    tu_seed(300 + _i);
    float *wf = tu_random_floats(M * K);
    unsigned char *w = quantized(type, wf, M, K);
    set_scale(type, w, K, 1, 1, 0, HALF_NAN);    /* row 1: d = NaN in its second block */
    set_scale(type, w, K, 3, 0, 0, HALF_INF);    /* row 3: d = +Inf */
    if (type == KQCL_TYPE_Q4_K || type == KQCL_TYPE_Q5_K || type == KQCL_TYPE_Q4_1 || type == KQCL_TYPE_Q5_1)
        set_scale(type, w, K, 5, 1, 1, HALF_INF); /* row 5: dmin (q4_1/q5_1: m) = +Inf */
    else
        set_scale(type, w, K, 5, 1, 0, HALF_NEG_INF);
    for (size_t xi = 0; xi < sizeof float_types / sizeof float_types[0]; xi++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            int n = ns[ni];
            float *xf = tu_random_floats((size_t)n * K);
            void *x = quantized(float_types[xi], xf, n, K);
            double ref[33 * M], mag[33 * M];
            tu_host_matmul(type, w, float_types[xi], x, M, K, n, ref, mag);
            for (int j = 0; j < n; j++) { /* the reference agrees with what is asked */
                ck_assert(isnan(ref[j * M + 1]) && !isfinite(ref[j * M + 3]) && !isfinite(ref[j * M + 5]));
                ck_assert(isfinite(ref[j * M + 0]) && isfinite(ref[j * M + 6]));
                /* An infinite scale promises a non-finite output, not NaN (include/kqcl.h): the
                 * element-wise reference meets Inf x 0 in a zero quant and gives NaN, a kernel that
                 * applies the scale once per group or block (the tensor cores) gives +-Inf. */
                ref[j * M + 3] = ref[j * M + 5] = INFINITY;
            }
            float *got = device_matmul(type, w, float_types[xi], x, M, K, n);
            char what[64];
            snprintf(what, sizeof what, "%s x %s n=%d", kqcl_type_name(type), kqcl_type_name(float_types[xi]), n);
            assert_ieee_close(got, ref, mag, n, M, 1, 1e-30, what);
            free(xf), free(x), free(got);
        }
    free(wf), free(w);
}
END_TEST

/* f16/bf16/f32 weights holding NaN and Inf values */
START_TEST(nan_and_inf_float_weights_poison_only_their_rows)
{
    static const kqcl_type types[] = {KQCL_TYPE_F16, KQCL_TYPE_BF16, KQCL_TYPE_F32};
    kqcl_type type = types[_i];
    enum { M = 6, K = 300 };
    tu_seed(320 + _i);
    float *wf = tu_random_floats(M * K);
    wf[1 * K + 17] = NAN;
    wf[2 * K + 299] = INFINITY;
    wf[4 * K + 0] = -INFINITY;
    void *w = quantized(type, wf, M, K);
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
        int n = ns[ni];
        float *x = tu_random_floats((size_t)n * K);
        double ref[33 * M], mag[33 * M];
        tu_host_matmul(type, w, KQCL_TYPE_F32, x, M, K, n, ref, mag);
        float *got = device_matmul(type, w, KQCL_TYPE_F32, x, M, K, n);
        for (int j = 0; j < n; j++)
            ck_assert(isnan(got[j * M + 1]) && !isfinite(got[j * M + 2]) && !isfinite(got[j * M + 4]));
        assert_ieee_close(got, ref, mag, n, M, 1, 1e-30, kqcl_type_name(type));
        free(x), free(got);
    }
    free(wf), free(w);
}
END_TEST

/* ---- NaN and Inf in the activations ---------------------------------------------------------------- */

START_TEST(nan_and_inf_activations_poison_only_their_columns)
{
    kqcl_type type = weight_types[_i];
    int64_t k = kqcl_block_size(type) > 1 ? 512 : 136;
    enum { M = 37 };
    tu_seed(340 + _i);
    float *wf = tu_random_floats((size_t)M * k);
    void *w = quantized(type, wf, M, k);
    static const int sizes[] = {5, 12};
    for (size_t xi = 0; xi < sizeof float_types / sizeof float_types[0]; xi++)
        for (size_t si = 0; si < 2; si++) {
            int n = sizes[si];
            float *xf = tu_random_floats((size_t)n * k);
            xf[1 * k + 100] = NAN;                               /* x row 1: a NaN */
            xf[3 * k + 7] = INFINITY;                            /* x row 3: +Inf */
            xf[4 * k + 8] = INFINITY, xf[4 * k + 9] = -INFINITY; /* x row 4: both */
            void *x = quantized(float_types[xi], xf, n, k);
            double *ref = tu_malloc((size_t)n * M * sizeof(double)), *mag = tu_malloc((size_t)n * M * sizeof(double));
            tu_host_matmul(type, w, float_types[xi], x, M, k, n, ref, mag);
            float *got = device_matmul(type, w, float_types[xi], x, M, k, n);
            for (int r = 0; r < M; r++) {
                ck_assert_msg(isnan(got[1 * M + r]), "x row 1 (NaN): y = %g", got[1 * M + r]);
                ck_assert_msg(!isfinite(got[3 * M + r]) && !isfinite(got[4 * M + r]), "x rows 3, 4 (Inf): y = %g, %g",
                              got[3 * M + r], got[4 * M + r]);
            }
            char what[64];
            snprintf(what, sizeof what, "%s x %s n=%d", kqcl_type_name(type), kqcl_type_name(float_types[xi]), n);
            assert_ieee_close(got, ref, mag, n, M, 1, 1e-30, what);
            free(xf), free(x), free(ref), free(mag), free(got);
        }
    free(wf), free(w);
}
END_TEST

/* ---- subnormal scales -------------------------------------------------------------------------------- */

/* Every block's f16 d (and dmin) subnormal: 2^-24 .. 2^-14. */
START_TEST(subnormal_half_scales_match_the_host)
{
    kqcl_type type = kquants[_i];
    enum { M = 19, K = 768 };
    tu_seed(360 + _i);
    float *wf = tu_random_floats(M * K);
    unsigned char *w = quantized(type, wf, M, K);
    for (int r = 0; r < M; r++)
        for (int b = 0; b < K / 256; b++) {
            if (type == KQCL_TYPE_Q8_K) /* an f32 d: the same subnormal-half values, normal in f32 */
                set_scale(type, w, K, r, b, 0, (uint16_t)(1 + tu_rand() % 0x3ff));
            else {
                set_scale(type, w, K, r, b, 0, (uint16_t)(1 + tu_rand() % 0x3ff));
                if (type != KQCL_TYPE_Q6_K)
                    set_scale(type, w, K, r, b, 1, (uint16_t)(1 + tu_rand() % 0x3ff));
            }
        }
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
        int n = ns[ni];
        float *x = tu_random_floats((size_t)n * K);
        double ref[33 * M], mag[33 * M];
        tu_host_matmul(type, w, KQCL_TYPE_F32, x, M, K, n, ref, mag);
        for (int i = 0; i < n * M; i++) /* the scales really are tiny: |w| < 2^-14 * 63 * 63 */
            ck_assert(mag[i] > 0 && mag[i] < K * 0.25);
        float *got = device_matmul(type, w, KQCL_TYPE_F32, x, M, K, n);
        assert_ieee_close(got, ref, mag, n, M, 1, 0, kqcl_type_name(type));
        free(x), free(got);
    }
    free(wf), free(w);
}
END_TEST

/* q8_K's d is an f32: below FLT_MIN it is subnormal, and a device without CL_FP_DENORM may flush
 * it (OpenCL allows that): the error is then at most FLT_MIN * sum |q x| per output. */
START_TEST(subnormal_f32_scale_q8_K_bounded)
{
    enum { M = 5, K = 512, N = 2 };
    tu_seed(380);
    float *wf = tu_random_floats(M * K);
    unsigned char *w = quantized(KQCL_TYPE_Q8_K, wf, M, K);
    for (int r = 0; r < M; r++)
        for (int b = 0; b < K / 256; b++) {
            float d = FLT_MIN / (float)(2 + r * 7 + b); /* subnormal */
            memcpy(w + (size_t)r * kqcl_row_size(KQCL_TYPE_Q8_K, K) + (size_t)b * 292, &d, sizeof d);
        }
    float *x = tu_random_floats(N * K);
    double ref[N * M], mag[N * M];
    tu_host_matmul(KQCL_TYPE_Q8_K, w, KQCL_TYPE_F32, x, M, K, N, ref, mag);
    float *got = device_matmul(KQCL_TYPE_Q8_K, w, KQCL_TYPE_F32, x, M, K, N);
    double qx = 127.0 * K; /* sum |q x| <= 127 * k with |x| < 1 */
    int flushed = 0;
    for (int i = 0; i < N * M; i++) {
        ck_assert_msg(isfinite(got[i]) && fabs(got[i] - ref[i]) <= 1e-6 * mag[i] + FLT_MIN * qx,
                      "y[%d] = %g, want %g", i, got[i], ref[i]);
        flushed += got[i] == 0 && ref[i] != 0;
    }
    fprintf(stderr, "subnormal f32 q8_K scale: %d of %d outputs flushed to 0\n", flushed, N * M);
    free(wf), free(w), free(x), free(got);
}
END_TEST

/* ---- the largest shapes ------------------------------------------------------------------------------ */

/* Random q4_K rows made fast: random bytes, then d and dmin in [2^-10, 2^-6). */
static unsigned char *random_q4_K(int64_t rows, int64_t k)
{
    size_t bytes = (size_t)rows * kqcl_row_size(KQCL_TYPE_Q4_K, k);
    unsigned char *w = tu_malloc(bytes);
    for (size_t i = 0; i + 4 <= bytes; i += 4) {
        uint32_t v = tu_rand();
        memcpy(w + i, &v, 4);
    }
    for (size_t b = 0; b < bytes / 144; b++)
        for (int h = 0; h < 2; h++) {
            uint16_t half = (uint16_t)(((15 - 10 + (tu_rand() % 4)) << 10) | (tu_rand() & 0x3ff)); /* 2^-10 .. 2^-6 */
            w[b * 144 + 2 * h] = (unsigned char)(half & 0xff);
            w[b * 144 + 2 * h + 1] = (unsigned char)(half >> 8);
        }
    return w;
}

/* k = 2^20 values a row, a few rows: the decode and the prefill kernel. */
START_TEST(longest_rows)
{
    const int64_t k = 1 << 20;
    enum { M = 3 };
    tu_seed(400);
    unsigned char *wq = random_q4_K(M, k);
    float *wf = tu_random_floats((size_t)M * k);
    static const int sizes[] = {1, 9};
    for (int si = 0; si < 2; si++) {
        int n = sizes[si];
        float *x = tu_random_floats((size_t)n * k);
        double ref[9 * M], mag[9 * M];
        /* f32 accumulation over 2^20 products: a looser bound than the usual 1e-6 sum |w x| */
        tu_host_matmul(KQCL_TYPE_Q4_K, wq, KQCL_TYPE_F32, x, M, k, n, ref, mag);
        float *got = device_matmul(KQCL_TYPE_Q4_K, wq, KQCL_TYPE_F32, x, M, k, n);
        assert_ieee_close(got, ref, mag, n, M, 10, 0, "q4_K k=2^20");
        free(got);
        tu_host_matmul(KQCL_TYPE_F32, wf, KQCL_TYPE_F32, x, M, k, n, ref, mag);
        got = device_matmul(KQCL_TYPE_F32, wf, KQCL_TYPE_F32, x, M, k, n);
        assert_ieee_close(got, ref, mag, n, M, 10, 0, "f32 k=2^20");
        free(got), free(x);
    }
    free(wq), free(wf);
}
END_TEST

/* m = 2^20 rows of one block (151 MB of q4_K): every row checked for n = 1, a sample for n = 9. */
START_TEST(most_rows)
{
    const int64_t m = 1 << 20, k = 256;
    tu_seed(410);
    unsigned char *w = random_q4_K(m, k);
    kqcl_tensor *wt = tu_tensor(KQCL_TYPE_Q4_K, m, k, w);
    static const int sizes[] = {1, 9};
    for (int si = 0; si < 2; si++) {
        int n = sizes[si];
        float *x = tu_random_floats((size_t)n * k);
        kqcl_tensor *xt = tu_tensor(KQCL_TYPE_F32, n, k, x), *y = tu_poisoned_f32(n, m);
        TU_OK(kqcl_matmul(tu_ctx, wt, xt, y));
        float *got = tu_read_f32(y);
        int64_t step = n == 1 ? 1 : 997;
        for (int64_t r0 = 0; r0 < m; r0 += 4096) {
            int64_t chunk = m - r0 < 4096 ? m - r0 : 4096;
            for (int64_t r = r0; r < r0 + chunk; r++) {
                if (r % step != 0 && r < m - 3)
                    continue;
                double ref[9], mag[9];
                tu_host_matmul(KQCL_TYPE_Q4_K, w + (size_t)r * 144, KQCL_TYPE_F32, x, 1, k, n, ref, mag);
                for (int j = 0; j < n; j++) {
                    float g = got[(size_t)j * m + r];
                    ck_assert_msg(isfinite(g) && fabs(g - ref[j]) <= 1e-6 * mag[j],
                                  "n=%d: y[%d,%lld] = %.9g, want %.9g", n, j, (long long)r, g, ref[j]);
                }
            }
        }
        free(x), free(got);
        kqcl_tensor_destroy(xt), kqcl_tensor_destroy(y);
    }
    kqcl_tensor_destroy(wt);
    free(w);
}
END_TEST

/* ---- beyond what the API takes: refused before any work ------------------------------------------- */

START_TEST(requests_beyond_the_api_are_refused)
{
    kqcl_tensor *t = (kqcl_tensor *)1;
    const int64_t big = (int64_t)INT32_MAX + 1;
    static const struct {
        kqcl_type type;
        int64_t rows, cols;
        kqcl_status want;
    } cases[] = {
        {KQCL_TYPE_F32, (int64_t)INT32_MAX + 1, 1, KQCL_ERR_UNSUPPORTED},  /* rows > INT32_MAX */
        {KQCL_TYPE_F32, 1, (int64_t)INT32_MAX + 1, KQCL_ERR_UNSUPPORTED},  /* cols > INT32_MAX */
        {KQCL_TYPE_Q4_K, 1, (int64_t)1 << 31, KQCL_ERR_UNSUPPORTED},      /* a whole number of blocks, too long */
        {KQCL_TYPE_Q8_K, INT64_MAX, 256, KQCL_ERR_UNSUPPORTED},
        {KQCL_TYPE_F16, 1, INT64_MAX - 255, KQCL_ERR_INVALID_ARG},        /* no row size: bytes overflow */
        {KQCL_TYPE_Q4_K, 1, 255, KQCL_ERR_INVALID_ARG},                   /* not whole blocks */
        {KQCL_TYPE_Q4_K, 1, INT64_MAX, KQCL_ERR_INVALID_ARG},
        {KQCL_TYPE_F32, 0, 1, KQCL_ERR_INVALID_ARG},
        {KQCL_TYPE_F32, -1, 1, KQCL_ERR_INVALID_ARG},
        {KQCL_TYPE_F32, 1, INT64_MIN, KQCL_ERR_INVALID_ARG},
        {(kqcl_type)9, 32, 32, KQCL_ERR_INVALID_ARG},                      /* q8_1: not a kqcl type */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        t = (kqcl_tensor *)1;
        kqcl_status st = kqcl_tensor_create(tu_ctx, cases[i].type, cases[i].rows, cases[i].cols, &t);
        ck_assert_msg(st == cases[i].want, "case %zu (%lld x %lld): %s: %s", i, (long long)cases[i].rows,
                      (long long)cases[i].cols, kqcl_status_string(st), kqcl_last_error(tu_ctx));
        ck_assert_ptr_null(t);
        ck_assert_msg(kqcl_last_error(tu_ctx)[0] != '\0', "case %zu: no message", i);
    }
    /* sizes whose byte count would wrap */
    ck_assert_uint_eq(kqcl_row_size(KQCL_TYPE_F32, INT64_MAX - 3), 0);
    ck_assert_uint_eq(kqcl_row_size(KQCL_TYPE_Q6_K, (INT64_MAX / 256) * 256), (uint64_t)(INT64_MAX / 256) * 210);
    float f;
    unsigned char q[292];
    ck_assert_int_eq(kqcl_dequantize(KQCL_TYPE_Q8_K, q, &f, INT64_MAX, 256), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_quantize(KQCL_TYPE_F32, &f, q, big, big), KQCL_ERR_INVALID_ARG);
    /* the context is untouched */
    float w[256], x[256], y;
    for (int i = 0; i < 256; i++)
        w[i] = 1, x[i] = 0.25f;
    kqcl_tensor *wt = tu_tensor(KQCL_TYPE_F32, 1, 256, w), *xt = tu_tensor(KQCL_TYPE_F32, 1, 256, x);
    kqcl_tensor *yt = tu_poisoned_f32(1, 1);
    TU_OK(kqcl_matmul(tu_ctx, wt, xt, yt));
    TU_OK(kqcl_tensor_read(yt, &y, sizeof y));
    ck_assert(y == 64.0f);
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt);
}
END_TEST

/* ---- the range the bound holds in ----------------------------------------------------------------- */

/* include/kqcl.h promises the bound, and finite outputs, for |x| <= 2^64 and -- for f32/bf16
 * weights -- |w| <= 2^32: the kernels' f32 intermediates (unsigned quants folded as
 * s * sum(u x) - m * sum(x), Q8's d * sum(q)) stay far below FLT_MAX there. Activations at that
 * edge, weights at theirs, in every mode but F16 (whose rounding makes |x| >= 65520 infinite),
 * decode and prefill, against float64 of the activations the mode promises. */
START_TEST(activations_at_the_range_edge)
{
    static const kqcl_precision modes[] = {KQCL_PRECISION_F32, KQCL_PRECISION_Q8, KQCL_PRECISION_BF16};
    kqcl_type wtype = weight_types[_i];
    const int64_t m = 19, k = 512;
    bool wide = wtype == KQCL_TYPE_F32 || wtype == KQCL_TYPE_BF16;
    float *wf = tu_random_floats((size_t)(m * k));
    for (int64_t i = 0; i < m * k; i++)
        wf[i] *= wide ? 0x1p32f : 1.0f;
    wf[0] = wide ? 0x1p32f : 1.0f;
    void *w = quantized(wtype, wf, m, k);
    for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++)
        for (int n = 1; n <= 9; n += 8) {
            float *x = tu_malloc((size_t)n * k * sizeof(float));
            for (int64_t i = 0; i < n * k; i++)
                x[i] = (tu_rand() & 1 ? 0x1p64f : -0x1p64f) * (0.5f + 0.25f * (tu_uniform() + 1.0f));
            x[0] = 0x1p64f;
            kqcl_precision used;
            TU_OK(kqcl_context_set_precision(tu_ctx, modes[mi]));
            TU_OK(kqcl_precision_chosen(tu_ctx, 0, wtype, n, &used));
            double *xs = tu_malloc((size_t)n * k * sizeof(double)), *ref = tu_malloc((size_t)n * m * sizeof(double)),
                   *mag = tu_malloc((size_t)n * m * sizeof(double));
            tu_promised_x(used, x, n, (int)k, xs);
            tu_host_matmul_xd(wtype, w, xs, m, k, n, ref, mag);
            float *got = device_matmul(wtype, w, KQCL_TYPE_F32, x, m, k, n);
            char what[96];
            snprintf(what, sizeof what, "%s weights, |x| up to 2^64, %s mode, n = %d", kqcl_type_name(wtype),
                     kqcl_precision_name(used), n);
            for (int64_t i = 0; i < n * m; i++)
                ck_assert_msg(isfinite(got[i]), "%s: y[%lld] = %g", what, (long long)i, (double)got[i]);
            tu_assert_close(got, ref, mag, (size_t)(n * m), what);
            free(x), free(xs), free(ref), free(mag), free(got);
        }
    free(wf), free(w);
}
END_TEST

static Suite *numbers_suite(void)
{
    Suite *s = suite_create("numbers");
    TCase *tc = tcase_create("ieee");
    tcase_add_checked_fixture(tc, tu_context_setup, tu_context_teardown);
    tcase_add_loop_test(tc, nan_and_inf_scales_poison_only_their_rows, 0, COUNT(scaled_types));
    tcase_add_loop_test(tc, nan_and_inf_float_weights_poison_only_their_rows, 0, 3);
    tcase_add_loop_test(tc, nan_and_inf_activations_poison_only_their_columns, 0, COUNT(weight_types));
    tcase_add_loop_test(tc, subnormal_half_scales_match_the_host, 0, COUNT(kquants));
    tcase_add_test(tc, subnormal_f32_scale_q8_K_bounded);
    tcase_add_loop_test(tc, activations_at_the_range_edge, 0, COUNT(weight_types));
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_add_checked_fixture(tc, tu_context_setup, tu_context_teardown);
    tcase_add_test(tc, longest_rows);
    tcase_add_test(tc, most_rows);
    tcase_add_test(tc, requests_beyond_the_api_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(numbers_suite());
}
