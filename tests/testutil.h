/* testutil.h -- what the device test suites share: reference files, random data, a context. */
#ifndef KQCL_TESTUTIL_H
#define KQCL_TESTUTIL_H

#include "kqcl.h"

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* $KQCL_TEST_DATA or "tests/data". */
const char *tu_data_dir(void);

/* The whole of file `name` of the data directory, which must hold exactly `bytes` bytes;
 * fails the test otherwise. Free with free(). */
void *tu_load(const char *name, size_t bytes);

/* malloc that fails the test instead of returning NULL. */
void *tu_malloc(size_t bytes);

/* A deterministic generator, seeded per test, and its uniform floats in [-1, 1). */
void tu_seed(uint64_t seed);
uint32_t tu_rand(void);
float tu_uniform(void);

/* The context every device test runs on: KQCL_DEVICES, else kqcl's default. */
extern kqcl_context *tu_ctx;
void tu_context_setup(void);
void tu_context_teardown(void);

/* A tensor of `type` filled from host bytes (fails the test on error). */
kqcl_tensor *tu_tensor(kqcl_type type, int64_t rows, int64_t cols, const void *host);

/* An f32 tensor of rows x cols filled with NaN bits, so unwritten outputs are caught. */
kqcl_tensor *tu_poisoned_f32(int64_t rows, int64_t cols);

/* Read back an f32 tensor into a new host array. */
float *tu_read_f32(kqcl_tensor *t);

/* Random weights of `type` (m x k) as host bytes in ggml layout, through the host quantizer:
 * uniform in [-1, 1) with every 7th value 5x larger. Free with free(). */
void *tu_random_weights(kqcl_type type, int64_t m, int64_t k);

/* `count` floats uniform in [-1, 1). Free with free(). */
float *tu_random_floats(size_t count);

/* A test case whose tests each get a fresh context (tu_ctx) and a generous timeout. */
TCase *tu_context_case(const char *name);

/* Y = X . W^T in float64 from host-decoded operands (W: m x k of wtype, X: n x k of xtype, in
 * ggml layout), and mag[j*m + r] = sum |w x|: the scale the rounding of a float sum grows with. */
void tu_host_matmul(kqcl_type wtype, const void *w, kqcl_type xtype, const void *x, int64_t m, int64_t k, int n,
                    double *y, double *mag);
/* The same with X given in double (as a precision mode multiplies it); mag may be NULL. */
void tu_host_matmul_xd(kqcl_type wtype, const void *w, const double *x, int64_t m, int64_t k, int n, double *y,
                       double *mag);

/* X (n x k floats, k a multiple of 32) as the Q8 mode multiplies it, from the header's words:
 * each value d * q in double; d_out (n * k / 32, may be NULL) the blocks' scales. */
void tu_q8_activations(const float *x, int n, int k, double *out, float *d_out);
/* X as precision `mode` (never AUTO: ask kqcl_precision_chosen) promises to multiply it, in
 * double: Q8's quants, f16 or bf16 roundings, or X itself. */
void tu_promised_x(kqcl_precision mode, const float *x, int n, int k, double *xs);

/* Every got[i] within 1e-5 * mag[i] (+1e-6) of ref[i]: f32 accumulation, a few roundings of
 * sum |w x|. */
void tu_assert_close(const float *got, const double *ref, const double *mag, size_t count, const char *what);

/* Run a suite (Check forks each test) and return the process's exit status. */
int tu_run_suite(Suite *s);

/* Assert that expr gives KQCL_OK, printing the status and kqcl_last_error(ctx) when it does not:
 * ctx the context the call reports on (a tensor's context for tensor calls), NULL for calls
 * without one (context creation, host codecs, GGUF files). Header-only, so suites that do not
 * link testutil.c use it too. TU_OK is the same on the suite's tu_ctx. */
#define TU_OK_CTX(ctx, expr)                                                                          \
    do {                                                                                              \
        kqcl_status tu_st_ = (expr);                                                                  \
        ck_assert_msg(tu_st_ == KQCL_OK, "%s -> %s: %s", #expr, kqcl_status_string(tu_st_),          \
                      kqcl_last_error(ctx));                                                          \
    } while (0)
#define TU_OK(expr) TU_OK_CTX(tu_ctx, expr)

#endif
