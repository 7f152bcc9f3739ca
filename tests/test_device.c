/*
 * test_device.c -- the device kernels (fused matmuls, conversions, reductions) against ggml's
 * reference vectors and a float64 host reference, and the API's handling of bad input.
 * Runs on kqcl's default device (a GPU if present, else PoCL on the CPU), or KQCL_DEVICES.
 */
#include "ops/ops.h"
#include "kernels/family.h"
#include "testutil.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define REF_ROWS 96   /* weight rows in tests/data/w.f32 */
#define REF_K 1024    /* columns */
#define REF_N 5       /* activation rows in x.f32 */

static const kqcl_type kquants[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K};
/* The types with reference vectors in tests/data: ggml's k-quant blocks, and q4_0, q4_1, q5_0,
 * q5_1 and q8_0 blocks made by the gguf Python package (tests/data/make-legacy-quants.py). */
static const kqcl_type ref_types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K,
                                      KQCL_TYPE_Q4_0, KQCL_TYPE_Q4_1, KQCL_TYPE_Q5_0, KQCL_TYPE_Q5_1,
                                      KQCL_TYPE_Q8_0};
#define N_REF_TYPES ((int)(sizeof ref_types / sizeof ref_types[0]))
static const kqcl_type weight_types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K,
                                         KQCL_TYPE_Q4_0, KQCL_TYPE_Q4_1, KQCL_TYPE_Q5_0, KQCL_TYPE_Q5_1,
                                         KQCL_TYPE_Q8_0, KQCL_TYPE_F16,  KQCL_TYPE_BF16, KQCL_TYPE_F32};
/* The 32-value block types: a block is one unit of the kernels (common.cl). */
static const kqcl_type block32_types[] = {KQCL_TYPE_Q4_0, KQCL_TYPE_Q4_1, KQCL_TYPE_Q5_0, KQCL_TYPE_Q5_1,
                                          KQCL_TYPE_Q8_0};
static const kqcl_type float_types[] = {KQCL_TYPE_F32, KQCL_TYPE_F16, KQCL_TYPE_BF16};

static bool same_bits_or_both_nan(float a, float b)
{
    uint32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x == y || (isnan(a) && isnan(b));
}

/* ---- matmul: ggml's reference vectors ------------------------------------------------------------ */

/* ||y - ref|| / ||ref|| for each output row (n), as tests/data/README.md asks. */
static void assert_rows_close(const float *y, const double *ref, int n, int m, double tol, const char *what)
{
    for (int j = 0; j < n; j++) {
        double err = 0, norm = 0;
        for (int r = 0; r < m; r++) {
            double d = y[(size_t)j * m + r] - ref[(size_t)j * m + r];
            err += d * d;
            norm += ref[(size_t)j * m + r] * ref[(size_t)j * m + r];
        }
        double rel = sqrt(err) / (norm > 0 ? sqrt(norm) : 1);
        ck_assert_msg(rel < tol, "%s: row %d relative error %.3g >= %.1g", what, j, rel, tol);
    }
}

static void check_reference_matmul(int type_index, int force_tiled)
{
    kqcl_type type = ref_types[type_index];
    char name[64];
    size_t w_bytes = REF_ROWS * kqcl_row_size(type, REF_K);
    snprintf(name, sizeof name, "%s.blocks", kqcl_type_name(type));
    void *blocks = tu_load(name, w_bytes);
    float *x = tu_load("x.f32", REF_N * REF_K * sizeof(float));
    snprintf(name, sizeof name, "%s.y.f64", kqcl_type_name(type));
    double *ref = tu_load(name, REF_N * REF_ROWS * sizeof(double));

    kqcl_tensor *w = tu_tensor(type, REF_ROWS, REF_K, blocks);
    kqcl_tensor *xt = tu_tensor(KQCL_TYPE_F32, REF_N, REF_K, x);
    kqcl_tensor *y = tu_poisoned_f32(REF_N, REF_ROWS);
    TU_OK(kq_matmul_with(tu_ctx, w, xt, y, force_tiled));
    float *got = tu_read_f32(y);
    snprintf(name, sizeof name, "%s %s", kqcl_type_name(type),
             force_tiled > 0 ? "tiled" : force_tiled < 0 ? "matvec" : "default kernel");
    assert_rows_close(got, ref, REF_N, REF_ROWS, 1e-5, name);

    free(got), free(blocks), free(x), free(ref);
    kqcl_tensor_destroy(w), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(y);
}

START_TEST(matvec_matches_ggml_reference) { check_reference_matmul(_i, -1); }
END_TEST

START_TEST(tiled_matches_ggml_reference) { check_reference_matmul(_i, 1); }
END_TEST

/* What kqcl_matmul picks for n = 5: the device-specific kernel where there is one (tensor
 * cores on NVIDIA), else matvec. */
START_TEST(default_kernel_matches_ggml_reference) { check_reference_matmul(_i, 0); }
END_TEST

/* ---- matmul: random odd shapes, every weight type with every activation type ------------------ */

static void check_random_matmul(kqcl_type wtype, kqcl_type xtype, int64_t m, int64_t k, int n)
{
    void *w = tu_random_weights(wtype, m, k);
    float *xf = tu_malloc((size_t)n * k * sizeof(float));
    for (int64_t i = 0; i < (int64_t)n * k; i++)
        xf[i] = tu_uniform();
    void *x = tu_malloc((size_t)n * kqcl_row_size(xtype, k));
    ck_assert_int_eq(kqcl_quantize(xtype, xf, x, n, k), KQCL_OK);
    double *ref = tu_malloc((size_t)n * m * sizeof(double)), *mag = tu_malloc((size_t)n * m * sizeof(double));
    tu_host_matmul(wtype, w, xtype, x, m, k, n, ref, mag);

    kqcl_tensor *wt = tu_tensor(wtype, m, k, w), *xt = tu_tensor(xtype, n, k, x), *y = tu_poisoned_f32(n, m);
    TU_OK(kqcl_matmul(tu_ctx, wt, xt, y));
    float *got = tu_read_f32(y);
    for (size_t i = 0; i < (size_t)n * m; i++) {
        /* f32 accumulation over k products: a few units of rounding of sum |w x| */
        double bound = 1e-6 * mag[i] + 1e-30;
        ck_assert_msg(fabs(got[i] - ref[i]) <= bound,
                      "%s x %s m=%lld k=%lld n=%d: y[%zu] = %.9g, want %.9g (bound %.3g)", kqcl_type_name(wtype),
                      kqcl_type_name(xtype), (long long)m, (long long)k, n, i, got[i], ref[i], bound);
    }
    free(w), free(xf), free(x), free(ref), free(mag), free(got);
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(y);
}

static const int test_ns[] = {1, 2, 3, 7, 8, 9, 63, 64, 65, 300, 513};

START_TEST(matmul_random_odd_shapes)
{
    kqcl_type wtype = weight_types[_i];
    tu_seed(1000 + _i);
    /* k: one block for k-quants, a few blocks for q4_0/q8_0 and a length that is no multiple of 8
     * or 32 for floats;
     * m: no multiple of any tile size. */
    int64_t bs = kqcl_block_size(wtype);
    int64_t k_small = bs == 256 ? 256 : bs == 32 ? 96 : 37;
    int64_t k_big = bs == 256 ? 768 : bs == 32 ? 320 : 301;
    for (size_t xi = 0; xi < sizeof float_types / sizeof float_types[0]; xi++)
        for (size_t ni = 0; ni < sizeof test_ns / sizeof test_ns[0]; ni++) {
            int n = test_ns[ni];
            check_random_matmul(wtype, float_types[xi], 67, (ni % 2) ? k_small : k_big, n);
        }
    check_random_matmul(wtype, KQCL_TYPE_F32, 1, k_big, 1); /* a single weight row */
}
END_TEST

/* The 32-value block types at every decode n (1..8), the first prefill n (9) and 33, on an odd
 * number of blocks (k = 32 * 7 and 32 * 13) and odd m, with each activation type. */
START_TEST(matmul_block32_every_n)
{
    kqcl_type wtype = block32_types[_i];
    tu_seed(2000 + _i);
    static const int ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 33};
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
        check_random_matmul(wtype, float_types[ni % 3], ni % 2 ? 33 : 67, ni % 2 ? 32 * 13 : 32 * 7, ns[ni]);
}
END_TEST

/* Long rows: the tensor-core prefill (NVIDIA) splits k over work-groups from 8 blocks on and
 * sums the splits after -- evenly or not, some splits empty (7 splits of 9 blocks). */
START_TEST(matmul_prefill_long_k)
{
    kqcl_type wtype = kquants[_i];
    tu_seed(3000 + _i);
    check_random_matmul(wtype, KQCL_TYPE_F32, 67, 9 * 256, 65);
    check_random_matmul(wtype, KQCL_TYPE_F32, 67, 16 * 256, 64);
    TU_OK(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_MMA_KSPLIT, 7));
    check_random_matmul(wtype, KQCL_TYPE_F32, 67, 9 * 256, 12);
    TU_OK(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_MMA_KSPLIT, KQCL_PARAM_AUTO));
}
END_TEST

