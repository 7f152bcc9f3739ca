/*
 * test_multi.c -- several devices as one: placed tensors, split matmuls against one device and
 * the host, collectives, copies between placements, the pipeline executor and the planner.
 * Runs on every device of KQCL_DEVICES (tests/run-multi.sh gives two PoCL devices, of one kind
 * and of different speed); with one device the splits degenerate but must still be right.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const kqcl_type weight_types[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K,
                                         KQCL_TYPE_Q4_0, KQCL_TYPE_Q4_1, KQCL_TYPE_Q5_0, KQCL_TYPE_Q5_1,
                                         KQCL_TYPE_Q8_0,
                                         KQCL_TYPE_F16,  KQCL_TYPE_BF16, KQCL_TYPE_F32};
#define N_WTYPES ((int)(sizeof weight_types / sizeof weight_types[0]))
static const int ns[] = {1, 3, 12}; /* matvec, matvec, tiled */

static int n_dev(void) { return kqcl_device_count(tu_ctx); }

/* Uneven fractions: device d gets (d + 1) parts in 1 + 2 + ... */
static void uneven(double *f)
{
    for (int d = 0; d < n_dev(); d++)
        f[d] = d + 1;
}

static kqcl_tensor *placed(kqcl_type type, int64_t rows, int64_t cols, kqcl_split split, const double *fractions,
                           const void *host)
{
    kqcl_tensor *t = NULL;
    TU_OK(kqcl_tensor_create_split_ex(tu_ctx, type, rows, cols, split, fractions, &t));
    if (host)
        TU_OK(kqcl_tensor_write(t, host, kqcl_tensor_bytes(t)));
    return t;
}

static kqcl_tensor *on_device(kqcl_type type, int64_t rows, int64_t cols, int device, const void *host)
{
    kqcl_tensor *t = NULL;
    TU_OK(kqcl_tensor_create_on(tu_ctx, type, rows, cols, device, &t));
    if (host)
        TU_OK(kqcl_tensor_write(t, host, kqcl_tensor_bytes(t)));
    return t;
}

/* A poisoned f32 output of the given placement (NaN bits everywhere). */
static kqcl_tensor *poisoned(int64_t rows, int64_t cols, kqcl_split split, int device)
{
    kqcl_tensor *t = split == KQCL_SPLIT_NONE ? on_device(KQCL_TYPE_F32, rows, cols, device, NULL)
                                              : placed(KQCL_TYPE_F32, rows, cols, split, NULL, NULL);
    size_t bytes = kqcl_tensor_bytes(t);
    void *nan_bytes = tu_malloc(bytes);
    memset(nan_bytes, 0xff, bytes);
    TU_OK(kqcl_tensor_write(t, nan_bytes, bytes));
    free(nan_bytes);
    return t;
}

/* Y on one device d: the reference each row split must match bit for bit. */
static float *single_device_y(int d, kqcl_type wtype, const void *w, int64_t m, int64_t k, const float *x, int n)
{
    kqcl_tensor *wt = on_device(wtype, m, k, d, w), *xt = on_device(KQCL_TYPE_F32, n, k, d, x);
    kqcl_tensor *yt = poisoned(n, m, KQCL_SPLIT_NONE, d);
    TU_OK(kqcl_matmul(tu_ctx, wt, xt, yt));
    float *y = tu_read_f32(yt);
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt);
    return y;
}

static bool same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* ---- placement and host layout ------------------------------------------------------------------ */

START_TEST(write_read_roundtrip_every_split)
{
    kqcl_type type = weight_types[_i];
    const int64_t m = 13, k = 5 * 256;
    void *w = tu_random_weights(type, m, k);
    size_t bytes = (size_t)m * kqcl_row_size(type, k);
    double f[64];
    uneven(f);
    kqcl_split splits[] = {KQCL_SPLIT_ROWS, KQCL_SPLIT_COLS, KQCL_SPLIT_REPLICATE};
    for (int s = 0; s < 3; s++) {
        kqcl_tensor *t = placed(type, m, k, splits[s], s == 2 ? NULL : f, w);
        ck_assert_int_eq(kqcl_tensor_split(t), splits[s]);
        unsigned char *back = tu_malloc(bytes);
        memset(back, 0x5a, bytes);
        TU_OK(kqcl_tensor_read(t, back, bytes));
        ck_assert_msg(memcmp(back, w, bytes) == 0, "%s split %d: bytes differ after write and read",
                      kqcl_type_name(type), (int)splits[s]);
        /* the parts tile the tensor: rows or whole-block columns, in device order */
        int64_t at = 0, total = splits[s] == KQCL_SPLIT_COLS ? k : m;
        for (int d = 0; d < n_dev(); d++) {
            int64_t first, count;
            TU_OK(kqcl_tensor_part(t, d, &first, &count));
            if (splits[s] == KQCL_SPLIT_REPLICATE) {
                ck_assert(first == 0 && count == m);
                continue;
            }
            if (count == 0)
                continue;
            ck_assert_int_eq(first, at);
            if (splits[s] == KQCL_SPLIT_COLS)
                ck_assert_int_eq(first % 256, 0);
            at += count;
        }
        if (splits[s] != KQCL_SPLIT_REPLICATE)
            ck_assert_int_eq(at, total);
        free(back);
        kqcl_tensor_destroy(t);
    }
    free(w);
}
END_TEST

