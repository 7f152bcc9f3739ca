/*
 * test_layer.c -- a transformer layer's other operations (kqcl_binary, kqcl_scale, kqcl_unary,
 * kqcl_glu, kqcl_matmul_glu, kqcl_rms_norm, kqcl_add_rms_norm, the norm before the products
 * (kqcl_norm_matmul_group, kqcl_norm_matmul_glu), kqcl_set_rows, kqcl_softmax, kqcl_rope, kqcl_attention,
 * kqcl_rope_jobs_attention) against float64 host references (or the calls they fuse): random and
 * fixed inputs, odd shapes,
 * every broadcast the header allows, outputs poisoned with NaN first, in place, on views of one
 * buffer, tensors larger than one pass of the grid, and every bad argument.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* uniform in [-scale, scale) */
static float *random_values(size_t n, float scale)
{
    float *v = tu_random_floats(n);
    for (size_t i = 0; i < n; i++)
        v[i] *= scale;
    return v;
}

static kqcl_tensor *f32_tensor(int64_t rows, int64_t cols, const float *host)
{
    return tu_tensor(KQCL_TYPE_F32, rows, cols, host);
}

/* got within rel * |ref| + abs of ref, element by element (NaN never is). */
static void assert_near(const float *got, const double *ref, size_t n, double rel, double abs_tol, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)got[i] - ref[i]) <= rel * fabs(ref[i]) + abs_tol,
                      "%s: element %zu: got %.9g, want %.9g", what, i, (double)got[i], ref[i]);
}

/* got's bytes are want's, every one. */
static void assert_same_bytes(kqcl_tensor *got, kqcl_tensor *want, const char *what)
{
    size_t bytes = kqcl_tensor_bytes(want);
    unsigned char *g = tu_malloc(bytes), *w = tu_malloc(bytes);
    TU_OK(kqcl_tensor_read(got, g, bytes));
    TU_OK(kqcl_tensor_read(want, w, bytes));
    for (size_t i = 0; i < bytes; i++)
        ck_assert_msg(g[i] == w[i], "%s: byte %zu: got %u want %u", what, i, g[i], w[i]);
    free(g), free(w);
}

/* ---- binary ------------------------------------------------------------------------------- */

static double binary_ref(kqcl_binary_op op, double a, double b)
{
    switch (op) {
    case KQCL_BINARY_ADD: return a + b;
    case KQCL_BINARY_SUB: return a - b;
    case KQCL_BINARY_MUL: return a * b;
    default: return a / b;
    }
}

/* a (rows x cols) op b (b_rows x b_cols): each element is the one f32 operation, so it equals the
 * double result rounded to f32 (53 >= 2 x 24 + 2 bits: the double rounding is innocuous); a
 * division may be 2.5 ulp off on devices without correctly rounded division (OpenCL 1.2). */
static void check_binary(kqcl_binary_op op, int64_t rows, int64_t cols, int64_t b_rows, int64_t b_cols)
{
    size_t n = (size_t)(rows * cols), nb = (size_t)(b_rows * b_cols);
    float *a = random_values(n, 4.0f), *b = random_values(nb, 4.0f);
    for (size_t i = 0; op == KQCL_BINARY_DIV && i < nb; i++)
        b[i] = b[i] >= 0 ? b[i] + 0.25f : b[i] - 0.25f; /* away from 0 */
    kqcl_tensor *ta = f32_tensor(rows, cols, a), *tb = f32_tensor(b_rows, b_cols, b);
    kqcl_tensor *ty = tu_poisoned_f32(rows, cols);
    TU_OK(kqcl_binary(tu_ctx, op, ta, tb, ty));
    float *got = tu_read_f32(ty);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float want = (float)binary_ref(op, a[r * cols + c], b[(r % b_rows) * b_cols + c % b_cols]);
            float g = got[r * cols + c];
            double ulp = fabs((double)nextafterf(want, INFINITY) - want);
            ck_assert_msg(g == want || (op == KQCL_BINARY_DIV && fabs((double)g - want) <= 3 * ulp),
                          "op %d, %lld x %lld by %lld x %lld: (%lld, %lld) got %.9g want %.9g", (int)op,
                          (long long)rows, (long long)cols, (long long)b_rows, (long long)b_cols, (long long)r,
                          (long long)c, (double)g, (double)want);
        }
    free(got), free(a), free(b);
    kqcl_tensor_destroy(ta), kqcl_tensor_destroy(tb), kqcl_tensor_destroy(ty);
}

START_TEST(binary_operations_with_every_broadcast)
{
    tu_seed(11);
    for (int op = KQCL_BINARY_ADD; op <= KQCL_BINARY_DIV; op++) {
        check_binary((kqcl_binary_op)op, 7, 33, 7, 33);  /* a residual: a's own shape */
        check_binary((kqcl_binary_op)op, 7, 33, 1, 33);  /* a norm's weight, a bias: one row */
        check_binary((kqcl_binary_op)op, 7, 33, 7, 1);   /* one value a row */
        check_binary((kqcl_binary_op)op, 7, 33, 1, 1);   /* one value */
        check_binary((kqcl_binary_op)op, 6, 33, 3, 11);  /* tiles dividing both */
        check_binary((kqcl_binary_op)op, 1, 1, 1, 1);
    }
    check_binary(KQCL_BINARY_ADD, 3, 70001, 1, 70001); /* many passes of the grid */
}
END_TEST

/* Fixed values: signed zeros, infinities and NaN go through as IEEE says. */
START_TEST(binary_fixed_values)
{
    const float a[6] = {1.5f, -0.0f, INFINITY, 3.0f, NAN, 1e30f};
    const float b[6] = {-1.5f, 0.0f, -INFINITY, 0.0f, 1.0f, 1e30f};
    kqcl_tensor *ta = f32_tensor(1, 6, a), *tb = f32_tensor(1, 6, b), *ty = tu_poisoned_f32(1, 6);
    TU_OK(kqcl_binary(tu_ctx, KQCL_BINARY_ADD, ta, tb, ty));
    float *got = tu_read_f32(ty);
    ck_assert(got[0] == 0.0f && !signbit(got[0]));
    ck_assert(got[1] == 0.0f && !signbit(got[1]));
    ck_assert(isnan(got[2]));
    ck_assert(got[3] == 3.0f);
    ck_assert(isnan(got[4]));
    ck_assert(got[5] == 2e30f);
    free(got);
    TU_OK(kqcl_binary(tu_ctx, KQCL_BINARY_MUL, ta, tb, ty));
    got = tu_read_f32(ty);
    ck_assert(got[0] == -2.25f);
    ck_assert(got[1] == 0.0f && signbit(got[1]));
    ck_assert(isinf(got[2]) && got[2] < 0);
    ck_assert(isinf(got[5])); /* 1e60 overflows f32 */
    free(got);
    kqcl_tensor_destroy(ta), kqcl_tensor_destroy(tb), kqcl_tensor_destroy(ty);
}
END_TEST

/* ---- scale, unary, glu -------------------------------------------------------------------- */

START_TEST(scale_rounds_the_multiply_and_the_add_apart)
{
    tu_seed(12);
    const int64_t rows = 5, cols = 1001;
    size_t n = (size_t)(rows * cols);
    float *x = random_values(n, 100.0f);
    kqcl_tensor *tx = f32_tensor(rows, cols, x), *ty = tu_poisoned_f32(rows, cols);
    const float scale = 0.1f, bias = -3.7f;
    TU_OK(kqcl_scale(tu_ctx, tx, scale, bias, ty));
    float *got = tu_read_f32(ty);
    for (size_t i = 0; i < n; i++) {
        volatile float product = x[i] * scale; /* rounded to f32 before the add */
        float want = product + bias;
        ck_assert_msg(got[i] == want, "element %zu: got %.9g want %.9g", i, (double)got[i], (double)want);
    }
    free(got), free(x);
    kqcl_tensor_destroy(tx), kqcl_tensor_destroy(ty);
}
END_TEST

static double silu_ref(double x) { return x / (1.0 + exp(-x)); }
static double gelu_ref(double x) { return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }

/* Activations against float64 within a relative 1e-5 (absolute 1e-6 near zero): OpenCL's exp
 * and tanh are a few ulp, and the formula's operations round in f32. */
START_TEST(activations_against_float64)
{
    tu_seed(13);
    const int64_t rows = 9, cols = 517;
    size_t n = (size_t)(rows * cols);
    float *x = random_values(n, 8.0f), *u = random_values(n, 2.0f);
    x[0] = 0.0f, x[1] = -8.0f, x[2] = 8.0f, x[3] = 1e-7f;
    kqcl_tensor *tx = f32_tensor(rows, cols, x), *tu = f32_tensor(rows, cols, u), *ty = tu_poisoned_f32(rows, cols);
    double *ref = tu_malloc(n * sizeof *ref);
    for (int op = KQCL_UNARY_SILU; op <= KQCL_UNARY_RELU; op++) {
        TU_OK(kqcl_unary(tu_ctx, (kqcl_unary_op)op, tx, ty));
        for (size_t i = 0; i < n; i++)
            ref[i] = op == KQCL_UNARY_SILU ? silu_ref(x[i]) : op == KQCL_UNARY_GELU ? gelu_ref(x[i]) : fmax(x[i], 0.0);
        float *got = tu_read_f32(ty);
        assert_near(got, ref, n, op == KQCL_UNARY_RELU ? 0 : 1e-5, op == KQCL_UNARY_RELU ? 0 : 1e-6, "unary");
        free(got);
    }
    for (int op = KQCL_GLU_SWIGLU; op <= KQCL_GLU_GEGLU; op++) {
        TU_OK(kqcl_glu(tu_ctx, (kqcl_glu_op)op, tx, tu, ty));
        for (size_t i = 0; i < n; i++)
            ref[i] = (op == KQCL_GLU_SWIGLU ? silu_ref(x[i]) : gelu_ref(x[i])) * u[i];
        float *got = tu_read_f32(ty);
        assert_near(got, ref, n, 1e-5, 1e-6, "glu");
        free(got);
    }
    free(ref), free(x), free(u);
    kqcl_tensor_destroy(tx), kqcl_tensor_destroy(tu), kqcl_tensor_destroy(ty);
}
END_TEST

/* ---- kqcl_matmul_glu ------------------------------------------------------------------------- */

/* act(X . gate^T) * (X . up^T) against float64 of the activation over kqcl's own products (the
 * sums are kqcl_matmul's, so only the activation is judged; within 1e-5 of |gate up| + |y|, as
 * GELU's 1 + tanh cancels in f32 for a large negative gate): decode (one launch where it fuses),
 * a prefill (the products then kqcl_glu), in F32, BF16 and Q8, for a k-quant, a small block and
 * f16 weights, a height off every work-group's rows (37), both ops. y poisoned first. */
START_TEST(matmul_glu_against_its_products)
{
    static const kqcl_type types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q4_1, KQCL_TYPE_F16};
    static const kqcl_precision modes[] = {KQCL_PRECISION_F32, KQCL_PRECISION_BF16, KQCL_PRECISION_Q8};
    static const int ns[] = {1, 3, 12};
    const int64_t m = 37, k = 512;
    tu_seed(77);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        void *hg = tu_random_weights(types[ti], m, k), *hu = tu_random_weights(types[ti], m, k);
        kqcl_tensor *wg = tu_tensor(types[ti], m, k, hg), *wu = tu_tensor(types[ti], m, k, hu);
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            int n = ns[ni];
            float *hx = random_values((size_t)n * k, 1.0f);
            kqcl_tensor *x = f32_tensor(n, k, hx), *g = tu_poisoned_f32(n, m), *u = tu_poisoned_f32(n, m);
            double *ref = tu_malloc((size_t)n * m * sizeof *ref), *mag = tu_malloc((size_t)n * m * sizeof *mag);
            for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
                TU_OK(kqcl_context_set_precision(tu_ctx, modes[mi]));
                TU_OK(kqcl_matmul(tu_ctx, wg, x, g));
                TU_OK(kqcl_matmul(tu_ctx, wu, x, u));
                float *gv = tu_read_f32(g), *uv = tu_read_f32(u);
                for (int op = KQCL_GLU_SWIGLU; op <= KQCL_GLU_GEGLU; op++) {
                    kqcl_tensor *y = tu_poisoned_f32(n, m);
                    TU_OK(kqcl_matmul_glu(tu_ctx, (kqcl_glu_op)op, wg, wu, x, y));
                    for (size_t i = 0; i < (size_t)n * m; i++) {
                        ref[i] = (op == KQCL_GLU_SWIGLU ? silu_ref(gv[i]) : gelu_ref(gv[i])) * uv[i];
                        mag[i] = fabs((double)gv[i] * uv[i]) + fabs(ref[i]);
                    }
                    float *got = tu_read_f32(y);
                    char what[96];
                    snprintf(what, sizeof what, "matmul_glu %s %s n %d op %d", kqcl_type_name(types[ti]),
                             kqcl_precision_name(modes[mi]), n, op);
                    tu_assert_close(got, ref, mag, (size_t)n * m, what);
                    free(got);
                    kqcl_tensor_destroy(y);
                }
                free(gv), free(uv);
            }
            TU_OK(kqcl_context_set_precision(tu_ctx, KQCL_PRECISION_AUTO));
            free(hx), free(ref), free(mag);
            kqcl_tensor_destroy(x), kqcl_tensor_destroy(g), kqcl_tensor_destroy(u);
        }
        free(hg), free(hu);
        kqcl_tensor_destroy(wg), kqcl_tensor_destroy(wu);
    }
}
END_TEST

