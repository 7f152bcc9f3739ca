/* examples/matmul.c -- y = x . w^T with q4_K weights on the default device, checked on the host.
 * Build: cc matmul.c $(pkg-config --cflags --libs kqcl) -o matmul; exit status 0 when right. */
#include <kqcl.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { M = 64, K = 512, N = 2 }; /* w: M x K (K a multiple of q4_K's 256), x: N x K, y: N x M */

static int fail(kqcl_context *ctx, const char *what)
{
    fprintf(stderr, "matmul: %s: %s\n", what, kqcl_last_error(ctx));
    return 1;
}

int main(void)
{
    static float w_floats[M * K], x[N * K], y[N * M], w_back[M * K];
    for (int i = 0; i < M * K; i++)
        w_floats[i] = sinf(0.1f * (float)i);
    for (int i = 0; i < N * K; i++)
        x[i] = cosf(0.3f * (float)i);
    size_t w_bytes = M * kqcl_row_size(KQCL_TYPE_Q4_K, K);
    void *w_blocks = malloc(w_bytes);
    if (w_blocks == NULL || kqcl_quantize(KQCL_TYPE_Q4_K, w_floats, w_blocks, M, K) != KQCL_OK)
        return fail(NULL, "quantize");

    kqcl_context *ctx;
    kqcl_tensor *w, *xt, *yt;
    if (kqcl_context_create(NULL, &ctx) != KQCL_OK) /* KQCL_DEVICES, else the first GPU */
        return fail(NULL, "context");
    if (kqcl_tensor_create(ctx, KQCL_TYPE_Q4_K, M, K, &w) != KQCL_OK ||
        kqcl_tensor_create(ctx, KQCL_TYPE_F32, N, K, &xt) != KQCL_OK ||
        kqcl_tensor_create(ctx, KQCL_TYPE_F32, N, M, &yt) != KQCL_OK)
        return fail(ctx, "tensors");
    if (kqcl_tensor_write(w, w_blocks, kqcl_tensor_bytes(w)) != KQCL_OK ||
        kqcl_tensor_write(xt, x, sizeof x) != KQCL_OK)
        return fail(ctx, "write");
    if (kqcl_matmul(ctx, w, xt, yt) != KQCL_OK) /* y = x . w^T, dequantized inside the kernel */
        return fail(ctx, "matmul");
    if (kqcl_tensor_read(yt, y, sizeof y) != KQCL_OK)
        return fail(ctx, "read");

    /* The same product on the host: kqcl's own dequantization, then float64 dot products. */
    if (kqcl_dequantize(KQCL_TYPE_Q4_K, w_blocks, w_back, M, K) != KQCL_OK)
        return fail(NULL, "dequantize");
    double worst = 0;
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < M; m++) {
            double ref = 0, scale = 0;
            for (int k = 0; k < K; k++) {
                ref += (double)x[n * K + k] * w_back[m * K + k];
                scale += fabs((double)x[n * K + k] * w_back[m * K + k]);
            }
            double err = fabs(y[n * M + m] - ref) / (scale > 0 ? scale : 1);
            worst = err > worst || isnan(err) ? err : worst;
        }
    }
    kqcl_tensor_destroy(w);
    kqcl_tensor_destroy(xt);
    kqcl_tensor_destroy(yt);
    kqcl_context_destroy(ctx);
    free(w_blocks);
    printf("y[0][0] = %.6f, largest relative error %.2e\n", y[0], worst);
    return worst <= 1e-5 ? 0 : 1; /* the bound kqcl_matmul promises */
}