START_TEST(matmul_unfused_agrees)
{
    /* The unfused reference path (device dequantize + CLBlast) gives the same Y. */
    tu_seed(77);
    kqcl_type type = ref_types[_i];
    int64_t m = 70, k = 512;
    int n = 9;
    void *w = tu_random_weights(type, m, k);
    float *x = tu_malloc((size_t)n * k * sizeof(float));
    for (int64_t i = 0; i < (int64_t)n * k; i++)
        x[i] = tu_uniform();
    kqcl_tensor *wt = tu_tensor(type, m, k, w), *xt = tu_tensor(KQCL_TYPE_F32, n, k, x);
    kqcl_tensor *y1 = tu_poisoned_f32(n, m), *y2 = tu_poisoned_f32(n, m);
    TU_OK(kqcl_matmul(tu_ctx, wt, xt, y1));
    kqcl_status st = kq_matmul_unfused(tu_ctx, wt, xt, y2);
    if (st == KQCL_ERR_UNSUPPORTED) {
        fprintf(stderr, "unfused path skipped: %s\n", kqcl_last_error(tu_ctx));
    } else {
        TU_OK(st);
        float *a = tu_read_f32(y1), *b = tu_read_f32(y2);
        for (int i = 0; i < n * m; i++)
            ck_assert_msg(fabsf(a[i] - b[i]) <= 1e-4f * (1 + fabsf(b[i])), "y[%d]: fused %g unfused %g", i, a[i], b[i]);
        free(a), free(b);
    }
    free(w), free(x);
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(y1), kqcl_tensor_destroy(y2);
}
END_TEST

/* ---- conversions ----------------------------------------------------------------------------------- */

/* Convert host values of `from` on the device into `to`; returns the host bytes of the result. */
static void *device_convert(kqcl_type from, kqcl_type to, const void *src, int64_t rows, int64_t cols)
{
    kqcl_tensor *s = tu_tensor(from, rows, cols, src);
    kqcl_tensor *d = tu_tensor(to, rows, cols, NULL);
    void *out = tu_malloc(kqcl_tensor_bytes(d));
    memset(out, 0xA5, kqcl_tensor_bytes(d)); /* poison, written to the device */
    TU_OK(kqcl_tensor_write(d, out, kqcl_tensor_bytes(d)));
    TU_OK(kqcl_convert(tu_ctx, s, d));
    TU_OK(kqcl_tensor_read(d, out, kqcl_tensor_bytes(d)));
    kqcl_tensor_destroy(s), kqcl_tensor_destroy(d);
    return out;
}

START_TEST(convert_f32_to_half_and_bf16_bit_exact)
{
    float *src = tu_load("conv.f32", 4096 * 4);
    const char *files[2] = {"conv.f16", "conv.bf16"};
    kqcl_type types[2] = {KQCL_TYPE_F16, KQCL_TYPE_BF16};
    for (int t = 0; t < 2; t++) {
        uint16_t *want = tu_load(files[t], 4096 * 2);
        uint16_t *got = device_convert(KQCL_TYPE_F32, types[t], src, 64, 64);
        for (int i = 0; i < 4096; i++) {
            bool want_nan = (want[i] & 0x7fff) > (t == 0 ? 0x7c00 : 0x7f80);
            bool got_nan = (got[i] & 0x7fff) > (t == 0 ? 0x7c00 : 0x7f80);
            ck_assert_msg(want_nan ? got_nan : got[i] == want[i], "%s[%d] of %a: got 0x%04x, want 0x%04x", files[t],
                          i, src[i], got[i], want[i]);
        }
        free(want), free(got);
    }
    free(src);
}
END_TEST

START_TEST(convert_every_half_and_bf16_to_f32)
{
    uint16_t *patterns = tu_malloc(65536 * 2);
    for (int i = 0; i < 65536; i++)
        patterns[i] = (uint16_t)i;
    const char *files[2] = {"f16_all.f32", "bf16_all.f32"};
    kqcl_type types[2] = {KQCL_TYPE_F16, KQCL_TYPE_BF16};
    for (int t = 0; t < 2; t++) {
        float *want = tu_load(files[t], 65536 * 4);
        float *got = device_convert(types[t], KQCL_TYPE_F32, patterns, 256, 256);
        for (int i = 0; i < 65536; i++)
            ck_assert_msg(same_bits_or_both_nan(got[i], want[i]), "%s 0x%04x: got %a want %a", files[t], i, got[i],
                          want[i]);
        free(want), free(got);
    }
    free(patterns);
}
END_TEST

START_TEST(convert_between_half_and_bf16)
{
    /* f16 <-> bf16 through exact f32: the device must agree with the host codec chain. */
    uint16_t *patterns = tu_malloc(65536 * 2);
    float *f = tu_malloc(65536 * 4);
    uint16_t *want = tu_malloc(65536 * 2);
    for (int i = 0; i < 65536; i++)
        patterns[i] = (uint16_t)i;
    for (int dir = 0; dir < 2; dir++) {
        kqcl_type from = dir ? KQCL_TYPE_BF16 : KQCL_TYPE_F16, to = dir ? KQCL_TYPE_F16 : KQCL_TYPE_BF16;
        ck_assert_int_eq(kqcl_dequantize(from, patterns, f, 1, 65536), KQCL_OK);
        ck_assert_int_eq(kqcl_quantize(to, f, want, 1, 65536), KQCL_OK);
        uint16_t *got = device_convert(from, to, patterns, 16, 4096);
        for (int i = 0; i < 65536; i++) {
            uint16_t exp_mask = to == KQCL_TYPE_F16 ? 0x7c00 : 0x7f80;
            bool nan = (want[i] & 0x7fff) > exp_mask;
            ck_assert_msg(nan ? (got[i] & 0x7fff) > exp_mask : got[i] == want[i], "%s->%s 0x%04x: got 0x%04x want 0x%04x",
                          kqcl_type_name(from), kqcl_type_name(to), i, got[i], want[i]);
        }
        free(got);
    }
    free(patterns), free(f), free(want);
}
END_TEST

START_TEST(dequantize_on_device_bit_exact)
{
    kqcl_type type = ref_types[_i];
    char name[64];
    snprintf(name, sizeof name, "%s.blocks", kqcl_type_name(type));
    void *blocks = tu_load(name, REF_ROWS * kqcl_row_size(type, REF_K));
    snprintf(name, sizeof name, "%s.deq.f32", kqcl_type_name(type));
    float *want = tu_load(name, REF_ROWS * REF_K * 4);
    float *got = device_convert(type, KQCL_TYPE_F32, blocks, REF_ROWS, REF_K);
    for (int i = 0; i < REF_ROWS * REF_K; i++)
        ck_assert_msg(same_bits_or_both_nan(got[i], want[i]), "%s value %d: got %a want %a", kqcl_type_name(type), i,
                      got[i], want[i]);
    /* and to f16 / bf16: the rounding of those exact values */
    for (int t = 1; t < 3; t++) {
        uint16_t *half_want = tu_malloc(REF_ROWS * REF_K * 2);
        ck_assert_int_eq(kqcl_quantize(float_types[t], want, half_want, REF_ROWS, REF_K), KQCL_OK);
        uint16_t *half_got = device_convert(type, float_types[t], blocks, REF_ROWS, REF_K);
        ck_assert_msg(memcmp(half_got, half_want, REF_ROWS * REF_K * 2) == 0, "%s -> %s differs from the host",
                      kqcl_type_name(type), kqcl_type_name(float_types[t]));
        free(half_want), free(half_got);
    }
    free(blocks), free(want), free(got);
}
END_TEST

START_TEST(convert_same_type_copies_and_rejects_quant_targets)
{
    float v[512];
    for (int i = 0; i < 512; i++)
        v[i] = (float)i - 100.5f;
    float *copy = device_convert(KQCL_TYPE_F32, KQCL_TYPE_F32, v, 2, 256);
    ck_assert_int_eq(memcmp(copy, v, sizeof v), 0);
    free(copy);
    kqcl_tensor *s = tu_tensor(KQCL_TYPE_F32, 2, 256, v), *d = tu_tensor(KQCL_TYPE_Q4_K, 2, 256, NULL);
    ck_assert_int_eq(kqcl_convert(tu_ctx, s, d), KQCL_ERR_UNSUPPORTED);
    ck_assert_str_ne(kqcl_last_error(tu_ctx), "");
    kqcl_tensor *wrong = tu_tensor(KQCL_TYPE_F32, 1, 256, NULL);
    ck_assert_int_eq(kqcl_convert(tu_ctx, s, wrong), KQCL_ERR_INVALID_ARG);
    kqcl_tensor_destroy(s), kqcl_tensor_destroy(d), kqcl_tensor_destroy(wrong);
}
END_TEST

/* ---- reductions ------------------------------------------------------------------------------------ */

