/*
 * cmd_plan.c -- `kqcl plan`: place a model's layers on devices and print the plan: which
 * tensor on which device, bytes per device, the transfer per step, the expected step times of
 * a layer split and a tensor split, and why one was chosen.
 *
 * The model is a GGUF file (tensors grouped into layers by their "blk.N." prefix; the others
 * open or close the model) or a synthetic llama-shaped one (--layers, --hidden, --ffn, --type).
 * The devices are the context's, measured (speed, host-staged link), or assumed with --assume
 * to plan for a machine you do not have.
 */
#include "commands.h"
#include "kqcl.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 1024 /* of a synthetic model (--layers) */
#define MAX_DEVICES 64

/* The layers as the planner takes them, and the arrays they point into: sized for the model at
 * hand (a file's tensors, each layer one or more of them), so that nothing is left out. */
typedef struct model {
    int n_layers;
    kqcl_plan_layer *layers;
    char (*layer_names)[32];
    const char **names;
    uint64_t *bytes;
    int64_t hidden;
} model;

typedef struct plan_options {
    const char *file, *devices, *assume;
    kqcl_plan_mode mode;
    int layers, tokens;
    int64_t hidden, ffn;
    kqcl_type type;
    bool json;
    kqcl_plan_device assumed[MAX_DEVICES]; /* --assume's devices */
    int n_assumed;
} plan_options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kqcl plan [FILE.gguf] [--devices SPEC] [--mode auto|layers|tensor] [--tokens N]\n"
            "                 [--layers L --hidden H --ffn F --type q4_K]   (a synthetic model, no FILE)\n"
            "                 [--assume COUNTxMEM_GiB:SPEED_GBps:LINK_GBps:LATENCY_us]\n"
            "  Places the model's layers on the devices (KQCL_DEVICES or --devices; default all) as\n"
            "  pipeline stages or as row splits of every tensor, and prints which tensor goes where,\n"
            "  bytes per device, the transfer per step and why that mode. Devices are measured unless\n"
            "  --assume describes hypothetical ones, e.g. --assume 2x141:4000:25:15 (two H200 on PCIe).\n");
}

/* ---- the model -------------------------------------------------------------------------------- */

/* Room for n_tensors tensors in at most n_tensors layers; false when out of memory. */
static bool model_reserve(model *m, size_t n_tensors)
{
    size_t n = n_tensors > 0 ? n_tensors : 1;
    m->layers = calloc(n, sizeof *m->layers);
    m->layer_names = calloc(n, sizeof *m->layer_names);
    m->names = calloc(n, sizeof *m->names);
    m->bytes = calloc(n, sizeof *m->bytes);
    return m->layers && m->layer_names && m->names && m->bytes;
}

static void model_free(model *m)
{
    free(m->layers);
    free(m->layer_names);
    free(m->names);
    free(m->bytes);
}

/* A new layer whose tensors start at first_tensor: its index. There is room: each layer has a
 * tensor of its own. */
static int add_layer(model *m, const char *name, int first_tensor)
{
    int i = m->n_layers++;
    snprintf(m->layer_names[i], sizeof m->layer_names[i], "%s", name);
    m->layers[i] = (kqcl_plan_layer){m->layer_names[i], 0, &m->names[first_tensor], &m->bytes[first_tensor]};
    return i;
}

