/* testutil.c -- helpers shared by the device test suites. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kqcl_context *tu_ctx;

const char *tu_data_dir(void)
{
    const char *d = getenv("KQCL_TEST_DATA");
    return d && *d ? d : "tests/data";
}

void *tu_malloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    ck_assert_msg(p != NULL, "out of host memory (%zu bytes)", bytes);
    return p;
}

void *tu_load(const char *name, size_t bytes)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", tu_data_dir(), name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    void *p = tu_malloc(bytes);
    size_t got = fread(p, 1, bytes, f);
    int extra = fgetc(f);
    fclose(f);
    ck_assert_msg(got == bytes && extra == EOF, "%s does not hold exactly %zu bytes", path, bytes);
    return p;
}

static uint64_t rng = 1;
void tu_seed(uint64_t seed) { rng = seed * 0x9e3779b97f4a7c15ull + 1; }
uint32_t tu_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
float tu_uniform(void) { return (float)(tu_rand() & 0xffffff) / 8388608.0f - 1.0f; }

void tu_context_setup(void)
{
    kqcl_status st = kqcl_context_create(NULL, &tu_ctx);
    ck_assert_msg(st == KQCL_OK, "no context: %s: %s", kqcl_status_string(st), kqcl_last_error(NULL));
}

void tu_context_teardown(void)
{
    kqcl_context_destroy(tu_ctx);
    tu_ctx = NULL;
}

kqcl_tensor *tu_tensor(kqcl_type type, int64_t rows, int64_t cols, const void *host)
{
    kqcl_tensor *t = NULL;
    TU_OK(kqcl_tensor_create(tu_ctx, type, rows, cols, &t));
    if (host)
        TU_OK(kqcl_tensor_write(t, host, kqcl_tensor_bytes(t)));
    return t;
}

kqcl_tensor *tu_poisoned_f32(int64_t rows, int64_t cols)
{
    size_t bytes = (size_t)rows * cols * sizeof(float);
    unsigned char *nan_bytes = tu_malloc(bytes);
    memset(nan_bytes, 0xff, bytes); /* 0xffffffff is a NaN */
    kqcl_tensor *t = tu_tensor(KQCL_TYPE_F32, rows, cols, nan_bytes);
    free(nan_bytes);
    return t;
}

float *tu_read_f32(kqcl_tensor *t)
{
    float *out = tu_malloc(kqcl_tensor_bytes(t));
    TU_OK(kqcl_tensor_read(t, out, kqcl_tensor_bytes(t)));
    return out;
}

void tu_host_matmul(kqcl_type wtype, const void *w, kqcl_type xtype, const void *x, int64_t m, int64_t k, int n,
                    double *y, double *mag)
{
    float *xf = tu_malloc((size_t)n * (size_t)k * sizeof(float));
    double *xd = tu_malloc((size_t)n * (size_t)k * sizeof(double));
    ck_assert_int_eq(kqcl_dequantize(xtype, x, xf, n, k), KQCL_OK);
    for (size_t i = 0; i < (size_t)n * (size_t)k; i++)
        xd[i] = xf[i];
    tu_host_matmul_xd(wtype, w, xd, m, k, n, y, mag);
    free(xf);
    free(xd);
}

void tu_host_matmul_xd(kqcl_type wtype, const void *w, const double *x, int64_t m, int64_t k, int n, double *y,
                       double *mag)
{
    float *wf = tu_malloc((size_t)m * (size_t)k * sizeof(float));
    ck_assert_int_eq(kqcl_dequantize(wtype, w, wf, m, k), KQCL_OK);
    for (int j = 0; j < n; j++)
        for (int64_t r = 0; r < m; r++) {
            double s = 0, a = 0;
            for (int64_t i = 0; i < k; i++) {
                double p = (double)wf[r * k + i] * x[(size_t)j * k + i];
                s += p;
                a += fabs(p);
            }
            y[(size_t)j * m + r] = s;
            if (mag)
                mag[(size_t)j * m + r] = a;
        }
    free(wf);
}

