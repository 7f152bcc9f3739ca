/* sha256.h -- SHA-256 (FIPS 180-4), for the kernel cache's checksums and entry names. */
#ifndef KQCL_SHA256_H
#define KQCL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define KQ_SHA256_BYTES 32

typedef struct kq_sha256_ctx {
    uint32_t state[8];
    uint64_t length;     /* bytes hashed so far */
    uint8_t block[64];   /* a partial block */
    size_t used;         /* bytes in block */
} kq_sha256_ctx;

void kq_sha256_init(kq_sha256_ctx *s);
void kq_sha256_update(kq_sha256_ctx *s, const void *data, size_t n);
void kq_sha256_final(kq_sha256_ctx *s, uint8_t digest[KQ_SHA256_BYTES]);
/* The digest of one buffer. */
void kq_sha256(const void *data, size_t n, uint8_t digest[KQ_SHA256_BYTES]);

#endif
