/*
 * test_soak.c -- load: matmuls of random shapes and types, every weight type with every
 * activation type and n from 1 to 70, on two devices in turn (a context each) for
 * KQCL_SOAK_SECONDS (default 20), every result checked against the host reference; the
 * process's resident memory must stay flat after warm-up: the first half of the time makes new
 * random problems (each new kernel variant is a build), the second half draws new operands for
 * problems already seen, and the peak VmRSS of the last quarter must be within 20% of that of
 * the third. KQCL_SOAK_TRACE=1 prints VmRSS
 * every 100 matmuls.
 *
 * Without a device spec it asks PoCL for two CPU devices (POCL_DEVICES="pthread pthread");
 * KQCL_SOAK_DEVICES="SPEC;SPEC" names the devices otherwise (one context per spec).
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const kqcl_type weight_types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K,
                                         KQCL_TYPE_F16,  KQCL_TYPE_BF16, KQCL_TYPE_F32};
static const kqcl_type float_types[] = {KQCL_TYPE_F32, KQCL_TYPE_F16, KQCL_TYPE_BF16};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* VmRSS of this process, kB. */
static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

/* A problem: types, shape (its kernel variant: types, n up to 8 or tiled, k's alignment). */
typedef struct problem {
    int wi, xi, n;
    int64_t m, k;
} problem;

/* pair: a weight x activation type pair 0..20, or -1 for a random one */
static problem random_problem(int pair)
{
    problem p;
    p.wi = (int)(tu_rand() % 7), p.xi = (int)(tu_rand() % 3);
    if (pair >= 0)
        p.wi = pair / 3, p.xi = pair % 3;
    p.n = 1 + (int)(tu_rand() % 70);
    p.m = 1 + tu_rand() % 160;
    p.k = kqcl_block_size(weight_types[p.wi]) == 256 ? 256 * (1 + tu_rand() % 3) : 1 + tu_rand() % 600;
    return p;
}

/* One matmul of problem p with fresh random operands on ctx, checked. */
static void one_matmul(kqcl_context *ctx, int iteration, problem p, int *counts)
{
    kqcl_type wtype = weight_types[p.wi], xtype = float_types[p.xi];
    counts[p.wi * 3 + p.xi]++;
    int n = p.n;
    int64_t m = p.m, k = p.k;
    float *wf = tu_malloc((size_t)m * k * sizeof(float)), *xf = tu_malloc((size_t)n * k * sizeof(float));
    for (int64_t i = 0; i < m * k; i++)
        wf[i] = tu_uniform();
    for (int64_t i = 0; i < n * k; i++)
        xf[i] = tu_uniform();
    void *w = tu_malloc((size_t)m * kqcl_row_size(wtype, k)), *x = tu_malloc((size_t)n * kqcl_row_size(xtype, k));
    ck_assert_int_eq(kqcl_quantize(wtype, wf, w, m, k), KQCL_OK);
    ck_assert_int_eq(kqcl_quantize(xtype, xf, x, n, k), KQCL_OK);
    /* the host reference from the decoded operands, in float64 */
    ck_assert_int_eq(kqcl_dequantize(wtype, w, wf, m, k), KQCL_OK);
    ck_assert_int_eq(kqcl_dequantize(xtype, x, xf, n, k), KQCL_OK);

    kqcl_tensor *wt, *xt, *yt;
    kqcl_status st = kqcl_tensor_create(ctx, wtype, m, k, &wt);
    ck_assert_msg(st == KQCL_OK, "%s", kqcl_last_error(ctx));
    ck_assert_int_eq(kqcl_tensor_create(ctx, xtype, n, k, &xt), KQCL_OK);
    ck_assert_int_eq(kqcl_tensor_create(ctx, KQCL_TYPE_F32, n, m, &yt), KQCL_OK);
    ck_assert_int_eq(kqcl_tensor_write(wt, w, kqcl_tensor_bytes(wt)), KQCL_OK);
    ck_assert_int_eq(kqcl_tensor_write(xt, x, kqcl_tensor_bytes(xt)), KQCL_OK);
    st = kqcl_matmul(ctx, wt, xt, yt);
    ck_assert_msg(st == KQCL_OK, "iteration %d: %s x %s m=%lld k=%lld n=%d: %s", iteration, kqcl_type_name(wtype),
                  kqcl_type_name(xtype), (long long)m, (long long)k, n, kqcl_last_error(ctx));
    float *y = tu_malloc((size_t)n * m * sizeof(float));
    ck_assert_int_eq(kqcl_tensor_read(yt, y, (size_t)n * m * sizeof(float)), KQCL_OK);
    for (int j = 0; j < n; j++)
        for (int64_t r = 0; r < m; r++) {
            double s = 0, a = 0;
            for (int64_t i = 0; i < k; i++) {
                double p = (double)wf[r * k + i] * xf[(size_t)j * k + i];
                s += p, a += fabs(p);
            }
            float g = y[(size_t)j * m + r];
            ck_assert_msg(fabs(g - s) <= 1e-6 * a + 1e-30, "iteration %d: %s x %s m=%lld k=%lld n=%d: y[%d,%lld] = %.9g, "
                          "want %.9g", iteration, kqcl_type_name(wtype), kqcl_type_name(xtype), (long long)m,
                          (long long)k, n, j, (long long)r, g, s);
        }
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt);
    free(wf), free(xf), free(w), free(x), free(y);
}