static double host_reduce(kqcl_reduce_op op, const float *row, int64_t n)
{
    double acc = op == KQCL_REDUCE_MAX ? -INFINITY : op == KQCL_REDUCE_MIN ? INFINITY : 0;
    for (int64_t i = 0; i < n; i++) {
        double v = row[i];
        if (isnan(v))
            return NAN;
        switch (op) {
        case KQCL_REDUCE_MAX: acc = v > acc ? v : acc; break;
        case KQCL_REDUCE_MIN: acc = v < acc ? v : acc; break;
        case KQCL_REDUCE_SUMSQ: acc += v * v; break;
        default: acc += v; break;
        }
    }
    return op == KQCL_REDUCE_MEAN ? acc / (double)n : acc;
}

static void check_reduce(kqcl_type type, int64_t rows, int64_t cols, const float *values)
{
    /* values are first rounded to `type`, so the reference sees what the device sees */
    void *src = tu_malloc((size_t)rows * kqcl_row_size(type, cols));
    float *exact = tu_malloc((size_t)rows * cols * sizeof(float));
    ck_assert_int_eq(kqcl_quantize(type, values, src, rows, cols), KQCL_OK);
    ck_assert_int_eq(kqcl_dequantize(type, src, exact, rows, cols), KQCL_OK);
    kqcl_tensor *s = tu_tensor(type, rows, cols, src);
    for (int op = KQCL_REDUCE_SUM; op <= KQCL_REDUCE_SUMSQ; op++) {
        kqcl_tensor *d = tu_poisoned_f32(rows, 1);
        TU_OK(kqcl_reduce(tu_ctx, (kqcl_reduce_op)op, s, d));
        float *got = tu_read_f32(d);
        for (int64_t r = 0; r < rows; r++) {
            const float *row = exact + r * cols;
            double want = host_reduce((kqcl_reduce_op)op, row, cols);
            double scale = 0; /* sum of |terms|: what an uncompensated sum's error grows with */
            for (int64_t i = 0; i < cols; i++)
                scale += op == KQCL_REDUCE_SUMSQ ? (double)row[i] * row[i] : fabs(row[i]);
            if (op == KQCL_REDUCE_MEAN)
                scale /= (double)cols;
            /* compensated: ~2 roundings of the result, plus n*eps^2 of the terms */
            double bound = 2.5 * 1.2e-7 * fabs(want) + 1e-9 * scale + 1e-37;
            if (isnan(want))
                ck_assert_msg(isnan(got[r]), "op %d row %lld: want NaN, got %g", op, (long long)r, got[r]);
            else
                ck_assert_msg(fabs(got[r] - want) <= bound, "op %d %s row %lld (%lld values): got %.9g want %.9g",
                              op, kqcl_type_name(type), (long long)r, (long long)cols, got[r], want);
        }
        free(got);
        kqcl_tensor_destroy(d);
    }
    kqcl_tensor_destroy(s);
    free(src), free(exact);
}

START_TEST(reduce_random_rows_every_length)
{
    static const int64_t lengths[] = {1, 7, 255, 256, 257, 1000, 100003};
    tu_seed(5);
    for (size_t t = 0; t < 3; t++)
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            int64_t rows = 3, cols = lengths[li];
            float *v = tu_malloc((size_t)rows * cols * sizeof(float));
            for (int64_t i = 0; i < rows * cols; i++)
                v[i] = tu_uniform() * (i % 3 ? 1.0f : 1000.0f) + 0.25f;
            check_reduce(float_types[t], rows, cols, v);
            free(v);
        }
}
END_TEST

START_TEST(reduce_is_compensated)
{
    /* 1e8, then many ones and the -1e8: a plain float sum loses every 1 (1e8 + 1 == 1e8);
     * the compensated sum keeps them all. */
    int64_t cols = 65536;
    float *v = tu_malloc(cols * sizeof(float));
    for (int64_t i = 0; i < cols; i++)
        v[i] = 1.0f;
    v[0] = 1e8f;
    v[cols - 1] = -1e8f;
    kqcl_tensor *s = tu_tensor(KQCL_TYPE_F32, 1, cols, v), *d = tu_poisoned_f32(1, 1);
    TU_OK(kqcl_reduce(tu_ctx, KQCL_REDUCE_SUM, s, d));
    float *got = tu_read_f32(d);
    ck_assert_msg(got[0] == (float)(cols - 2), "sum %.9g, want %lld", got[0], (long long)(cols - 2));
    free(got), free(v);
    kqcl_tensor_destroy(s), kqcl_tensor_destroy(d);
}
END_TEST

START_TEST(reduce_max_min_propagate_nan)
{
    float v[2 * 300];
    for (int i = 0; i < 600; i++)
        v[i] = (float)(i % 300);
    v[417] = NAN; /* in row 1 only */
    kqcl_tensor *s = tu_tensor(KQCL_TYPE_F32, 2, 300, v);
    for (int op = KQCL_REDUCE_MAX; op <= KQCL_REDUCE_MIN; op++) {
        kqcl_tensor *d = tu_poisoned_f32(2, 1);
        TU_OK(kqcl_reduce(tu_ctx, (kqcl_reduce_op)op, s, d));
        float *got = tu_read_f32(d);
        ck_assert(got[0] == (op == KQCL_REDUCE_MAX ? 299.0f : 0.0f));
        ck_assert(isnan(got[1]));
        free(got);
        kqcl_tensor_destroy(d);
    }
    kqcl_tensor_destroy(s);
}
END_TEST

/* ---- the API under bad input ---------------------------------------------------------------------- */

/* Device timing is off by default, on on request; the queues it remakes keep working and the
 * results do not change. */
START_TEST(device_timing_on_and_off)
{
    tu_seed(55);
    void *wq = tu_random_weights(KQCL_TYPE_Q4_K, 70, 512);
    float *x = tu_random_floats(3 * 512);
    kqcl_tensor *w = tu_tensor(KQCL_TYPE_Q4_K, 70, 512, wq), *xt = tu_tensor(KQCL_TYPE_F32, 3, 512, x);
    kqcl_tensor *y = tu_poisoned_f32(3, 70);
    uint64_t ns = 1;
    TU_OK(kqcl_matmul(tu_ctx, w, xt, y));
    ck_assert_int_eq(kqcl_last_device_time(tu_ctx, &ns), KQCL_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(tu_ctx), "kqcl_context_set_timing"));
    float *untimed = tu_read_f32(y);
    TU_OK(kqcl_context_set_timing(tu_ctx, 1));
    TU_OK(kqcl_context_set_timing(tu_ctx, 1)); /* already on: nothing to do */
    TU_OK(kqcl_matmul(tu_ctx, w, xt, y));
    ns = 0;
    TU_OK(kqcl_last_device_time(tu_ctx, &ns));
    ck_assert_uint_gt(ns, 0);
    float *timed = tu_read_f32(y);
    ck_assert_mem_eq(untimed, timed, 3 * 70 * sizeof(float));
    TU_OK(kqcl_context_set_timing(tu_ctx, 0));
    ck_assert_int_eq(kqcl_last_device_time(tu_ctx, &ns), KQCL_ERR_UNSUPPORTED);
    ck_assert_int_eq(kqcl_context_set_timing(NULL, 1), KQCL_ERR_INVALID_ARG);
    free(wq), free(x), free(untimed), free(timed);
    kqcl_tensor_destroy(w), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(y);
}
END_TEST

/* Every event of a call is kept for kqcl_last_device_time: a split call over many devices and
 * buffer chunks makes far more than the 64 that were kept (the rest dropped from the sum). */
START_TEST(events_past_64_are_kept)
{
    TU_OK(kqcl_context_set_timing(tu_ctx, 1));
    kq_events_reset(tu_ctx);
    for (int i = 0; i < 150; i++) {
        cl_event ev = NULL;
        ck_assert_int_eq(clEnqueueMarkerWithWaitList(tu_ctx->devices[0].queue, 0, NULL, &ev), CL_SUCCESS);
        kq_events_add(tu_ctx, ev);
    }
    ck_assert_int_eq(tu_ctx->n_events, 150);
    uint64_t ns = 1;
    TU_OK(kqcl_last_device_time(tu_ctx, &ns));
    kq_events_reset(tu_ctx);
    ck_assert_int_eq(tu_ctx->n_events, 0);
}
END_TEST