void tu_assert_close(const float *got, const double *ref, const double *mag, size_t count, const char *what)
{
    for (size_t i = 0; i < count; i++)
        ck_assert_msg(fabs(got[i] - ref[i]) <= 1e-5 * mag[i] + 1e-6, "%s: element %zu is %.9g, want %.9g", what, i,
                      (double)got[i], ref[i]);
}

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void *tu_random_weights(kqcl_type type, int64_t m, int64_t k)
{
    float *f = tu_malloc((size_t)m * (size_t)k * sizeof(float));
    for (int64_t i = 0; i < m * k; i++)
        f[i] = tu_uniform() * (1 + (i % 7 == 0) * 4.0f);
    void *q = tu_malloc((size_t)m * kqcl_row_size(type, k));
    ck_assert_int_eq(kqcl_quantize(type, f, q, m, k), KQCL_OK);
    free(f);
    return q;
}

float *tu_random_floats(size_t count)
{
    float *x = tu_malloc(count * sizeof(float));
    for (size_t i = 0; i < count; i++)
        x[i] = tu_uniform();
    return x;
}

TCase *tu_context_case(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, tu_context_setup, tu_context_teardown);
    tcase_set_timeout(tc, 900);
    return tc;
}

/* ---- the host reference of Q8's activations, from the header's words ---------------------------- */

/* The integer nearest x / d (the exact quotient), halves away from zero, clamped to +-127: the
 * quotient's exact value is compared with the two candidates through exact residuals in
 * double (x and q * d are exact in double: 24 + 8 bits). */
static int ref_q8_round(float x, float d)
{
    if (!(d > 0.0f) || isinf(d) || isnan(x))
        return 0;
    double q = floor((double)x / d); /* an estimate; corrected below */
    for (;;) {
        double lo = (double)x - q * d; /* x - q d: >= 0 when q <= x/d */
        if (lo < 0) {
            q -= 1;
            continue;
        }
        if (lo >= d) {
            q += 1;
            continue;
        }
        break;
    }
    /* now q <= x/d < q + 1; the remainder lo = x - q d in [0, d) */
    double lo = (double)x - q * d, half = 0.5 * (double)d;
    double r = lo > half ? q + 1 : lo < half ? q : (x > 0 ? q + 1 : q);
    return (int)fmin(fmax(r, -127), 127);
}

void tu_q8_activations(const float *x, int n, int k, double *out, float *d_out)
{
    for (int b = 0; b < n * k / 32; b++) {
        const float *v = x + (size_t)b * 32;
        float amax = 0.0f;
        bool nan = false;
        for (int i = 0; i < 32; i++) {
            nan |= isnan(v[i]) != 0;
            amax = fmaxf(amax, fabsf(v[i]));
        }
        float d = nan ? NAN : amax * (1.0f / 127.0f);
        if (d_out)
            d_out[b] = d;
        for (int i = 0; i < 32; i++)
            out[(size_t)b * 32 + i] = (double)d * ref_q8_round(v[i], d);
    }
}


void tu_promised_x(kqcl_precision mode, const float *x, int n, int k, double *xs)
{
    size_t count = (size_t)n * k;
    if (mode == KQCL_PRECISION_Q8) {
        tu_q8_activations(x, n, k, xs, NULL);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        uint16_t h;
        float r = x[i];
        if (mode == KQCL_PRECISION_F16) {
            ck_assert_int_eq(kqcl_quantize(KQCL_TYPE_F16, &x[i], &h, 1, 1), KQCL_OK);
            ck_assert_int_eq(kqcl_dequantize(KQCL_TYPE_F16, &h, &r, 1, 1), KQCL_OK);
        } else if (mode == KQCL_PRECISION_BF16) {
            ck_assert_int_eq(kqcl_quantize(KQCL_TYPE_BF16, &x[i], &h, 1, 1), KQCL_OK);
            ck_assert_int_eq(kqcl_dequantize(KQCL_TYPE_BF16, &h, &r, 1, 1), KQCL_OK);
        }
        xs[i] = r;
    }
}
