/*
 * kqcl -- the command-line tool: list devices, benchmark the kernels, inspect and run GGUF
 * files. Each subcommand lives in its own file; this one dispatches and lists devices.
 */
#include "commands.h"
#include "kqcl.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static void print_device(int index, const kqcl_device_info *d)
{
    printf("%d: %s\n", index, d->name);
    printf("   platform  %s | vendor %s | driver %s\n", d->platform, d->vendor, d->driver);
    printf("   kind      %s, %d compute units\n", d->is_gpu ? "GPU" : "CPU/other", d->compute_units);
    printf("   memory    %.1f GiB global, %.1f GiB largest allocation, %llu KiB local\n",
           (double)d->global_mem_bytes / (1 << 30), (double)d->max_alloc_bytes / (1 << 30),
           (unsigned long long)(d->local_mem_bytes / 1024));
    /* reported for the reader; kqcl's kernels are OpenCL C 1.2 and use none of these yet */
    printf("   reports   fp16 %s, subgroups %s, integer dot %s (not used by kqcl's kernels)\n",
           d->has_fp16 ? "yes" : "no", d->has_subgroups ? "yes" : "no", d->has_int_dot ? "yes" : "no");
    if (d->nv_compute_capability)
        printf("   NVIDIA    compute capability %d.%d (inline PTX from 3.0, tensor cores from 8.0)\n",
               d->nv_compute_capability / 10, d->nv_compute_capability % 10);
    if (d->variant[0])
        printf("   kernels   %s\n", d->variant);
}

static int cmd_devices(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: kqcl devices\n  Lists every OpenCL platform and device, and what kqcl uses of each.\n"
               "  The default device (KQCL_DEVICES, else the first GPU, else device 0) is marked '*'.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "kqcl devices: unexpected argument '%s'\n", argv[1]);
        return 2;
    }
    kqcl_device_info infos[64];
    int count = 0;
    kqcl_status st = kqcl_list_devices(infos, 64, &count);
    if (st != KQCL_OK) {
        fprintf(stderr, "kqcl devices: %s: %s\n", kqcl_status_string(st), kqcl_last_error(NULL));
        return 1;
    }
    kqcl_context *ctx = NULL;
    kqcl_device_info chosen;
    memset(&chosen, 0, sizeof chosen);
    if (kqcl_context_create(NULL, &ctx) == KQCL_OK)
        kqcl_device_get_info(ctx, 0, &chosen);
    for (int i = 0; i < count && i < 64; i++) {
        bool is_default = ctx && strcmp(chosen.name, infos[i].name) == 0 && strcmp(chosen.platform, infos[i].platform) == 0;
        if (is_default)
            strcpy(infos[i].variant, chosen.variant);
        printf("%s", is_default ? "*" : " ");
        print_device(i, &infos[i]);
        if (is_default)
            ctx = (kqcl_context_destroy(ctx), NULL); /* mark only the first match */
    }
    kqcl_context_destroy(ctx);
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: kqcl COMMAND [ARGS]   (kqcl COMMAND --help for each)\n\n"
                 "  devices    list OpenCL devices and what kqcl uses of them\n"
                 "  bench      time the fused matmuls against the unfused path and memory bandwidth\n"
                 "  gguf       describe a GGUF file (--json for scripts)\n"
                 "  run        load a GGUF model's weights onto devices and time their matmuls\n"
                 "  quantize   re-quantize a GGUF file's float weights to a k-quant\n"
                 "  plan       place a model's layers on several devices (layer or tensor split)\n"
                 "  version    print kqcl's version\n\n"
                 "Devices are chosen with --device/--devices SPEC or KQCL_DEVICES (see kqcl(1)).\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "devices") == 0)
        return cmd_devices(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return kq_cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "gguf") == 0)
        return kq_cmd_gguf(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0)
        return kq_cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "quantize") == 0)
        return kq_cmd_quantize(argc - 1, argv + 1);
    if (strcmp(cmd, "plan") == 0)
        return kq_cmd_plan(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("kqcl %s\n", kqcl_version());
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "kqcl: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