START_TEST(soak_random_matmuls_on_two_devices)
{
    double seconds = getenv("KQCL_SOAK_SECONDS") ? atof(getenv("KQCL_SOAK_SECONDS")) : 20;
    if (seconds <= 0)
        seconds = 20;
    /* the devices: two specs, a context each */
    char specs[2][256];
    int n_ctx = 0;
    const char *given = getenv("KQCL_SOAK_DEVICES");
    if (given && *given) {
        char copy[512];
        snprintf(copy, sizeof copy, "%s", given);
        for (char *save = NULL, *s = strtok_r(copy, ";", &save); s && n_ctx < 2; s = strtok_r(NULL, ";", &save))
            snprintf(specs[n_ctx++], sizeof specs[0], "%s", s);
    } else {
        int count = 0;
        TU_OK(kqcl_list_devices(NULL, 0, &count));
        n_ctx = count >= 2 ? 2 : 1;
        for (int i = 0; i < n_ctx; i++)
            snprintf(specs[i], sizeof specs[0], "%d", i);
    }
    kqcl_context *ctx[2] = {NULL, NULL};
    for (int i = 0; i < n_ctx; i++) {
        kqcl_status st = kqcl_context_create(specs[i], &ctx[i]);
        ck_assert_msg(st == KQCL_OK, "device '%s': %s", specs[i], kqcl_last_error(NULL));
    }
    tu_seed(600);
    int counts[21] = {0}, iterations = 0;
    long samples[4096];
    double sample_at[4096];
    int n_samples = 0;
    double start = now();
    /* First half: new random problems (and so new kernel variants, each a build). Second half:
     * problems drawn from those already seen, with new operands, so memory is measured in a
     * steady state rather than while the driver compiles. */
    static problem seen[1 << 16];
    int n_seen = 0;
    /* At least 20 matmuls and 8 samples after the warm-up, however slow or loaded the machine
     * (within 4x the time) */
    int steady = 0;
    while (now() - start < seconds || ((steady < 8 || iterations < 20) && now() - start < 4 * seconds)) {
        problem p;
        if (now() - start < seconds / 2 || n_seen == 0) {
            p = random_problem(iterations < 21 ? iterations : -1); /* every type pair early */
            if (n_seen < (int)(sizeof seen / sizeof seen[0]))
                seen[n_seen++] = p;
        } else {
            p = seen[tu_rand() % (uint32_t)n_seen];
            p.m = 1 + tu_rand() % 160; /* m does not change the kernel */
        }
        one_matmul(ctx[iterations % n_ctx], iterations, p, counts);
        iterations++;
        if (getenv("KQCL_SOAK_TRACE") && iterations % 100 == 0)
            fprintf(stderr, "soak: %.0f s, %d matmuls, VmRSS %ld kB\n", now() - start, iterations, rss_kb());
        if (n_samples < 4096) {
            sample_at[n_samples] = now() - start;
            steady += sample_at[n_samples] >= seconds / 2;
            samples[n_samples++] = rss_kb();
        }
    }
    for (int i = 0; i < n_ctx; i++)
        kqcl_context_destroy(ctx[i]);
    /* memory: the first half of the time is warm-up; of the samples after it, the largest RSS
     * of the later half against that of the earlier half (halves by count, not by clock: on a
     * loaded machine one matmul that builds a kernel can take seconds) */
    long first = 0, last = 0;
    for (int i = 0, seen_steady = 0; i < n_samples; i++) {
        if (sample_at[i] < seconds / 2)
            continue;
        long *half = seen_steady++ < steady / 2 ? &first : &last;
        if (samples[i] > *half)
            *half = samples[i];
    }
    int combos = 0;
    for (int i = 0; i < 21; i++)
        combos += counts[i] > 0;
    fprintf(stderr, "soak: %d matmuls in %.0f s on %d device(s), %d of 21 type pairs; VmRSS %ld kB after warm-up, "
            "%ld kB at the end\n", iterations, seconds, n_ctx, combos, first, last);
    ck_assert_int_ge(iterations, 20);
    ck_assert_msg(first > 0 && last > 0, "no VmRSS samples");
    ck_assert_msg(last < first * 1.2, "resident memory grew from %ld kB to %ld kB", first, last);
}
END_TEST

int main(void)
{
    /* two PoCL devices unless told otherwise (before the first OpenCL call) */
    setenv("POCL_DEVICES", "pthread pthread", 0);
    Suite *s = suite_create("soak");
    TCase *tc = tcase_create("soak");
    double seconds = getenv("KQCL_SOAK_SECONDS") ? atof(getenv("KQCL_SOAK_SECONDS")) : 20;
    tcase_set_timeout(tc, (seconds > 0 ? seconds : 20) + 300); /* a hang still fails */
    tcase_add_test(tc, soak_random_matmuls_on_two_devices);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
