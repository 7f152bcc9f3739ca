/*
 * stub_tensor.c -- the tensor calls kqcl_gguf_load_tensor makes, for fuzz_gguf and fuzz_writer, which
 * links lib/gguf.c, lib/types.c and lib/error.c alone (no OpenCL). The fuzzer never creates a
 * context, so these are never reached; they only satisfy the linker.
 */
#include "kqcl.h"

kqcl_status kqcl_tensor_create(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols, kqcl_tensor **out)
{
    (void)ctx, (void)type, (void)rows, (void)cols;
    if (out)
        *out = NULL;
    return KQCL_ERR_UNSUPPORTED;
}

kqcl_status kqcl_tensor_write(kqcl_tensor *t, const void *src, size_t nbytes)
{
    (void)t, (void)src, (void)nbytes;
    return KQCL_ERR_UNSUPPORTED;
}

void kqcl_tensor_destroy(kqcl_tensor *t) { (void)t; }

kqcl_status kqcl_tensor_create_split(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols, kqcl_split split,
                                     kqcl_tensor **out)
{
    (void)split;
    return kqcl_tensor_create(ctx, type, rows, cols, out);
}
