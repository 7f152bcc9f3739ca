/*
 * fuzz_codec.c -- libFuzzer target for the host codecs, kqcl_dequantize and kqcl_quantize.
 *
 * The input is  u8 selector | u8 rows | payload.  The selector picks one of kqcl's seven types
 * (selector % 7) and one of three modes (selector / 7 % 3):
 *   0  dequantize: the payload is rows rows of whole blocks of that type (as many blocks a
 *      row as fit, at most 16); dst holds exactly rows x cols floats;
 *   1  quantize: the payload is rows rows of floats, a whole number of blocks a row, NaN,
 *      infinities and subnormals included; then dequantize what came out;
 *   2  raw arguments: the payload is i32 type | i64 rows | i64 cols, passed as they are.
 *      Shapes the API must reject (unknown type, negative rows, cols <= 0 or not a whole
 *      number of blocks, sizes that overflow size_t) must give KQCL_ERR_INVALID_ARG without
 *      touching the 1-byte buffers passed; small valid shapes are run on exact buffers.
 * Every buffer is a heap block of exactly the size the API documents, so AddressSanitizer
 * sees a read or write one byte past it. A failure must leave a message in
 * kqcl_last_error(NULL).
 *
 * `make fuzz` builds and runs it (FUZZ_SECONDS, seeds in tests/fuzz/corpus-codec/); by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Ilib \
 *       tests/fuzz/fuzz_codec.c lib/codec.c lib/types.c lib/error.c -o fuzz_codec
 *   ./fuzz_codec -max_total_time=60 tests/fuzz/corpus-codec
 */
#include "kqcl.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const kqcl_type types[7] = {KQCL_TYPE_F32,  KQCL_TYPE_F16,  KQCL_TYPE_BF16, KQCL_TYPE_Q4_K,
                                   KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K};

#define MAX_BLOCKS_PER_ROW 16

static void expect(int ok)
{
    if (!ok)
        __builtin_trap();
}

/* A heap copy of exactly n bytes (at least 1 so malloc(0) never returns NULL). */
static void *exact_copy(const void *src, size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p && n)
        memcpy(p, src, n);
    return p;
}

static void dequantize_case(kqcl_type type, int64_t rows, const uint8_t *payload, size_t size)
{
    int64_t bs = kqcl_block_size(type);
    size_t block_bytes = kqcl_row_size(type, bs);
    int64_t blocks = (int64_t)(size / (size_t)(rows ? rows : 1) / block_bytes);
    if (blocks > MAX_BLOCKS_PER_ROW)
        blocks = MAX_BLOCKS_PER_ROW;
    int64_t cols = blocks * bs;
    if (cols == 0) {
        float f;
        expect(kqcl_dequantize(type, payload, &f, rows, 0) == KQCL_ERR_INVALID_ARG);
        expect(kqcl_last_error(NULL)[0] != '\0');
        return;
    }
    size_t src_bytes = (size_t)rows * kqcl_row_size(type, cols);
    void *src = exact_copy(payload, src_bytes);
    float *dst = malloc((size_t)rows * (size_t)cols * sizeof *dst + 1);
    if (src && dst)
        expect(kqcl_dequantize(type, src, dst, rows, cols) == KQCL_OK);
    free(src);
    free(dst);
}