START_TEST(matmul_glu_refuses_bad_arguments)
{
    const int64_t k = 256;
    void *h = tu_random_weights(KQCL_TYPE_Q4_K, 8, k);
    float *hx = random_values((size_t)k, 1.0f);
    kqcl_tensor *w = tu_tensor(KQCL_TYPE_Q4_K, 8, k, h), *w16 = tu_tensor(KQCL_TYPE_Q4_K, 16, k, NULL);
    kqcl_tensor *x = f32_tensor(1, k, hx), *y = tu_poisoned_f32(1, 8);
    ck_assert_int_eq(kqcl_matmul_glu(NULL, KQCL_GLU_SWIGLU, w, w, x, y), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_matmul_glu(tu_ctx, (kqcl_glu_op)7, w, w, x, y), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_matmul_glu(tu_ctx, KQCL_GLU_SWIGLU, w, w16, x, y), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(tu_ctx), "kqcl_matmul_glu"));
    ck_assert_int_eq(kqcl_matmul_glu(tu_ctx, KQCL_GLU_SWIGLU, NULL, w, x, y), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_matmul_glu(tu_ctx, KQCL_GLU_SWIGLU, w, w, x, x), KQCL_ERR_INVALID_ARG);
    TU_OK(kqcl_matmul_glu(tu_ctx, KQCL_GLU_GEGLU, w, w, x, y)); /* and the context still works */
    free(h), free(hx);
    kqcl_tensor_destroy(w), kqcl_tensor_destroy(w16), kqcl_tensor_destroy(x), kqcl_tensor_destroy(y);
}
END_TEST

/* ---- the norm before the products ------------------------------------------------------------ */

/* The case of a norm before products: x, r (NULL: none) and the norm's weight on the host. */
typedef struct norm_case {
    int n;
    int64_t k;
    const float *x, *r, *w;
} norm_case;

/* X' of the case in float64 (over the f32 sum x + r, as the device adds), into xn. */
static void norm_ref(const norm_case *c, double *xn)
{
    for (int j = 0; j < c->n; j++) {
        const float *xr = c->x + (size_t)j * c->k;
        double sq = 0;
        for (int64_t i = 0; i < c->k; i++) {
            float v = c->r ? xr[i] + c->r[(size_t)j * c->k + i] : xr[i];
            xn[(size_t)j * c->k + i] = v;
            sq += (double)v * v;
        }
        double scale = 1.0 / sqrt(sq / (double)c->k + 1e-5);
        for (int64_t i = 0; i < c->k; i++)
            xn[(size_t)j * c->k + i] *= scale * c->w[i];
    }
}

/* kqcl_norm_matmul_group of three weights, Q and K of `type` and V of `v_type` (a Q4_K_M
 * model's V may be q6_K: then two launches, the second normalising the sum again), heights 37,
 * 21, 21 (off every work-group's rows), with `alias` 0: no residual, 1: a residual into its own
 * sum, 2: the residual into x (in place); each output against float64 of the norm and the
 * products (F32). Called twice in a row, each time with a fresh sum: the work-groups' counter
 * must be back at zero for the second. */
static void check_norm_group(kqcl_type type, kqcl_type v_type, int n, int64_t k, int alias)
{
    static const int64_t heights[3] = {37, 21, 21};
    const kqcl_type types[3] = {type, type, v_type};
    float *hx = random_values((size_t)n * k, 3.0f), *hr = random_values((size_t)n * k, 2.0f);
    float *hw = random_values((size_t)k, 1.5f);
    norm_case c = {n, k, hx, alias ? hr : NULL, hw};
    void *hwt[3];
    kqcl_tensor *w[3], *y[3];
    for (int i = 0; i < 3; i++) {
        hwt[i] = tu_random_weights(types[i], heights[i], k);
        w[i] = tu_tensor(types[i], heights[i], k, hwt[i]);
    }
    kqcl_tensor *nw = f32_tensor(1, k, hw), *r = f32_tensor(n, k, hr);
    double *xn = tu_malloc((size_t)n * k * sizeof *xn), *ref = tu_malloc((size_t)n * 37 * sizeof *ref);
    double *mag = tu_malloc((size_t)n * 37 * sizeof *mag);
    norm_ref(&c, xn);
    char what[128];
    for (int call = 0; call < 2; call++) {
        kqcl_tensor *x = f32_tensor(n, k, hx);
        kqcl_tensor *own_sum = alias == 1 ? tu_poisoned_f32(n, k) : NULL;
        kqcl_norm_prologue norm = {.r = alias ? r : NULL, .sum = alias == 2 ? x : own_sum, .w = nw, .eps = 1e-5f};
        for (int i = 0; i < 3; i++)
            y[i] = tu_poisoned_f32(n, heights[i]);
        TU_OK(kqcl_norm_matmul_group(tu_ctx, &norm, 3, (const kqcl_tensor *const *)w, x, y));
        for (int i = 0; i < 3; i++) {
            tu_host_matmul_xd(types[i], hwt[i], xn, heights[i], k, n, ref, mag);
            float *got = tu_read_f32(y[i]);
            snprintf(what, sizeof what, "norm_matmul_group %s (V %s) n %d k %lld alias %d call %d, output %d",
                     kqcl_type_name(type), kqcl_type_name(v_type), n, (long long)k, alias, call, i);
            tu_assert_close(got, ref, mag, (size_t)n * heights[i], what);
            free(got);
            kqcl_tensor_destroy(y[i]);
        }
        if (alias) {
            float *got = tu_read_f32(norm.sum);
            for (size_t e = 0; e < (size_t)n * k; e++)
                ck_assert_msg(got[e] == hx[e] + hr[e], "%s: sum %zu: got %.9g want %.9g", what, e, (double)got[e],
                              (double)(hx[e] + hr[e]));
            free(got);
        }
        kqcl_tensor_destroy(x), kqcl_tensor_destroy(own_sum);
    }
    free(xn), free(ref), free(mag), free(hx), free(hr), free(hw);
    for (int i = 0; i < 3; i++)
        free(hwt[i]), kqcl_tensor_destroy(w[i]);
    kqcl_tensor_destroy(nw), kqcl_tensor_destroy(r);
}

/* In a mode without the one-launch form (Q8, or a prefill's n) the call is kqcl_add_rms_norm
 * into scratch, then kqcl_matmul_group or kqcl_matmul_glu: the same bits as those calls. */
static void check_norm_as_two_calls(kqcl_type type, int n, int64_t k, int glu)
{
    float *hx = random_values((size_t)n * k, 3.0f), *hr = random_values((size_t)n * k, 2.0f);
    float *hw = random_values((size_t)k, 1.5f);
    void *hg = tu_random_weights(type, 21, k), *hu = tu_random_weights(type, 21, k);
    kqcl_tensor *x = f32_tensor(n, k, hx), *r = f32_tensor(n, k, hr), *nw = f32_tensor(1, k, hw);
    kqcl_tensor *wg = tu_tensor(type, 21, k, hg), *wu = tu_tensor(type, 21, k, hu);
    kqcl_tensor *sum = tu_poisoned_f32(n, k), *xn = tu_poisoned_f32(n, k), *sum2 = tu_poisoned_f32(n, k);
    kqcl_tensor *y = tu_poisoned_f32(n, 21), *want = tu_poisoned_f32(n, 21), *want_up = tu_poisoned_f32(n, 21);
    kqcl_norm_prologue norm = {.r = r, .sum = sum, .w = nw, .eps = 1e-5f};
    const kqcl_tensor *ws[2] = {wg, wu};
    kqcl_tensor *wants[2] = {want, want_up};
    TU_OK(kqcl_add_rms_norm(tu_ctx, x, r, nw, 1e-5f, sum2, xn));
    if (glu) {
        TU_OK(kqcl_norm_matmul_glu(tu_ctx, &norm, KQCL_GLU_GEGLU, wg, wu, x, y));
        TU_OK(kqcl_matmul_glu(tu_ctx, KQCL_GLU_GEGLU, wg, wu, xn, want));
    } else {
        TU_OK(kqcl_norm_matmul_group(tu_ctx, &norm, 1, ws, x, &y));
        TU_OK(kqcl_matmul_group(tu_ctx, 2, ws, xn, wants));
    }
    char what[96];
    snprintf(what, sizeof what, "norm before %s of %s, n %d k %lld, as two calls", glu ? "GeGLU" : "a product",
             kqcl_type_name(type), n, (long long)k);
    assert_same_bytes(y, want, what);
    assert_same_bytes(sum, sum2, what);
    free(hx), free(hr), free(hw), free(hg), free(hu);
    kqcl_tensor_destroy(x), kqcl_tensor_destroy(r), kqcl_tensor_destroy(nw), kqcl_tensor_destroy(wg);
    kqcl_tensor_destroy(wu), kqcl_tensor_destroy(sum), kqcl_tensor_destroy(xn), kqcl_tensor_destroy(sum2);
    kqcl_tensor_destroy(y), kqcl_tensor_destroy(want), kqcl_tensor_destroy(want_up);
}

START_TEST(norm_matmul_group_against_float64)
{
    static const kqcl_type types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q4_1, KQCL_TYPE_F16};
    tu_seed(16);
    TU_OK(kqcl_context_set_precision(tu_ctx, KQCL_PRECISION_F32));
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (int alias = 0; alias <= 2; alias++) {
            check_norm_group(types[t], types[t], 1, 512, alias);
            check_norm_group(types[t], types[t], 3, 512, alias);
        }
    for (int alias = 0; alias <= 2; alias++) /* Q and K q4_K, V q6_K: a launch each run */
        check_norm_group(KQCL_TYPE_Q4_K, KQCL_TYPE_Q6_K, 2, 512, alias);
    check_norm_group(KQCL_TYPE_F16, KQCL_TYPE_F16, 2, 100, 2);    /* rows not a multiple of 32: two launches */
    check_norm_group(KQCL_TYPE_Q4_1, KQCL_TYPE_Q4_1, 12, 576, 1); /* a prefill's n: two launches */
    TU_OK(kqcl_context_set_precision(tu_ctx, KQCL_PRECISION_Q8));
    check_norm_as_two_calls(KQCL_TYPE_Q4_K, 2, 512, 0);
    check_norm_as_two_calls(KQCL_TYPE_Q4_1, 1, 576, 1);
    TU_OK(kqcl_context_set_precision(tu_ctx, KQCL_PRECISION_AUTO));
}
END_TEST

/* kqcl_norm_matmul_glu against float64 of act(X' . gate^T) * (X' . up^T), the products in
 * double over X' in double: SwiGLU and GeGLU, with and without a residual, decode and a
 * prefill, twice in a row. The scale of the error: each product's own (sum |w x|) carried
 * through the activation (whose slope stays under 1.2) and the multiply, plus |gate up| + |y|
 * as for kqcl_matmul_glu. */
START_TEST(norm_matmul_glu_against_float64)
{
    static const kqcl_type types[] = {KQCL_TYPE_Q4_1, KQCL_TYPE_Q6_K, KQCL_TYPE_F16};
    static const int ns[] = {1, 4, 9};
    const int64_t m = 29, k = 512;
    tu_seed(17);
    TU_OK(kqcl_context_set_precision(tu_ctx, KQCL_PRECISION_F32));
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (int op = KQCL_GLU_SWIGLU; op <= KQCL_GLU_GEGLU; op++) {
                int n = ns[ni];
                bool residual = op == KQCL_GLU_SWIGLU;
                float *hx = random_values((size_t)n * k, 3.0f), *hr = random_values((size_t)n * k, 2.0f);
                float *hw = random_values((size_t)k, 1.5f);
                void *hg = tu_random_weights(types[t], m, k), *hu = tu_random_weights(types[t], m, k);
                norm_case c = {n, k, hx, residual ? hr : NULL, hw};
                double *xn = tu_malloc((size_t)n * k * sizeof *xn), *g = tu_malloc((size_t)n * m * sizeof *g);
                double *u = tu_malloc((size_t)n * m * sizeof *u), *mag = tu_malloc((size_t)n * m * sizeof *mag);
                double *mag_u = tu_malloc((size_t)n * m * sizeof *mag_u);
                norm_ref(&c, xn);
                tu_host_matmul_xd(types[t], hg, xn, m, k, n, g, mag);
                tu_host_matmul_xd(types[t], hu, xn, m, k, n, u, mag_u);
                for (size_t i = 0; i < (size_t)n * m; i++) {
                    double act = op == KQCL_GLU_SWIGLU ? silu_ref(g[i]) : gelu_ref(g[i]);
                    mag[i] = 1.2 * mag[i] * fabs(u[i]) + fabs(act) * mag_u[i] + fabs(g[i] * u[i]) + fabs(act * u[i]);
                    g[i] = act * u[i];
                }
                kqcl_tensor *wg = tu_tensor(types[t], m, k, hg), *wu = tu_tensor(types[t], m, k, hu);
                kqcl_tensor *r = f32_tensor(n, k, hr), *nw = f32_tensor(1, k, hw);
                for (int call = 0; call < 2; call++) {
                    kqcl_tensor *x = f32_tensor(n, k, hx), *y = tu_poisoned_f32(n, m);
                    kqcl_tensor *sum = residual ? tu_poisoned_f32(n, k) : NULL;
                    kqcl_norm_prologue norm = {.r = residual ? r : NULL, .sum = sum, .w = nw, .eps = 1e-5f};
                    TU_OK(kqcl_norm_matmul_glu(tu_ctx, &norm, (kqcl_glu_op)op, wg, wu, x, y));
                    float *got = tu_read_f32(y);
                    char what[96];
                    snprintf(what, sizeof what, "norm_matmul_glu %s n %d op %d call %d", kqcl_type_name(types[t]), n,
                             op, call);
                    tu_assert_close(got, g, mag, (size_t)n * m, what);
                    free(got);
                    if (residual) {
                        got = tu_read_f32(sum);
                        for (size_t e = 0; e < (size_t)n * k; e++)
                            ck_assert_msg(got[e] == hx[e] + hr[e], "%s: sum %zu", what, e);
                        free(got);
                    }
                    kqcl_tensor_destroy(x), kqcl_tensor_destroy(y), kqcl_tensor_destroy(sum);
                }
                free(hx), free(hr), free(hw), free(hg), free(hu), free(xn), free(g), free(u), free(mag), free(mag_u);
                kqcl_tensor_destroy(wg), kqcl_tensor_destroy(wu), kqcl_tensor_destroy(r), kqcl_tensor_destroy(nw);
            }
    TU_OK(kqcl_context_set_precision(tu_ctx, KQCL_PRECISION_AUTO));
}
END_TEST

