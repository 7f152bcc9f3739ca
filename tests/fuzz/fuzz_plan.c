/*
 * fuzz_plan.c -- libFuzzer target for the planner (kqcl_plan_create, kqcl_plan_describe).
 * The input is a request: a byte of devices (1..8), a byte of layers (1..32), a mode byte, then
 * per device its 64 name bytes (no NUL needed) and memory, per layer a tensor count (0..8) and
 * that many 64-bit sizes, anything the bytes give -- sizes that sum past 2^64 included. The
 * plan's numbers must agree with the request (every placed byte on a device that holds it).
 * `make fuzz` runs it (seeds in tests/fuzz/corpus-plan/).
 */
#include "kqcl.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    int n_devices = 1 + byte(&r) % 8, n_layers = 1 + byte(&r) % 32;
    kqcl_plan_mode mode = (kqcl_plan_mode)(byte(&r) % 4); /* 3: out of range, must be refused */
    /* on the heap, exactly sized: a read past a name or a size is an ASan report */
    kqcl_plan_device *devs = malloc((size_t)n_devices * sizeof *devs);
    kqcl_plan_layer *layers = calloc((size_t)n_layers, sizeof *layers);
    uint64_t **sizes = calloc((size_t)n_layers, sizeof *sizes);
    if (devs == NULL || layers == NULL || sizes == NULL)
        __builtin_trap();
    for (int d = 0; d < n_devices; d++) {
        for (size_t k = 0; k < sizeof devs[d].name; k++)
            devs[d].name[k] = (char)byte(&r);
        devs[d].memory_bytes = u64(&r);
        devs[d].speed_gbps = byte(&r);
        devs[d].link_gbps = byte(&r);
        devs[d].link_latency_us = byte(&r);
    }
    for (int i = 0; i < n_layers; i++) {
        int n = byte(&r) % 9;
        sizes[i] = malloc((size_t)(n ? n : 1) * sizeof **sizes);
        if (sizes[i] == NULL)
            __builtin_trap();
        for (int t = 0; t < n; t++)
            sizes[i][t] = u64(&r) >> (byte(&r) % 64);
        layers[i] = (kqcl_plan_layer){.name = "layer", .n_tensors = n, .tensor_bytes = sizes[i]};
    }
    kqcl_plan_request req = {n_devices, devs, n_layers, layers, mode, (int64_t)(u64(&r) >> 20)};
    kqcl_plan *plan = NULL;
    if (kqcl_plan_create(&req, &plan) == KQCL_OK) {
        if (kqcl_plan_mode_chosen(plan) == KQCL_PLAN_AUTO)
            __builtin_trap();
        for (int i = 0; i < n_layers; i++) {
            int d = kqcl_plan_layer_device(plan, i);
            if (d < -1 || d >= n_devices)
                __builtin_trap();
        }
        size_t needed = 0;
        char small[16];
        if (kqcl_plan_describe(plan, small, sizeof small, &needed) != KQCL_OK || needed == 0 ||
            strlen(small) >= sizeof small)
            __builtin_trap();
        char *text = malloc(needed);
        if (text == NULL || kqcl_plan_describe(plan, text, needed, NULL) != KQCL_OK || strlen(text) + 1 != needed)
            __builtin_trap();
        free(text);
    } else if (plan != NULL) {
        __builtin_trap();
    }
    kqcl_plan_destroy(plan);
    for (int i = 0; i < n_layers; i++)
        free(sizes[i]);
    free(sizes), free(layers), free(devs);
    return 0;
}
