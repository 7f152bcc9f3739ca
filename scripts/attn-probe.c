/*
 * attn-probe.c -- kqcl_attention's device time at a decode step's shapes (SmolLM2's 9 query heads
 * over 3 KV heads of 64, one query; Gemma-3's 4 over 1 of 256), over caches of growing length,
 * f16 and q8_0: the median of 50 calls' kqcl_last_device_time, microseconds. Then a decode step's
 * RoPE, cache writes and attention as two calls and as one kqcl_rope_jobs_attention. Not part of
 * kqcl; a measuring aid for doc/perf.md (run 31: 53 us a call in a SmolLM2 step, half the step).
 *
 *   cc -O2 -Iinclude -o attn-probe scripts/attn-probe.c BUILD/lib/.libs/libkqcl.a \
 *      -lOpenCL -lclblast -lm -lpthread
 */
#include <kqcl.h>
#include <stdio.h>
#include <stdlib.h>

#include "probe-time.h"

#define REPS 50

static kqcl_tensor *filled(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols)
{
    kqcl_tensor *t = NULL;
    float *v = malloc((size_t)(rows * cols) * sizeof *v);
    size_t bytes = (size_t)rows * kqcl_row_size(type, cols);
    void *raw = malloc(bytes);
    for (int64_t i = 0; v != NULL && i < rows * cols; i++)
        v[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
    int ok = v != NULL && raw != NULL && kqcl_tensor_create(ctx, type, rows, cols, &t) == KQCL_OK &&
             (type == KQCL_TYPE_F32 ? kqcl_tensor_write(t, v, bytes)
                                    : kqcl_quantize(type, v, raw, rows, cols) == KQCL_OK ? kqcl_tensor_write(t, raw, bytes)
                                                                                         : KQCL_ERR_INVALID_ARG) == KQCL_OK;
    free(v);
    free(raw);
    if (!ok) {
        kqcl_tensor_destroy(t);
        return NULL;
    }
    return t;
}

static double device_us(kqcl_context *ctx, int heads, int kv_heads, int64_t d, int64_t kv_len, kqcl_type cache)
{
    kqcl_attention_params p = {.heads = heads, .kv_heads = kv_heads, .queries = 1, .kv_len = kv_len,
                               .q_query_stride = heads, .q_head_stride = 1, .kv_pos_stride = kv_heads,
                               .kv_head_stride = 1, .scale = 0.125f, .softcap = 0.0f};
    kqcl_tensor *q = filled(ctx, KQCL_TYPE_F32, heads, d), *k = filled(ctx, cache, kv_len * kv_heads, d),
                *v = filled(ctx, cache, kv_len * kv_heads, d), *y = filled(ctx, KQCL_TYPE_F32, heads, d);
    double t[REPS], median_us = -1;
    int n = 0;
    for (int i = 0; q && k && v && y && i < REPS; i++) {
        uint64_t ns = 0;
        if (kqcl_attention(ctx, q, k, v, NULL, &p, y) != KQCL_OK || kqcl_finish(ctx) != KQCL_OK ||
            kqcl_last_device_time(ctx, &ns) != KQCL_OK)
            break;
        t[n++] = (double)ns / 1e3;
    }
    if (n == REPS)
        median_us = median(t, n);
    else
        fprintf(stderr, "attn-probe: %s\n", kqcl_last_error(ctx));
    kqcl_tensor_destroy(q), kqcl_tensor_destroy(k), kqcl_tensor_destroy(v), kqcl_tensor_destroy(y);
    return median_us;
}

/* ---- a decode step's RoPE, cache writes and attention: the two calls against one ----------------
 * One buffer of activations (the query, key and value rows, the turned query, y, the position
 * and the cell) and one of the caches, laid out as llama.cpp lays a step out; each mode's median
 * of REPS steps: the device time of its launches, and the host's time from the first enqueue to
 * the end of kqcl_finish (which a launch's fixed cost is part of). */
typedef struct step_times {
    double device_us, wall_us;
} step_times;

static step_times step_us(kqcl_context *ctx, int heads, int kv_heads, int64_t d, int64_t kv_len, int fused)
{
    step_times out = {-1, -1};
    const size_t align = kqcl_buffer_alignment(ctx, 0);
    const size_t slot = ((size_t)heads * (size_t)d * 4 + align - 1) / align * align;
    const size_t row = (size_t)kv_heads * (size_t)d * 2;
    const size_t cache_bytes = ((size_t)kv_len * row + align - 1) / align * align;
    kqcl_buffer *act = NULL, *cache = NULL;
    if (kqcl_buffer_create(ctx, 0, 7 * slot, &act) != KQCL_OK ||
        kqcl_buffer_create(ctx, 0, 2 * cache_bytes, &cache) != KQCL_OK ||
        kqcl_buffer_fill(act, 0, 0, 7 * slot) != KQCL_OK || kqcl_buffer_fill(cache, 0, 0, 2 * cache_bytes) != KQCL_OK) {
        kqcl_buffer_destroy(act);
        return out;
    }
    kqcl_tensor *qx = NULL, *kx = NULL, *vx = NULL, *q = NULL, *y = NULL;
    kqcl_tensor *kd = NULL, *vd = NULL, *k = NULL, *v = NULL;
    int ok = kqcl_tensor_view(act, 0, KQCL_TYPE_F32, heads, d, &qx) == KQCL_OK &&
             kqcl_tensor_view(act, slot, KQCL_TYPE_F32, kv_heads, d, &kx) == KQCL_OK &&
             kqcl_tensor_view(act, 2 * slot, KQCL_TYPE_F32, kv_heads, d, &vx) == KQCL_OK &&
             kqcl_tensor_view(act, 3 * slot, KQCL_TYPE_F32, heads, d, &q) == KQCL_OK &&
             kqcl_tensor_view(act, 4 * slot, KQCL_TYPE_F32, heads, d, &y) == KQCL_OK &&
             kqcl_tensor_view(cache, 0, KQCL_TYPE_F16, kv_len, kv_heads * d, &kd) == KQCL_OK &&
             kqcl_tensor_view(cache, cache_bytes, KQCL_TYPE_F16, kv_len, kv_heads * d, &vd) == KQCL_OK &&
             kqcl_tensor_view(cache, 0, KQCL_TYPE_F16, kv_len * kv_heads, d, &k) == KQCL_OK &&
             kqcl_tensor_view(cache, cache_bytes, KQCL_TYPE_F16, kv_len * kv_heads, d, &v) == KQCL_OK;
    /* the position (0) and the cell (0) lie in slot 5, zeros from the fill */
    kqcl_rope_params rope = {.n_dims = (int)d, .freq_base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f};
    kqcl_rope_job jobs[3] = {{qx, heads, 0, q, NULL, 0, 0}, {kx, kv_heads, 0, kd, act, 5 * slot, 4},
                             {vx, kv_heads, 1, vd, act, 5 * slot, 4}};
    kqcl_attention_params p = {.heads = heads, .kv_heads = kv_heads, .queries = 1, .kv_len = kv_len,
                               .q_query_stride = heads, .q_head_stride = 1, .kv_pos_stride = kv_heads,
                               .kv_head_stride = 1, .scale = 0.125f, .softcap = 0.0f};
    double dev[REPS], wall[REPS];
    int n = 0;
    const size_t at = 5 * slot;
    for (int i = 0; ok && i < REPS + 1; i++) { /* the first builds the kernels: not counted */
        uint64_t ns = 0, ns2 = 0;
        double t0 = now_us();
        if (fused) {
            ok = kqcl_rope_jobs_attention(ctx, act, at, &rope, 3, jobs, q, k, v, NULL, &p, y) == KQCL_OK &&
                 kqcl_finish(ctx) == KQCL_OK && kqcl_last_device_time(ctx, &ns) == KQCL_OK;
        } else { /* back to back for the wall time; then again, each call's device time apart */
            ok = kqcl_rope_jobs(ctx, act, at, &rope, 3, jobs) == KQCL_OK &&
                 kqcl_attention(ctx, q, k, v, NULL, &p, y) == KQCL_OK && kqcl_finish(ctx) == KQCL_OK;
        }
        double t1 = now_us();
        if (ok && !fused)
            ok = kqcl_rope_jobs(ctx, act, at, &rope, 3, jobs) == KQCL_OK && kqcl_finish(ctx) == KQCL_OK &&
                 kqcl_last_device_time(ctx, &ns2) == KQCL_OK && kqcl_attention(ctx, q, k, v, NULL, &p, y) == KQCL_OK &&
                 kqcl_finish(ctx) == KQCL_OK && kqcl_last_device_time(ctx, &ns) == KQCL_OK;
        if (ok && i > 0)
            dev[n] = (double)(ns + ns2) / 1e3, wall[n++] = t1 - t0;
    }
    if (n == REPS)
        out = (step_times){median(dev, n), median(wall, n)};
    else
        fprintf(stderr, "attn-probe: %s\n", kqcl_last_error(ctx));
    kqcl_tensor *views[] = {qx, kx, vx, q, y, kd, vd, k, v};
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        kqcl_tensor_destroy(views[i]);
    kqcl_buffer_destroy(act), kqcl_buffer_destroy(cache);
    return out;
}

static void step_table(kqcl_context *ctx)
{
    static const int64_t lens[] = {64, 256, 1024};
    printf("\n| heads / kv heads x d | kv_len | two calls: device us | wall us | kqcl_rope_jobs_attention: device us "
           "| wall us |\n| --- | ---: | ---: | ---: | ---: | ---: |\n");
    for (int shape = 0; shape < 2; shape++)
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            int heads = shape ? 4 : 9, kv_heads = shape ? 1 : 3;
            int64_t d = shape ? 256 : 64;
            step_times two = step_us(ctx, heads, kv_heads, d, lens[i], 0);
            step_times one = step_us(ctx, heads, kv_heads, d, lens[i], 1);
            printf("| %d / %d x %lld | %lld | %.1f | %.1f | %.1f | %.1f |\n", heads, kv_heads, (long long)d,
                   (long long)lens[i], two.device_us, two.wall_us, one.device_us, one.wall_us);
        }
}

int main(void)
{
    kqcl_context *ctx = NULL;
    if (kqcl_context_create(NULL, &ctx) != KQCL_OK || kqcl_context_set_timing(ctx, 1) != KQCL_OK) {
        fprintf(stderr, "attn-probe: %s\n", kqcl_last_error(ctx));
        return 1;
    }
    static const int64_t lens[] = {64, 116, 256, 512, 1024, 4096};
    printf("| heads / kv heads x d | cache | kv_len | device us (median of %d) |\n| --- | --- | ---: | ---: |\n", REPS);
    for (int shape = 0; shape < 2; shape++)
        for (int c = 0; c < 2; c++)
            for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
                int heads = shape ? 4 : 9, kv_heads = shape ? 1 : 3;
                int64_t d = shape ? 256 : 64;
                kqcl_type cache = c ? KQCL_TYPE_Q8_0 : KQCL_TYPE_F16;
                printf("| %d / %d x %lld | %s | %lld | %.1f |\n", heads, kv_heads, (long long)d, c ? "q8_0" : "f16",
                       (long long)lens[i], device_us(ctx, heads, kv_heads, d, lens[i], cache));
            }
    step_table(ctx);
    kqcl_context_destroy(ctx);
    return 0;
}
