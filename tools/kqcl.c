/*
 * kqcl -- the command-line tool: list devices, benchmark the kernels, inspect and run GGUF
 * files. Each subcommand lives in its own file; this one dispatches and lists devices.
 */
#include "commands.h"
#include "kqcl.h"
#include "util.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEVICES 64

/* What a context on the device gets: its precision as created (KQCL_PRECISION, else f32), and
 * what AUTO resolves to there (kqcl_precision_chosen) for q4_K and f16 weights in decode (n = 1)
 * and prefill (n = 512). */
typedef struct precision_info {
    bool known;
    kqcl_precision initial;
    kqcl_precision q4k_decode, q4k_prefill, f16_decode, f16_prefill;
    const char *dot; /* the form of the 4-byte integer dot product Q8 decode runs there */
    char why[256];   /* known: why AUTO picks so; else why it could not be told */
    char tuning[128];              /* kqcl_device_tuning: where the defaults come from */
    int params[KQCL_PARAM_COUNT]; /* the device's parameters in force (kqcl_context_get_param) */
} precision_info;

/* Q8's integer dot product on the device, as cl/q8.cl chooses it: dp4a through inline PTX on
 * NVIDIA from compute capability 6.1 (where the context's kernels have inline PTX: not under
 * KQCL_PORTABLE or after a failed build), else cl_khr_integer_dot_product where the device has
 * it (and KQCL_INT_DOT, a library switch, is not 0), else plain char4 arithmetic. */
static const char *dot_form(const kqcl_device_info *d, const char *variant)
{
    const char *int_dot = getenv("KQCL_INT_DOT");
    if (d->nv_compute_capability >= 61 && strstr(variant, "inline PTX") != NULL)
        return "dp4a (inline PTX)";
    if (d->has_int_dot && !(int_dot && strcmp(int_dot, "0") == 0))
        return "cl_khr_integer_dot_product";
    return "char4 arithmetic";
}

/* A context of the device alone (spec "N", its index), set to AUTO and asked. */
static void precision_of(const kqcl_device_info *d, precision_info *p)
{
    char spec[16];
    kqcl_context *ctx = NULL;
    kqcl_device_info info;
    *p = (precision_info){.known = false};
    snprintf(spec, sizeof spec, "%d", d->list_index);
    kqcl_status st = kqcl_context_create(spec, &ctx);
    if (st != KQCL_OK) {
        snprintf(p->why, sizeof p->why, "%s", kqcl_last_error(NULL));
        return;
    }
    p->initial = kqcl_context_precision(ctx);
    st = kqcl_device_get_info(ctx, 0, &info);
    if (st == KQCL_OK)
        st = kqcl_context_set_precision(ctx, KQCL_PRECISION_AUTO);
    if (st == KQCL_OK)
        st = kqcl_precision_chosen(ctx, 0, KQCL_TYPE_Q4_K, 1, &p->q4k_decode);
    if (st == KQCL_OK)
        st = kqcl_precision_chosen(ctx, 0, KQCL_TYPE_Q4_K, 512, &p->q4k_prefill);
    if (st == KQCL_OK)
        st = kqcl_precision_chosen(ctx, 0, KQCL_TYPE_F16, 1, &p->f16_decode);
    if (st == KQCL_OK)
        st = kqcl_precision_chosen(ctx, 0, KQCL_TYPE_F16, 512, &p->f16_prefill);
    if (st != KQCL_OK) {
        snprintf(p->why, sizeof p->why, "%s", kqcl_last_error(ctx));
        kqcl_context_destroy(ctx);
        return;
    }
    for (int i = 0; i < KQCL_PARAM_COUNT && st == KQCL_OK; i++)
        st = kqcl_context_get_param(ctx, 0, (kqcl_param)i, &p->params[i]);
    snprintf(p->tuning, sizeof p->tuning, "%s", kqcl_device_tuning(ctx, 0));
    p->known = st == KQCL_OK;
    p->dot = dot_form(d, info.variant);
    if (d->is_gpu)
        snprintf(p->why, sizeof p->why, "GPU: integer dot products for quantized decode, %s", p->dot);
    else
        snprintf(p->why, sizeof p->why, "CPU: f32, the tuned CPU kernels (q8 when asked: %s)", p->dot);
    kqcl_context_destroy(ctx);
}

