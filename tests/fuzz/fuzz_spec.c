/*
 * fuzz_spec.c -- libFuzzer target for the device spec grammar of kqcl_context_create (the same
 * text as KQCL_DEVICES and `kqcl ... --device SPEC`). The input, cut at its first NUL and at
 * 1100 bytes (the parser's limit is 1024), is the spec. The call really opens the devices a
 * good spec names, so each run costs an OpenCL context: slow next to the other targets, which
 * is why `make fuzz` gives it short inputs (-max_len=64). Checks: the status is one the
 * grammar allows; on failure *out is NULL and kqcl_last_error(NULL) says why; on success the
 * context has at least one device, each of which reports its info.
 *
 * It needs an OpenCL platform (PoCL is enough; with none every call is KQCL_ERR_NO_DEVICE and
 * the grammar is not reached). `make fuzz` builds and runs it with the rest of the library;
 * seeds are in tests/fuzz/corpus-spec/.
 */
#include "kqcl.h"

#include <stdint.h>
#include <string.h>

static void expect(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char spec[1101];
    if (size > sizeof spec - 1)
        size = sizeof spec - 1;
    memcpy(spec, data, size);
    spec[size] = '\0';
    kqcl_context *ctx = (kqcl_context *)&spec; /* must be overwritten with NULL on failure */
    kqcl_status st = kqcl_context_create(spec, &ctx);
    if (st != KQCL_OK) {
        expect(st == KQCL_ERR_INVALID_ARG || st == KQCL_ERR_NO_DEVICE || st == KQCL_ERR_DEVICE ||
               st == KQCL_ERR_OUT_OF_MEMORY);
        expect(ctx == NULL);
        expect(kqcl_last_error(NULL)[0] != '\0');
        return 0;
    }
    int n = kqcl_device_count(ctx);
    expect(n >= 1);
    for (int i = 0; i < n; i++) {
        kqcl_device_info info;
        expect(kqcl_device_get_info(ctx, i, &info) == KQCL_OK);
        expect(memchr(info.name, '\0', sizeof info.name) != NULL);
    }
    kqcl_device_info info;
    expect(kqcl_device_get_info(ctx, n, &info) == KQCL_ERR_INVALID_ARG);
    kqcl_context_destroy(ctx);
    return 0;
}