static bool synthetic(model *m, const plan_options *o)
{
    static const char *names[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    int64_t h = o->hidden, f = o->ffn, kv = h / 4; /* grouped-query attention, 4 heads a KV head */
    int64_t rows[7] = {h, kv, kv, h, f, f, h}, cols[7] = {h, h, h, h, h, h, f};
    int t = 0;
    if (!model_reserve(m, 7 * (size_t)o->layers))
        return false;
    for (int l = 0; l < o->layers; l++) {
        char name[32];
        snprintf(name, sizeof name, "blk.%d", l);
        int i = add_layer(m, name, t);
        for (int k = 0; k < 7; k++, t++) {
            m->names[t] = names[k];
            m->bytes[t] = (uint64_t)rows[k] * kqcl_row_size(o->type, cols[k]);
        }
        m->layers[i].n_tensors = 7;
    }
    m->hidden = h;
    return true;
}

/* Layer index of a tensor name: N for "blk.N." (N as ggml writes it: decimal digits, at most
 * INT_MAX), -2 for "output*" (after the blocks), -1 for any other name (before them). A
 * malformed N ("blk.-3.", "blk.x.", "blk.4" with no '.') is such an other name: atoi gave -3,
 * which no pass took (the tensor was dropped), and 0 for "x". */
static int block_of(const char *name)
{
    if (strncmp(name, "blk.", 4) == 0) {
        const char *digits = name + 4;
        size_t n = strspn(digits, "0123456789");
        errno = 0;
        long long b = n > 0 && digits[n] == '.' ? strtoll(digits, NULL, 10) : -1;
        return b >= 0 && b <= INT_MAX && errno == 0 ? (int)b : -1;
    }
    return strncmp(name, "output", 6) == 0 ? -2 : -1;
}

/* The file's tensors grouped into layers: NULL, or why not. */
static const char *from_gguf(model *m, const kqcl_gguf *g)
{
    int64_t n = kqcl_gguf_tensor_count(g);
    if (n > INT_MAX)
        return "more tensors than a plan takes"; /* the planner counts them in an int */
    if (!model_reserve(m, (size_t)n))
        return "out of memory";
    int t = 0;
    /* three passes keep the order: what comes before the blocks, the blocks, what comes after */
    for (int pass = 0; pass < 3; pass++) {
        int current = -100, layer = -1;
        for (int64_t i = 0; i < n; i++) {
            kqcl_gguf_tensor info;
            if (kqcl_gguf_tensor_info(g, i, &info) != KQCL_OK)
                return kqcl_last_error(NULL);
            int b = block_of(info.name);
            if ((pass == 0 && b != -1) || (pass == 1 && b < 0) || (pass == 2 && b != -2))
                continue;
            if (strcmp(info.name, "token_embd.weight") == 0)
                m->hidden = info.ne[0];
            if (b != current || layer < 0) {
                char name[32];
                snprintf(name, sizeof name, "%s", b >= 0 ? "" : b == -1 ? "input" : "output");
                if (b >= 0)
                    snprintf(name, sizeof name, "blk.%d", b);
                layer = add_layer(m, name, t);
                current = b;
            }
            m->names[t] = info.name;
            m->bytes[t] = info.nbytes;
            m->layers[layer].n_tensors++;
            t++;
        }
    }
    return m->n_layers > 0 ? NULL : "no tensors";
}

/* ---- the devices ------------------------------------------------------------------------------ */

/* The text of *spec up to `stop` ('\0': its end) into buf, and *spec past the stop; false when
 * the stop is not there or the part does not fit buf. */
static bool take_part(const char **spec, char stop, char *buf, size_t size)
{
    const char *end = stop ? strchr(*spec, stop) : *spec + strlen(*spec);
    if (end == NULL || (size_t)(end - *spec) >= size)
        return false;
    memcpy(buf, *spec, (size_t)(end - *spec));
    buf[end - *spec] = '\0';
    *spec = stop ? end + 1 : end;
    return true;
}

/* A number that is all of text ("", " 1" and "1x" are not); whether it is finite is the
 * caller's to check. */
static bool whole_double(const char *text, double *out)
{
    char *end;
    if (*text == '\0' || *text == ' ' || *text == '\t')
        return false; /* strtod would skip blanks */
    *out = strtod(text, &end);
    return *end == '\0';
}

/* Why an assumed device's value is refused, or NULL. NaN passed every comparison and inf
 * became a uint64_t (undefined), so finiteness is checked first; memory must fit 2^64 bytes. */
static const char *assumed_value_problem(int field, double v)
{
    if (!isfinite(v))
        return "not a finite number";
    if (field == 3)
        return v < 0 ? "must not be negative" : NULL;
    if (v <= 0)
        return "must be above 0";
    if (field == 0 && v >= 0x1p34)
        return "must be below 2^34 (GiB: 2^64 bytes)";
    return NULL;
}

/* --assume COUNTxMEM_GiB:SPEED_GBps:LINK_GBps:LATENCY_us: COUNT devices alike, into o. 0, or
 * one line naming what is wrong and KQ_EXIT_USAGE, as for any bad argument. */
static int parse_assumed(const char *spec, plan_options *o)
{
    static const char *const names[4] = {"MEM_GiB", "SPEED_GBps", "LINK_GBps", "LATENCY_us"};
    char count_text[32], parts[4][64];
    const char *rest = spec, *why = NULL;
    double v[4];
    bool ok = take_part(&rest, 'x', count_text, sizeof count_text);
    for (int i = 0; i < 4 && ok; i++)
        ok = take_part(&rest, i < 3 ? ':' : '\0', parts[i], sizeof parts[i]) && whole_double(parts[i], &v[i]);
    if (!ok)
        return kq_usage_error("plan", "--assume '%s': want COUNTxMEM_GiB:SPEED_GBps:LINK_GBps:LATENCY_us, "
                                      "e.g. 2x141:4000:25:15", spec);
    int64_t count;
    if (!kq_parse_int64(count_text, 1, MAX_DEVICES, &count, &why))
        return kq_usage_error("plan", "--assume '%s': COUNT '%s': %s", spec, count_text, why);
    for (int i = 0; i < 4; i++)
        if ((why = assumed_value_problem(i, v[i])) != NULL)
            return kq_usage_error("plan", "--assume '%s': %s '%s': %s", spec, names[i], parts[i], why);
    for (int d = 0; d < count; d++) {
        kqcl_plan_device *dev = &o->assumed[d];
        memset(dev, 0, sizeof *dev);
        snprintf(dev->name, sizeof dev->name, "assumed %d", d);
        dev->memory_bytes = (uint64_t)(v[0] * 0x1p30);
        dev->speed_gbps = v[1], dev->link_gbps = v[2], dev->link_latency_us = v[3];
    }
    o->n_assumed = (int)count;
    return 0;
}

static int measured_devices(const char *spec, kqcl_plan_device *out, int *n)
{
    kqcl_context *ctx = NULL;
    kqcl_status st = kqcl_context_create(spec ? spec : getenv("KQCL_DEVICES") ? NULL : "all", &ctx);
    if (st == KQCL_OK) {
        *n = kqcl_device_count(ctx);
        st = kqcl_plan_devices(ctx, out, MAX_DEVICES);
    }
    if (st != KQCL_OK)
        fprintf(stderr, "kqcl plan: %s: %s\n", kqcl_status_string(st), kqcl_last_error(ctx));
    kqcl_context_destroy(ctx);
    return st == KQCL_OK ? 0 : -1;
}

/* ---- the command ------------------------------------------------------------------------------ */

/* -1: go on; 0: done (help shown); 2: bad usage, told in one line. */
static int parse(int argc, char **argv, plan_options *o)
{
    *o = (plan_options){.mode = KQCL_PLAN_AUTO, .layers = 32, .tokens = 1, .hidden = 4096, .ffn = 14336,
                        .type = KQCL_TYPE_Q4_K};
    static const struct option longs[] = {
        {"devices", required_argument, 0, 'd'}, {"device", required_argument, 0, 'd'},
        {"mode", required_argument, 0, 'm'},    {"tokens", required_argument, 0, 'n'},
        {"layers", required_argument, 0, 'l'},  {"hidden", required_argument, 0, 'H'},
        {"ffn", required_argument, 0, 'f'},     {"type", required_argument, 0, 't'},
        {"assume", required_argument, 0, 'a'},  {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    static const char *const modes[] = {"auto", "layers", "tensor", NULL};
    static const kqcl_plan_mode mode_values[] = {KQCL_PLAN_AUTO, KQCL_PLAN_LAYERS, KQCL_PLAN_TENSOR};
    int c, rc = 0, choice;
    kqcl_type types[1];
    opterr = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
        switch (c) {
        case 'd': o->devices = optarg; break;
        case 'm':
            choice = kq_option_choice("plan", "--mode", optarg, modes);
            rc = choice < 0 ? KQ_EXIT_USAGE : 0;
            o->mode = choice < 0 ? KQCL_PLAN_AUTO : mode_values[choice];
            break;
        case 'n': rc = kq_option_int("plan", "--tokens", optarg, 1, 1 << 20, &o->tokens); break;
        case 'l': rc = kq_option_int("plan", "--layers", optarg, 1, MAX_LAYERS, &o->layers); break;
        case 'H': rc = kq_option_int64("plan", "--hidden", optarg, 1, 1 << 24, &o->hidden); break;
        case 'f': rc = kq_option_int64("plan", "--ffn", optarg, 1, 1 << 24, &o->ffn); break;
        case 't':
            if (kq_option_type_list("plan", "--type", optarg, types, 1) != 1)
                return KQ_EXIT_USAGE;
            o->type = types[0];
            break;
        case 'a':
            o->assume = optarg;
            rc = parse_assumed(optarg, o);
            break;
        case 'j': o->json = true; break;
        case 'h': usage(stdout); return 0;
        default: return kq_option_error("plan", c, argv);
        }
    }
    if (rc != 0)
        return rc;
    if (optind < argc)
        o->file = argv[optind++];
    if (optind < argc)
        return kq_usage_error("plan", "'%s': one FILE only (kqcl plan -h for usage)", argv[optind]);
    if (kqcl_row_size(o->type, o->hidden) == 0 || kqcl_row_size(o->type, o->ffn) == 0)
        return kq_usage_error("plan", "--hidden %lld / --ffn %lld: not whole numbers of %s blocks (%lld values each)",
                              (long long)o->hidden, (long long)o->ffn, kqcl_type_name(o->type),
                              (long long)kqcl_block_size(o->type));
    return -1;
}

/* Bytes of the activations a step moves between layers: `tokens` rows of `hidden` f32 values.
 * false when that passes INT64_MAX: a hidden size read from a file can be anything (an empty
 * token_embd.weight of {2^62, 0} is a valid tensor), and the product overflowed. */
static bool activation_bytes(int64_t hidden, int tokens, int64_t *out)
{
    if (hidden < 0 || tokens < 1 || hidden > INT64_MAX / 4 / tokens)
        return false;
    *out = hidden * 4 * tokens;
    return true;
}

static int print_plan(const kqcl_plan *p, const model *m, int n_devices, bool json)
{
    size_t need = 0;
    kqcl_plan_describe(p, NULL, 0, &need);
    char *text = malloc(need);
    if (text == NULL)
        return 1;
    kqcl_plan_describe(p, text, need, NULL);
    if (!json) {
        fputs(text, stdout);
        free(text);
        return 0;
    }
    printf("{\"mode\": \"%s\", \"transfer_bytes_per_step\": %llu, \"device_bytes\": [",
           kqcl_plan_mode_chosen(p) == KQCL_PLAN_LAYERS ? "layers" : "tensor",
           (unsigned long long)kqcl_plan_transfer_bytes(p));
    for (int d = 0; d < n_devices; d++)
        printf("%s%llu", d ? ", " : "", (unsigned long long)kqcl_plan_device_bytes(p, d));
    printf("], \"layers\": [");
    for (int i = 0; i < m->n_layers; i++)
        printf("%s{\"name\": \"%s\", \"device\": %d}", i ? ", " : "", m->layer_names[i], kqcl_plan_layer_device(p, i));
    printf("]}\n");
    free(text);
    return 0;
}

/* The model of FILE or the synthetic one into m (g: the file, open while m's names are used),
 * and the bytes a step moves between layers: 0, or 1 told on stderr. */
static int load_model(const plan_options *o, model *m, kqcl_gguf **g, int64_t *step_bytes)
{
    if (o->file) {
        kqcl_status st = kqcl_gguf_open(o->file, g);
        const char *why = st != KQCL_OK ? kqcl_last_error(NULL) : from_gguf(m, *g);
        if (why != NULL) {
            fprintf(stderr, "kqcl plan: %s: %s\n", o->file, why);
            return 1;
        }
    } else if (!synthetic(m, o)) {
        fprintf(stderr, "kqcl plan: out of memory\n");
        return 1;
    }
    int64_t hidden = m->hidden > 0 ? m->hidden : o->hidden;
    if (!activation_bytes(hidden, o->tokens, step_bytes)) {
        /* only a file's hidden size can be this large: --hidden is at most 2^24 */
        fprintf(stderr, "kqcl plan: %s: token_embd.weight's hidden size %lld x 4 bytes x %d tokens overflows "
                        "2^63 bytes a step\n", o->file ? o->file : "(synthetic)", (long long)hidden, o->tokens);
        return 1;
    }
    return 0;
}

int kq_cmd_plan(int argc, char **argv)
{
    plan_options o;
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    model m = {0};
    kqcl_plan_device devs[MAX_DEVICES];
    int n_devices = 0;
    int64_t step_bytes = 0;
    kqcl_gguf *g = NULL;
    rc = load_model(&o, &m, &g, &step_bytes);
    if (rc == 0 && o.assume) {
        memcpy(devs, o.assumed, sizeof devs);
        n_devices = o.n_assumed;
    } else if (rc == 0 && measured_devices(o.devices, devs, &n_devices) != 0) {
        rc = 1;
    }
    kqcl_plan *p = NULL;
    if (rc == 0) {
        kqcl_plan_request req = {n_devices, devs, m.n_layers, m.layers, o.mode, step_bytes};
        kqcl_status st = kqcl_plan_create(&req, &p);
        if (st != KQCL_OK) {
            fprintf(stderr, "kqcl plan: %s: %s\n", kqcl_status_string(st), kqcl_last_error(NULL));
            rc = 1;
        }
    }
    if (rc == 0)
        rc = print_plan(p, &m, n_devices, o.json);
    kqcl_plan_destroy(p);
    kqcl_gguf_close(g);
    model_free(&m);
    return rc;
}