START_TEST(norm_matmul_refuses_bad_arguments)
{
    const int64_t k = 256;
    void *h = tu_random_weights(KQCL_TYPE_Q4_K, 8, k);
    float *hx = random_values((size_t)k, 1.0f);
    kqcl_tensor *w = tu_tensor(KQCL_TYPE_Q4_K, 8, k, h), *x = f32_tensor(1, k, hx), *r = f32_tensor(1, k, hx);
    kqcl_tensor *nw = f32_tensor(1, k, hx), *short_w = f32_tensor(1, 8, hx), *wide = tu_poisoned_f32(2, k);
    kqcl_tensor *y = tu_poisoned_f32(1, 8), *sum = tu_poisoned_f32(1, k);
    const kqcl_tensor *ws[1] = {w};
    kqcl_norm_prologue norm = {.r = r, .sum = sum, .w = nw, .eps = 1e-5f};
    ck_assert_int_eq(kqcl_norm_matmul_group(NULL, &norm, 1, ws, x, &y), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_norm_matmul_group(tu_ctx, NULL, 1, ws, x, &y), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(tu_ctx), "kqcl_norm_matmul_group"));
    ck_assert_int_eq(kqcl_norm_matmul_group(tu_ctx, &norm, 0, ws, x, &y), KQCL_ERR_INVALID_ARG);
    norm.sum = NULL; /* r without sum */
    ck_assert_int_eq(kqcl_norm_matmul_group(tu_ctx, &norm, 1, ws, x, &y), KQCL_ERR_INVALID_ARG);
    norm.sum = wide; /* sum not x's shape */
    ck_assert_int_eq(kqcl_norm_matmul_group(tu_ctx, &norm, 1, ws, x, &y), KQCL_ERR_INVALID_ARG);
    norm.sum = sum, norm.w = short_w;
    ck_assert_int_eq(kqcl_norm_matmul_group(tu_ctx, &norm, 1, ws, x, &y), KQCL_ERR_INVALID_ARG);
    norm.w = nw, norm.eps = NAN;
    ck_assert_int_eq(kqcl_norm_matmul_group(tu_ctx, &norm, 1, ws, x, &y), KQCL_ERR_INVALID_ARG);
    norm.eps = 1e-5f;
    ck_assert_int_eq(kqcl_norm_matmul_glu(tu_ctx, &norm, KQCL_GLU_SWIGLU, w, w, x, sum), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_norm_matmul_glu(tu_ctx, &norm, (kqcl_glu_op)5, w, w, x, y), KQCL_ERR_INVALID_ARG);
    norm.sum = y; /* an output is the norm's sum (and not x's shape) */
    ck_assert_int_eq(kqcl_norm_matmul_group(tu_ctx, &norm, 1, ws, x, &y), KQCL_ERR_INVALID_ARG);
    norm.sum = sum;
    TU_OK(kqcl_norm_matmul_group(tu_ctx, &norm, 1, ws, x, &y)); /* and the context still works */
    TU_OK(kqcl_norm_matmul_glu(tu_ctx, &norm, KQCL_GLU_SWIGLU, w, w, x, y));
    free(h), free(hx);
    kqcl_tensor_destroy(w), kqcl_tensor_destroy(x), kqcl_tensor_destroy(r), kqcl_tensor_destroy(nw);
    kqcl_tensor_destroy(short_w), kqcl_tensor_destroy(wide), kqcl_tensor_destroy(y), kqcl_tensor_destroy(sum);
}
END_TEST

/* ---- rms_norm ----------------------------------------------------------------------------- */

/* ggml's RMS norm in float64, times w where given. */
static void rms_norm_ref(const float *x, const float *w, int64_t rows, int64_t cols, float eps, double *out)
{
    for (int64_t r = 0; r < rows; r++) {
        double sum = 0;
        for (int64_t c = 0; c < cols; c++)
            sum += (double)x[r * cols + c] * x[r * cols + c];
        double scale = 1.0 / sqrt(sum / (double)cols + eps);
        for (int64_t c = 0; c < cols; c++)
            out[r * cols + c] = x[r * cols + c] * scale * (w ? w[c] : 1.0);
    }
}

static void check_rms_norm(int64_t rows, int64_t cols, bool weighted, float eps, bool in_place)
{
    size_t n = (size_t)(rows * cols);
    float *x = random_values(n, 3.0f), *w = random_values((size_t)cols, 2.0f);
    for (int64_t r = 1; r < rows; r += 2) /* rows of very different sizes */
        for (int64_t c = 0; c < cols; c++)
            x[r * cols + c] *= 1e-3f * (float)(r + 1);
    kqcl_tensor *tx = f32_tensor(rows, cols, x), *tw = weighted ? f32_tensor(1, cols, w) : NULL;
    kqcl_tensor *ty = in_place ? tx : tu_poisoned_f32(rows, cols);
    TU_OK(kqcl_rms_norm(tu_ctx, tx, tw, eps, ty));
    double *ref = tu_malloc(n * sizeof *ref);
    rms_norm_ref(x, weighted ? w : NULL, rows, cols, eps, ref);
    float *got = tu_read_f32(ty);
    char what[96];
    snprintf(what, sizeof what, "rms_norm %lld x %lld%s%s", (long long)rows, (long long)cols,
             weighted ? ", weighted" : "", in_place ? ", in place" : "");
    assert_near(got, ref, n, 1e-5, 1e-7, what);
    free(got), free(ref), free(x), free(w);
    if (!in_place)
        kqcl_tensor_destroy(ty);
    kqcl_tensor_destroy(tx), kqcl_tensor_destroy(tw);
}

START_TEST(rms_norm_against_float64)
{
    tu_seed(14);
    check_rms_norm(1, 1, false, 1e-6f, false);
    check_rms_norm(3, 7, true, 1e-5f, false);
    check_rms_norm(5, 576, true, 1e-5f, false);  /* SmolLM2's rows */
    check_rms_norm(4, 640, false, 1e-6f, true);  /* Gemma-3's, in place */
    check_rms_norm(2, 4097, true, 0.0f, false);  /* longer than a work-group's stride, eps 0 */
    check_rms_norm(300, 33, true, 1e-5f, true);
}
END_TEST

/* The residual add and the norm in one call: sum exactly the f32 sum (one rounding, as the host's
 * float add), y the norm of it; `alias` 0: four tensors, 1: sum is x (the residual stream
 * updated in place), 2: y is sum, 3: y is r. */
static void check_add_rms_norm(int64_t rows, int64_t cols, bool weighted, int alias)
{
    size_t n = (size_t)(rows * cols);
    float *x = random_values(n, 3.0f), *r = random_values(n, 5.0f), *w = random_values((size_t)cols, 2.0f);
    kqcl_tensor *tx = f32_tensor(rows, cols, x), *tr = f32_tensor(rows, cols, r);
    kqcl_tensor *tw = weighted ? f32_tensor(1, cols, w) : NULL;
    kqcl_tensor *own_sum = alias == 1 ? NULL : tu_poisoned_f32(rows, cols);
    kqcl_tensor *tsum = alias == 1 ? tx : own_sum;
    kqcl_tensor *own_y = alias >= 2 ? NULL : tu_poisoned_f32(rows, cols);
    kqcl_tensor *ty = alias == 2 ? tsum : alias == 3 ? tr : own_y;
    TU_OK(kqcl_add_rms_norm(tu_ctx, tx, tr, tw, 1e-5f, tsum, ty));
    float *sum = tu_malloc(n * sizeof *sum);
    double *ref = tu_malloc(n * sizeof *ref);
    for (int64_t i = 0; i < rows; i++) {
        double sq = 0;
        for (int64_t c = 0; c < cols; c++) {
            sum[i * cols + c] = x[i * cols + c] + r[i * cols + c];
            sq += (double)sum[i * cols + c] * sum[i * cols + c];
        }
        double scale = 1.0 / sqrt(sq / (double)cols + 1e-5);
        for (int64_t c = 0; c < cols; c++)
            ref[i * cols + c] = sum[i * cols + c] * scale * (weighted ? w[c] : 1.0);
    }
    char what[96];
    snprintf(what, sizeof what, "add_rms_norm %lld x %lld%s, alias %d", (long long)rows, (long long)cols,
             weighted ? ", weighted" : "", alias);
    if (alias != 2) {
        float *got_sum = tu_read_f32(tsum);
        for (size_t e = 0; e < n; e++)
            ck_assert_msg(got_sum[e] == sum[e], "%s: sum %zu: got %.9g want %.9g", what, e, (double)got_sum[e],
                          (double)sum[e]);
        free(got_sum);
    }
    float *got = tu_read_f32(ty);
    assert_near(got, ref, n, 1e-5, 1e-7, what);
    free(got), free(ref), free(sum), free(x), free(r), free(w);
    kqcl_tensor_destroy(tx), kqcl_tensor_destroy(tr), kqcl_tensor_destroy(tw);
    kqcl_tensor_destroy(own_sum), kqcl_tensor_destroy(own_y);
}

START_TEST(add_rms_norm_against_float64)
{
    tu_seed(15);
    check_add_rms_norm(1, 576, true, 0);  /* a decode step of SmolLM2 */
    check_add_rms_norm(7, 640, true, 1);  /* Gemma-3's rows, the stream in place */
    check_add_rms_norm(3, 4097, false, 2);
    check_add_rms_norm(300, 33, true, 3);
}
END_TEST

/* ---- set_rows ------------------------------------------------------------------------------ */

/* src's rows scattered into a cache of `cache_rows` rows of `type`, by indices read from device
 * memory (int32 or int64, after `skip` unused values); two indices out of range. Every written
 * row must be the host codec's conversion bit for bit, every other row untouched. */
static void check_set_rows(kqcl_type type, int index_bytes, int64_t cols)
{
    const int64_t rows = 6, cache_rows = 11, skip = 3;
    const int64_t where[6] = {7, -1, 0, 10, 11, 4}; /* -1 and 11: outside the cache, not written */
    float *x = random_values((size_t)(rows * cols), 8.0f);
    for (int64_t c = 0; c < cols; c++) /* a row of zeros: q8_0's d = 0 */
        x[2 * cols + c] = 0.0f;
    size_t row_bytes = kqcl_row_size(type, cols), cache_bytes = (size_t)cache_rows * row_bytes;
    unsigned char *before = tu_malloc(cache_bytes), *got = tu_malloc(cache_bytes), *want = tu_malloc(cache_bytes);
    for (size_t i = 0; i < cache_bytes; i++)
        before[i] = (unsigned char)(0x5A ^ (i * 7)); /* no value a conversion gives everywhere */
    memcpy(want, before, cache_bytes);
    unsigned char *row = tu_malloc(row_bytes);
    for (int64_t r = 0; r < rows; r++)
        if (where[r] >= 0 && where[r] < cache_rows) {
            TU_OK_CTX(NULL, kqcl_quantize(type, x + r * cols, row, 1, cols));
            memcpy(want + (size_t)where[r] * row_bytes, row, row_bytes);
        }
    unsigned char idx[(3 + 6) * 8];
    for (int64_t i = 0; i < skip + rows; i++) {
        int64_t v = i < skip ? 999 : where[i - skip];
        int32_t v32 = (int32_t)v;
        if (index_bytes == 8)
            memcpy(idx + i * 8, &v, 8);
        else
            memcpy(idx + i * 4, &v32, 4);
    }
    kqcl_buffer *ib = NULL;
    TU_OK(kqcl_buffer_create(tu_ctx, 0, sizeof idx, &ib));
    TU_OK(kqcl_buffer_write(ib, 0, idx, (size_t)((skip + rows) * index_bytes)));
    kqcl_tensor *src = f32_tensor(rows, cols, x), *cache = tu_tensor(type, cache_rows, cols, before);
    TU_OK(kqcl_set_rows(tu_ctx, src, ib, (size_t)(skip * index_bytes), index_bytes, cache));
    TU_OK(kqcl_tensor_read(cache, got, cache_bytes));
    for (size_t i = 0; i < cache_bytes; i++)
        ck_assert_msg(got[i] == want[i], "set_rows into %s (int%d indices, %lld columns): byte %zu (row %zu): got %u want %u",
                      kqcl_type_name(type), index_bytes * 8, (long long)cols, i, i / row_bytes, got[i],
                      want[i]);
    free(x), free(before), free(got), free(want), free(row);
    kqcl_tensor_destroy(src), kqcl_tensor_destroy(cache);
    kqcl_buffer_destroy(ib);
}

START_TEST(set_rows_scatters_exactly)
{
    tu_seed(16);
    check_set_rows(KQCL_TYPE_F16, 4, 192); /* SmolLM2's K and V rows, int32 positions */
    check_set_rows(KQCL_TYPE_BF16, 8, 37);
    check_set_rows(KQCL_TYPE_F32, 8, 256);
    check_set_rows(KQCL_TYPE_Q8_0, 4, 192); /* a q8_0 cache (-ctk q8_0): kqcl_quantize's bytes */
    check_set_rows(KQCL_TYPE_Q8_0, 8, 32);
}
END_TEST

/* ---- softmax ------------------------------------------------------------------------------- */

static void check_softmax(int64_t rows, int64_t cols, int64_t mask_rows, float scale, bool in_place)
{
    size_t n = (size_t)(rows * cols);
    float *x = random_values(n, 6.0f), *m = mask_rows ? random_values((size_t)(mask_rows * cols), 2.0f) : NULL;
    for (int64_t i = 0; m && i < mask_rows * cols; i += 3)
        m[i] = -INFINITY; /* masked out */
    if (m)
        m[1] = 0.0f; /* every mask row keeps a position: its rows are not all -inf */
    for (int64_t r = 1; m && r < mask_rows; r++)
        m[r * cols + 1] = 0.0f;
    kqcl_tensor *tx = f32_tensor(rows, cols, x), *tm = m ? f32_tensor(mask_rows, cols, m) : NULL;
    kqcl_tensor *ty = in_place ? tx : tu_poisoned_f32(rows, cols);
    TU_OK(kqcl_softmax(tu_ctx, tx, tm, scale, ty));
    double *ref = tu_malloc(n * sizeof *ref);
    for (int64_t r = 0; r < rows; r++) {
        double max = -INFINITY, sum = 0;
        double *v = ref + r * cols;
        for (int64_t c = 0; c < cols; c++) {
            float scaled = x[r * cols + c] * scale; /* the device's f32 multiply, then add */
            v[c] = (float)(scaled + (m ? m[(r % mask_rows) * cols + c] : 0.0f));
            max = fmax(max, v[c]);
        }
        for (int64_t c = 0; c < cols; c++)
            sum += (v[c] = exp(v[c] - max));
        for (int64_t c = 0; c < cols; c++)
            v[c] /= sum;
    }
    float *got = tu_read_f32(ty);
    char what[96];
    snprintf(what, sizeof what, "softmax %lld x %lld, mask rows %lld", (long long)rows, (long long)cols,
             (long long)mask_rows);
    assert_near(got, ref, n, 1e-5, 1e-9, what);
    free(got), free(ref), free(x), free(m);
    if (!in_place)
        kqcl_tensor_destroy(ty);
    kqcl_tensor_destroy(tx), kqcl_tensor_destroy(tm);
}

