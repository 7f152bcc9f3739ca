/* error.c -- status strings and the last-error slots (per context, and per thread). */
#include "base/internal.h"

#include <stdio.h>
#include <string.h>

#define ERROR_CAPACITY KQ_ERROR_BYTES /* room for a kernel build log excerpt */

static _Thread_local char thread_error[ERROR_CAPACITY];

char *kq_thread_error_buffer(size_t *capacity)
{
    *capacity = sizeof thread_error;
    return thread_error;
}

static char *slot_of(kqcl_context *ctx, size_t *capacity)
{
    if (ctx == NULL)
        return kq_thread_error_buffer(capacity);
    *capacity = KQ_ERROR_BYTES;
    return kq_context_error(ctx);
}

kqcl_status kq_vfail(kqcl_context *ctx, kqcl_status status, const char *fmt, va_list ap)
{
    size_t capacity;
    char *slot = slot_of(ctx, &capacity);
    vsnprintf(slot, capacity, fmt, ap);
    return status;
}

kqcl_status kq_fail(kqcl_context *ctx, kqcl_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kq_vfail(ctx, status, fmt, ap);
    va_end(ap);
    return status;
}

void kq_clear_error(kqcl_context *ctx)
{
    size_t capacity;
    slot_of(ctx, &capacity)[0] = '\0';
}

KQCL_API const char *kqcl_last_error(const kqcl_context *ctx)
{
    size_t capacity;
    return ctx ? kq_context_error((kqcl_context *)ctx) : kq_thread_error_buffer(&capacity);
}

KQCL_API const char *kqcl_status_string(kqcl_status status)
{
    switch (status) {
    case KQCL_OK: return "ok";
    case KQCL_ERR_INVALID_ARG: return "invalid argument";
    case KQCL_ERR_NO_DEVICE: return "no matching OpenCL device";
    case KQCL_ERR_BUILD: return "kernel build failed";
    case KQCL_ERR_OUT_OF_MEMORY: return "out of memory";
    case KQCL_ERR_DEVICE: return "OpenCL device error";
    case KQCL_ERR_UNSUPPORTED: return "unsupported";
    case KQCL_ERR_IO: return "I/O error";
    case KQCL_ERR_FORMAT: return "malformed data";
    }
    return "unknown status";
}

KQCL_API const char *kqcl_version(void) { return KQCL_VERSION_STRING; }