/* ---- row split: bit-identical with one device ------------------------------------------------------- */

static void check_row_split(kqcl_type type, int64_t m, int64_t k, const double *fractions, kqcl_split y_split)
{
    void *w = tu_random_weights(type, m, k);
    kqcl_tensor *wt = placed(type, m, k, KQCL_SPLIT_ROWS, fractions, w);
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        int n = ns[c];
        float *x = tu_random_floats((size_t)(n * k));
        kqcl_tensor *xt = on_device(KQCL_TYPE_F32, n, k, 0, x);
        kqcl_tensor *yt = poisoned(n, m, y_split, n_dev() - 1);
        TU_OK(kqcl_matmul(tu_ctx, wt, xt, yt));
        float *got = tu_read_f32(yt);
        for (int d = 0; d < n_dev(); d++) {
            int64_t first, count;
            TU_OK(kqcl_tensor_part(wt, d, &first, &count));
            if (count == 0)
                continue;
            float *ref = single_device_y(d, type, w, m, k, x, n);
            for (int j = 0; j < n; j++)
                for (int64_t r = first; r < first + count; r++)
                    ck_assert_msg(same_bits(got[j * m + r], ref[j * m + r]),
                                  "%s n=%d row %lld (device %d): %.9g, one device gives %.9g", kqcl_type_name(type), n,
                                  (long long)r, d, (double)got[j * m + r], (double)ref[j * m + r]);
            free(ref);
        }
        free(got), free(x);
        kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt);
    }
    kqcl_tensor_destroy(wt);
    free(w);
}

START_TEST(row_split_bit_identical_to_one_device)
{
    double f[64];
    uneven(f);
    check_row_split(weight_types[_i], 37, 3 * 256, f, KQCL_SPLIT_NONE);
    check_row_split(weight_types[_i], 37, 9 * 256, f, KQCL_SPLIT_NONE); /* k split on the tensor cores */
    check_row_split(weight_types[_i], 20, 256, NULL, KQCL_SPLIT_REPLICATE);
}
END_TEST

/* A row-split weight times X into Y, both views of one buffer on device 0 (OpenCL sub-buffers),
 * as the ggml module's split buffer type (llama.cpp's -sm row) calls it: the bits one device
 * gives. PoCL 3.1 crashed on the rect copies that put the other devices' rows into such a Y. */
START_TEST(row_split_into_views)
{
    const int64_t m = 96, k = 512, n = 3;
    tu_seed(31);
    float *w = tu_random_floats((size_t)(m * k)), *x = tu_random_floats((size_t)(n * k));
    double f[64];
    uneven(f);
    kqcl_tensor *wt = placed(KQCL_TYPE_F32, m, k, KQCL_SPLIT_ROWS, f, w);
    const size_t align = kqcl_buffer_alignment(tu_ctx, 0), at = ((size_t)(n * k) * 4 + align - 1) / align * align;
    kqcl_buffer *b;
    TU_OK(kqcl_buffer_create(tu_ctx, 0, at + (size_t)(n * m) * 4 + align, &b));
    TU_OK(kqcl_buffer_fill(b, 0, 0xFF, at + (size_t)(n * m) * 4 + align)); /* NaN */
    kqcl_tensor *xv, *yv;
    TU_OK(kqcl_tensor_view(b, 0, KQCL_TYPE_F32, n, k, &xv));
    TU_OK(kqcl_tensor_view(b, at, KQCL_TYPE_F32, n, m, &yv));
    TU_OK(kqcl_tensor_write(xv, x, (size_t)(n * k) * 4));
    TU_OK(kqcl_matmul(tu_ctx, wt, xv, yv));
    float *got = tu_read_f32(yv);
    for (int d = 0; d < n_dev(); d++) { /* W's rows on device d: as d alone computes them */
        int64_t first, count;
        TU_OK(kqcl_tensor_part(wt, d, &first, &count));
        float *ref = single_device_y(d, KQCL_TYPE_F32, w, m, k, x, (int)n);
        for (int64_t j = 0; j < n; j++)
            for (int64_t r = first; r < first + count; r++)
                ck_assert_msg(same_bits(got[j * m + r], ref[j * m + r]),
                              "y[%lld][%lld] (device %d): %.9g, one device gives %.9g", (long long)j, (long long)r, d,
                              (double)got[j * m + r], (double)ref[j * m + r]);
        free(ref);
    }
    free(got), free(w), free(x);
    kqcl_tensor_destroy(xv), kqcl_tensor_destroy(yv), kqcl_tensor_destroy(wt);
    kqcl_buffer_destroy(b);
}
END_TEST

/* How many devices hold a part of t. */
static int devices_holding(const kqcl_tensor *t)
{
    int holders = 0;
    for (int d = 0; d < n_dev(); d++) {
        int64_t first, count;
        TU_OK(kqcl_tensor_part(t, d, &first, &count));
        holders += count > 0;
    }
    return holders;
}

START_TEST(row_split_more_devices_than_rows)
{
    /* one row: one device computes it, the others hold nothing */
    check_row_split(KQCL_TYPE_Q4_K, 1, 512, NULL, KQCL_SPLIT_COLS);
    kqcl_tensor *t = placed(KQCL_TYPE_Q4_K, 1, 512, KQCL_SPLIT_ROWS, NULL, NULL);
    ck_assert_int_eq(devices_holding(t), 1);
    kqcl_tensor_destroy(t);
}
END_TEST