START_TEST(softmax_against_float64)
{
    tu_seed(16);
    check_softmax(1, 1, 0, 1.0f, false);
    check_softmax(4, 37, 0, 0.125f, false);
    check_softmax(12, 256, 4, 0.125f, false); /* 3 heads x 4 tokens, the mask a token's row */
    check_softmax(9, 1000, 1, 1.0f, true);
    check_softmax(2, 3001, 2, -0.5f, false);  /* longer than a work-group's stride */
}
END_TEST

/* Fixed values: a row of equal values is uniform; -inf everywhere gives NaN. */
START_TEST(softmax_fixed_rows)
{
    const float x[8] = {3, 3, 3, 3, 1, 2, 3, 4};
    const float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, 0, 0, 0, 0};
    kqcl_tensor *tx = f32_tensor(2, 4, x), *tm = f32_tensor(2, 4, m), *ty = tu_poisoned_f32(2, 4);
    TU_OK(kqcl_softmax(tu_ctx, tx, NULL, 1.0f, ty));
    float *got = tu_read_f32(ty);
    for (int c = 0; c < 4; c++)
        ck_assert_float_eq_tol(got[c], 0.25f, 1e-7f);
    free(got);
    TU_OK(kqcl_softmax(tu_ctx, tx, tm, 1.0f, ty));
    got = tu_read_f32(ty);
    for (int c = 0; c < 4; c++)
        ck_assert(isnan(got[c]));
    ck_assert_float_eq_tol(got[7], (float)(exp(0.0) / (exp(-3.0) + exp(-2.0) + exp(-1.0) + 1.0)), 1e-6f);
    free(got);
    kqcl_tensor_destroy(tx), kqcl_tensor_destroy(tm), kqcl_tensor_destroy(ty);
}
END_TEST

/* ---- rope --------------------------------------------------------------------------------- */

/* ggml's rope in float64 (its f32 theta_scale), for `heads` rows a position. */
static void rope_ref(const float *x, const int32_t *pos, int64_t rows, int64_t cols, int heads,
                     const kqcl_rope_params *p, double *out)
{
    float theta_scale = powf(p->freq_base, -2.0f / (float)p->n_dims);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double *yr = out + r * cols;
        for (int64_t c = 0; c < cols; c++)
            yr[c] = xr[c];
        for (int64_t j = 0; j < p->n_dims / 2; j++) {
            double extrap = (double)pos[r / heads] * pow(theta_scale, (double)j);
            double theta = p->freq_scale * extrap, mscale = p->attn_factor;
            if (p->ext_factor != 0.0f) {
                double ramp = 1.0 - fmin(1.0, fmax(0.0, (j - p->corr_low) / fmax(0.001, p->corr_high - p->corr_low)));
                double mix = ramp * p->ext_factor;
                theta = theta * (1 - mix) + extrap * mix;
                mscale *= 1.0 + 0.1 * log(1.0 / p->freq_scale);
            }
            int64_t a = p->neox ? j : 2 * j, b = p->neox ? j + p->n_dims / 2 : 2 * j + 1;
            double c = cos(theta) * mscale, s = sin(theta) * mscale;
            yr[a] = xr[a] * c - xr[b] * s;
            yr[b] = xr[a] * s + xr[b] * c;
        }
    }
}

/* The angle is formed in f32 (p * theta_scale^i): an error of a few ulp of it, so the bound
 * grows with the position. */
static void check_rope(int64_t tokens, int heads, int64_t cols, const kqcl_rope_params *p, int32_t max_pos)
{
    int64_t rows = tokens * heads;
    size_t n = (size_t)(rows * cols);
    float *x = random_values(n, 2.0f);
    int32_t *pos = tu_malloc((size_t)tokens * sizeof *pos);
    for (int64_t t = 0; t < tokens; t++)
        pos[t] = (int32_t)(tu_rand() % (uint32_t)(max_pos + 1));
    pos[0] = 0;
    size_t offset = 12; /* positions past three other values */
    kqcl_buffer *pb = NULL;
    TU_OK(kqcl_buffer_create(tu_ctx, 0, offset + (size_t)tokens * sizeof *pos, &pb));
    TU_OK(kqcl_buffer_write(pb, offset, pos, (size_t)tokens * sizeof *pos));
    kqcl_tensor *tx = f32_tensor(rows, cols, x), *ty = tu_poisoned_f32(rows, cols);
    TU_OK(kqcl_rope(tu_ctx, tx, pb, offset, heads, p, ty));
    double *ref = tu_malloc(n * sizeof *ref);
    rope_ref(x, pos, rows, cols, heads, p, ref);
    float *got = tu_read_f32(ty);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double tol = 1e-5 + 4.0 * (double)pos[r / heads] * 1.2e-7 * 2.0 * p->attn_factor; /* |x| < 2 */
            ck_assert_msg(fabs(got[r * cols + c] - ref[r * cols + c]) <= tol,
                          "rope n_dims %d neox %d: row %lld (position %d) value %lld: got %.9g want %.9g", p->n_dims,
                          p->neox, (long long)r, pos[r / heads], (long long)c, (double)got[r * cols + c],
                          ref[r * cols + c]);
        }
    free(got), free(ref), free(x), free(pos);
    kqcl_tensor_destroy(tx), kqcl_tensor_destroy(ty);
    kqcl_buffer_destroy(pb);
}

START_TEST(rope_against_float64)
{
    tu_seed(17);
    kqcl_rope_params llama = {.n_dims = 64, .neox = 0, .freq_base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f};
    check_rope(5, 9, 64, &llama, 4096);         /* SmolLM2: 9 heads of 64 */
    kqcl_rope_params gemma = {.n_dims = 256, .neox = 1, .freq_base = 1000000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f};
    check_rope(3, 4, 256, &gemma, 4096);        /* Gemma-3: NeoX pairs */
    kqcl_rope_params partial = {.n_dims = 32, .neox = 1, .freq_base = 10000.0f, .freq_scale = 0.25f, .attn_factor = 0.8f};
    check_rope(4, 2, 80, &partial, 100);        /* part of a row turns, interpolated */
    kqcl_rope_params yarn = {.n_dims = 64, .neox = 0, .freq_base = 10000.0f, .freq_scale = 0.25f, .ext_factor = 1.0f,
                             .attn_factor = 1.0f, .corr_low = 4.5f, .corr_high = 20.25f};
    check_rope(6, 3, 64, &yarn, 4096);          /* YaRN's mix and magnitude */
    kqcl_rope_params small = llama;
    small.n_dims = 8;
    check_rope(3000, 1, 8, &small, 4096);       /* many passes of the grid */
}
END_TEST

/* kqcl_rope_set_rows against kqcl_rope then kqcl_set_rows of the same rows (a view of the
 * turned rows as tokens x heads * cols): every byte of the cache the same, the rows of the two
 * out-of-range indices (-1, cache_rows) and the rows no index names untouched. */
static void check_rope_set_rows(kqcl_type type, int index_bytes, const kqcl_rope_params *p)
{
    const int64_t tokens = 5, cols = 64, cache_rows = 9;
    const int heads = 3;
    const int64_t where[5] = {4, -1, 0, 9, 7};
    const int64_t rows = tokens * heads;
    float *x = random_values((size_t)(rows * cols), 2.0f);
    int32_t pos[5] = {0, 17, 3, 4095, 8};
    unsigned char idx[5 * 8];
    for (int64_t t = 0; t < tokens; t++) {
        int32_t v32 = (int32_t)where[t];
        if (index_bytes == 8)
            memcpy(idx + t * 8, &where[t], 8);
        else
            memcpy(idx + t * 4, &v32, 4);
    }
    kqcl_buffer *pb = NULL, *ib = NULL, *turned = NULL;
    TU_OK(kqcl_buffer_create(tu_ctx, 0, sizeof pos, &pb));
    TU_OK(kqcl_buffer_write(pb, 0, pos, sizeof pos));
    TU_OK(kqcl_buffer_create(tu_ctx, 0, sizeof idx, &ib));
    TU_OK(kqcl_buffer_write(ib, 0, idx, (size_t)(tokens * index_bytes)));
    TU_OK(kqcl_buffer_create(tu_ctx, 0, (size_t)(rows * cols) * sizeof(float), &turned));
    size_t cache_bytes = (size_t)cache_rows * kqcl_row_size(type, heads * cols);
    unsigned char *before = tu_malloc(cache_bytes), *got = tu_malloc(cache_bytes), *want = tu_malloc(cache_bytes);
    for (size_t i = 0; i < cache_bytes; i++)
        before[i] = (unsigned char)(0xA5 ^ (i * 13));
    kqcl_tensor *tx = f32_tensor(rows, cols, x), *fused = tu_tensor(type, cache_rows, heads * cols, before);
    kqcl_tensor *apart = tu_tensor(type, cache_rows, heads * cols, before), *heads_rows = NULL, *token_rows = NULL;
    TU_OK(kqcl_tensor_view(turned, 0, KQCL_TYPE_F32, rows, cols, &heads_rows));
    TU_OK(kqcl_tensor_view(turned, 0, KQCL_TYPE_F32, tokens, heads * cols, &token_rows));
    TU_OK(kqcl_rope_set_rows(tu_ctx, tx, pb, 0, heads, p, ib, 0, index_bytes, fused));
    TU_OK(kqcl_rope(tu_ctx, tx, pb, 0, heads, p, heads_rows));
    TU_OK(kqcl_set_rows(tu_ctx, token_rows, ib, 0, index_bytes, apart));
    TU_OK(kqcl_tensor_read(fused, got, cache_bytes));
    TU_OK(kqcl_tensor_read(apart, want, cache_bytes));
    for (size_t i = 0; i < cache_bytes; i++)
        ck_assert_msg(got[i] == want[i], "rope_set_rows into %s (int%d, neox %d): byte %zu: got %u want %u",
                      kqcl_type_name(type), 8 * index_bytes, p->neox, i, got[i], want[i]);
    size_t row = kqcl_row_size(type, heads * cols);
    ck_assert_msg(memcmp(got + 1 * row, before + 1 * row, row) == 0, "a row no index names was written");
    ck_assert_msg(memcmp(got + 0 * row, before + 0 * row, row) != 0, "row 0 (token 2's) was not written");
    free(x), free(before), free(got), free(want);
    kqcl_tensor_destroy(tx), kqcl_tensor_destroy(fused), kqcl_tensor_destroy(apart);
    kqcl_tensor_destroy(heads_rows), kqcl_tensor_destroy(token_rows);
    kqcl_buffer_destroy(pb), kqcl_buffer_destroy(ib), kqcl_buffer_destroy(turned);
}

START_TEST(rope_set_rows_is_rope_then_set_rows)
{
    tu_seed(18);
    kqcl_rope_params llama = {.n_dims = 64, .neox = 0, .freq_base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f};
    kqcl_rope_params partial = {.n_dims = 32, .neox = 1, .freq_base = 10000.0f, .freq_scale = 0.25f, .attn_factor = 0.8f};
    check_rope_set_rows(KQCL_TYPE_F16, 4, &llama); /* SmolLM2's K cache */
    check_rope_set_rows(KQCL_TYPE_BF16, 8, &partial);
    check_rope_set_rows(KQCL_TYPE_F32, 4, &partial);
    /* bad arguments: a dst row of another width, indices of 2 bytes, NULL ctx */
    kqcl_buffer *b = NULL;
    TU_OK(kqcl_buffer_create(tu_ctx, 0, 64, &b));
    TU_OK(kqcl_buffer_fill(b, 0, 0, 64));
    kqcl_tensor *x = tu_poisoned_f32(2, 64), *dst = tu_tensor(KQCL_TYPE_F16, 4, 100, NULL);
    ck_assert_int_eq(kqcl_rope_set_rows(tu_ctx, x, b, 0, 1, &llama, b, 0, 4, dst), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(tu_ctx), "kqcl_rope_set_rows"));
    kqcl_tensor_destroy(dst);
    dst = tu_tensor(KQCL_TYPE_F16, 4, 64, NULL);
    ck_assert_int_eq(kqcl_rope_set_rows(tu_ctx, x, b, 0, 1, &llama, b, 0, 2, dst), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_rope_set_rows(NULL, x, b, 0, 1, &llama, b, 0, 4, dst), KQCL_ERR_INVALID_ARG);
    TU_OK(kqcl_rope_set_rows(tu_ctx, x, b, 0, 1, &llama, b, 0, 4, dst)); /* zeros as positions and indices */
    kqcl_tensor_destroy(x), kqcl_tensor_destroy(dst);
    kqcl_buffer_destroy(b);
}
END_TEST

/* kqcl_rope_jobs: a step's query turned, its key turned into an f16 K cache (int64 indices) and
 * its value copied into a bf16 V cache (int32 indices, other rows) in one launch, every byte as
 * kqcl_rope, kqcl_rope_set_rows and kqcl_set_rows write them, the jobs in either order and two
 * of them alone; bad arguments. */
static kqcl_buffer *device_bytes(const void *host, size_t bytes)
{
    kqcl_buffer *b = NULL;
    TU_OK(kqcl_buffer_create(tu_ctx, 0, bytes, &b));
    TU_OK(kqcl_buffer_write(b, 0, host, bytes));
    return b;
}