START_TEST(api_rejects_bad_input_and_stays_usable)
{
    kqcl_tensor *t = NULL;
    ck_assert_int_eq(kqcl_tensor_create(tu_ctx, KQCL_TYPE_Q4_K, 4, 100, &t), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(t);
    ck_assert_str_ne(kqcl_last_error(tu_ctx), "");
    ck_assert_int_eq(kqcl_tensor_create(tu_ctx, KQCL_TYPE_Q4_K, 0, 256, &t), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_create(tu_ctx, (kqcl_type)9, 1, 256, &t), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_create(NULL, KQCL_TYPE_F32, 1, 1, &t), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_create(tu_ctx, KQCL_TYPE_F32, 1, 1, NULL), KQCL_ERR_INVALID_ARG);

    float buf[512] = {0};
    kqcl_tensor *w = tu_tensor(KQCL_TYPE_F32, 2, 256, NULL);
    ck_assert_int_eq(kqcl_tensor_write(w, buf, 100), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_write(w, NULL, sizeof buf), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_read(w, buf, sizeof buf + 4), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_write(NULL, buf, sizeof buf), KQCL_ERR_INVALID_ARG);

    kqcl_tensor *x = tu_tensor(KQCL_TYPE_F32, 3, 256, NULL), *y = tu_tensor(KQCL_TYPE_F32, 3, 2, NULL);
    kqcl_tensor *y_bad = tu_tensor(KQCL_TYPE_F32, 3, 3, NULL), *y_f16 = tu_tensor(KQCL_TYPE_F16, 3, 2, NULL);
    kqcl_tensor *x_q = tu_tensor(KQCL_TYPE_Q8_K, 3, 256, NULL), *x_k = tu_tensor(KQCL_TYPE_F32, 3, 512, NULL);
    ck_assert_int_eq(kqcl_matmul(tu_ctx, w, x, y_bad), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_matmul(tu_ctx, w, x_k, y), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_matmul(tu_ctx, w, x, y_f16), KQCL_ERR_UNSUPPORTED);
    ck_assert_int_eq(kqcl_matmul(tu_ctx, w, x_q, y), KQCL_ERR_UNSUPPORTED);
    ck_assert_int_eq(kqcl_matmul(tu_ctx, NULL, x, y), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_matmul(tu_ctx, w, x, NULL), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_matmul(NULL, w, x, y), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_reduce(tu_ctx, (kqcl_reduce_op)9, x, y), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_reduce(tu_ctx, KQCL_REDUCE_SUM, x, y), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_reduce(tu_ctx, KQCL_REDUCE_SUM, x_q, y), KQCL_ERR_UNSUPPORTED);

    /* a tensor of another context is refused */
    kqcl_context *other = NULL;
    TU_OK(kqcl_context_create(NULL, &other));
    kqcl_tensor *foreign = NULL;
    ck_assert_int_eq(kqcl_tensor_create(other, KQCL_TYPE_F32, 2, 256, &foreign), KQCL_OK);
    ck_assert_int_eq(kqcl_matmul(tu_ctx, foreign, x, y), KQCL_ERR_INVALID_ARG);
    kqcl_tensor_destroy(foreign);
    kqcl_context_destroy(other);

    /* and the context still computes: W = ones, X = twos -> every y = 2 * 256 */
    for (int i = 0; i < 512; i++)
        buf[i] = 1.0f;
    TU_OK(kqcl_tensor_write(w, buf, sizeof buf));
    float xs[768];
    for (int i = 0; i < 768; i++)
        xs[i] = 2.0f;
    TU_OK(kqcl_tensor_write(x, xs, sizeof xs));
    TU_OK(kqcl_matmul(tu_ctx, w, x, y));
    float out[6];
    TU_OK(kqcl_tensor_read(y, out, sizeof out));
    for (int i = 0; i < 6; i++)
        ck_assert(out[i] == 512.0f);
    ck_assert_str_eq(kqcl_last_error(tu_ctx), "");

    kqcl_tensor *all[] = {w, x, y, y_bad, y_f16, x_q, x_k};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        kqcl_tensor_destroy(all[i]);
    kqcl_tensor_destroy(NULL);
}
END_TEST

START_TEST(device_spec_grammar)
{
    kqcl_context *c = NULL;
    int total = 0;
    TU_OK(kqcl_list_devices(NULL, 0, &total));
    ck_assert_int_gt(total, 0);
    TU_OK(kqcl_context_create("all", &c));
    ck_assert_int_eq(kqcl_device_count(c), total);
    kqcl_context_destroy(c);
    TU_OK(kqcl_context_create("0,0", &c)); /* duplicates dropped */
    ck_assert_int_eq(kqcl_device_count(c), 1);
    kqcl_device_info info;
    TU_OK(kqcl_device_get_info(c, 0, &info));
    kqcl_context_destroy(c);
    /* a name substring, case-insensitive */
    char upper[16] = {0};
    for (int i = 0; i < 4 && info.name[i]; i++)
        upper[i] = (char)((info.name[i] >= 'a' && info.name[i] <= 'z') ? info.name[i] - 32 : info.name[i]);
    TU_OK(kqcl_context_create(upper, &c));
    kqcl_context_destroy(c);
    TU_OK(kqcl_context_create("0:0", &c));
    kqcl_context_destroy(c);

    ck_assert_int_eq(kqcl_context_create("999", &c), KQCL_ERR_NO_DEVICE);
    ck_assert_ptr_null(c);
    ck_assert_str_ne(kqcl_last_error(NULL), "");
    ck_assert_int_eq(kqcl_context_create("no-such-device-anywhere", &c), KQCL_ERR_NO_DEVICE);
    ck_assert_int_eq(kqcl_context_create("0,,1", &c), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_context_create("x:1", &c), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_context_create("0", NULL), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_device_get_info(tu_ctx, 5, &info), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_device_count(NULL), 0);
}
END_TEST

START_TEST(build_failure_reports_the_log)
{
    /* A source-level #error, switched on by an extra build option, stands in for a broken
     * kernel: the status is KQCL_ERR_BUILD and the message carries the compiler's log. */
    setenv("KQCL_EXTRA_BUILD_OPTIONS", "-DKQCL_TEST_BROKEN_BUILD", 1);
    kqcl_tensor *w = tu_tensor(KQCL_TYPE_F32, 2, 256, NULL), *x = tu_tensor(KQCL_TYPE_F32, 1, 256, NULL);
    kqcl_tensor *y = tu_tensor(KQCL_TYPE_F32, 1, 2, NULL);
    ck_assert_int_eq(kqcl_matmul(tu_ctx, w, x, y), KQCL_ERR_BUILD);
    ck_assert_msg(strstr(kqcl_last_error(tu_ctx), "build log") != NULL, "message: %s", kqcl_last_error(tu_ctx));
    unsetenv("KQCL_EXTRA_BUILD_OPTIONS");
    TU_OK(kqcl_matmul(tu_ctx, w, x, y)); /* the context stays usable */
    kqcl_tensor_destroy(w), kqcl_tensor_destroy(x), kqcl_tensor_destroy(y);
}
END_TEST

/* ---- the binary cache ------------------------------------------------------------------------------ */

static int count_and_corrupt_cache(const char *dir, bool corrupt)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls %s/*.bin 2>/dev/null | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = 0;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = 0;
        pclose(p);
    }
    if (corrupt) {
        snprintf(cmd, sizeof cmd, "for f in %s/*.bin; do printf 'garbage' > \"$f\"; done", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    return n;
}

static void one_small_matmul(void)
{
    float w[256], x[256], y[1];
    for (int i = 0; i < 256; i++)
        w[i] = 1.0f, x[i] = 0.5f;
    kqcl_tensor *wt = tu_tensor(KQCL_TYPE_F32, 1, 256, w), *xt = tu_tensor(KQCL_TYPE_F32, 1, 256, x);
    kqcl_tensor *yt = tu_poisoned_f32(1, 1);
    TU_OK(kqcl_matmul(tu_ctx, wt, xt, yt));
    TU_OK(kqcl_tensor_read(yt, y, sizeof y));
    ck_assert(y[0] == 128.0f);
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt);
}

START_TEST(binary_cache_is_used_and_corrupt_entries_rebuilt)
{
    char dir[] = "/tmp/kqcl-cache-test-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    setenv("KQCL_CACHE_DIR", dir, 1);
    setenv("KQCL_CACHE", "force", 1); /* also on PoCL, where it is off by default */
    tu_context_teardown();
    tu_context_setup();
    one_small_matmul();
    int entries = count_and_corrupt_cache(dir, false);
    ck_assert_int_ge(entries, 1);
    count_and_corrupt_cache(dir, true);
    tu_context_teardown();
    tu_context_setup();
    one_small_matmul(); /* corrupt entries are not trusted: rebuilt and rewritten */
    char path[1200];
    snprintf(path, sizeof path, "ls -l %s/*.bin | awk '$5 <= 7 {bad++} END {exit bad > 0}'", dir);
    ck_assert_msg(system(path) == 0, "a corrupt cache entry was not rewritten");
    snprintf(path, sizeof path, "rm -rf %s", dir);
    ck_assert_int_eq(system(path), 0);
}
END_TEST

/* ---- kernel variants: tunables, device limits, fallbacks ------------------------------------------- */

/* y = x . w^T on ctx for random weights of `type` (m x k) and n rows: its status, and when OK
 * the result checked against the host (float64 of the activations the context's precision
 * promises for the call). */