/* ---- column split: partial sums all-reduced --------------------------------------------------------- */

static void check_col_split(kqcl_type type, int64_t m, int64_t k, const double *fractions)
{
    void *w = tu_random_weights(type, m, k);
    kqcl_tensor *wt = placed(type, m, k, KQCL_SPLIT_COLS, fractions, w);
    kqcl_split y_splits[] = {KQCL_SPLIT_NONE, KQCL_SPLIT_REPLICATE, KQCL_SPLIT_ROWS};
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        int n = ns[c];
        float *x = tu_random_floats((size_t)(n * k));
        double *ref = tu_malloc((size_t)(n * m) * sizeof(double)), *mag = tu_malloc((size_t)(n * m) * sizeof(double));
        tu_host_matmul(type, w, KQCL_TYPE_F32, x, m, k, n, ref, mag);
        /* X whole on the last device, and X split by columns like W (no staging) */
        kqcl_tensor *xs[2] = {on_device(KQCL_TYPE_F32, n, k, n_dev() - 1, x),
                              placed(KQCL_TYPE_F32, n, k, KQCL_SPLIT_COLS, fractions, x)};
        for (int xi = 0; xi < 2; xi++) {
            kqcl_tensor *yt = poisoned(n, m, y_splits[(c + (size_t)xi) % 3], 0);
            TU_OK(kqcl_matmul(tu_ctx, wt, xs[xi], yt));
            float *got = tu_read_f32(yt);
            char what[96];
            snprintf(what, sizeof what, "%s cols split n=%d x%d y%d", kqcl_type_name(type), n, xi,
                     (int)kqcl_tensor_split(yt));
            tu_assert_close(got, ref, mag, (size_t)(n * m), what);
            /* deterministic: again, the same bits */
            TU_OK(kqcl_matmul(tu_ctx, wt, xs[xi], yt));
            float *again = tu_read_f32(yt);
            ck_assert_msg(memcmp(got, again, (size_t)(n * m) * sizeof(float)) == 0, "%s: not deterministic", what);
            free(got), free(again);
            kqcl_tensor_destroy(yt);
        }
        kqcl_tensor_destroy(xs[0]), kqcl_tensor_destroy(xs[1]);
        free(x), free(ref), free(mag);
    }
    kqcl_tensor_destroy(wt);
    free(w);
}

START_TEST(col_split_matches_host_reference)
{
    double f[64];
    uneven(f);
    check_col_split(weight_types[_i], 19, 5 * 256, f);
}
END_TEST

/* Every precision mode holds across devices: a row split keeps one device's bits in each mode,
 * and a column split (each device's share of k quantized or rounded on its own: the shares
 * are whole blocks, so the blocks are the whole X's) agrees with one device in that mode within
 * f32's bound -- which a split that multiplied f32 activations would not (Q8 and BF16 move the
 * result by far more). */
START_TEST(splits_keep_the_precision)
{
    static const kqcl_precision modes[] = {KQCL_PRECISION_Q8, KQCL_PRECISION_BF16, KQCL_PRECISION_F16};
    double f[64];
    uneven(f);
    const int64_t m = 19, k = 5 * 256;
    void *w = tu_random_weights(KQCL_TYPE_Q4_K, m, k);
    kqcl_tensor *wt = placed(KQCL_TYPE_Q4_K, m, k, KQCL_SPLIT_COLS, f, w);
    for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
        TU_OK(kqcl_context_set_precision(tu_ctx, modes[mi]));
        check_row_split(KQCL_TYPE_Q4_K, 37, 3 * 256, f, KQCL_SPLIT_NONE);
        check_row_split(KQCL_TYPE_Q8_0, 21, 7 * 32, NULL, KQCL_SPLIT_NONE);
        for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
            int n = ns[c];
            float *x = tu_random_floats((size_t)(n * k));
            double *ref = tu_malloc((size_t)(n * m) * sizeof(double)), *mag = tu_malloc((size_t)(n * m) * sizeof(double));
            tu_host_matmul(KQCL_TYPE_Q4_K, w, KQCL_TYPE_F32, x, m, k, n, ref, mag);
            float *one = single_device_y(0, KQCL_TYPE_Q4_K, w, m, k, x, n);
            for (size_t i = 0; i < (size_t)(n * m); i++)
                ref[i] = one[i]; /* the mode's result on one device */
            kqcl_tensor *xt = placed(KQCL_TYPE_F32, n, k, KQCL_SPLIT_COLS, f, x);
            kqcl_tensor *yt = poisoned(n, m, KQCL_SPLIT_NONE, 0);
            TU_OK(kqcl_matmul(tu_ctx, wt, xt, yt));
            float *got = tu_read_f32(yt);
            char what[96];
            snprintf(what, sizeof what, "%s mode, q4_K cols split, n = %d", kqcl_precision_name(modes[mi]), n);
            tu_assert_close(got, ref, mag, (size_t)(n * m), what);
            free(got), free(one), free(x), free(ref), free(mag);
            kqcl_tensor_destroy(xt), kqcl_tensor_destroy(yt);
        }
    }
    kqcl_tensor_destroy(wt);
    free(w);
}
END_TEST

START_TEST(col_split_one_block)
{
    /* one 256-value block: a single device holds it all */
    check_col_split(KQCL_TYPE_Q6_K, 9, 256, NULL);
    kqcl_tensor *t = placed(KQCL_TYPE_Q6_K, 9, 256, KQCL_SPLIT_COLS, NULL, NULL);
    ck_assert_int_eq(devices_holding(t), 1);
    kqcl_tensor_destroy(t);
}
END_TEST