START_TEST(rope_jobs_are_the_single_calls)
{
    tu_seed(19);
    enum { TOKENS = 5, COLS = 64, Q_HEADS = 4, KV_HEADS = 2, CACHE_ROWS = 9 };
    kqcl_rope_params p = {.n_dims = 48, .neox = 1, .freq_base = 10000.0f, .freq_scale = 0.5f, .attn_factor = 0.9f};
    const int32_t pos[TOKENS] = {0, 17, 3, 4095, 8}, v_where[TOKENS] = {8, 0, -1, 9, 2};
    const int64_t k_where[TOKENS] = {4, -1, 0, 9, 7};
    kqcl_buffer *pb = device_bytes(pos, sizeof pos), *kb = device_bytes(k_where, sizeof k_where);
    kqcl_buffer *vb = device_bytes(v_where, sizeof v_where);
    float *q = random_values(TOKENS * Q_HEADS * COLS, 2.0f), *k = random_values(TOKENS * KV_HEADS * COLS, 2.0f);
    float *v = random_values(TOKENS * KV_HEADS * COLS, 2.0f);
    kqcl_tensor *tq = f32_tensor(TOKENS * Q_HEADS, COLS, q), *tk = f32_tensor(TOKENS * KV_HEADS, COLS, k);
    kqcl_tensor *tv = f32_tensor(TOKENS * KV_HEADS, COLS, v), *v_rows = NULL;
    kqcl_buffer *vv = device_bytes(v, sizeof(float) * TOKENS * KV_HEADS * COLS);
    TU_OK(kqcl_tensor_view(vv, 0, KQCL_TYPE_F32, TOKENS, KV_HEADS * COLS, &v_rows));
    size_t cache_bytes = (size_t)CACHE_ROWS * KV_HEADS * COLS * 2;
    unsigned char *before = tu_malloc(cache_bytes);
    for (size_t i = 0; i < cache_bytes; i++)
        before[i] = (unsigned char)(0x5A ^ (i * 7));
    /* the single calls */
    kqcl_tensor *q_want = tu_poisoned_f32(TOKENS * Q_HEADS, COLS);
    kqcl_tensor *k_want = tu_tensor(KQCL_TYPE_F16, CACHE_ROWS, KV_HEADS * COLS, before);
    kqcl_tensor *v_want = tu_tensor(KQCL_TYPE_BF16, CACHE_ROWS, KV_HEADS * COLS, before);
    TU_OK(kqcl_rope(tu_ctx, tq, pb, 0, Q_HEADS, &p, q_want));
    TU_OK(kqcl_rope_set_rows(tu_ctx, tk, pb, 0, KV_HEADS, &p, kb, 0, 8, k_want));
    TU_OK(kqcl_set_rows(tu_ctx, v_rows, vb, 0, 4, v_want));
    for (int order = 0; order < 3; order++) {
        kqcl_tensor *q_out = tu_poisoned_f32(TOKENS * Q_HEADS, COLS);
        kqcl_tensor *k_cache = tu_tensor(KQCL_TYPE_F16, CACHE_ROWS, KV_HEADS * COLS, before);
        kqcl_tensor *v_cache = tu_tensor(KQCL_TYPE_BF16, CACHE_ROWS, KV_HEADS * COLS, before);
        kqcl_rope_job jq = {.x = tq, .heads = Q_HEADS, .dst = q_out};
        kqcl_rope_job jk = {.x = tk, .heads = KV_HEADS, .dst = k_cache, .indices = kb, .index_bytes = 8};
        kqcl_rope_job jv = {.x = tv, .heads = KV_HEADS, .copy = 1, .dst = v_cache, .indices = vb, .index_bytes = 4};
        kqcl_rope_job forward[3] = {jq, jk, jv}, backward[3] = {jv, jk, jq};
        if (order < 2)
            TU_OK(kqcl_rope_jobs(tu_ctx, pb, 0, &p, 3, order == 0 ? forward : backward));
        else { /* two jobs, then the third alone */
            TU_OK(kqcl_rope_jobs(tu_ctx, pb, 0, &p, 2, forward));
            TU_OK(kqcl_rope_jobs(tu_ctx, pb, 0, &p, 1, &jv));
        }
        assert_same_bytes(q_out, q_want, order == 1 ? "query (jobs backward)" : "query");
        assert_same_bytes(k_cache, k_want, order == 1 ? "K cache (jobs backward)" : "K cache");
        assert_same_bytes(v_cache, v_want, order == 1 ? "V cache (jobs backward)" : "V cache");
        kqcl_tensor_destroy(q_out), kqcl_tensor_destroy(k_cache), kqcl_tensor_destroy(v_cache);
    }
    /* bad arguments: no jobs, too many, jobs over different positions, no params, NULL ctx */
    kqcl_tensor *short_q = f32_tensor(2 * Q_HEADS, COLS, q), *short_out = tu_poisoned_f32(2 * Q_HEADS, COLS);
    kqcl_rope_job jobs[4] = {{.x = tq, .heads = Q_HEADS, .dst = q_want},
                             {.x = tk, .heads = KV_HEADS, .dst = k_want, .indices = kb, .index_bytes = 8},
                             {.x = short_q, .heads = Q_HEADS, .dst = short_out},
                             {.x = tq, .heads = Q_HEADS, .dst = q_want}};
    ck_assert_int_eq(kqcl_rope_jobs(tu_ctx, pb, 0, &p, 0, jobs), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_rope_jobs(tu_ctx, pb, 0, &p, 4, jobs), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_rope_jobs(tu_ctx, pb, 0, &p, 3, jobs), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(tu_ctx), "positions"));
    ck_assert_int_eq(kqcl_rope_jobs(tu_ctx, pb, 0, NULL, 2, jobs), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_rope_jobs(NULL, pb, 0, &p, 2, jobs), KQCL_ERR_INVALID_ARG);
    free(q), free(k), free(v), free(before);
    kqcl_tensor_destroy(tq), kqcl_tensor_destroy(tk), kqcl_tensor_destroy(tv), kqcl_tensor_destroy(v_rows);
    kqcl_tensor_destroy(q_want), kqcl_tensor_destroy(k_want), kqcl_tensor_destroy(v_want);
    kqcl_tensor_destroy(short_q), kqcl_tensor_destroy(short_out);
    kqcl_buffer_destroy(pb), kqcl_buffer_destroy(kb), kqcl_buffer_destroy(vb), kqcl_buffer_destroy(vv);
}
END_TEST

/* ---- attention ------------------------------------------------------------------------------ */

typedef struct attn_case {
    int heads, kv_heads;
    int64_t queries, kv_len, capacity, d, dv;
    bool head_major_cache, head_major_q, f16_cache, f16_mask, with_mask;
    float scale, softcap;
    int64_t hidden_prefix; /* positions below it masked for every query (whole blocks unseen) */
    bool q8_cache;         /* a q8_0 cache (then f16_cache is false) */
} attn_case;

static float f16_round(float x)
{
    uint16_t h;
    kqcl_quantize(KQCL_TYPE_F16, &x, &h, 1, 1);
    float back;
    kqcl_dequantize(KQCL_TYPE_F16, &h, &back, 1, 1);
    return back;
}

/* A cache of `capacity` positions x kv_heads rows of `cols` values as the device holds it (f16
 * values rounded), in the case's layout; returns the host floats and the tensor. */
static kqcl_tensor *cache_tensor(const attn_case *c, int64_t cols, float **host)
{
    int64_t rows = c->capacity * c->kv_heads;
    *host = random_values((size_t)(rows * cols), 1.5f);
    if (c->q8_cache) { /* the values the cache holds: quantized and back */
        void *blocks = tu_malloc(kqcl_row_size(KQCL_TYPE_Q8_0, cols) * (size_t)rows);
        TU_OK_CTX(NULL, kqcl_quantize(KQCL_TYPE_Q8_0, *host, blocks, rows, cols));
        TU_OK_CTX(NULL, kqcl_dequantize(KQCL_TYPE_Q8_0, blocks, *host, rows, cols));
        kqcl_tensor *t = tu_tensor(KQCL_TYPE_Q8_0, rows, cols, blocks);
        free(blocks);
        return t;
    }
    for (int64_t i = 0; c->f16_cache && i < rows * cols; i++)
        (*host)[i] = f16_round((*host)[i]);
    if (!c->f16_cache)
        return f32_tensor(rows, cols, *host);
    uint16_t *h = tu_malloc((size_t)(rows * cols) * sizeof *h);
    TU_OK_CTX(NULL, kqcl_quantize(KQCL_TYPE_F16, *host, h, rows, cols));
    kqcl_tensor *t = tu_tensor(KQCL_TYPE_F16, rows, cols, h);
    free(h);
    return t;
}

static void check_attention(const attn_case *c)
{
    kqcl_attention_params p = {.heads = c->heads, .kv_heads = c->kv_heads, .queries = c->queries, .kv_len = c->kv_len,
                               .q_query_stride = c->head_major_q ? 1 : c->heads,
                               .q_head_stride = c->head_major_q ? c->queries : 1,
                               .kv_pos_stride = c->head_major_cache ? 1 : c->kv_heads,
                               .kv_head_stride = c->head_major_cache ? c->capacity : 1,
                               .scale = c->scale, .softcap = c->softcap};
    float *q = random_values((size_t)(c->queries * c->heads * c->d), 1.0f), *k, *v;
    kqcl_tensor *tq = f32_tensor(c->queries * c->heads, c->d, q), *tk = cache_tensor(c, c->d, &k),
                *tv = cache_tensor(c, c->dv, &v);
    float *m = random_values((size_t)(c->queries * c->kv_len), 0.5f);
    for (int64_t i = 0; i < c->queries; i++) /* causal, and every 5th position out */
        for (int64_t j = 0; j < c->kv_len; j++)
            if (j > c->kv_len - c->queries + i || j % 5 == 4 || j < c->hidden_prefix)
                m[i * c->kv_len + j] = -INFINITY;
    for (int64_t i = 0; c->f16_mask && i < c->queries * c->kv_len; i++)
        m[i] = f16_round(m[i]);
    kqcl_tensor *tm = NULL;
    if (c->with_mask && c->f16_mask) {
        uint16_t *h = tu_malloc((size_t)(c->queries * c->kv_len) * sizeof *h);
        TU_OK_CTX(NULL, kqcl_quantize(KQCL_TYPE_F16, m, h, c->queries, c->kv_len));
        tm = tu_tensor(KQCL_TYPE_F16, c->queries, c->kv_len, h);
        free(h);
    } else if (c->with_mask) {
        tm = f32_tensor(c->queries, c->kv_len, m);
    }
    kqcl_tensor *ty = tu_poisoned_f32(c->queries * c->heads, c->dv);
    TU_OK(kqcl_attention(tu_ctx, tq, tk, tv, tm, &p, ty));
    size_t n = (size_t)(c->queries * c->heads * c->dv);
    double *ref = tu_malloc(n * sizeof *ref), *mag = tu_malloc(n * sizeof *mag), *w = tu_malloc((size_t)c->kv_len * sizeof *w);
    for (int64_t i = 0; i < c->queries; i++)
        for (int h = 0; h < c->heads; h++) {
            const float *qr = q + (i * p.q_query_stride + h * p.q_head_stride) * c->d;
            int g = h / (c->heads / c->kv_heads);
            double max = -INFINITY, sum = 0;
            for (int64_t j = 0; j < c->kv_len; j++) {
                const float *kr = k + (j * p.kv_pos_stride + g * p.kv_head_stride) * c->d;
                double dot = 0;
                for (int64_t e = 0; e < c->d; e++)
                    dot += (double)qr[e] * kr[e];
                double sc = c->softcap != 0.0f ? c->softcap * tanh(c->scale * dot / c->softcap) : c->scale * dot;
                w[j] = sc + (c->with_mask ? m[i * c->kv_len + j] : 0.0);
                max = fmax(max, w[j]);
            }
            for (int64_t j = 0; j < c->kv_len; j++)
                sum += (w[j] = max == -INFINITY ? 0.0 : exp(w[j] - max));
            for (int64_t e = 0; e < c->dv; e++) {
                double acc = 0, a = 0;
                for (int64_t j = 0; j < c->kv_len; j++) {
                    double vv = v[(j * p.kv_pos_stride + g * p.kv_head_stride) * c->dv + e];
                    acc += (sum > 0 ? w[j] / sum : 0.0) * vv;
                    a += (sum > 0 ? w[j] / sum : 0.0) * fabs(vv);
                }
                ref[(i * c->heads + h) * c->dv + e] = acc;
                mag[(i * c->heads + h) * c->dv + e] = a;
            }
        }
    float *got = tu_read_f32(ty);
    for (size_t e = 0; e < n; e++) /* f32 scores (d terms) and sums: within 1e-5 of the weighted magnitude */
        ck_assert_msg(fabs(got[e] - ref[e]) <= 2e-5 * mag[e] + 1e-6, "attention (heads %d/%d, %lld queries, kv %lld): "
                      "element %zu: got %.9g want %.9g", c->heads, c->kv_heads, (long long)c->queries,
                      (long long)c->kv_len, e, (double)got[e], ref[e]);
    free(got), free(ref), free(mag), free(w), free(q), free(k), free(v), free(m);
    kqcl_tensor_destroy(tq), kqcl_tensor_destroy(tk), kqcl_tensor_destroy(tv), kqcl_tensor_destroy(tm);
    kqcl_tensor_destroy(ty);
}

