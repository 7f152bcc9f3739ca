/*
 * pick-cost-probe.c -- kqcl's own host time to choose a decode kernel, the part of a launch that
 * is neither ggml's nor the driver's: kq_pick_variant for matvec.cl and for the tensor cores'
 * decode (which the fused forms ask before they launch), and kq_family_kernel (pick, then the
 * program and kernel looked up), each the mean of 20000 calls for SmolLM2's 576 x 576 q4_1 at
 * n = 1 on the context's first device. Built against the static library's internals:
 *   cc -O2 -Iinclude -Ilib -I. -o pick-cost-probe scripts/pick-cost-probe.c \
 *      lib/.libs/libkqcl_core.a -lOpenCL -lclblast -lm -lpthread
 */
#include "kqcl.h"
#include "device/context.h"
#include "kernels/family.h"

#include <stdio.h>
#include <time.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

int main(void)
{
    enum { CALLS = 20000 };
    kqcl_context *ctx;
    if (kqcl_context_create(NULL, &ctx) != KQCL_OK) {
        fprintf(stderr, "%s\n", kqcl_last_error(NULL));
        return 1;
    }
    kq_device *dev = &ctx->devices[0];
    kq_shape s = {.wtype = KQCL_TYPE_Q4_1, .xtype = KQCL_TYPE_F32, .m = 576, .n = 1, .k = 576, .group = 4,
                  .mode = KQCL_PRECISION_F32};
    kq_variant v;
    cl_kernel k;
    if (kq_family_kernel(ctx, dev, &kq_matvec_family, &s, "matvec", &v, &k) != KQCL_OK) { /* built once */
        fprintf(stderr, "%s\n", kqcl_last_error(ctx));
        return 1;
    }
    double t0 = now_us();
    for (int i = 0; i < CALLS; i++)
        kq_pick_variant(NULL, dev, &kq_matvec_family, &s, 0, &v);
    double t1 = now_us();
    for (int i = 0; i < CALLS; i++)
        kq_pick_variant(NULL, dev, &kq_mma_decode_family, &s, 0, &v);
    double t2 = now_us();
    for (int i = 0; i < CALLS; i++)
        kq_family_kernel(ctx, dev, &kq_matvec_family, &s, "matvec", &v, &k);
    double t3 = now_us();
    printf("%s: pick matvec %.2f us, pick mma decode %.2f us, kq_family_kernel %.2f us\n", dev->info.name,
           (t1 - t0) / CALLS, (t2 - t1) / CALLS, (t3 - t2) / CALLS);
    kqcl_context_destroy(ctx);
    return 0;
}