static kqcl_status checked_matmul(kqcl_context *ctx, kqcl_type type, int64_t m, int64_t k, int n)
{
    void *w = tu_random_weights(type, m, k);
    float *x = tu_random_floats((size_t)n * k);
    kqcl_tensor *wt = NULL, *xt = NULL, *yt = NULL;
    TU_OK(kqcl_tensor_create(ctx, type, m, k, &wt));
    TU_OK(kqcl_tensor_create(ctx, KQCL_TYPE_F32, n, k, &xt));
    TU_OK(kqcl_tensor_create(ctx, KQCL_TYPE_F32, n, m, &yt));
    TU_OK(kqcl_tensor_write(wt, w, kqcl_tensor_bytes(wt)));
    TU_OK(kqcl_tensor_write(xt, x, kqcl_tensor_bytes(xt)));
    kqcl_status st = kqcl_matmul(ctx, wt, xt, yt);
    if (st == KQCL_OK) {
        float *got = tu_malloc(kqcl_tensor_bytes(yt));
        TU_OK(kqcl_tensor_read(yt, got, kqcl_tensor_bytes(yt)));
        /* against the activations the context's precision promises for this call */
        kqcl_precision used;
        TU_OK_CTX(ctx, kqcl_precision_chosen(ctx, 0, type, n, &used));
        double *xs = tu_malloc((size_t)n * k * sizeof(double)), *ref = tu_malloc((size_t)n * m * sizeof(double)),
               *mag = tu_malloc((size_t)n * m * sizeof(double));
        tu_promised_x(used, x, n, (int)k, xs);
        tu_host_matmul_xd(type, w, xs, m, k, n, ref, mag);
        char what[96];
        snprintf(what, sizeof what, "%s m=%lld k=%lld n=%d, %s", kqcl_type_name(type), (long long)m, (long long)k, n,
                 kqcl_precision_name(used));
        tu_assert_close(got, ref, mag, (size_t)n * m, what);
        free(got), free(xs), free(ref), free(mag);
    }
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt);
    free(w), free(x);
    return st;
}

/* Tunables from the environment are checked against their kernel's constraints: a malformed or
 * impossible set is refused with a message naming it (it used to give NaN or a 10% error). */
START_TEST(tunables_are_checked)
{
    /* f16 weights for the tiled kernel's sets: on NVIDIA, k-quant prefill takes the tensor cores,
     * which KQCL_MATMUL does not shape. The environment is read when a context is created: a
     * malformed value (or one outside a parameter's bounds) fails the creation, a set that breaks
     * its kernel's constraints or fits no device fails the calls that would use it; both name
     * the variable. */
    static const struct { const char *name, *value; kqcl_type type; int n; } bad[] = {
        {"KQCL_MATVEC", "3,4,2", KQCL_TYPE_Q4_K, 1}, /* lanes of a row sum in a tree: a power of two */
        {"KQCL_MATVEC", "abc", KQCL_TYPE_Q4_K, 1},
        {"KQCL_MATVEC", "32,4", KQCL_TYPE_Q4_K, 1},
        {"KQCL_MATVEC", "32,4,2,1", KQCL_TYPE_Q4_K, 1},
        {"KQCL_MATVEC", "1024,1024,1", KQCL_TYPE_Q4_K, 1}, /* fits no device */
        {"KQCL_MATVEC", "4096,4096,1", KQCL_TYPE_Q4_K, 1}, /* outside the bounds */
        {"KQCL_MATVEC", "32,4,-2", KQCL_TYPE_Q4_K, 1},
        {"KQCL_MATMUL", "64,64,6,8,1", KQCL_TYPE_F16, 20}, /* outputs go in float4 groups */
        {"KQCL_MATMUL", "64,64,8,8", KQCL_TYPE_F16, 20},
        {"KQCL_MATMUL", "60,64,8,8,1", KQCL_TYPE_F16, 20},
        {"KQCL_MMA_MIN_N", "0", KQCL_TYPE_Q4_K, 4},
        {"KQCL_MMA_MIN_N", "1e3", KQCL_TYPE_Q4_K, 4},
        {"KQCL_COLL_SUMS", "gpu", KQCL_TYPE_Q4_K, 1},
        {"KQCL_COLL_SPIN_US", "-1", KQCL_TYPE_Q4_K, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kqcl_context *ctx = NULL;
        setenv(bad[i].name, bad[i].value, 1);
        kqcl_status st = kqcl_context_create(NULL, &ctx);
        unsetenv(bad[i].name);
        const char *why = kqcl_last_error(NULL);
        if (st == KQCL_OK) {
            st = checked_matmul(ctx, bad[i].type, 40, 512, bad[i].n);
            why = kqcl_last_error(ctx);
        }
        ck_assert_msg(st == KQCL_ERR_INVALID_ARG, "%s=%s: %s", bad[i].name, bad[i].value, kqcl_status_string(st));
        ck_assert_msg(strstr(why, bad[i].name) != NULL, "%s=%s: message '%s'", bad[i].name, bad[i].value, why);
        kqcl_context_destroy(ctx);
    }
    /* valid sets work and give right results (float weights take the work-group kernels on
     * every kind of device, so one set serves CPUs and GPUs) */
    kqcl_context *ctx = NULL;
    setenv("KQCL_MATVEC", "8,2,1", 1);
    setenv("KQCL_MATMUL", "32,32,4,4,2", 1);
    kqcl_status st = kqcl_context_create(NULL, &ctx);
    unsetenv("KQCL_MATVEC");
    unsetenv("KQCL_MATMUL");
    ck_assert_int_eq(st, KQCL_OK);
    int v = 0;
    ck_assert_int_eq(kqcl_context_get_param(ctx, 0, KQCL_PARAM_MATVEC_ROW_GROUPS, &v), KQCL_OK);
    ck_assert_int_eq(v, 2);
    ck_assert_int_eq(checked_matmul(ctx, KQCL_TYPE_F32, 37, 300, 3), KQCL_OK);
    ck_assert_int_eq(checked_matmul(ctx, KQCL_TYPE_F16, 70, 300, 33), KQCL_OK);
    kqcl_context_destroy(ctx);
    ck_assert_int_eq(checked_matmul(tu_ctx, KQCL_TYPE_Q4_K, 40, 512, 20), KQCL_OK);
}
END_TEST

/* Sets inside the published bounds whose work-groups hold more private memory than the device
 * can give them (PoCL: 4096 work-items of 16 rows each overflow the thread stack a work-group
 * runs on, and the process died) are refused with INVALID_ARG, or run right where the device
 * can hold them (a GPU takes or refuses them by its own limits) -- never a crash. Through the
 * environment and through the API, decode and Q8 decode, float weights at n = 1 and 8. */
START_TEST(sets_beyond_private_memory_are_refused)
{
    static const char *sets[] = {"1024,4,16", "512,8,16"};
    static const kqcl_type types[] = {KQCL_TYPE_F16, KQCL_TYPE_F32, KQCL_TYPE_BF16};
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
        int tpr, groups, rows;
        ck_assert_int_eq(sscanf(sets[s], "%d,%d,%d", &tpr, &groups, &rows), 3);
        kqcl_context *ctx = NULL;
        setenv("KQCL_MATVEC", sets[s], 1);
        TU_OK_CTX(NULL, kqcl_context_create(NULL, &ctx));
        unsetenv("KQCL_MATVEC");
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
            for (int n = 1; n <= 8; n += 7) {
                kqcl_status st = checked_matmul(ctx, types[t], 64, 256, n);
                ck_assert_msg(st == KQCL_OK || st == KQCL_ERR_INVALID_ARG, "KQCL_MATVEC=%s, %s, n = %d: %s: %s",
                              sets[s], kqcl_type_name(types[t]), n, kqcl_status_string(st), kqcl_last_error(ctx));
                if (st != KQCL_OK)
                    ck_assert_msg(strstr(kqcl_last_error(ctx), "KQCL_MATVEC") != NULL, "message: %s",
                                  kqcl_last_error(ctx));
            }
        /* the same set through the API, for the Q8 decode kernel */
        TU_OK_CTX(ctx, kqcl_context_set_precision(ctx, KQCL_PRECISION_Q8));
        TU_OK_CTX(ctx, kqcl_context_set_param(ctx, -1, KQCL_PARAM_MATVEC_Q8_THREADS_PER_ROW, tpr));
        TU_OK_CTX(ctx, kqcl_context_set_param(ctx, -1, KQCL_PARAM_MATVEC_Q8_ROW_GROUPS, groups));
        TU_OK_CTX(ctx, kqcl_context_set_param(ctx, -1, KQCL_PARAM_MATVEC_Q8_ROWS_PER_THREAD, rows));
        kqcl_status st = checked_matmul(ctx, KQCL_TYPE_Q4_K, 64, 256, 1);
        ck_assert_msg(st == KQCL_OK || st == KQCL_ERR_INVALID_ARG, "Q8 %s: %s: %s", sets[s], kqcl_status_string(st),
                      kqcl_last_error(ctx));
        kqcl_context_destroy(ctx);
    }
}
END_TEST

/* A tuple is exactly its integers (include/kqcl.h): digits, and commas between them. strtol
 * took leading blanks (newlines too) and a '+', so ' 1,1,4', '+1,1,4' and '1, 1,4' were
 * accepted (issue 23, item 5). No parameter's lower bound is negative, so a '-' belongs to no
 * valid value ('-0' was taken as 0). Each refusal fails the creation and names the variable. */