START_TEST(attention_against_float64)
{
    tu_seed(19);
    /* decode, SmolLM2's heads (9 over 3), a position's heads side by side in an f16 cache */
    attn_case decode = {9, 3, 1, 37, 64, 64, 64, false, false, true, false, true, 0.125f, 0.0f, 0, false};
    check_attention(&decode);
    /* a prompt, head-major queries and cache, f32, an f16 causal mask, values wider than keys, softcap */
    attn_case prompt = {4, 4, 7, 29, 40, 32, 48, true, true, false, true, true, 0.2f, 30.0f, 0, false};
    check_attention(&prompt);
    /* no mask, one KV head for all (multi-query), a long cache */
    attn_case mqa = {8, 1, 2, 1500, 1500, 16, 16, false, false, true, false, false, 0.25f, 0.0f, 0, false};
    check_attention(&mqa);
    /* rows of 20 and 40 values (not whole 16s), the first 70 positions unseen by every query (a
     * GPU work-group's first 64 see nothing; a CPU item's running maximum starts late) */
    attn_case odd = {6, 2, 3, 150, 160, 20, 40, false, true, true, false, true, 0.3f, 0.0f, 70, false};
    check_attention(&odd);
    /* Gemma-3's rows of 256 (a GPU item's value columns in four passes), a first block of 256
     * positions no query sees and a part block after it, two queries of eight heads on one */
    attn_case wide = {8, 1, 2, 600, 640, 256, 256, false, false, true, true, true, 0.0625f, 0.0f, 300, false};
    check_attention(&wide);
    /* a q8_0 cache (llama.cpp's -ctk q8_0 -ctv q8_0): decode with SmolLM2's heads, and a prompt
     * head-major with values of two blocks, against float64 over the values the cache holds */
    attn_case q8_decode = {9, 3, 1, 37, 64, 64, 64, false, false, false, false, true, 0.125f, 0.0f, 0, true};
    check_attention(&q8_decode);
    attn_case q8_prompt = {4, 2, 5, 70, 80, 32, 64, true, true, false, true, true, 0.2f, 0.0f, 0, true};
    check_attention(&q8_prompt);
}
END_TEST

/* A query whose every position is masked out gets zeros (as ggml's flash attention gives). */
START_TEST(attention_of_a_query_that_sees_nothing)
{
    float q[8] = {1, 2, 3, 4, 5, 6, 7, 8}, kv[8] = {1, 1, 1, 1, 2, 2, 2, 2};
    float mask[4] = {-INFINITY, -INFINITY, 0, -INFINITY};
    kqcl_tensor *tq = f32_tensor(2, 4, q), *tk = f32_tensor(2, 4, kv), *tm = f32_tensor(2, 2, mask);
    kqcl_tensor *ty = tu_poisoned_f32(2, 4);
    kqcl_attention_params p = {.heads = 1, .kv_heads = 1, .queries = 2, .kv_len = 2, .q_query_stride = 1,
                               .kv_pos_stride = 1, .scale = 1.0f};
    TU_OK(kqcl_attention(tu_ctx, tq, tk, tk, tm, &p, ty));
    float *got = tu_read_f32(ty);
    for (int e = 0; e < 4; e++) {
        ck_assert_float_eq(got[e], 0.0f);     /* query 0 sees nothing */
        ck_assert_float_eq(got[4 + e], 1.0f); /* query 1 sees position 0 only */
    }
    free(got);
    /* bad arguments */
    ck_assert_int_eq(kqcl_attention(tu_ctx, tq, tk, tk, tm, NULL, ty), KQCL_ERR_INVALID_ARG);
    p.kv_heads = 2; /* does not divide 1 */
    ck_assert_int_eq(kqcl_attention(tu_ctx, tq, tk, tk, tm, &p, ty), KQCL_ERR_INVALID_ARG);
    p.kv_heads = 1, p.kv_len = 3; /* past the cache and the mask */
    ck_assert_int_eq(kqcl_attention(tu_ctx, tq, tk, tk, tm, &p, ty), KQCL_ERR_INVALID_ARG);
    p.kv_len = 2, p.softcap = -1.0f;
    ck_assert_int_eq(kqcl_attention(tu_ctx, tq, tk, tk, tm, &p, ty), KQCL_ERR_INVALID_ARG);
    p.softcap = 0.0f;
    ck_assert_int_eq(kqcl_attention(tu_ctx, tq, tk, tk, tm, &p, tq), KQCL_ERR_INVALID_ARG); /* y is q */
    ck_assert_int_eq(kqcl_attention(tu_ctx, tq, tk, tk, tm, &p, tm), KQCL_ERR_INVALID_ARG); /* y's shape */
    ck_assert_int_eq(kqcl_attention(NULL, tq, tk, tk, tm, &p, ty), KQCL_ERR_INVALID_ARG);
    kqcl_tensor_destroy(tq), kqcl_tensor_destroy(tk), kqcl_tensor_destroy(tm), kqcl_tensor_destroy(ty);
}
END_TEST

/* ---- a step's RoPE and cache writes inside its attention ------------------------------------ */

/* A job with a norm (Gemma-3's query and key): each row RMS-normalised and weighted, then
 * turned and scaled (Gemma-3's query), against float64 (the norm, then rope_ref of its f32-rounded
 * rows) and against kqcl_rms_norm then kqcl_rope; the same rows scattered into an f16 cache,
 * unscaled; a row width that is not a multiple of the eight partial sums; bad arguments, which
 * write nothing. */
static void check_normed_job(int64_t tokens, int heads, int64_t cols, const kqcl_rope_params *p)
{
    const int64_t rows = tokens * heads, cells = tokens + 2;
    const size_t n = (size_t)(rows * cols);
    const float eps = 1e-6f, scale = 0.3f;
    float *x = random_values(n, 2.0f), *w = random_values((size_t)cols, 1.5f), *xn = tu_malloc(n * sizeof *xn);
    int32_t pos[8];
    int64_t cell[8];
    for (int64_t t = 0; t < tokens; t++)
        pos[t] = (int32_t)(tu_rand() % 100), cell[t] = cells - 1 - t;
    double *ref = tu_malloc(n * sizeof *ref);
    rms_norm_ref(x, w, rows, cols, eps, ref);
    for (size_t i = 0; i < n; i++) /* what rope_ref turns: the norm's f32 rows */
        xn[i] = (float)ref[i];
    rope_ref(xn, pos, rows, cols, heads, p, ref);
    kqcl_buffer *pb = device_bytes(pos, sizeof pos), *ib = device_bytes(cell, sizeof cell);
    kqcl_tensor *tx = f32_tensor(rows, cols, x), *tw = f32_tensor(1, cols, w), *out = tu_poisoned_f32(rows, cols);
    const size_t cache_bytes = (size_t)(cells * heads * cols) * 2;
    unsigned char *nan_bytes = tu_malloc(cache_bytes);
    memset(nan_bytes, 0xFF, cache_bytes); /* f16 NaN */
    kqcl_tensor *cache = tu_tensor(KQCL_TYPE_F16, cells, heads * cols, nan_bytes);
    kqcl_rope_job jobs[2] = {{.x = tx, .heads = heads, .dst = out, .norm_w = tw, .norm_eps = eps,
                              .out_scale = scale},
                             {.x = tx, .heads = heads, .dst = cache, .indices = ib, .index_bytes = 8, .norm_w = tw,
                              .norm_eps = eps}};
    TU_OK(kqcl_rope_jobs(tu_ctx, pb, 0, p, 2, jobs));
    float *got = tu_read_f32(out);
    double *scaled = tu_malloc(n * sizeof *scaled);
    for (size_t i = 0; i < n; i++)
        scaled[i] = ref[i] * scale;
    assert_near(got, scaled, n, 2e-5, 2e-5 * scale, "a normed, scaled job against float64");
    /* the two calls it stands for: the same within the norm's rounding */
    kqcl_tensor *normed = tu_poisoned_f32(rows, cols), *two = tu_poisoned_f32(rows, cols);
    TU_OK(kqcl_rms_norm(tu_ctx, tx, tw, eps, normed));
    TU_OK(kqcl_rope(tu_ctx, normed, pb, 0, heads, p, two));
    float *want = tu_read_f32(two);
    double *want64 = tu_malloc(n * sizeof *want64);
    for (size_t i = 0; i < n; i++)
        want64[i] = (double)want[i] * scale;
    assert_near(got, want64, n, 1e-5, 1e-6, "a normed job against kqcl_rms_norm then kqcl_rope");
    /* the scattered rows: position t's heads side by side in cell[t], as f16 of the same values */
    float *cached = tu_malloc((size_t)(cells * heads * cols) * sizeof *cached);
    TU_OK(kqcl_tensor_read(cache, nan_bytes, cache_bytes));
    TU_OK_CTX(NULL, kqcl_dequantize(KQCL_TYPE_F16, nan_bytes, cached, cells, heads * cols));
    for (int64_t t = 0; t < tokens; t++)
        for (int64_t e = 0; e < heads * cols; e++) {
            float f = cached[cell[t] * heads * cols + e];
            double g = ref[t * heads * cols + e];
            ck_assert_msg(fabs(f - g) <= 1e-3 * fabs(g) + 1e-4, "normed, scattered: cell %lld value %lld: %g, want %g",
                          (long long)cell[t], (long long)e, (double)f, g);
        }
    /* refused, nothing written: a weight of another width, eps < 0, dst over x (each pair
     * reads the whole row) */
    kqcl_tensor *short_w = f32_tensor(1, cols - 2, w), *fresh = tu_poisoned_f32(rows, cols);
    kqcl_rope_job bad = {.x = tx, .heads = heads, .dst = fresh, .norm_w = short_w, .norm_eps = eps};
    ck_assert_int_eq(kqcl_rope_jobs(tu_ctx, pb, 0, p, 1, &bad), KQCL_ERR_INVALID_ARG);
    bad.norm_w = tw, bad.norm_eps = -1.0f;
    ck_assert_int_eq(kqcl_rope_jobs(tu_ctx, pb, 0, p, 1, &bad), KQCL_ERR_INVALID_ARG);
    bad.norm_eps = eps, bad.out_scale = INFINITY;
    ck_assert_int_eq(kqcl_rope_jobs(tu_ctx, pb, 0, p, 1, &bad), KQCL_ERR_INVALID_ARG);
    bad.out_scale = 0.0f, bad.dst = tx;
    ck_assert_int_eq(kqcl_rope_jobs(tu_ctx, pb, 0, p, 1, &bad), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(tu_ctx), "normed job"));
    float *untouched = tu_read_f32(fresh), *x_after = tu_read_f32(tx);
    ck_assert_msg(isnan(untouched[0]) && memcmp(x_after, x, n * sizeof *x) == 0, "a refused job wrote");
    free(untouched), free(x_after), free(cached), free(nan_bytes), free(scaled), free(want), free(want64), free(got), free(ref);
    free(x), free(w), free(xn);
    kqcl_tensor *all[] = {tx, tw, out, cache, normed, two, short_w, fresh};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        kqcl_tensor_destroy(all[i]);
    kqcl_buffer_destroy(pb), kqcl_buffer_destroy(ib);
}

START_TEST(normed_rope_jobs_against_float64)
{
    tu_seed(29);
    const kqcl_rope_params gemma = {.n_dims = 256, .neox = 1, .freq_base = 1000000.0f, .freq_scale = 1.0f,
                                    .attn_factor = 1.0f};
    check_normed_job(2, 4, 256, &gemma); /* Gemma-3's query heads */
    check_normed_job(1, 1, 256, &gemma); /* and its one key head of a decode step */
    const kqcl_rope_params partial = {.n_dims = 32, .freq_base = 10000.0f, .freq_scale = 0.5f, .attn_factor = 0.9f};
    check_normed_job(3, 3, 70, &partial); /* 70: eight partial sums and a tail of 6 */
}
END_TEST

/* kqcl_rope_jobs_attention laid out as llama.cpp lays a step out (its one launch on the GPU
 * kernels: tests/run-gpu-kernels.sh runs this suite with them forced onto PoCL): one buffer of activations (the
 * query, key and value rows, the turned query, the mask, y, the positions and the cache cells),
 * one of the caches (K, then V: `cells` rows of kv_heads heads side by side), the attention's k
 * and v views of it from cell view_cell on. */
typedef struct step_case {
    int heads, kv_heads;
    int64_t d, dv, tokens, cells, view_cell, kv_len;
    int32_t pos, cell; /* the first token's; the others follow */
    kqcl_type cache;
    kqcl_rope_params rope;
    float softcap;
    bool v_one_row; /* V's rows as ggml holds a token's: one row of kv_heads * dv values */
    int y_over;     /* 0: y in its own place; 1: over the query's rows, 2: over the key's (where
                     * ggml's allocator may put it, the rows being dead once written) */
    bool normed;    /* the query's and the key's rows normalised first (Gemma-3's norms), the
                     * query's scaled */
} step_case;

/* Where a step's operands lie in its two buffers, each start aligned for a view. */
typedef struct step_layout {
    size_t qx, kx, vx, qr, mask, y, pos, idx, qw, kw, act_bytes; /* the activations' buffer */
    size_t kc, vc, cache_bytes;                          /* the caches' */
} step_layout;

static size_t place(size_t *at, size_t bytes, size_t align)
{
    size_t here = *at;
    *at = (here + bytes + align - 1) / align * align;
    return here;
}

static step_layout step_layout_of(const step_case *c, size_t align)
{
    step_layout l;
    size_t at = 0, esize = c->cache == KQCL_TYPE_F16 ? 2 : 4, q_bytes = (size_t)(c->tokens * c->heads * c->d) * 4;
    l.qx = place(&at, q_bytes, align);
    l.kx = place(&at, (size_t)(c->tokens * c->kv_heads * c->d) * 4, align);
    l.vx = place(&at, (size_t)(c->tokens * c->kv_heads * c->dv) * 4, align);
    l.qr = place(&at, q_bytes, align);
    l.mask = place(&at, (size_t)(c->tokens * c->kv_len) * 2, align);
    l.y = place(&at, (size_t)(c->tokens * c->heads * c->dv) * 4, align);
    l.pos = place(&at, (size_t)c->tokens * 4, align);
    l.idx = place(&at, (size_t)c->tokens * 8, align);
    l.qw = place(&at, (size_t)c->d * 4, align);
    l.kw = place(&at, (size_t)c->d * 4, align);
    l.act_bytes = at;
    at = 0;
    l.kc = place(&at, (size_t)(c->cells * c->kv_heads * c->d) * esize, align);
    l.vc = place(&at, (size_t)(c->cells * c->kv_heads * c->dv) * esize, align);
    l.cache_bytes = at;
    return l;
}

/* A step's two buffers as the host first fills them: random rows, NaN where results go, a mask
 * with positions out, the positions and cells, caches of random (f16-exact) values. */