/* ---- data parallel ---------------------------------------------------------------------------------- */

/* W replicated, X's rows spread unevenly: every row as the call's mode promises -- the mode
 * kqcl_precision_chosen gives for the call's n, not for a device's share of the rows (a
 * share of a prefill is no decode: n = 9 over two devices is not two Q8 decodes). */
static void check_data_parallel(kqcl_type type, kqcl_precision mode, int n)
{
    const int64_t m = 24, k = 512;
    void *w = tu_random_weights(type, m, k);
    float *x = tu_random_floats((size_t)(n * k));
    double f[64];
    uneven(f);
    TU_OK(kqcl_context_set_precision(tu_ctx, mode));
    kqcl_tensor *wt = placed(type, m, k, KQCL_SPLIT_REPLICATE, NULL, w);
    kqcl_tensor *xt = placed(KQCL_TYPE_F32, n, k, KQCL_SPLIT_ROWS, f, x);
    kqcl_tensor *ys[2] = {placed(KQCL_TYPE_F32, n, m, KQCL_SPLIT_ROWS, f, NULL), poisoned(n, m, KQCL_SPLIT_NONE, 0)};
    double *xs = tu_malloc((size_t)(n * k) * sizeof(double)), *ref = tu_malloc((size_t)(n * m) * sizeof(double)),
           *mag = tu_malloc((size_t)(n * m) * sizeof(double));
    for (int yi = 0; yi < 2; yi++) {
        TU_OK(kqcl_matmul(tu_ctx, wt, xt, ys[yi]));
        float *got = tu_read_f32(ys[yi]);
        for (int d = 0; d < n_dev(); d++) {
            int64_t first, count;
            TU_OK(kqcl_tensor_part(xt, d, &first, &count));
            if (count == 0)
                continue;
            kqcl_precision used;
            TU_OK(kqcl_precision_chosen(tu_ctx, d, type, n, &used));
            tu_promised_x(used, x + first * k, (int)count, (int)k, xs);
            tu_host_matmul_xd(type, w, xs, m, k, (int)count, ref, mag);
            char what[128];
            snprintf(what, sizeof what, "%s, %s mode (%s), n = %d: device %d's rows %lld..%lld",
                     kqcl_type_name(type), kqcl_precision_name(mode), kqcl_precision_name(used), n, d,
                     (long long)first, (long long)(first + count - 1));
            tu_assert_close(got + first * m, ref, mag, (size_t)(count * m), what);
        }
        free(got);
    }
    kqcl_tensor_destroy(wt), kqcl_tensor_destroy(xt), kqcl_tensor_destroy(ys[0]), kqcl_tensor_destroy(ys[1]);
    free(w), free(x), free(xs), free(ref), free(mag);
}

START_TEST(data_parallel_replicated_w)
{
    static const kqcl_precision modes[] = {KQCL_PRECISION_F32, KQCL_PRECISION_Q8, KQCL_PRECISION_AUTO};
    static const int data_ns[] = {5, 9, 11, 16};
    for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++)
        for (size_t c = 0; c < sizeof data_ns / sizeof data_ns[0]; c++)
            check_data_parallel(weight_types[_i], modes[mi], data_ns[c]);
}
END_TEST

/* ---- collectives ------------------------------------------------------------------------------------ */

/* Each device's contribution: distinct values, some NaN for MAX/MIN; expected in device order. */
static void check_allreduce(size_t count, kqcl_reduce_op op, bool async)
{
    int D = n_dev();
    kqcl_tensor *t = placed(KQCL_TYPE_F32, 1, (int64_t)count, KQCL_SPLIT_REPLICATE, NULL, NULL);
    float *want = tu_malloc(count * sizeof(float)), *part = tu_malloc(count * sizeof(float));
    for (int d = 0; d < D; d++) {
        for (size_t i = 0; i < count; i++)
            part[i] = tu_uniform() * (float)(1 + d) + (i == 77 && op != KQCL_REDUCE_SUM && d == D - 1 ? NAN : 0.0f);
        for (size_t i = 0; i < count; i++) {
            float a = want[i], b = part[i];
            want[i] = d == 0 ? b
                      : op == KQCL_REDUCE_SUM ? a + b
                      : isnan(a) ? a
                      : isnan(b) ? b
                      : op == KQCL_REDUCE_MAX ? (b > a ? b : a) : (b < a ? b : a);
        }
        TU_OK(kqcl_tensor_write_part(t, d, part, count * sizeof(float)));
    }
    if (async) {
        kqcl_request *req = NULL;
        TU_OK(kqcl_allreduce_start(tu_ctx, t, op, &req));
        /* work queued now waits on the queues for the collective */
        kqcl_tensor *copy = placed(KQCL_TYPE_F32, 1, (int64_t)count, KQCL_SPLIT_REPLICATE, NULL, NULL);
        TU_OK(kqcl_convert(tu_ctx, t, copy));
        TU_OK(kqcl_request_wait(req));
        TU_OK(kqcl_tensor_copy(tu_ctx, copy, t));
        kqcl_tensor_destroy(copy);
    } else {
        TU_OK(kqcl_allreduce(tu_ctx, t, op));
    }
    for (int d = 0; d < D; d++) {
        memset(part, 0, count * sizeof(float));
        TU_OK(kqcl_tensor_read_part(t, d, part, count * sizeof(float)));
        for (size_t i = 0; i < count; i++)
            ck_assert_msg(same_bits(part[i], want[i]) || (isnan(part[i]) && isnan(want[i])),
                          "allreduce op %d count %zu: device %d element %zu is %.9g, want %.9g", (int)op, count, d, i,
                          (double)part[i], (double)want[i]);
    }
    free(want), free(part);
    kqcl_tensor_destroy(t);
}