/* "q4_K decode q8, prefill bf16; f16 weights f16" */
static const char *auto_summary(const precision_info *p, char *buf, size_t size)
{
    char f16[64];
    if (p->f16_decode == p->f16_prefill)
        snprintf(f16, sizeof f16, "%s", kqcl_precision_name(p->f16_decode));
    else
        snprintf(f16, sizeof f16, "decode %s, prefill %s", kqcl_precision_name(p->f16_decode),
                 kqcl_precision_name(p->f16_prefill));
    snprintf(buf, size, "q4_K decode %s, prefill %s; f16 weights %s", kqcl_precision_name(p->q4k_decode),
             kqcl_precision_name(p->q4k_prefill), f16);
    return buf;
}

/* The parameters in force, name=value ("auto": chosen per call), wrapped under the tuning
 * entry they come from. */
static void print_params(const precision_info *p)
{
    char safe[160];
    printf("   tuning    %s\n            ", kq_text_escaped(p->tuning, safe, sizeof safe));
    int col = 12;
    for (int i = 0; i < KQCL_PARAM_COUNT; i++) {
        char item[64];
        if (p->params[i] == KQCL_PARAM_AUTO)
            snprintf(item, sizeof item, " %s=auto", kqcl_param_name((kqcl_param)i));
        else
            snprintf(item, sizeof item, " %s=%d", kqcl_param_name((kqcl_param)i), p->params[i]);
        if (col + (int)strlen(item) > 90) {
            printf("\n            ");
            col = 12;
        }
        col += printf("%s", item);
    }
    printf("\n");
}

static void print_device(const kqcl_device_info *d, bool marked)
{
    char safe[3][160], summary[128];
    precision_info p;
    precision_of(d, &p);
    printf("%s%d (%d:%d): %s\n", marked ? "*" : " ", d->list_index, d->platform_index, d->platform_device_index,
           kq_text_escaped(d->name, safe[0], sizeof safe[0]));
    printf("   platform  %s | vendor %s | driver %s\n", kq_text_escaped(d->platform, safe[0], sizeof safe[0]),
           kq_text_escaped(d->vendor, safe[1], sizeof safe[1]), kq_text_escaped(d->driver, safe[2], sizeof safe[2]));
    printf("   OpenCL    %s | %s\n", kq_text_escaped(d->opencl_version, safe[0], sizeof safe[0]),
           kq_text_escaped(d->opencl_c_version, safe[1], sizeof safe[1]));
    printf("   kind      %s, %d compute units\n", d->is_gpu ? "GPU" : "CPU/other", d->compute_units);
    printf("   memory    %.1f GiB global, %.1f GiB largest allocation, %llu KiB local\n",
           (double)d->global_mem_bytes / (1 << 30), (double)d->max_alloc_bytes / (1 << 30),
           (unsigned long long)(d->local_mem_bytes / 1024));
    /* reported for the reader; of these only integer dot is used, by Q8 decode (cl/q8.cl) */
    printf("   reports   fp16 %s, subgroups %s, integer dot %s\n", d->has_fp16 ? "yes" : "no",
           d->has_subgroups ? "yes" : "no", d->has_int_dot ? "yes" : "no");
    if (p.known)
        printf("   precision auto: %s\n             %s\n", auto_summary(&p, summary, sizeof summary),
               kq_text_escaped(p.why, safe[0], sizeof safe[0]));
    else
        printf("   precision auto: not known (%s)\n", kq_text_escaped(p.why, safe[0], sizeof safe[0]));
    if (d->nv_compute_capability)
        printf("   NVIDIA    compute capability %d.%d (inline PTX from 3.0, tensor cores from 8.0)\n",
               d->nv_compute_capability / 10, d->nv_compute_capability % 10);
    if (d->variant[0])
        printf("   kernels   %s\n", kq_text_escaped(d->variant, safe[0], sizeof safe[0]));
    if (p.known)
        print_params(&p);
}