static void quantize_case(kqcl_type type, int64_t rows, const uint8_t *payload, size_t size)
{
    int64_t bs = kqcl_block_size(type);
    int64_t per_row = (int64_t)(size / sizeof(float)) / (rows ? rows : 1);
    if (per_row > MAX_BLOCKS_PER_ROW * 256)
        per_row = MAX_BLOCKS_PER_ROW * 256;
    int64_t cols = per_row / bs * bs;
    if (cols == 0) {
        uint8_t b;
        float f = 0;
        expect(kqcl_quantize(type, &f, &b, rows, 0) == KQCL_ERR_INVALID_ARG);
        expect(kqcl_last_error(NULL)[0] != '\0');
        return;
    }
    size_t n = (size_t)rows * (size_t)cols;
    size_t q_bytes = (size_t)rows * kqcl_row_size(type, cols);
    float *src = exact_copy(payload, n * sizeof(float));
    uint8_t *q = malloc(q_bytes ? q_bytes : 1);
    float *back = malloc(n * sizeof *back + 1);
    if (src && q && back) {
        expect(kqcl_quantize(type, src, q, rows, cols) == KQCL_OK);
        expect(kqcl_dequantize(type, q, back, rows, cols) == KQCL_OK);
        for (size_t i = 0; i < n; i++) {
            if (type == KQCL_TYPE_F32) /* a copy, bit for bit */
                expect(memcmp(&src[i], &back[i], sizeof(float)) == 0);
            else if (type == KQCL_TYPE_F16 || type == KQCL_TYPE_BF16) /* NaN stays NaN */
                expect(isnan(src[i]) == isnan(back[i]));
        }
    }
    free(src);
    free(q);
    free(back);
}

/* Would check_args accept this shape? (Mirrors the contract in kqcl.h, not the code.) */
static int shape_overflows(kqcl_type type, int64_t rows, int64_t cols)
{
    size_t row_bytes = kqcl_row_size(type, cols);
    if (row_bytes == 0 || (uint64_t)cols > SIZE_MAX / sizeof(float))
        return 1;
    size_t floats = (size_t)cols * sizeof(float);
    size_t row_max = row_bytes > floats ? row_bytes : floats;
    return rows > 0 && (uint64_t)rows > SIZE_MAX / row_max;
}

static void raw_case(const uint8_t *payload, size_t size)
{
    int32_t type_id = 0;
    int64_t rows = 0, cols = 0;
    uint8_t raw[20] = {0};
    memcpy(raw, payload, size < sizeof raw ? size : sizeof raw);
    memcpy(&type_id, raw, 4);
    memcpy(&rows, raw + 4, 8);
    memcpy(&cols, raw + 12, 8);
    kqcl_type type = (kqcl_type)type_id;
    int64_t bs = kqcl_block_size(type);
    int invalid = bs == 0 || rows < 0 || cols <= 0 || cols % bs != 0 || shape_overflows(type, rows, cols);
    if (invalid) {
        /* 1-byte buffers: a call that reads or writes them before rejecting the shape is
         * caught by AddressSanitizer. */
        uint8_t *q = malloc(1);
        float *f = malloc(1);
        if (q && f) {
            expect(kqcl_dequantize(type, q, f, rows, cols) == KQCL_ERR_INVALID_ARG);
            expect(kqcl_last_error(NULL)[0] != '\0');
            expect(kqcl_quantize(type, f, q, rows, cols) == KQCL_ERR_INVALID_ARG);
            expect(kqcl_last_error(NULL)[0] != '\0');
        }
        free(q);
        free(f);
        /* NULL buffers are rejected whatever the shape. */
        expect(kqcl_dequantize(type, NULL, NULL, rows, cols) == KQCL_ERR_INVALID_ARG);
        return;
    }
    size_t n = (size_t)rows * (size_t)cols;
    if (n > ((size_t)1 << 16))
        return; /* valid but too big to be worth running */
    uint8_t *q = calloc(1, (size_t)rows * kqcl_row_size(type, cols) + 1);
    float *f = calloc(n + 1, sizeof *f);
    if (q && f) {
        expect(kqcl_quantize(type, f, q, rows, cols) == KQCL_OK);
        expect(kqcl_dequantize(type, q, f, rows, cols) == KQCL_OK);
    }
    free(q);
    free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    kqcl_type type = types[data[0] % 7];
    int mode = data[0] / 7 % 3;
    int64_t rows = data[1] % 4;
    const uint8_t *payload = data + 2;
    size -= 2;
    if (mode == 0)
        dequantize_case(type, rows, payload, size);
    else if (mode == 1)
        quantize_case(type, rows, payload, size);
    else
        raw_case(payload, size);
    return 0;
}
