/*
 * fuzz_tensor.c -- libFuzzer target for the shapes and byte counts that kqcl_tensor_create,
 * kqcl_tensor_write and kqcl_tensor_read take. The input is read as
 *   byte 0       type id (any value: unknown ids must be refused)
 *   bytes 1..8   rows, int64 little-endian
 *   bytes 9..16  cols, int64 little-endian
 *   bytes 17..20 nbytes offset, int32: the count passed is the tensor's size plus this
 * and the rest is data. Shapes over 1 MiB of data are clamped before creation, so a run stays
 * small; the refusals (bad type, bad shape, wrong count) must come back as statuses with a
 * message, never a crash, and a good write must read back byte for byte. One PoCL context is
 * made once and reused. `make fuzz` builds it with the library; seeds in corpus-tensor/.
 */
#include "kqcl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BYTES (1u << 20)

static void expect(int ok)
{
    if (!ok)
        __builtin_trap();
}

static int64_t load_i64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return (int64_t)v;
}

static kqcl_context *shared_context(void)
{
    static kqcl_context *ctx;
    if (ctx == NULL && kqcl_context_create(NULL, &ctx) != KQCL_OK)
        ctx = NULL;
    return ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kqcl_context *ctx = shared_context();
    if (ctx == NULL || size < 21)
        return 0;
    kqcl_type type = (kqcl_type)data[0];
    int64_t rows = load_i64(data + 1), cols = load_i64(data + 9);
    int32_t delta = (int32_t)((uint32_t)data[17] | (uint32_t)data[18] << 8 | (uint32_t)data[19] << 16 |
                              (uint32_t)data[20] << 24);
    size_t row = kqcl_row_size(type, cols);
    if (row != 0 && rows > 0 && (uint64_t)rows > MAX_BYTES / row)
        rows = (int64_t)(MAX_BYTES / row); /* keep a run small; 0 when one row is too big */

    kqcl_tensor *t = (kqcl_tensor *)&ctx; /* must become NULL on failure */
    kqcl_status st = kqcl_tensor_create(ctx, type, rows, cols, &t);
    if (st != KQCL_OK) {
        expect(t == NULL);
        expect(kqcl_last_error(ctx)[0] != '\0');
        expect(st == KQCL_ERR_INVALID_ARG || st == KQCL_ERR_UNSUPPORTED || st == KQCL_ERR_OUT_OF_MEMORY);
        return 0;
    }
    size_t bytes = kqcl_tensor_bytes(t);
    expect(bytes == (size_t)rows * row);
    size_t given = (int64_t)bytes + delta < 0 ? 0 : (size_t)((int64_t)bytes + delta);
    if (given > bytes + 4096)
        given = bytes + 4096;
    uint8_t *src = calloc(1, given + 1), *back = calloc(1, bytes + 1);
    if (src != NULL && back != NULL) {
        size_t payload = size - 21;
        for (size_t i = 0; i < given; i++)
            src[i] = (uint8_t)((payload ? data[21 + i % payload] : 0) ^ (uint8_t)i);
        st = kqcl_tensor_write(t, src, given);
        if (given != bytes) {
            expect(st == KQCL_ERR_INVALID_ARG);
        } else {
            expect(st == KQCL_OK);
            expect(kqcl_tensor_read(t, back, bytes) == KQCL_OK);
            expect(memcmp(src, back, bytes) == 0);
        }
        expect(kqcl_tensor_read(t, back, bytes + 1) == KQCL_ERR_INVALID_ARG);
    }
    free(src);
    free(back);
    kqcl_tensor_destroy(t);
    return 0;
}