static void print_device_json(const kqcl_device_info *d, bool marked)
{
    precision_info p;
    precision_of(d, &p);
    printf("{\"index\": %d, \"platform_index\": %d, \"platform_device_index\": %d, \"name\": ", d->list_index,
           d->platform_index, d->platform_device_index);
    kq_json_cstring(stdout, d->name);
    kq_json_field(stdout, "platform", d->platform);
    kq_json_field(stdout, "vendor", d->vendor);
    kq_json_field(stdout, "driver", d->driver);
    kq_json_field(stdout, "opencl_version", d->opencl_version);
    kq_json_field(stdout, "opencl_c_version", d->opencl_c_version);
    printf(", \"kind\": \"%s\", \"compute_units\": %d, \"global_mem_bytes\": %llu, \"max_alloc_bytes\": %llu, "
           "\"local_mem_bytes\": %llu, \"fp16\": %s, \"subgroups\": %s, \"integer_dot\": %s, "
           "\"nv_compute_capability\": ",
           d->is_gpu ? "gpu" : "cpu", d->compute_units, (unsigned long long)d->global_mem_bytes,
           (unsigned long long)d->max_alloc_bytes, (unsigned long long)d->local_mem_bytes,
           d->has_fp16 ? "true" : "false", d->has_subgroups ? "true" : "false", d->has_int_dot ? "true" : "false");
    if (d->nv_compute_capability)
        printf("%d.%d", d->nv_compute_capability / 10, d->nv_compute_capability % 10);
    else
        printf("null");
    if (p.known) {
        printf(", \"precision\": \"%s\", \"precision_auto\": {\"q4_K_decode\": \"%s\", \"q4_K_prefill\": \"%s\", "
               "\"f16_decode\": \"%s\", \"f16_prefill\": \"%s\"",
               kqcl_precision_name(p.initial), kqcl_precision_name(p.q4k_decode), kqcl_precision_name(p.q4k_prefill),
               kqcl_precision_name(p.f16_decode), kqcl_precision_name(p.f16_prefill));
        kq_json_field(stdout, "q8_integer_dot", p.dot);
        kq_json_field(stdout, "why", p.why);
        printf("}");
        kq_json_field(stdout, "tuning", p.tuning);
        printf(", \"params\": {");
        for (int i = 0; i < KQCL_PARAM_COUNT; i++) {
            printf("%s\"%s\": ", i ? ", " : "", kqcl_param_name((kqcl_param)i));
            if (p.params[i] == KQCL_PARAM_AUTO)
                printf("null");
            else
                printf("%d", p.params[i]);
        }
        printf("}");
    } else {
        printf(", \"precision\": null, \"precision_auto\": null");
        kq_json_field(stdout, "precision_error", p.why);
    }
    printf(", \"selected\": %s", marked ? "true" : "false");
    kq_json_field(stdout, "kernels", d->variant[0] ? d->variant : NULL);
    printf("}");
}

static void devices_usage(FILE *out)
{
    fprintf(out, "usage: kqcl devices [--device SPEC] [--json]\n"
                 "  Lists every OpenCL device: its index N and platform:device P:D (both usable in a\n"
                 "  device spec), OpenCL versions, memory, extensions, what precision auto picks\n"
                 "  there (kqcl_precision_chosen) and why, and the launch parameters in force\n"
                 "  (kqcl_context_get_param; auto: chosen per call) with the tuning entry they\n"
                 "  come from.\n"
                 "  The devices SPEC selects (default: KQCL_DEVICES, else the first GPU, else device\n"
                 "  0) are marked '*', by index, with the kernels kqcl chose for each.\n"
                 "  --json   one JSON object {\"kqcl_version\", \"selected_by\", \"devices\": [...]}\n");
}

/* The devices a spec selects (NULL: the default), by their index in list order. The context's
 * info carries the index, so two identical devices are told apart. */
static kqcl_status mark_selected(const char *spec, kqcl_device_info *infos, int count, bool *marked)
{
    kqcl_context *ctx = NULL;
    kqcl_status st = kqcl_context_create(spec, &ctx);
    for (int d = 0; st == KQCL_OK && d < kqcl_device_count(ctx); d++) {
        kqcl_device_info chosen;
        if (kqcl_device_get_info(ctx, d, &chosen) != KQCL_OK || chosen.list_index < 0 || chosen.list_index >= count)
            continue;
        marked[chosen.list_index] = true;
        memcpy(infos[chosen.list_index].variant, chosen.variant, sizeof chosen.variant);
    }
    kqcl_context_destroy(ctx);
    return st;
}