START_TEST(tuples_are_digits_and_commas_only)
{
    static const struct {
        const char *name, *value;
    } bad[] = {
        {"KQCL_MATVEC", " 1,1,4"},  {"KQCL_MATVEC", "+1,1,4"},    {"KQCL_MATVEC", "1, 1,4"},
        {"KQCL_MATVEC", "1,1,+4"},  {"KQCL_MATVEC", "\t1,1,4"},   {"KQCL_MATVEC", "1,\n1,4"},
        {"KQCL_MATVEC", "1,1,4 "},  {"KQCL_MATVEC", "1,1,4\n"},   {"KQCL_MATVEC", ""},
        {"KQCL_MATVEC", "1,,4"},    {"KQCL_MATVEC", "1,1,4,"},    {"KQCL_MATVEC", "99999999999999999999,1,4"},
        {"KQCL_MATVEC_Q8", "+32,4,2"}, {"KQCL_MATMUL", "32, 32,4,4,2"}, {"KQCL_MMA_MIN_N", " 8"},
        {"KQCL_MMA_MIN_N", "+8"},   {"KQCL_MMA_MIN_N", "8 "},     {"KQCL_COLL_SPIN_US", "-0"},
        {"KQCL_COLL_SPIN_US", "+0"}, {"KQCL_COLL_THREADS", "0x4"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kqcl_context *ctx = (kqcl_context *)1;
        setenv(bad[i].name, bad[i].value, 1);
        kqcl_status st = kqcl_context_create(NULL, &ctx);
        unsetenv(bad[i].name);
        ck_assert_msg(st == KQCL_ERR_INVALID_ARG, "%s='%s': %s", bad[i].name, bad[i].value, kqcl_status_string(st));
        ck_assert_ptr_null(ctx);
        ck_assert_msg(strstr(kqcl_last_error(NULL), bad[i].name) != NULL, "%s='%s': message '%s'", bad[i].name,
                      bad[i].value, kqcl_last_error(NULL));
    }
    /* written plainly, the same values are taken */
    kqcl_context *ctx = NULL;
    int v = 0;
    setenv("KQCL_MATVEC", "1,1,4", 1);
    setenv("KQCL_COLL_SPIN_US", "0", 1);
    kqcl_status st = kqcl_context_create(NULL, &ctx);
    unsetenv("KQCL_MATVEC");
    unsetenv("KQCL_COLL_SPIN_US");
    ck_assert_msg(st == KQCL_OK, "%s: %s", kqcl_status_string(st), kqcl_last_error(NULL));
    ck_assert_int_eq(kqcl_context_get_param(ctx, 0, KQCL_PARAM_MATVEC_ROWS_PER_THREAD, &v), KQCL_OK);
    ck_assert_int_eq(v, 4);
    ck_assert_int_eq(kqcl_context_get_param(ctx, -1, KQCL_PARAM_COLL_SPIN_US, &v), KQCL_OK);
    ck_assert_int_eq(v, 0);
    kqcl_context_destroy(ctx);
}
END_TEST

/* What kqcl_context_get_param reports is what runs: for every kernel-side parameter of the
 * decode and tiled families and every kind of weight, the reported default is either AUTO
 * (chosen per call) or the value the variant a call gets holds. It reported the k-quants' tiled
 * set for every weight: 256 x 512 on CPUs, where float weights run 64 x 64 (issue 21). */
START_TEST(reported_parameters_are_the_ones_that_run)
{
    static const kqcl_type weights[] = {KQCL_TYPE_F32, KQCL_TYPE_F16, KQCL_TYPE_Q4_0, KQCL_TYPE_Q8_0,
                                        KQCL_TYPE_Q4_K, KQCL_TYPE_Q6_K};
    static const kq_family_desc *const families[] = {&kq_matvec_family, &kq_tiled_family};
    kq_device *dev = &tu_ctx->devices[0];
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (int i = 0; i < families[f]->n_tunables; i++) {
            kqcl_param p = families[f]->tunables[i].param;
            int reported;
            TU_OK(kqcl_context_get_param(tu_ctx, 0, p, &reported));
            for (size_t w = 0; w < sizeof weights / sizeof weights[0]; w++) {
                kq_shape s = {.wtype = weights[w], .xtype = KQCL_TYPE_F32, .m = 512, .n = f == 0 ? 1 : 64, .k = 512};
                kq_variant v;
                TU_OK(kq_pick_variant(tu_ctx, dev, families[f], &s, 0, &v));
                ck_assert_msg(reported == KQCL_PARAM_AUTO || reported == kq_variant_value(&v, p),
                              "%s: reported %d, %s weights run %d (%s)", kqcl_param_name(p), reported,
                              kqcl_type_name(weights[w]), kq_variant_value(&v, p), v.options);
            }
        }
}
END_TEST

/* A file of the source tree (SRCDIR/path, SRCDIR being $KQCL_TEST_DATA/../..), whole, or NULL. */
static char *source_file(const char *path)
{
    char full[4096];
    snprintf(full, sizeof full, "%s/../../%s", tu_data_dir(), path);
    FILE *f = fopen(full, "rb");
    if (f == NULL)
        return NULL;
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return strdup(text);
}

/* The members of variable `env` in family f, comma-separated, their shared prefix dropped
 * ("threads_per_row,row_groups,rows_per_thread" for KQCL_MATVEC). */
static const char *tuple_of_variable(const kq_family_desc *f, const char *env)
{
    static char out[256];
    const char *names[KQ_MAX_TUNABLES];
    int count = 0;
    for (int i = 0; i < f->n_tunables; i++)
        if (strcmp(f->tunables[i].env, env) == 0)
            names[count++] = f->tunables[i].name;
    size_t prefix = strlen(names[0]); /* the longest common prefix ending in '_' */
    for (int i = 1; i < count; i++)
        while (prefix > 0 && strncmp(names[0], names[i], prefix) != 0)
            prefix--;
    while (count > 1 && prefix > 0 && names[0][prefix - 1] != '_')
        prefix--;
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < count; i++)
        len += (size_t)snprintf(out + len, sizeof out - len, "%s%s", i ? "," : "", names[i] + (count > 1 ? prefix : 0));
    return out;
}

/* The documents that list the parameters agree with the descriptors (lib/kernels/family.c), the
 * one table: include/kqcl.h's enum gives each KQCL_PARAM_X its name ("x" in lower case) and, in
 * its comment, its bounds "a..b"; the man page's tuples name the members of each variable in
 * the table's order. */