/* Both stages -- sums on the devices (the default) and on the host -- give the device-order bits. */
START_TEST(allreduce_sum_max_min_bit_exact)
{
    for (int w = 1; w >= 0; w--) { /* KQCL_PARAM_COLL_SUMS: 1 on a device, 0 on the host */
        TU_OK(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_COLL_SUMS, w));
        TU_OK(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_COLL_CHUNK_KIB, 64)); /* many chunks, slices, threads */
        size_t sizes[] = {1, 4096, 1000003};
        for (int s = 0; s < 3; s++) {
            check_allreduce(sizes[s], KQCL_REDUCE_SUM, false);
            check_allreduce(sizes[s], KQCL_REDUCE_MAX, s == 1);
            check_allreduce(sizes[s], KQCL_REDUCE_MIN, false);
        }
        check_allreduce(300000, KQCL_REDUCE_SUM, true);
        TU_OK(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_COLL_THREADS, 3)); /* owners rotate across slices */
        check_allreduce(777777, KQCL_REDUCE_MAX, true);
        TU_OK(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_COLL_THREADS, KQCL_PARAM_AUTO));
        TU_OK(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_COLL_CHUNK_KIB, KQCL_PARAM_AUTO));
        check_allreduce(1 << 20, KQCL_REDUCE_SUM, false); /* default chunks */
    }
    TU_OK(kqcl_context_set_param(tu_ctx, -1, KQCL_PARAM_COLL_SUMS, KQCL_PARAM_AUTO));
}
END_TEST

START_TEST(broadcast_from_each_device)
{
    const int64_t rows = 3, cols = 1024;
    size_t bytes = kqcl_row_size(KQCL_TYPE_Q8_K, cols) * rows;
    kqcl_tensor *t = placed(KQCL_TYPE_Q8_K, rows, cols, KQCL_SPLIT_REPLICATE, NULL, NULL);
    unsigned char *src = tu_malloc(bytes), *back = tu_malloc(bytes);
    for (int root = 0; root < n_dev(); root++) {
        for (int d = 0; d < n_dev(); d++) {
            for (size_t i = 0; i < bytes; i++)
                src[i] = (unsigned char)(i * 7 + (size_t)d * 13 + (size_t)root);
            TU_OK(kqcl_tensor_write_part(t, d, src, bytes));
        }
        for (size_t i = 0; i < bytes; i++)
            src[i] = (unsigned char)(i * 7 + (size_t)root * 13 + (size_t)root);
        TU_OK(kqcl_broadcast(tu_ctx, t, root));
        for (int d = 0; d < n_dev(); d++) {
            TU_OK(kqcl_tensor_read_part(t, d, back, bytes));
            ck_assert_msg(memcmp(back, src, bytes) == 0, "broadcast from %d: device %d differs", root, d);
        }
    }
    ck_assert_int_eq(kqcl_broadcast(tu_ctx, t, n_dev()), KQCL_ERR_INVALID_ARG);
    free(src), free(back);
    kqcl_tensor_destroy(t);
}
END_TEST

START_TEST(copy_gather_scatter_allgather)
{
    const int64_t rows = 7, cols = 3 * 256;
    void *w = tu_random_weights(KQCL_TYPE_Q5_K, rows, cols);
    size_t bytes = (size_t)rows * kqcl_row_size(KQCL_TYPE_Q5_K, cols);
    double f[64];
    uneven(f);
    kqcl_tensor *whole = on_device(KQCL_TYPE_Q5_K, rows, cols, n_dev() - 1, w);
    kqcl_tensor *by_rows = placed(KQCL_TYPE_Q5_K, rows, cols, KQCL_SPLIT_ROWS, f, NULL);
    kqcl_tensor *by_cols = placed(KQCL_TYPE_Q5_K, rows, cols, KQCL_SPLIT_COLS, NULL, NULL);
    kqcl_tensor *rep = placed(KQCL_TYPE_Q5_K, rows, cols, KQCL_SPLIT_REPLICATE, NULL, NULL);
    kqcl_tensor *back = on_device(KQCL_TYPE_Q5_K, rows, cols, 0, NULL);
    TU_OK(kqcl_scatter(tu_ctx, whole, by_rows));
    TU_OK(kqcl_tensor_copy(tu_ctx, by_rows, by_cols));
    TU_OK(kqcl_allgather(tu_ctx, by_cols, rep));
    TU_OK(kqcl_gather(tu_ctx, rep, back));
    unsigned char *got = tu_malloc(bytes);
    for (int d = 0; d < n_dev(); d++) {
        TU_OK(kqcl_tensor_read_part(rep, d, got, bytes));
        ck_assert(memcmp(got, w, bytes) == 0);
    }
    TU_OK(kqcl_tensor_read(back, got, bytes));
    ck_assert(memcmp(got, w, bytes) == 0);
    ck_assert_int_eq(kqcl_gather(tu_ctx, whole, rep), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_scatter(tu_ctx, by_rows, whole), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_allgather(tu_ctx, by_rows, back), KQCL_ERR_INVALID_ARG);
    free(got), free(w);
    kqcl_tensor *all[] = {whole, by_rows, by_cols, rep, back};
    for (int i = 0; i < 5; i++)
        kqcl_tensor_destroy(all[i]);
}
END_TEST