static int cmd_devices(int argc, char **argv)
{
    static const struct option longs[] = {{"device", required_argument, 0, 'd'}, {"devices", required_argument, 0, 'd'},
                                          {"json", no_argument, 0, 'j'},      {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    const char *spec = NULL;
    bool json = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hd:", longs, NULL)) != -1) {
        switch (c) {
        case 'd': spec = optarg; break;
        case 'j': json = true; break;
        case 'h': devices_usage(stdout); return 0;
        default: return kq_option_error("devices", c, argv);
        }
    }
    if (optind < argc)
        return kq_usage_error("devices", "'%s': unexpected argument (kqcl devices -h for usage)", argv[optind]);
    kqcl_device_info infos[MAX_DEVICES];
    bool marked[MAX_DEVICES] = {false};
    int count = 0;
    kqcl_status st = kqcl_list_devices(infos, MAX_DEVICES, &count);
    if (st != KQCL_OK) {
        fprintf(stderr, "kqcl devices: %s: %s\n", kqcl_status_string(st), kqcl_last_error(NULL));
        return 1;
    }
    count = count < MAX_DEVICES ? count : MAX_DEVICES;
    const char *env = getenv("KQCL_DEVICES");
    const char *source = spec ? "--device" : env && *env ? "KQCL_DEVICES" : "default";
    kqcl_status selected = mark_selected(spec, infos, count, marked);
    char why[512];
    snprintf(why, sizeof why, "%s", selected == KQCL_OK ? "" : kqcl_last_error(NULL));
    if (json) {
        printf("{\"kqcl_version\": \"%s\", \"selected_by\": \"%s\", \"devices\": [", kqcl_version(), source);
        for (int i = 0; i < count; i++) {
            printf("%s\n  ", i ? "," : "");
            print_device_json(&infos[i], marked[i]);
        }
        printf("\n]}\n");
    } else {
        for (int i = 0; i < count; i++)
            print_device(&infos[i], marked[i]);
    }
    const char *precision = getenv("KQCL_PRECISION");
    kqcl_precision ignored;
    if (precision && *precision && kqcl_precision_from_name(precision, &ignored) != KQCL_OK) {
        /* every context fails then, the spec's included: the variable is what to fix */
        fprintf(stderr, "kqcl devices: KQCL_PRECISION '%s': want f32, q8, f16, bf16 or auto\n", precision);
        return 1;
    }
    if (selected != KQCL_OK) {
        /* the list is still worth having; the spec's failure is the line a user needs */
        const char *what = spec ? spec : env && *env ? env : "";
        fprintf(stderr, "kqcl devices: %s '%s' selects no device: %s\n", source, what, why);
        return spec ? KQ_EXIT_USAGE : 1;
    }
    return 0;
}

static int cmd_version(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: kqcl version\n  Prints the version of kqcl.\n");
        return 0;
    }
    if (argc > 1)
        return kq_usage_error("version", "'%s': unexpected argument (kqcl version takes none)", argv[1]);
    printf("kqcl %s\n", kqcl_version());
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: kqcl COMMAND [ARGS]   (kqcl COMMAND -h for each)\n\n"
                 "  devices    list OpenCL devices and what kqcl uses of them\n"
                 "  bench      time the fused matmuls against the unfused path and memory bandwidth\n"
                 "  gguf       describe a GGUF file (--json for scripts)\n"
                 "  run        load a GGUF model's weights onto devices and time their matmuls\n"
                 "  quantize   re-quantize a GGUF file's float weights (q4_K, Q4_K_M, q8_0, ...)\n"
                 "  plan       place a model's layers on several devices (layer or tensor split)\n"
                 "  version    print kqcl's version\n\n"
                 "Devices are chosen with --device/--devices SPEC or KQCL_DEVICES (see kqcl(1)).\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return KQ_EXIT_USAGE;
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
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        return cmd_version(argc - 1, argv + 1);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "kqcl: '%s': unknown command (kqcl -h lists them)\n", cmd);
    return KQ_EXIT_USAGE;
}
