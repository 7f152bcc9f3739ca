/*
 * attn-probe.c -- kqcl_attention's device time at a decode step's shapes (SmolLM2's 9 query heads
 * over 3 KV heads of 64, one query; Gemma-3's 4 over 1 of 256), over caches of growing length,
 * f16 and q8_0: the median of 50 calls' kqcl_last_device_time, microseconds. Not part of kqcl; a
 * measuring aid for doc/perf.md (run 31: 53 us a call in a SmolLM2 step, half the step).
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
    kqcl_context_destroy(ctx);
    return 0;
}