/* ---- convert and reduce part by part -------------------------------------------------------------------- */

START_TEST(convert_and_reduce_per_part)
{
    const int64_t rows = 9, cols = 300;
    float *x = tu_random_floats((size_t)(rows * cols));
    double f[64];
    uneven(f);
    kqcl_tensor *src = placed(KQCL_TYPE_F32, rows, cols, KQCL_SPLIT_ROWS, f, x);
    kqcl_tensor *half = placed(KQCL_TYPE_F16, rows, cols, KQCL_SPLIT_ROWS, f, NULL);
    kqcl_tensor *sums = placed(KQCL_TYPE_F32, rows, 1, KQCL_SPLIT_ROWS, f, NULL);
    TU_OK(kqcl_convert(tu_ctx, src, half));
    TU_OK(kqcl_reduce(tu_ctx, KQCL_REDUCE_MAX, src, sums));
    uint16_t *h = tu_malloc((size_t)(rows * cols) * 2);
    TU_OK(kqcl_tensor_read(half, h, (size_t)(rows * cols) * 2));
    float *s = tu_read_f32(sums), *hf = tu_malloc((size_t)(rows * cols) * sizeof(float)), *q = tu_malloc((size_t)(rows * cols) * 2);
    TU_OK(kqcl_quantize(KQCL_TYPE_F16, x, q, rows, cols));
    ck_assert_msg(memcmp(q, h, (size_t)(rows * cols) * 2) == 0, "split f32 -> f16 differs from the host codec");
    for (int64_t r = 0; r < rows; r++) {
        float mx = -INFINITY;
        for (int64_t c = 0; c < cols; c++)
            mx = x[r * cols + c] > mx ? x[r * cols + c] : mx;
        ck_assert(same_bits(s[r], mx));
    }
    /* placed differently: refused, not wrong */
    kqcl_tensor *other = placed(KQCL_TYPE_F16, rows, cols, KQCL_SPLIT_REPLICATE, NULL, NULL);
    ck_assert_int_eq(kqcl_convert(tu_ctx, src, other), n_dev() > 1 ? KQCL_ERR_INVALID_ARG : KQCL_OK);
    kqcl_tensor_destroy(other);
    free(x), free(h), free(s), free(hf), free(q);
    kqcl_tensor_destroy(src), kqcl_tensor_destroy(half), kqcl_tensor_destroy(sums);
}
END_TEST

/* ---- pipeline --------------------------------------------------------------------------------------------- */

START_TEST(pipeline_across_devices_matches_one_device)
{
    const int64_t dims[4] = {512, 256, 768, 40};
    const int n = 4, L = 3;
    kqcl_type types[3] = {KQCL_TYPE_Q4_K, KQCL_TYPE_F16, KQCL_TYPE_Q8_K};
    void *w[3];
    kqcl_tensor *staged[3], *alone[3];
    for (int i = 0; i < L; i++) {
        w[i] = tu_random_weights(types[i], dims[i + 1], dims[i]);
        /* layer 0 on the last device, layer 1 on device 0, layer 2 split by rows */
        staged[i] = i == 2 ? placed(types[i], dims[i + 1], dims[i], KQCL_SPLIT_ROWS, NULL, w[i])
                           : on_device(types[i], dims[i + 1], dims[i], i == 0 ? n_dev() - 1 : 0, w[i]);
        alone[i] = on_device(types[i], dims[i + 1], dims[i], 0, w[i]);
    }
    float *x = tu_random_floats((size_t)(n * dims[0]));
    kqcl_tensor *xt = on_device(KQCL_TYPE_F32, n, dims[0], 0, x);
    kqcl_tensor *y1 = poisoned(n, dims[3], KQCL_SPLIT_NONE, 0), *y2 = poisoned(n, dims[3], KQCL_SPLIT_NONE, 0);
    TU_OK(kqcl_pipeline_run(tu_ctx, L, (const kqcl_tensor *const *)staged, xt, y1));
    TU_OK(kqcl_pipeline_run(tu_ctx, L, (const kqcl_tensor *const *)alone, xt, y2));
    float *a = tu_read_f32(y1), *b = tu_read_f32(y2);
    for (int64_t i = 0; i < n * dims[3]; i++)
        ck_assert_msg(fabsf(a[i] - b[i]) <= 1e-4f * (1 + fabsf(b[i])), "pipeline y[%lld] %.9g vs %.9g", (long long)i,
                      (double)a[i], (double)b[i]);
    ck_assert_int_eq(kqcl_pipeline_run(tu_ctx, 2, (const kqcl_tensor *const *)staged + 1, xt, y1), KQCL_ERR_INVALID_ARG);
    free(a), free(b), free(x);
    for (int i = 0; i < L; i++)
        free(w[i]), kqcl_tensor_destroy(staged[i]), kqcl_tensor_destroy(alone[i]);
    kqcl_tensor_destroy(xt), kqcl_tensor_destroy(y1), kqcl_tensor_destroy(y2);
}
END_TEST