START_TEST(documents_list_the_parameter_table)
{
    char *header = source_file("include/kqcl.h"), *man = source_file("doc/kqcl_context_set_param.3");
    ck_assert_msg(header != NULL && man != NULL, "include/kqcl.h and doc/kqcl_context_set_param.3 beside %s",
                  tu_data_dir());
    int p = 0, with_bounds = 0;
    for (char *line = strstr(header, "    KQCL_PARAM_"); line && p < KQCL_PARAM_COUNT; line = strstr(line + 1, "    KQCL_PARAM_")) {
        char name[64] = "";
        sscanf(line + 4 + strlen("KQCL_PARAM_"), "%63[A-Z0-9_]", name);
        if (strcmp(name, "COUNT") == 0)
            break;
        for (char *c = name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        ck_assert_str_eq(name, kqcl_param_name((kqcl_param)p));
        char *eol = strchr(line, '\n'), *range = strstr(line, "..");
        int lo, hi, min, max;
        if (range && range < eol) {
            char *start = range;
            while (start > line && start[-1] >= '0' && start[-1] <= '9')
                start--;
            ck_assert_int_eq(sscanf(start, "%d..%d", &lo, &hi), 2);
            TU_OK(kqcl_param_bounds((kqcl_param)p, &min, &max));
            ck_assert_msg(lo == min && hi == max, "kqcl.h says %s is %d..%d, the table %d..%d", name, lo, hi, min, max);
            with_bounds++;
        }
        p++;
    }
    ck_assert_int_eq(p, KQCL_PARAM_COUNT);
    ck_assert_int_ge(with_bounds, 15);
    /* every quoted tuple of the man page is some variable's members, their shared prefix dropped */
    int tuples = 0;
    char *environment = strstr(man, ".SH ENVIRONMENT"); /* past the roff comments' lone quotes */
    ck_assert_ptr_nonnull(environment);
    for (char *q = strchr(environment, '"'); q != NULL; q = strchr(q + 1, '"')) {
        char *end = strchr(q + 1, '"');
        if (end == NULL)
            break;
        size_t n = (size_t)(end - q - 1);
        char tuple[256];
        snprintf(tuple, sizeof tuple, "%.*s", (int)n, q + 1);
        q = end;
        if (strchr(tuple, ',') == NULL || strchr(tuple, ' ') != NULL)
            continue; /* not a tuple */
        bool found = false;
        for (int f = 0; f < kq_n_param_families && !found; f++)
            for (int i = 0; i < kq_param_families[f]->n_tunables && !found; i++)
                found = kq_param_families[f]->tunables[i].member == 0 &&
                        strcmp(tuple_of_variable(kq_param_families[f], kq_param_families[f]->tunables[i].env), tuple) == 0;
        ck_assert_msg(found, "the man page's tuple \"%s\" is no variable's members in the table's order", tuple);
        tuples++;
    }
    ck_assert_int_ge(tuples, 4);
    free(header);
    free(man);
}
END_TEST

/* The same parameters through the API: bounds, devices, the values in force, AUTO, and sets
 * that break their kernel's constraints named as the call's. */
START_TEST(parameters_through_the_api)
{
    int lo = 0, hi = 0, v = 0;
    ck_assert_int_eq(kqcl_param_bounds(KQCL_PARAM_MATVEC_ROWS_PER_THREAD, &lo, &hi), KQCL_OK);
    ck_assert_int_eq(lo, 1);
    ck_assert_int_eq(hi, 16);
    ck_assert_int_eq(kqcl_param_bounds(KQCL_PARAM_COUNT, &lo, &hi), KQCL_ERR_INVALID_ARG);
    ck_assert_str_eq(kqcl_param_name(KQCL_PARAM_MMA_KSPLIT), "mma_ksplit");
    ck_assert_str_eq(kqcl_param_name(KQCL_PARAM_COUNT), "?");
    ck_assert_int_eq(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_MATVEC_ROWS_PER_THREAD, 17), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_MATVEC_ROWS_PER_THREAD, 0), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_context_set_param(tu_ctx, 5, KQCL_PARAM_MATVEC_ROWS_PER_THREAD, 1), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_context_set_param(tu_ctx, 0, KQCL_PARAM_COLL_THREADS, 2), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_context_set_param(tu_ctx, -1, (kqcl_param)99, 2), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_context_set_param(NULL, -1, KQCL_PARAM_MMA_KSPLIT, 2), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_context_get_param(tu_ctx, 0, (kqcl_param)-1, &v), KQCL_ERR_INVALID_ARG);
    /* the defaults in force come from the device's tuning-table entry */
    kqcl_device_info info;
    TU_OK(kqcl_device_get_info(tu_ctx, 0, &info));
    bool gpu_family = strstr(info.variant, "GPU family") != NULL;
    TU_OK(kqcl_context_get_param(tu_ctx, 0, KQCL_PARAM_MATVEC_THREADS_PER_ROW, &v));
    ck_assert_int_eq(v, gpu_family ? 32 : 1);
    TU_OK(kqcl_context_get_param(tu_ctx, -1, KQCL_PARAM_MMA_KSPLIT, &v));
    ck_assert_int_eq(v, KQCL_PARAM_AUTO); /* chosen per call */
    ck_assert_ptr_nonnull(strstr(kqcl_device_tuning(tu_ctx, 0), gpu_family ? "" : "CPU family"));
    ck_assert_str_eq(kqcl_device_tuning(tu_ctx, 9), "");
    /* a member set over the defaults; a set that breaks the constraints names the call */
    TU_OK(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_MATVEC_THREADS_PER_ROW, 8));
    TU_OK(kqcl_context_get_param(tu_ctx, 0, KQCL_PARAM_MATVEC_THREADS_PER_ROW, &v));
    ck_assert_int_eq(v, 8);
    ck_assert_int_eq(checked_matmul(tu_ctx, KQCL_TYPE_F32, 37, 300, 3), KQCL_OK);
    TU_OK(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_MATVEC_THREADS_PER_ROW, 3));
    ck_assert_int_eq(checked_matmul(tu_ctx, KQCL_TYPE_F32, 37, 300, 3), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(tu_ctx), "kqcl_context_set_param"));
    TU_OK(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_MATVEC_THREADS_PER_ROW, KQCL_PARAM_AUTO));
    ck_assert_int_eq(checked_matmul(tu_ctx, KQCL_TYPE_F32, 37, 300, 3), KQCL_OK);
}
END_TEST

/* A device with little local memory gets smaller variants, checked before they are built; one
 * with too little for any tiled kernel gets a clear refusal. KQCL_TEST_LOCAL_MEM_BYTES caps the
 * device's CL_DEVICE_LOCAL_MEM_SIZE as kqcl sees it (PoCL has 1 MiB or more). */
START_TEST(local_memory_limits_choose_variants_that_fit)
{
    static const kqcl_type types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q6_K, KQCL_TYPE_F16};
    setenv("KQCL_TEST_LOCAL_MEM_BYTES", "32768", 1);
    kqcl_context *ctx = NULL;
    kqcl_status st = kqcl_context_create(NULL, &ctx);
    unsetenv("KQCL_TEST_LOCAL_MEM_BYTES");
    ck_assert_msg(st == KQCL_OK, "%s", kqcl_last_error(NULL));
    kqcl_device_info info;
    TU_OK(kqcl_device_get_info(ctx, 0, &info));
    ck_assert_uint_le(info.local_mem_bytes, 32768);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        kq_variant v;
        kq_shape s = {.wtype = types[t], .xtype = KQCL_TYPE_F32, .m = 300, .n = 64, .k = 512};
        ck_assert_int_eq(kq_pick_variant(ctx, &ctx->devices[0], &kq_tiled_family, &s, 0, &v), KQCL_OK);
        ck_assert_msg(v.local_bytes <= info.local_mem_bytes, "%s: %s declares %zu bytes", kqcl_type_name(types[t]),
                      v.options, v.local_bytes);
        for (int n = 1; n <= 70; n += 23)
            ck_assert_int_eq(checked_matmul(ctx, types[t], 300, 512, n), KQCL_OK);
    }
    kqcl_context_destroy(ctx);

    setenv("KQCL_TEST_LOCAL_MEM_BYTES", "1024", 1); /* less than the smallest tiled kernel */
    st = kqcl_context_create(NULL, &ctx);
    unsetenv("KQCL_TEST_LOCAL_MEM_BYTES");
    ck_assert_msg(st == KQCL_OK, "%s", kqcl_last_error(NULL));
    ck_assert_int_eq(checked_matmul(ctx, KQCL_TYPE_F32, 40, 256, 1), KQCL_OK); /* matvec still fits */
    ck_assert_int_eq(checked_matmul(ctx, KQCL_TYPE_F32, 40, 256, 40), KQCL_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(kqcl_last_error(ctx), "local memory") != NULL, "message: %s", kqcl_last_error(ctx));
    kqcl_context_destroy(ctx);
}
END_TEST

/* A device-specific variant that does not build falls back to the portable kernels -- also
 * when the user passes build options of their own (KQCL_EXTRA_BUILD_OPTIONS used to switch the
 * fallback off). KQCL_TEST_FORCE_PTX=1 asks for the NVIDIA variants, which fail to build on any
 * other device; the results must still be right and the variant switched off. */
START_TEST(variants_that_do_not_build_fall_back)
{
    char *portable = getenv("KQCL_PORTABLE") ? strdup(getenv("KQCL_PORTABLE")) : NULL; /* gpu-check.sh sets it */
    unsetenv("KQCL_PORTABLE");
    setenv("KQCL_TEST_FORCE_PTX", "1", 1);
    setenv("KQCL_EXTRA_BUILD_OPTIONS", "-DKQCL_TEST_HARMLESS_OPTION=1", 1);
    kqcl_context *ctx = NULL;
    kqcl_status st = kqcl_context_create(NULL, &ctx);
    unsetenv("KQCL_TEST_FORCE_PTX");
    if (portable) {
        setenv("KQCL_PORTABLE", portable, 1);
        free(portable);
    }
    ck_assert_msg(st == KQCL_OK, "%s", kqcl_last_error(NULL));
    kqcl_device_info info;
    TU_OK(kqcl_device_get_info(ctx, 0, &info));
    ck_assert_msg(strstr(info.variant, "PTX") != NULL, "forced: %s", info.variant);
    static const int ns[] = {1, 5, 20}; /* matvec, tensor-core decode, tensor-core prefill */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(checked_matmul(ctx, KQCL_TYPE_Q4_K, 48, 512, ns[i]), KQCL_OK);
    TU_OK(kqcl_device_get_info(ctx, 0, &info));
    if (info.nv_compute_capability == 0) /* elsewhere than NVIDIA the variants were dropped */
        ck_assert_msg(strstr(info.variant, "PTX") == NULL && strstr(info.variant, "tensor") == NULL, "after: %s",
                      info.variant);
    unsetenv("KQCL_EXTRA_BUILD_OPTIONS");
    kqcl_context_destroy(ctx);
    setenv("KQCL_KERNELS", "fpga", 1);
    ck_assert_int_eq(kqcl_context_create(NULL, &ctx), KQCL_ERR_INVALID_ARG);
    ck_assert(strstr(kqcl_last_error(NULL), "KQCL_KERNELS") != NULL);
    unsetenv("KQCL_KERNELS");
}
END_TEST

/* What a context's first product writes to stderr while KQCL_BUILD_LOG is `log` (NULL: unset),
 * every program built with KQCL_TEST_BUILD_WARNING (common.cl's deliberate warning) and a salt
 * of its own, so that no cache (kqcl's or the runtime's) serves the build. */
static char *stderr_of_a_warning_build(const char *log, int salt)
{
    char path[] = "/tmp/kqcl-build-log-XXXXXX", opts[96];
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    ck_assert(saved >= 0 && dup2(fd, 2) == 2);
    if (log)
        setenv("KQCL_BUILD_LOG", log, 1);
    snprintf(opts, sizeof opts, "-DKQCL_TEST_BUILD_WARNING -DKQCL_TEST_SALT=%d", salt);
    setenv("KQCL_EXTRA_BUILD_OPTIONS", opts, 1);
    kqcl_context *ctx = NULL;
    kqcl_status st = kqcl_context_create(NULL, &ctx);
    if (st == KQCL_OK)
        st = checked_matmul(ctx, KQCL_TYPE_F32, 16, 64, 1);
    kqcl_context_destroy(ctx);
    unsetenv("KQCL_EXTRA_BUILD_OPTIONS");
    unsetenv("KQCL_BUILD_LOG");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ck_assert_int_eq(st, KQCL_OK);
    off_t size = lseek(fd, 0, SEEK_END);
    char *text = tu_malloc((size_t)size + 1);
    ck_assert(pread(fd, text, (size_t)size, 0) == size);
    text[size] = '\0';
    close(fd);
    return text;
}

