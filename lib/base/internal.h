/*
 * internal.h -- what the library's files share. Never installed. Every symbol here is hidden
 * from the shared library (built with -fvisibility=hidden; only KQCL_API names are exported).
 */
#ifndef KQCL_INTERNAL_H
#define KQCL_INTERNAL_H

#define KQCL_BUILDING 1
#include "kqcl.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../cl/kquant_layout.h" /* QK_K and the blocks' layout, the one place they are stated */

/* --- errors (error.c) --------------------------------------------------------------------- */

/* A context's last message: the first member of struct kqcl_context (device/context.h), so that
 * error.c, below the devices, records it knowing nothing else of the context. */
#define KQ_ERROR_BYTES 16384
static inline char *kq_context_error(kqcl_context *ctx) { return (char *)ctx; }

/* Record a failure message and return `status`. ctx may be NULL: the message then goes to
 * this thread's context-less slot, read by kqcl_last_error(NULL). */
kqcl_status kq_fail(kqcl_context *ctx, kqcl_status status, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;
kqcl_status kq_vfail(kqcl_context *ctx, kqcl_status status, const char *fmt, va_list ap);
/* Clear the context's (or thread's) last error at the start of a public call. */
void kq_clear_error(kqcl_context *ctx);
/* The per-thread context-less message buffer. */
char *kq_thread_error_buffer(size_t *capacity);

/* --- the environment (env.c): every variable kqcl reads goes through these ---------------- */

/* The value as set (NULL when unset; "" when set empty). */
const char *kq_env(const char *name);
/* The value, or NULL when unset or empty: most variables treat the two alike. */
const char *kq_env_nonempty(const char *name);
/* Whether it is set to exactly `value`. */
bool kq_env_is(const char *name, const char *value);
/* Whether it is a positive decimal integer (nothing else), in *out. */
bool kq_env_positive(const char *name, uint64_t *out);

/* --- host codecs (codec.c) ----------------------------------------------------------------- */

float kq_half_to_float(uint16_t h);
uint16_t kq_float_to_half(float f);
float kq_bf16_to_float(uint16_t b);
uint16_t kq_float_to_bf16(float f);
/* Dequantize one row of `cols` values; src holds kqcl_row_size(type, cols) bytes. */
void kq_dequantize_row(kqcl_type type, const void *src, float *dst, int64_t cols);
bool kq_type_is_known(kqcl_type type);
bool kq_type_is_kquant(kqcl_type type); /* the 256-value k-quants */
bool kq_type_is_quant(kqcl_type type);  /* any block-quantized type: the k-quants, q4_0, q8_0 */
/* Bytes of one block and values in it. */
size_t kq_block_bytes(kqcl_type type);
/* Values and bytes of one block of any type ggml defines (kqcl_ggml_type_info); false for an
 * id ggml does not define. */
bool kq_ggml_type_size(uint32_t type, int64_t *block_values, size_t *block_bytes);

#endif