/* ---- speeds and shares ------------------------------------------------------------------------------------- */

START_TEST(measured_speeds_steer_shares)
{
    double g[64];
    TU_OK(kqcl_measure_devices(tu_ctx, g));
    for (int d = 0; d < n_dev(); d++)
        ck_assert_msg(g[d] > 0, "device %d speed %g", d, g[d]);
    kqcl_tensor *t = placed(KQCL_TYPE_F16, 1000, 256, KQCL_SPLIT_ROWS, NULL, NULL);
    for (int a = 0; a < n_dev(); a++)
        for (int b = 0; b < n_dev(); b++) {
            int64_t fa, ca, fb, cb;
            TU_OK(kqcl_tensor_part(t, a, &fa, &ca));
            TU_OK(kqcl_tensor_part(t, b, &fb, &cb));
            if (g[a] > 1.5 * g[b])
                ck_assert_msg(ca > cb, "device %d (%.2f GFLOP/s) got %lld rows, device %d (%.2f) %lld", a, g[a],
                              (long long)ca, b, g[b], (long long)cb);
        }
    kqcl_tensor_destroy(t);
}
END_TEST

/* ---- planner ------------------------------------------------------------------------------------------------ */

static kqcl_plan *make_plan(int n_devices, double speed, double link, double lat, uint64_t mem, kqcl_plan_mode mode,
                            kqcl_status want)
{
    enum { L = 32, T = 7 };
    static uint64_t sizes[T] = {50 << 20, 12 << 20, 12 << 20, 50 << 20, 130 << 20, 130 << 20, 130 << 20};
    static const char *names[T] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    kqcl_plan_layer layers[L];
    char layer_names[L][16];
    for (int i = 0; i < L; i++) {
        snprintf(layer_names[i], sizeof layer_names[i], "blk.%d", i);
        layers[i] = (kqcl_plan_layer){layer_names[i], T, names, sizes};
    }
    kqcl_plan_device devs[4];
    for (int d = 0; d < n_devices; d++)
        devs[d] = (kqcl_plan_device){"dev", mem, speed, link, lat};
    kqcl_plan_request req = {n_devices, devs, L, layers, mode, 4096 * 4};
    kqcl_plan *p = NULL;
    ck_assert_int_eq(kqcl_plan_create(&req, &p), want);
    return p;
}

START_TEST(planner_balances_and_chooses)
{
    /* PCIe-like: fast devices, slow host-staged syncs -> layer split, 16 + 16 layers */
    kqcl_plan *p = make_plan(2, 3000, 25, 15, 80ull << 30, KQCL_PLAN_AUTO, KQCL_OK);
    ck_assert_int_eq(kqcl_plan_mode_chosen(p), KQCL_PLAN_LAYERS);
    int on0 = 0;
    for (int i = 0; i < 32; i++) {
        ck_assert(kqcl_plan_layer_device(p, i) == (i < 16 ? 0 : 1));
        on0 += kqcl_plan_layer_device(p, i) == 0;
    }
    ck_assert_int_eq(on0, 16);
    ck_assert_uint_eq(kqcl_plan_device_bytes(p, 0), kqcl_plan_device_bytes(p, 1));
    ck_assert_uint_eq(kqcl_plan_transfer_bytes(p), 4096 * 4);
    size_t need = 0;
    TU_OK(kqcl_plan_describe(p, NULL, 0, &need));
    char *text = tu_malloc(need);
    TU_OK(kqcl_plan_describe(p, text, need, NULL));
    ck_assert_msg(strstr(text, "why:") && strstr(text, "blk.31") && strstr(text, "ffn_down"), "%s", text);
    free(text);
    kqcl_plan_destroy(p);
    /* slow devices, near-free syncs -> tensor split */
    p = make_plan(2, 20, 500, 0.1, 80ull << 30, KQCL_PLAN_AUTO, KQCL_OK);
    ck_assert_int_eq(kqcl_plan_mode_chosen(p), KQCL_PLAN_TENSOR);
    ck_assert_int_eq(kqcl_plan_layer_device(p, 3), -1);
    kqcl_plan_destroy(p);
    /* memory bounds the stages: 3 devices of 6 GiB hold 32 x 514 MiB only as 11/11/10 or so */
    p = make_plan(3, 1000, 25, 15, 6ull << 30, KQCL_PLAN_LAYERS, KQCL_OK);
    for (int d = 0; d < 3; d++)
        ck_assert_uint_le(kqcl_plan_device_bytes(p, d), 6ull << 30);
    kqcl_plan_destroy(p);
    make_plan(2, 1000, 25, 15, 1ull << 30, KQCL_PLAN_AUTO, KQCL_ERR_OUT_OF_MEMORY);
    ck_assert_int_eq(kqcl_plan_create(NULL, &p), KQCL_ERR_INVALID_ARG);
}
END_TEST

START_TEST(plan_devices_of_the_context)
{
    kqcl_plan_device devs[64];
    TU_OK(kqcl_plan_devices(tu_ctx, devs, 64));
    for (int d = 0; d < n_dev(); d++)
        ck_assert(devs[d].speed_gbps > 0 && devs[d].link_gbps > 0 && devs[d].link_latency_us > 0 &&
                  devs[d].memory_bytes > 0);
    ck_assert_int_eq(kqcl_plan_devices(tu_ctx, devs, 0), KQCL_ERR_INVALID_ARG);
}
END_TEST

