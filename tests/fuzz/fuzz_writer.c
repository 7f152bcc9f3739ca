/*
 * fuzz_writer.c -- libFuzzer target for the GGUF writer. The input is a script: each step a
 * byte choosing an operation (set a scalar, a string, an array, the alignment; add a tensor of
 * any type id, shape and byte count) and the bytes it needs. Whatever the writer accepts and
 * writes must be read back by the reader, key for key and tensor for tensor; what it refuses
 * must leave no file. `make fuzz` runs it (seeds in tests/fuzz/corpus-writer/).
 */
#include "gguf/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include <unistd.h>

/* A name of 0..79 bytes (NUL-free: C strings), from a small alphabet so that repeats happen. */
static void name(reader *r, char *out)
{
    size_t n = byte(r) % 80;
    for (size_t k = 0; k < n; k++)
        out[k] = (char)(1 + byte(r) % 4 + (k % 7 == 3 ? 0x1a : 'a'));
    out[n] = '\0';
}

static uint8_t payload[1 << 16];

static void step(kqcl_gguf_writer *w, reader *r)
{
    char key[96];
    uint8_t op = byte(r) % 6;
    name(r, key);
    switch (op) {
    case 0: { /* a scalar of any type id, valid or not */
        uint64_t value = (uint64_t)u32(r) << 32 | u32(r);
        kqcl_gguf_writer_set_scalar(w, key, (kqcl_gguf_type)(byte(r) % 14), &value);
        break;
    }
    case 1:
        kqcl_gguf_writer_set_string(w, key, (const char *)payload + byte(r));
        break;
    case 2:
        kqcl_gguf_writer_set_array(w, key, (kqcl_gguf_type)(byte(r) % 14), payload, byte(r));
        break;
    case 3:
        kqcl_gguf_writer_set_u32(w, "general.alignment", u32(r) >> (byte(r) % 32));
        break;
    default: { /* a tensor: any type id, up to 4 dims, an nbytes near the right one */
        int64_t ne[4];
        int n_dims = byte(r) % 6;
        for (int d = 0; d < 4; d++)
            ne[d] = (int64_t)(byte(r) % 9) << (byte(r) % 8);
        uint32_t type = byte(r) % 48;
        int64_t values = 0;
        size_t bytes = 0;
        uint64_t nbytes = u32(r) % sizeof payload;
        if (kqcl_ggml_type_info(type, NULL, &values, &bytes) == KQCL_OK && values > 0) {
            ne[0] = ne[0] / values * values;
            uint64_t n = 1;
            for (int d = 0; d < (n_dims < 1 ? 1 : n_dims > 4 ? 4 : n_dims); d++)
                n *= (uint64_t)ne[d];
            if (byte(r) % 4 != 0 && n / (uint64_t)values * bytes < sizeof payload)
                nbytes = n / (uint64_t)values * bytes; /* mostly right, sometimes not */
        }
        kqcl_gguf_writer_add_tensor(w, key, type, n_dims, ne, payload, nbytes);
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[256];
    if (path[0] == '\0') {
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/kqcl-fuzz-writer-%ld.gguf", tmp && *tmp ? tmp : "/tmp", (long)getpid());
        for (size_t k = 0; k < sizeof payload; k++)
            payload[k] = (uint8_t)(k * 31 + 7) | (k % 97 == 0 ? 0 : 1); /* NULs now and then */
    }
    reader r = {data, size};
    kqcl_gguf_writer *w;
    if (kqcl_gguf_writer_create(&w) != KQCL_OK)
        __builtin_trap();
    for (int i = 0; i < 64 && r.left > 0; i++)
        step(w, &r);
    unlink(path);
    if (kqcl_gguf_writer_write(w, path) == KQCL_OK) {
        kqcl_gguf *g = NULL;
        if (kqcl_gguf_open(path, &g) != KQCL_OK) /* what the writer writes, the reader reads */
            __builtin_trap();
        for (int64_t i = 0; i < kqcl_gguf_tensor_count(g); i++) {
            kqcl_gguf_tensor t;
            if (kqcl_gguf_tensor_info(g, i, &t) != KQCL_OK || kqcl_gguf_find_tensor(g, t.name) != i)
                __builtin_trap();
        }
        kqcl_gguf_close(g);
    } else if (access(path, F_OK) == 0) {
        __builtin_trap(); /* a failed write leaves nothing behind */
    }
    unlink(path);
    kqcl_gguf_writer_destroy(w);
    return 0;
}