static void step_images(const step_case *c, const step_layout *l, unsigned char *act, unsigned char *cache)
{
    memset(act, 0xFF, l->act_bytes); /* NaN floats */
    const int64_t nq = c->tokens * c->heads * c->d, nk = c->tokens * c->kv_heads * c->d;
    const int64_t nv = c->tokens * c->kv_heads * c->dv;
    float *rows = random_values((size_t)(nq + nk + nv), 2.0f);
    memcpy(act + l->qx, rows, (size_t)nq * 4);
    memcpy(act + l->kx, rows + nq, (size_t)nk * 4);
    memcpy(act + l->vx, rows + nq + nk, (size_t)nv * 4);
    free(rows);
    float *norm_w = random_values((size_t)(2 * c->d), 1.5f);
    memcpy(act + l->qw, norm_w, (size_t)c->d * 4);
    memcpy(act + l->kw, norm_w + c->d, (size_t)c->d * 4);
    free(norm_w);
    float *m = random_values((size_t)(c->tokens * c->kv_len), 0.5f);
    for (int64_t i = 0; i < c->tokens * c->kv_len; i++)
        if (i % 7 == 3)
            m[i] = -INFINITY;
    TU_OK_CTX(NULL, kqcl_quantize(KQCL_TYPE_F16, m, act + l->mask, c->tokens, c->kv_len));
    free(m);
    for (int64_t t = 0; t < c->tokens; t++) {
        int32_t pos = c->pos + (int32_t)t;
        int64_t cell = c->cell + t;
        memcpy(act + l->pos + (size_t)t * 4, &pos, 4);
        memcpy(act + l->idx + (size_t)t * 8, &cell, 8);
    }
    int64_t kv_values = c->cells * c->kv_heads;
    float *kv = random_values((size_t)(kv_values * (c->d + c->dv)), 1.5f);
    memset(cache, 0, l->cache_bytes);
    TU_OK_CTX(NULL, kqcl_quantize(c->cache, kv, cache + l->kc, kv_values, c->d));
    TU_OK_CTX(NULL, kqcl_quantize(c->cache, kv + kv_values * c->d, cache + l->vc, kv_values, c->dv));
    free(kv);
}

static size_t step_y_at(const step_case *c, const step_layout *l)
{
    return c->y_over == 1 ? l->qx : c->y_over == 2 ? l->kx : l->y;
}

/* One run of a step on buffers made from the images: fused (kqcl_rope_jobs_attention) or the two
 * calls; the buffers' bytes afterwards replace the images. */
static void run_step(const step_case *c, const step_layout *l, unsigned char *act, unsigned char *cache, bool fused)
{
    kqcl_buffer *ab = device_bytes(act, l->act_bytes), *cb = device_bytes(cache, l->cache_bytes);
    kqcl_tensor *qx, *kx, *vx, *qr, *kd, *vd, *q, *k, *v, *m, *y, *qw, *kw;
    const size_t krow = kqcl_row_size(c->cache, c->kv_heads * c->d);
    const size_t vrow = kqcl_row_size(c->cache, c->kv_heads * c->dv);
    TU_OK(kqcl_tensor_view(ab, l->qx, KQCL_TYPE_F32, c->tokens * c->heads, c->d, &qx));
    TU_OK(kqcl_tensor_view(ab, l->kx, KQCL_TYPE_F32, c->tokens * c->kv_heads, c->d, &kx));
    const int v_heads = c->v_one_row ? 1 : c->kv_heads;
    TU_OK(kqcl_tensor_view(ab, l->vx, KQCL_TYPE_F32, c->tokens * v_heads, c->kv_heads * c->dv / v_heads, &vx));
    TU_OK(kqcl_tensor_view(ab, l->qr, KQCL_TYPE_F32, c->tokens * c->heads, c->d, &qr));
    TU_OK(kqcl_tensor_view(cb, l->kc, c->cache, c->cells, c->kv_heads * c->d, &kd));
    TU_OK(kqcl_tensor_view(cb, l->vc, c->cache, c->cells, c->kv_heads * c->dv, &vd));
    TU_OK(kqcl_tensor_view(ab, l->qr, KQCL_TYPE_F32, c->tokens * c->heads, c->d, &q)); /* a view of its own */
    TU_OK(kqcl_tensor_view(ab, l->mask, KQCL_TYPE_F16, c->tokens, c->kv_len, &m));
    TU_OK(kqcl_tensor_view(ab, step_y_at(c, l), KQCL_TYPE_F32, c->tokens * c->heads, c->dv, &y));
    TU_OK(kqcl_tensor_view(ab, l->qw, KQCL_TYPE_F32, 1, c->d, &qw));
    TU_OK(kqcl_tensor_view(ab, l->kw, KQCL_TYPE_F32, 1, c->d, &kw));
    kqcl_rope_job jobs[3] = {{.x = qx, .heads = c->heads, .dst = qr},
                             {.x = kx, .heads = c->kv_heads, .dst = kd, .indices = ab, .idx_offset = l->idx,
                              .index_bytes = 8},
                             {.x = vx, .heads = v_heads, .copy = 1, .dst = vd, .indices = ab, .idx_offset = l->idx,
                              .index_bytes = 8}};
    if (c->normed) /* and the query scaled, as Gemma-3's */
        jobs[0].norm_w = qw, jobs[0].norm_eps = 1e-6f, jobs[0].out_scale = 0.0625f, jobs[1].norm_w = kw,
        jobs[1].norm_eps = 1e-6f;
    kqcl_attention_params p = {.heads = c->heads, .kv_heads = c->kv_heads, .queries = c->tokens, .kv_len = c->kv_len,
                               .q_query_stride = c->heads, .q_head_stride = 1, .kv_pos_stride = c->kv_heads,
                               .kv_head_stride = 1, .scale = 1.0f / sqrtf((float)c->d), .softcap = c->softcap};
    /* The attention's views of the caches, which overlap the jobs' cache views in part: the two
     * calls, as kqcl.h asks, never have both in use (NVIDIA's driver dies of it: reliability.md
     * bug 7); kqcl_rope_jobs_attention takes both and must launch with the jobs' alone. */
    if (!fused) {
        TU_OK(kqcl_rope_jobs(tu_ctx, ab, l->pos, &c->rope, 3, jobs));
        TU_OK(kqcl_finish(tu_ctx));
        kqcl_tensor_destroy(kd), kqcl_tensor_destroy(vd);
        kd = vd = NULL;
    }
    TU_OK(kqcl_tensor_view(cb, l->kc + (size_t)c->view_cell * krow, c->cache, c->kv_len * c->kv_heads, c->d, &k));
    TU_OK(kqcl_tensor_view(cb, l->vc + (size_t)c->view_cell * vrow, c->cache, c->kv_len * c->kv_heads, c->dv, &v));
    if (fused)
        TU_OK(kqcl_rope_jobs_attention(tu_ctx, ab, l->pos, &c->rope, 3, jobs, q, k, v, m, &p, y));
    else
        TU_OK(kqcl_attention(tu_ctx, q, k, v, m, &p, y));
    kqcl_tensor *views[] = {qx, kx, vx, qr, kd, vd, q, k, v, m, y, qw, kw};
    for (size_t i = 0; i < sizeof views / sizeof *views; i++)
        kqcl_tensor_destroy(views[i]);
    TU_OK(kqcl_buffer_read(ab, 0, act, l->act_bytes));
    TU_OK(kqcl_buffer_read(cb, 0, cache, l->cache_bytes));
    kqcl_buffer_destroy(ab), kqcl_buffer_destroy(cb);
}

/* The fused call against the two: every byte alike but y's, y within 1e-6 (the same arithmetic);
 * the new cells written, y finite. */
static void check_step(const step_case *c, const char *name)
{
    size_t align = kqcl_buffer_alignment(tu_ctx, 0);
    step_layout l = step_layout_of(c, align);
    const size_t krow = kqcl_row_size(c->cache, c->kv_heads * c->d);
    if (((size_t)c->view_cell * krow) % align != 0)
        return; /* this device's views cannot start there (kqcl_buffer_alignment) */
    unsigned char *act = tu_malloc(l.act_bytes), *cache = tu_malloc(l.cache_bytes);
    step_images(c, &l, act, cache);
    unsigned char *act2 = tu_malloc(l.act_bytes), *cache2 = tu_malloc(l.cache_bytes);
    unsigned char *cache0 = tu_malloc(l.cache_bytes);
    memcpy(act2, act, l.act_bytes), memcpy(cache2, cache, l.cache_bytes), memcpy(cache0, cache, l.cache_bytes);
    run_step(c, &l, act, cache, true);
    run_step(c, &l, act2, cache2, false);
    const size_t y_at = step_y_at(c, &l), y_bytes = (size_t)(c->tokens * c->heads * c->dv) * 4;
    for (size_t i = 0; i < l.act_bytes; i++)
        if (i < y_at || i >= y_at + y_bytes)
            ck_assert_msg(act[i] == act2[i], "%s: activations' byte %zu: %u, two calls %u", name, i, act[i], act2[i]);
    for (size_t i = 0; i < l.cache_bytes; i++)
        ck_assert_msg(cache[i] == cache2[i], "%s: cache byte %zu: %u, two calls %u", name, i, cache[i], cache2[i]);
    ck_assert_msg(memcmp(cache + l.kc + (size_t)c->cell * krow, cache0 + l.kc + (size_t)c->cell * krow, krow) != 0,
                  "%s: the new key was not written", name);
    const float *y = (const float *)(act + y_at), *y2 = (const float *)(act2 + y_at);
    for (int64_t e = 0; e < c->tokens * c->heads * c->dv; e++)
        ck_assert_msg(isfinite(y[e]) && fabsf(y[e] - y2[e]) <= 1e-6f * fabsf(y2[e]) + 1e-7f,
                      "%s: y[%lld] %.9g, two calls %.9g", name, (long long)e, (double)y[e], (double)y2[e]);
    free(act), free(act2), free(cache), free(cache2), free(cache0);
}

START_TEST(rope_jobs_attention_is_the_two_calls)
{
    tu_seed(23);
    const kqcl_rope_params llama = {.n_dims = 64, .freq_base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f};
    const kqcl_rope_params yarn = {.n_dims = 128, .neox = 1, .freq_base = 1000000.0f, .freq_scale = 0.25f,
                                   .ext_factor = 1.0f, .attn_factor = 1.0f, .corr_low = 12.0f, .corr_high = 40.0f};
    /* SmolLM2's heads: the new cell inside the view, and before it */
    const step_case smol = {9, 3, 64, 64, 1, 40, 0, 37, 123, 20, KQCL_TYPE_F16, llama, 0.0f, false, 0, false};
    check_step(&smol, "SmolLM2's heads, f16 cache");
    step_case unseen = smol;
    unseen.cell = 38; /* past kv_len: written, not read */
    check_step(&unseen, "the new cell outside the view");
    step_case one_row = smol;
    one_row.v_one_row = true;
    check_step(&one_row, "V's heads in one row");
    step_case y_over = smol;
    y_over.y_over = 1; /* one launch: each group reads its query row before it writes its y row */
    check_step(&y_over, "y over the query's rows");
    y_over.y_over = 2; /* two launches: every group of a KV head reads the key's rows */
    check_step(&y_over, "y over the key's rows");
    /* Gemma-3's: one KV head of 256, NeoX half turned with YaRN, soft-capped, an f32 cache whose
     * view starts at cell 8 (a second sequence's stream) */
    const step_case gemma = {4, 1, 256, 256, 1, 24, 8, 13, 4000, 15, KQCL_TYPE_F32, yarn, 30.0f, false, 0, false};
    check_step(&gemma, "Gemma-3's heads, f32 cache from cell 8");
    step_case normed = gemma; /* and its query's and key's norms inside the launch */
    normed.normed = true;
    check_step(&normed, "Gemma-3's heads, normed");
    normed.cache = KQCL_TYPE_F16;
    normed.y_over = 1;
    check_step(&normed, "Gemma-3's heads, normed, f16 cache, y over the query's rows");
    /* a prompt's two tokens (the two launches) */
    step_case prompt = smol;
    prompt.tokens = 2;
    check_step(&prompt, "two tokens");
    /* refused as either call refuses: nothing written */
    size_t align = kqcl_buffer_alignment(tu_ctx, 0);
    step_layout l = step_layout_of(&smol, align);
    unsigned char *act = tu_malloc(l.act_bytes), *cache = tu_malloc(l.cache_bytes);
    step_images(&smol, &l, act, cache);
    kqcl_buffer *ab = device_bytes(act, l.act_bytes), *cb = device_bytes(cache, l.cache_bytes);
    kqcl_tensor *qx, *qr, *k, *y;
    TU_OK(kqcl_tensor_view(ab, l.qx, KQCL_TYPE_F32, smol.heads, smol.d, &qx));
    TU_OK(kqcl_tensor_view(ab, l.qr, KQCL_TYPE_F32, smol.heads, smol.d, &qr));
    TU_OK(kqcl_tensor_view(cb, l.kc, KQCL_TYPE_F16, smol.kv_len * smol.kv_heads, smol.d, &k));
    TU_OK(kqcl_tensor_view(ab, l.y, KQCL_TYPE_F32, smol.heads, smol.dv, &y));
    kqcl_rope_job job = {.x = qx, .heads = smol.heads, .dst = qr};
    kqcl_attention_params p = {.heads = smol.heads, .kv_heads = smol.kv_heads, .queries = 1, .kv_len = smol.kv_len,
                               .q_query_stride = smol.heads, .q_head_stride = 1, .kv_pos_stride = smol.kv_heads,
                               .kv_head_stride = 1, .scale = 0.125f};
    ck_assert_int_eq(kqcl_rope_jobs_attention(NULL, ab, l.pos, &smol.rope, 1, &job, qr, k, k, NULL, &p, y),
                     KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_rope_jobs_attention(tu_ctx, ab, l.pos, &smol.rope, 0, &job, qr, k, k, NULL, &p, y),
                     KQCL_ERR_INVALID_ARG);
    p.kv_heads = 2; /* does not divide 9: the attention's refusal, before the jobs run */
    ck_assert_int_eq(kqcl_rope_jobs_attention(tu_ctx, ab, l.pos, &smol.rope, 1, &job, qr, k, k, NULL, &p, y),
                     KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(tu_ctx), "kqcl_rope_jobs_attention"));
    float *turned = tu_read_f32(qr);
    ck_assert_msg(isnan(turned[0]), "a refused call turned the query");
    free(turned), free(act), free(cache);
    kqcl_tensor_destroy(qx), kqcl_tensor_destroy(qr), kqcl_tensor_destroy(k), kqcl_tensor_destroy(y);
    kqcl_buffer_destroy(ab), kqcl_buffer_destroy(cb);
}
END_TEST

