/*
 * fuzz_gguf.c -- libFuzzer target for the GGUF reader. Parses the input in memory, then walks
 * everything a caller can reach (every value, nested arrays, every tensor's bytes) and copies
 * the metadata into a writer, so a parse that "succeeds" on a bad file cannot hide a bad
 * pointer either. `make fuzz` builds and runs it (FUZZ_SECONDS, seeds in tests/fuzz/corpus/);
 * by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Ilib tests/fuzz/fuzz_gguf.c \
 *       lib/gguf.c lib/types.c lib/error.c tests/fuzz/stub_tensor.c -o fuzz_gguf
 *   ./fuzz_gguf -max_total_time=60 tests/fuzz/corpus
 * (stub_tensor.c stands in for the three tensor calls: the device side is not needed).
 */
#include "gguf/gguf.h"

#include <string.h>

/* Touch every byte a value refers to; depth is bounded by the reader (16 levels). */
static uint64_t walk_value(const kqcl_gguf_value *v)
{
    uint64_t sum = 0;
    int64_t s;
    uint64_t u;
    double d;
    int b;
    const char *text;
    size_t length;
    if (kqcl_gguf_value_int64(v, &s) == KQCL_OK)
        sum += (uint64_t)s;
    if (kqcl_gguf_value_uint64(v, &u) == KQCL_OK)
        sum += u;
    if (kqcl_gguf_value_double(v, &d) == KQCL_OK)
        sum += d == d;
    if (kqcl_gguf_value_bool(v, &b) == KQCL_OK)
        sum += (uint64_t)b;
    if (kqcl_gguf_value_string(v, &text, &length) == KQCL_OK)
        sum += strlen(text) + length + (length ? (uint8_t)text[length - 1] : 0);
    if (v->type == KQCL_GGUF_TYPE_ARRAY) {
        for (uint64_t j = 0; j < v->length; j++) {
            kqcl_gguf_value e;
            if (kqcl_gguf_value_item(v, j, &e) != KQCL_OK)
                __builtin_trap(); /* every index below length must be reachable */
            sum += walk_value(&e);
        }
    }
    return sum;
}

static uint64_t walk_tensors(const kqcl_gguf *g)
{
    uint64_t sum = 0;
    for (int64_t i = 0; i < kqcl_gguf_tensor_count(g); i++) {
        kqcl_gguf_tensor t;
        if (kqcl_gguf_tensor_info(g, i, &t) != KQCL_OK || kqcl_gguf_find_tensor(g, t.name) != i)
            __builtin_trap();
        const uint8_t *data = t.data;
        for (uint64_t k = 0; k < t.nbytes; k += 61)
            sum += data[k];
        if (t.nbytes != 0)
            sum += data[t.nbytes - 1];
    }
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kqcl_gguf *g;
    if (kq_gguf_open_memory(data, size, &g) != KQCL_OK)
        return 0;
    volatile uint64_t sink = walk_tensors(g);
    kqcl_gguf_writer *w = NULL;
    kqcl_gguf_writer_create(&w);
    for (int64_t i = 0; i < kqcl_gguf_kv_count(g); i++) {
        kqcl_gguf_value v;
        if (kqcl_gguf_get_value(g, i, &v) != KQCL_OK)
            __builtin_trap();
        sink += walk_value(&v);
        sink += (uint64_t)kqcl_gguf_find_key(g, kqcl_gguf_key(g, i));
        kqcl_gguf_writer_copy_kv(w, g, i);
    }
    (void)sink;
    kqcl_gguf_writer_destroy(w);
    kqcl_gguf_close(g);
    return 0;
}