/* KQCL_BUILD_LOG=1 tells a build's warnings with the file and options it was built with (NVIDIA's
 * compiler prints only "1 warning generated." itself); unset or 0, kqcl tells nothing. */
START_TEST(build_warnings_reach_the_build_log)
{
    int salt = (int)(getpid() % 100000) * 10;
    char *on = stderr_of_a_warning_build("1", salt + 1), *zero = stderr_of_a_warning_build("0", salt + 2),
         *unset = stderr_of_a_warning_build(NULL, salt + 3);
    ck_assert_msg(strstr(on, "kqcl: build log of matvec.cl for ") != NULL &&
                      strstr(on, "-DKQCL_TEST_BUILD_WARNING") != NULL &&
                      strstr(on, "KQCL_TEST_BUILD_WARNING: a deliberate warning") != NULL,
                  "KQCL_BUILD_LOG=1 wrote: %s", on);
    ck_assert_msg(strstr(zero, "kqcl: build log") == NULL, "KQCL_BUILD_LOG=0 wrote: %s", zero);
    ck_assert_msg(strstr(unset, "kqcl: build log") == NULL, "KQCL_BUILD_LOG unset wrote: %s", unset);
    free(on), free(zero), free(unset);
}
END_TEST

/* ---- the suite ------------------------------------------------------------------------------------- */

/* ---- builds while kernels run ---------------------------------------------------------------------- */

/* One round of builds_beside_running_kernels: a context, a build that fails (as
 * build_failure_reports_the_log's), a new program (a salt in the build options makes it new)
 * whose product is left running, and the context destroyed without waiting -- or, when
 * `check`, the product read and checked. 0 when every call did what it should. */
static int build_round(int salt, const float *w, const float *x, int64_t m, int64_t k, bool check)
{
    kqcl_context *ctx = NULL;
    if (kqcl_context_create(NULL, &ctx) != KQCL_OK)
        return 2;
    kqcl_tensor *wt = NULL, *xt = NULL, *yt = NULL;
    char opts[64];
    snprintf(opts, sizeof opts, "-DKQCL_TEST_SALT=%d -DKQCL_TEST_BROKEN_BUILD", salt);
    setenv("KQCL_EXTRA_BUILD_OPTIONS", opts, 1);
    int bad = kqcl_tensor_create(ctx, KQCL_TYPE_F32, m, k, &wt) != KQCL_OK ||
              kqcl_tensor_create(ctx, KQCL_TYPE_F32, 1, k, &xt) != KQCL_OK ||
              kqcl_tensor_create(ctx, KQCL_TYPE_F32, 1, m, &yt) != KQCL_OK ||
              kqcl_tensor_write(wt, w, (size_t)(m * k) * 4) != KQCL_OK ||
              kqcl_tensor_write(xt, x, (size_t)k * 4) != KQCL_OK || kqcl_matmul(ctx, wt, xt, yt) != KQCL_ERR_BUILD;
    snprintf(opts, sizeof opts, "-DKQCL_TEST_SALT=%d", salt);
    setenv("KQCL_EXTRA_BUILD_OPTIONS", opts, 1);
    bad = bad || kqcl_matmul(ctx, wt, xt, yt) != KQCL_OK;
    unsetenv("KQCL_EXTRA_BUILD_OPTIONS");
    float *y = malloc((size_t)m * sizeof(float));
    if (check && !bad)
        bad = y == NULL || kqcl_tensor_read(yt, y, (size_t)m * 4) != KQCL_OK;
    for (int64_t i = 0; check && !bad && i < m; i++) {
        double want = 0, mag = 0;
        for (int64_t j = 0; j < k; j++)
            want += (double)w[i * k + j] * x[j], mag += fabs((double)w[i * k + j] * x[j]);
        bad = fabs(y[i] - want) > 1e-5 * mag + 1e-6;
    }
    free(y);
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt);
    kqcl_context_destroy(ctx); /* the product may still be running */
    return bad;
}

static int build_while_computing(int rounds, int salt_base)
{
    const int64_t m = 1024, k = 4096;
    float *w = tu_random_floats((size_t)(m * k)), *x = tu_random_floats((size_t)k);
    int bad = 0;
    for (int r = 0; r < rounds && !bad; r++)
        bad = build_round(salt_base + r, w, x, m, k, r == rounds - 1);
    free(w), free(x);
    return bad;
}

/* Builds while earlier launches run, and contexts destroyed with work still queued, in two
 * processes side by side: every call does what it should and the last product of each process
 * is right. (PoCL 3.1 aborted in this situation, "pocl_release_dlhandle_cache: Assertion
 * `found->ref_count > 0'", until kqcl drained a PoCL queue before a build and before teardown;
 * this test did not catch that in 12 runs, tests/run-build-race.sh did -- it is the
 * reproduction. This one holds the lifecycle.) No OpenCL is touched before the fork. */
START_TEST(builds_beside_running_kernels)
{
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0)
        _exit(build_while_computing(12, 1000));
    int mine = build_while_computing(12, 2000), status = 0;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status), "the other process died of signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    ck_assert_msg(WEXITSTATUS(status) == 0, "the other process: wrong results or a failed call (%d)", WEXITSTATUS(status));
    ck_assert_msg(mine == 0, "this process: wrong results or a failed call (%d)", mine);
}
END_TEST

static Suite *device_suite(void)
{
    Suite *s = suite_create("device");
    TCase *race = tcase_create("build race"); /* no fixture: it forks before any OpenCL */
    tcase_set_timeout(race, 900);
    tcase_add_test(race, builds_beside_running_kernels);
    suite_add_tcase(s, race);
    TCase *tc = tu_context_case("matmul ggml reference");
    tcase_add_loop_test(tc, matvec_matches_ggml_reference, 0, N_REF_TYPES);
    tcase_add_loop_test(tc, tiled_matches_ggml_reference, 0, N_REF_TYPES);
    tcase_add_loop_test(tc, default_kernel_matches_ggml_reference, 0, N_REF_TYPES);
    suite_add_tcase(s, tc);

    tc = tu_context_case("matmul random shapes");
    tcase_add_loop_test(tc, matmul_random_odd_shapes, 0, (int)(sizeof weight_types / sizeof weight_types[0]));
    tcase_add_loop_test(tc, matmul_block32_every_n, 0, (int)(sizeof block32_types / sizeof block32_types[0]));
    tcase_add_loop_test(tc, matmul_prefill_long_k, 0, (int)(sizeof kquants / sizeof kquants[0]));
    tcase_add_loop_test(tc, matmul_unfused_agrees, 0, N_REF_TYPES);
    suite_add_tcase(s, tc);

    tc = tu_context_case("convert");
    tcase_add_test(tc, convert_f32_to_half_and_bf16_bit_exact);
    tcase_add_test(tc, convert_every_half_and_bf16_to_f32);
    tcase_add_test(tc, convert_between_half_and_bf16);
    tcase_add_loop_test(tc, dequantize_on_device_bit_exact, 0, N_REF_TYPES);
    tcase_add_test(tc, convert_same_type_copies_and_rejects_quant_targets);
    suite_add_tcase(s, tc);

    tc = tu_context_case("reduce");
    tcase_add_test(tc, reduce_random_rows_every_length);
    tcase_add_test(tc, reduce_is_compensated);
    tcase_add_test(tc, reduce_max_min_propagate_nan);
    suite_add_tcase(s, tc);

    tc = tu_context_case("api");
    tcase_add_test(tc, api_rejects_bad_input_and_stays_usable);
    tcase_add_test(tc, device_timing_on_and_off);
    tcase_add_test(tc, events_past_64_are_kept);
    tcase_add_test(tc, device_spec_grammar);
    tcase_add_test(tc, build_failure_reports_the_log);
    tcase_add_test(tc, binary_cache_is_used_and_corrupt_entries_rebuilt);
    suite_add_tcase(s, tc);

    tc = tu_context_case("variants");
    tcase_add_test(tc, tunables_are_checked);
    tcase_add_test(tc, sets_beyond_private_memory_are_refused);
    tcase_add_test(tc, tuples_are_digits_and_commas_only);
    tcase_add_test(tc, parameters_through_the_api);
    tcase_add_test(tc, reported_parameters_are_the_ones_that_run);
    tcase_add_test(tc, documents_list_the_parameter_table);
    tcase_add_test(tc, local_memory_limits_choose_variants_that_fit);
    tcase_add_test(tc, variants_that_do_not_build_fall_back);
    tcase_add_test(tc, build_warnings_reach_the_build_log);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(device_suite());
}