/* ---- bad input ----------------------------------------------------------------------------------------------- */

START_TEST(multi_api_rejects_bad_input)
{
    kqcl_tensor *t = NULL;
    double bad[64] = {0};
    ck_assert_int_eq(kqcl_tensor_create_split(tu_ctx, KQCL_TYPE_F32, 4, 4, (kqcl_split)9, &t), KQCL_ERR_INVALID_ARG);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(kqcl_tensor_create_split_ex(tu_ctx, KQCL_TYPE_F32, 4, 4, KQCL_SPLIT_ROWS, bad, &t), KQCL_ERR_INVALID_ARG);
    bad[0] = -1;
    ck_assert_int_eq(kqcl_tensor_create_split_ex(tu_ctx, KQCL_TYPE_F32, 4, 4, KQCL_SPLIT_ROWS, bad, &t), KQCL_ERR_INVALID_ARG);
    bad[0] = NAN;
    ck_assert_int_eq(kqcl_tensor_create_split_ex(tu_ctx, KQCL_TYPE_F32, 4, 4, KQCL_SPLIT_ROWS, bad, &t), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_create_split(tu_ctx, KQCL_TYPE_Q4_K, 4, 100, KQCL_SPLIT_COLS, &t), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_create_split(NULL, KQCL_TYPE_F32, 4, 4, KQCL_SPLIT_ROWS, &t), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_create_on(tu_ctx, KQCL_TYPE_F32, 4, 4, n_dev(), &t), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_create_on(tu_ctx, KQCL_TYPE_F32, 4, 4, -1, &t), KQCL_ERR_INVALID_ARG);

    kqcl_tensor *rep = placed(KQCL_TYPE_F16, 2, 256, KQCL_SPLIT_REPLICATE, NULL, NULL);
    kqcl_tensor *rows = placed(KQCL_TYPE_F32, 2, 256, KQCL_SPLIT_ROWS, NULL, NULL);
    float buf[512];
    int64_t a, b;
    ck_assert_int_eq(kqcl_tensor_part(rep, n_dev(), &a, &b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_part(NULL, 0, &a, &b), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_write_part(rep, 0, buf, 3), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_write_part(rep, 99, buf, 1024), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_read_part(rep, 0, NULL, 1024), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_allreduce(tu_ctx, rep, KQCL_REDUCE_SUM), KQCL_ERR_UNSUPPORTED);
    ck_assert_int_eq(kqcl_allreduce(tu_ctx, rows, KQCL_REDUCE_SUM), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_allreduce(tu_ctx, NULL, KQCL_REDUCE_SUM), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_allreduce(NULL, rep, KQCL_REDUCE_SUM), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_allreduce_start(tu_ctx, rows, KQCL_REDUCE_SUM, NULL), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_broadcast(tu_ctx, rep, -1), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_request_wait(NULL), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_copy(tu_ctx, rep, rows), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_pipeline_run(tu_ctx, 0, NULL, rows, rows), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_mpi_rank(), 0);
    ck_assert_int_eq(kqcl_global_device(tu_ctx, 0), 0);
    ck_assert_int_eq(kqcl_global_device(tu_ctx, n_dev()), -1);
    ck_assert_int_eq(kqcl_global_device_count(tu_ctx), n_dev());
    ck_assert_int_eq(kqcl_tensor_split(NULL), KQCL_SPLIT_NONE);
    kqcl_tensor_destroy(rep), kqcl_tensor_destroy(rows);
}
END_TEST

/* ---- the suite ------------------------------------------------------------------------------------------------ */

int main(void)
{
    tu_seed(7);
    Suite *s = suite_create("multi");
    TCase *tc = tu_context_case("placement");
    tcase_add_loop_test(tc, write_read_roundtrip_every_split, 0, N_WTYPES);
    tcase_add_test(tc, multi_api_rejects_bad_input);
    suite_add_tcase(s, tc);
    tc = tu_context_case("tensor parallel");
    tcase_add_loop_test(tc, row_split_bit_identical_to_one_device, 0, N_WTYPES);
    tcase_add_test(tc, row_split_more_devices_than_rows);
    tcase_add_test(tc, row_split_into_views);
    tcase_add_loop_test(tc, col_split_matches_host_reference, 0, N_WTYPES);
    tcase_add_test(tc, col_split_one_block);
    tcase_add_test(tc, splits_keep_the_precision);
    suite_add_tcase(s, tc);
    tc = tu_context_case("data and pipeline parallel");
    tcase_add_loop_test(tc, data_parallel_replicated_w, 0, N_WTYPES);
    tcase_add_test(tc, pipeline_across_devices_matches_one_device);
    tcase_add_test(tc, convert_and_reduce_per_part);
    suite_add_tcase(s, tc);
    tc = tu_context_case("collectives");
    tcase_add_test(tc, allreduce_sum_max_min_bit_exact);
    tcase_add_test(tc, broadcast_from_each_device);
    tcase_add_test(tc, copy_gather_scatter_allgather);
    suite_add_tcase(s, tc);
    tc = tu_context_case("planning");
    tcase_add_test(tc, measured_speeds_steer_shares);
    tcase_add_test(tc, planner_balances_and_chooses);
    tcase_add_test(tc, plan_devices_of_the_context);
    suite_add_tcase(s, tc);

    return tu_run_suite(s);
}
