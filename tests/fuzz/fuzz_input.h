/* fuzz_input.h -- the fuzz targets' reader of their input: bytes, then little-endian integers,
 * zero once the input is spent (so every input is a whole, valid sequence of requests). */
#ifndef KQCL_FUZZ_INPUT_H
#define KQCL_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

static inline uint8_t byte(reader *r)
{
    if (r->left == 0)
        return 0;
    r->left--;
    return *r->p++;
}

/* The next `bytes` bytes (at most 8) as a little-endian integer. */
static inline uint64_t little_endian(reader *r, int bytes)
{
    uint64_t v = 0;
    for (int k = 0; k < bytes; k++)
        v |= (uint64_t)byte(r) << (8 * k);
    return v;
}

static inline uint32_t u32(reader *r) { return (uint32_t)little_endian(r, 4); }
static inline uint64_t u64(reader *r) { return little_endian(r, 8); }

#endif