/* ---- views of one buffer (how the ggml backend calls them) ----------------------------------- */

START_TEST(operations_on_views_of_one_buffer)
{
    tu_seed(15);
    const int64_t rows = 4, cols = 96;
    size_t bytes = (size_t)(rows * cols) * sizeof(float), align = kqcl_buffer_alignment(tu_ctx, 0);
    ck_assert_uint_gt(align, 0);
    size_t stride = (bytes + align - 1) / align * align;
    kqcl_buffer *buf = NULL;
    TU_OK(kqcl_buffer_create(tu_ctx, 0, 3 * stride, &buf));
    kqcl_tensor *a = NULL, *b = NULL, *y = NULL;
    TU_OK(kqcl_tensor_view(buf, 0, KQCL_TYPE_F32, rows, cols, &a));
    TU_OK(kqcl_tensor_view(buf, stride, KQCL_TYPE_F32, rows, cols, &b));
    TU_OK(kqcl_tensor_view(buf, 2 * stride, KQCL_TYPE_F32, rows, cols, &y));
    float *x = random_values((size_t)(rows * cols), 1.0f), *z = random_values((size_t)(rows * cols), 1.0f);
    TU_OK(kqcl_tensor_write(a, x, bytes));
    TU_OK(kqcl_tensor_write(b, z, bytes));
    TU_OK(kqcl_binary(tu_ctx, KQCL_BINARY_ADD, a, b, y));
    TU_OK(kqcl_glu(tu_ctx, KQCL_GLU_SWIGLU, y, b, y)); /* in place on a view */
    float *got = tu_read_f32(y);
    double *ref = tu_malloc((size_t)(rows * cols) * sizeof *ref);
    for (size_t i = 0; i < (size_t)(rows * cols); i++)
        ref[i] = silu_ref((float)(x[i] + z[i])) * z[i];
    assert_near(got, ref, (size_t)(rows * cols), 1e-5, 1e-6, "views");
    free(got), free(ref), free(x), free(z);
    kqcl_tensor_destroy(a), kqcl_tensor_destroy(b), kqcl_tensor_destroy(y);
    kqcl_buffer_destroy(buf);
}
END_TEST

/* Every kernel of the family from one context: one program holds them all (it held four, and
 * a decode step that used more failed with "too many kernels asked of one program"). */
START_TEST(every_operation_on_one_context)
{
    tu_seed(18);
    float *v = random_values(64, 1.0f);
    kqcl_tensor *x = f32_tensor(4, 16, v), *y = tu_poisoned_f32(4, 16), *w = f32_tensor(1, 16, v);
    kqcl_buffer *pos = NULL;
    TU_OK(kqcl_buffer_create(tu_ctx, 0, 16, &pos));
    TU_OK(kqcl_buffer_fill(pos, 0, 0, 16));
    kqcl_rope_params rp = {.n_dims = 16, .freq_base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f};
    TU_OK(kqcl_binary(tu_ctx, KQCL_BINARY_ADD, x, w, y));
    TU_OK(kqcl_scale(tu_ctx, y, 2.0f, 0.0f, y));
    TU_OK(kqcl_unary(tu_ctx, KQCL_UNARY_SILU, y, y));
    TU_OK(kqcl_glu(tu_ctx, KQCL_GLU_GEGLU, y, x, y));
    TU_OK(kqcl_rms_norm(tu_ctx, y, w, 1e-6f, y));
    TU_OK(kqcl_softmax(tu_ctx, y, NULL, 1.0f, y));
    TU_OK(kqcl_rope(tu_ctx, y, pos, 0, 1, &rp, y)); /* position 0: unchanged */
    float *got = tu_read_f32(y);
    for (int r = 0; r < 4; r++) {
        double sum = 0;
        for (int c = 0; c < 16; c++)
            sum += got[r * 16 + c];
        ck_assert_msg(fabs(sum - 1.0) < 1e-5, "row %d of the softmax sums to %g", r, sum);
    }
    free(got), free(v);
    kqcl_tensor_destroy(x), kqcl_tensor_destroy(y), kqcl_tensor_destroy(w);
    kqcl_buffer_destroy(pos);
}
END_TEST

/* ---- bad arguments ------------------------------------------------------------------------ */

START_TEST(bad_arguments_are_refused)
{
    float v[12] = {0};
    kqcl_tensor *a = f32_tensor(3, 4, v), *b = f32_tensor(3, 4, v), *row = f32_tensor(1, 4, v);
    kqcl_tensor *wide = f32_tensor(1, 3, v), *h = NULL, *split = NULL;
    TU_OK(kqcl_tensor_create(tu_ctx, KQCL_TYPE_F16, 3, 4, &h));
    TU_OK(kqcl_tensor_create_split(tu_ctx, KQCL_TYPE_F32, 3, 256, KQCL_SPLIT_REPLICATE, &split));
    ck_assert_int_eq(kqcl_binary(NULL, KQCL_BINARY_ADD, a, b, a), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_binary(tu_ctx, KQCL_BINARY_ADD, NULL, b, a), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_binary(tu_ctx, KQCL_BINARY_ADD, a, NULL, a), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_binary(tu_ctx, (kqcl_binary_op)9, a, b, a), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_binary(tu_ctx, KQCL_BINARY_ADD, a, wide, b), KQCL_ERR_INVALID_ARG); /* 3 does not divide 4 */
    ck_assert_int_eq(kqcl_binary(tu_ctx, KQCL_BINARY_ADD, a, row, row), KQCL_ERR_INVALID_ARG); /* y not a's shape */
    ck_assert_int_eq(kqcl_binary(tu_ctx, KQCL_BINARY_ADD, h, b, a), KQCL_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(kqcl_last_error(tu_ctx), "f16"));
    ck_assert_int_eq(kqcl_scale(tu_ctx, split, 1.0f, 0.0f, split), KQCL_ERR_UNSUPPORTED);
    ck_assert_int_eq(kqcl_unary(tu_ctx, (kqcl_unary_op)-1, a, b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_glu(tu_ctx, KQCL_GLU_GEGLU, a, row, b), KQCL_ERR_INVALID_ARG); /* up not gate's shape */
    ck_assert_int_eq(kqcl_glu(tu_ctx, (kqcl_glu_op)2, a, b, b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_rms_norm(tu_ctx, a, wide, 1e-5f, b), KQCL_ERR_INVALID_ARG); /* w not 1 x cols */
    ck_assert_int_eq(kqcl_rms_norm(tu_ctx, a, row, NAN, b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_rms_norm(tu_ctx, a, row, -1.0f, b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_rms_norm(tu_ctx, a, row, INFINITY, b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_rms_norm(tu_ctx, row, row, 1e-5f, row), KQCL_ERR_INVALID_ARG); /* y is w */
    ck_assert_int_eq(kqcl_rms_norm(tu_ctx, a, NULL, 1e-5f, NULL), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_add_rms_norm(tu_ctx, a, NULL, NULL, 1e-5f, a, b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_add_rms_norm(tu_ctx, a, b, NULL, 1e-5f, NULL, b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_add_rms_norm(tu_ctx, a, row, NULL, 1e-5f, a, b), KQCL_ERR_INVALID_ARG); /* r's shape */
    ck_assert_int_eq(kqcl_add_rms_norm(tu_ctx, a, b, NULL, 1e-5f, row, b), KQCL_ERR_INVALID_ARG); /* sum's shape */
    ck_assert_int_eq(kqcl_add_rms_norm(tu_ctx, a, b, row, -1.0f, a, b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_add_rms_norm(tu_ctx, a, h, NULL, 1e-5f, a, b), KQCL_ERR_UNSUPPORTED); /* r is f16 */
    ck_assert_int_eq(kqcl_add_rms_norm(NULL, a, b, NULL, 1e-5f, a, b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_softmax(tu_ctx, a, wide, 1.0f, b), KQCL_ERR_INVALID_ARG); /* mask not x's columns */
    ck_assert_int_eq(kqcl_softmax(tu_ctx, a, row, INFINITY, b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_softmax(tu_ctx, row, row, 1.0f, row), KQCL_ERR_INVALID_ARG); /* y is the mask */
    kqcl_buffer *pos = NULL;
    TU_OK(kqcl_buffer_create(tu_ctx, 0, 64, &pos));
    kqcl_rope_params rp = {.n_dims = 4, .freq_base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f};
    TU_OK(kqcl_rope(tu_ctx, a, pos, 0, 3, &rp, b));
    TU_OK(kqcl_buffer_fill(pos, 0, 0, 64)); /* indices 0: row 0 of the cache */
    TU_OK(kqcl_set_rows(tu_ctx, a, pos, 4, 4, h));
    ck_assert_int_eq(kqcl_set_rows(tu_ctx, a, NULL, 0, 4, h), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_set_rows(tu_ctx, a, pos, 0, 2, h), KQCL_ERR_INVALID_ARG);  /* int16 indices */
    ck_assert_int_eq(kqcl_set_rows(tu_ctx, a, pos, 4, 8, h), KQCL_ERR_INVALID_ARG);  /* offset not of int64s */
    ck_assert_int_eq(kqcl_set_rows(tu_ctx, a, pos, 48, 8, h), KQCL_ERR_INVALID_ARG); /* 3 int64s past the end */
    ck_assert_int_eq(kqcl_set_rows(tu_ctx, a, pos, 0, 4, wide), KQCL_ERR_INVALID_ARG); /* rows of 3, not 4 */
    ck_assert_int_eq(kqcl_set_rows(tu_ctx, h, pos, 0, 4, a), KQCL_ERR_UNSUPPORTED);    /* src f16 */
    ck_assert_int_eq(kqcl_set_rows(NULL, a, pos, 0, 4, h), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_rope(tu_ctx, a, NULL, 0, 3, &rp, b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_rope(tu_ctx, a, pos, 2, 3, &rp, b), KQCL_ERR_INVALID_ARG);  /* offset not of int32s */
    ck_assert_int_eq(kqcl_rope(tu_ctx, a, pos, 64, 3, &rp, b), KQCL_ERR_INVALID_ARG); /* past the buffer */
    ck_assert_int_eq(kqcl_rope(tu_ctx, a, pos, 0, 2, &rp, b), KQCL_ERR_INVALID_ARG);  /* 2 does not divide 3 rows */
    ck_assert_int_eq(kqcl_rope(tu_ctx, a, pos, 0, 3, NULL, b), KQCL_ERR_INVALID_ARG);
    rp.n_dims = 6; /* past the row */
    ck_assert_int_eq(kqcl_rope(tu_ctx, a, pos, 0, 3, &rp, b), KQCL_ERR_INVALID_ARG);
    rp.n_dims = 3; /* odd */
    ck_assert_int_eq(kqcl_rope(tu_ctx, a, pos, 0, 3, &rp, b), KQCL_ERR_INVALID_ARG);
    rp.n_dims = 4, rp.freq_base = 0.0f;
    ck_assert_int_eq(kqcl_rope(tu_ctx, a, pos, 0, 3, &rp, b), KQCL_ERR_INVALID_ARG);
    rp.freq_base = 10000.0f, rp.ext_factor = NAN;
    ck_assert_int_eq(kqcl_rope(tu_ctx, a, pos, 0, 3, &rp, b), KQCL_ERR_INVALID_ARG);
    kqcl_buffer_destroy(pos);
    kqcl_tensor *rows_of_one = f32_tensor(3, 1, v); /* y = b, which broadcasts */
    ck_assert_int_eq(kqcl_binary(tu_ctx, KQCL_BINARY_ADD, a, rows_of_one, rows_of_one), KQCL_ERR_INVALID_ARG);
    kqcl_tensor_destroy(rows_of_one);
    kqcl_tensor_destroy(a), kqcl_tensor_destroy(b), kqcl_tensor_destroy(row), kqcl_tensor_destroy(wide);
    kqcl_tensor_destroy(h), kqcl_tensor_destroy(split);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("layer");
    TCase *tc = tu_context_case("operations");
    tcase_add_test(tc, binary_operations_with_every_broadcast);
    tcase_add_test(tc, binary_fixed_values);
    tcase_add_test(tc, scale_rounds_the_multiply_and_the_add_apart);
    tcase_add_test(tc, activations_against_float64);
    tcase_add_test(tc, matmul_glu_against_its_products);
    tcase_add_test(tc, matmul_glu_refuses_bad_arguments);
    tcase_add_test(tc, norm_matmul_group_against_float64);
    tcase_add_test(tc, norm_matmul_glu_against_float64);
    tcase_add_test(tc, norm_matmul_refuses_bad_arguments);
    tcase_add_test(tc, rms_norm_against_float64);
    tcase_add_test(tc, add_rms_norm_against_float64);
    tcase_add_test(tc, set_rows_scatters_exactly);
    tcase_add_test(tc, softmax_against_float64);
    tcase_add_test(tc, softmax_fixed_rows);
    tcase_add_test(tc, rope_against_float64);
    tcase_add_test(tc, rope_set_rows_is_rope_then_set_rows);
    tcase_add_test(tc, rope_jobs_are_the_single_calls);
    tcase_add_test(tc, normed_rope_jobs_against_float64);
    tcase_add_test(tc, attention_against_float64);
    tcase_add_test(tc, attention_of_a_query_that_sees_nothing);
    tcase_add_test(tc, rope_jobs_attention_is_the_two_calls);
    tcase_add_test(tc, operations_on_views_of_one_buffer);
    tcase_add_test(tc, every_operation_on_one_context);
    tcase_add_test(tc, bad_arguments_are_refused);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
