/*
 * bench.c -- `kqcl bench`: times the fused matmul with device events (warm-up, then the median
 * of repeats), beside the unfused path (device dequantize + CLBlast SGEMM) and a streaming-read
 * kernel that measures the device's memory bandwidth. Every configuration's result is checked
 * against the host reference before its time is printed.
 *
 * It links the library's internals (lib/ops.h) for the unfused path and the bandwidth probe.
 */
#include "commands.h"
#include "ops.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LIST 16

typedef struct bench_options {
    kqcl_type types[MAX_LIST];
    int n_types;
    int64_t m, k;
    int ns[MAX_LIST];
    int n_ns;
    const char *devices;
    int reps;
    int rotate_mib; /* rotate weights over at least this many MiB (0: same buffer only) */
    bool json, unfused, model, collectives;
    bool host_clock;  /* host clock around a finish, device timing off (always so for a split) */
    kqcl_split split; /* KQCL_SPLIT_NONE: W on device 0; ROWS or COLS: W spread evenly */
} bench_options;

typedef struct bench_row {
    const char *label; /* a model tensor's name, or NULL */
    kqcl_type type;
    int64_t m, k;
    int n;
    double us, us_rotating, us_unfused; /* medians; 0 where not measured */
    double max_rel_err;
} bench_row;

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rng_uniform(void) { return (float)(rng_next() & 0xffffff) / 16777216.0f * 2.0f - 1.0f; }

double kq_tool_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double kq_tool_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* A tensor placed for a split run: `split` over every device of the context in equal shares
 * (so W's row parts and Y's column parts line up), or whole on device 0 for KQCL_SPLIT_NONE. */
kqcl_status kq_tool_create_placed(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols, kqcl_split split,
                                 kqcl_tensor **out)
{
    if (split == KQCL_SPLIT_NONE)
        return kqcl_tensor_create(ctx, type, rows, cols, out);
    double fractions[64];
    int n = kqcl_device_count(ctx);
    for (int d = 0; d < n && d < 64; d++)
        fractions[d] = 1.0 / n;
    return kqcl_tensor_create_split_ex(ctx, type, rows, cols, split, fractions, out);
}

/* Where X and Y go for W's split: rows -> X everywhere, Y by columns (each device writes its
 * own output columns); cols -> X by columns (the matching K range), Y replicated (all-reduced). */
void kq_tool_operand_splits(kqcl_split w_split, kqcl_split *x_split, kqcl_split *y_split)
{
    *x_split = w_split == KQCL_SPLIT_ROWS ? KQCL_SPLIT_REPLICATE : w_split;
    *y_split = w_split == KQCL_SPLIT_ROWS ? KQCL_SPLIT_COLS : w_split == KQCL_SPLIT_COLS ? KQCL_SPLIT_REPLICATE
                                                                                         : KQCL_SPLIT_NONE;
}

/* Weights for timing: random quant bytes with sane scales (quantizing 58M floats with the
 * reference quantizer would take longer than the benchmark), random floats for float types. */
static void *random_weights(kqcl_type type, int64_t rows, int64_t cols, size_t *bytes)
{
    *bytes = (size_t)rows * kqcl_row_size(type, cols);
    unsigned char *w = malloc(*bytes);
    if (w == NULL)
        return NULL;
    if (kqcl_block_size(type) < 256) { /* floats, q4_0, q8_0: quantized from floats (fast for these) */
        float *f = malloc((size_t)cols * sizeof *f);
        size_t row_bytes = kqcl_row_size(type, cols);
        for (int64_t r = 0; r < rows && f; r++) {
            for (int64_t i = 0; i < cols; i++)
                f[i] = rng_uniform();
            kqcl_quantize(type, f, w + r * row_bytes, 1, cols);
        }
        free(f);
        return w;
    }
    for (size_t i = 0; i < *bytes; i++)
        w[i] = (unsigned char)rng_next();
    size_t block = kqcl_row_size(type, 256);
    uint16_t d = 0x1400 | (rng_next() & 0x3ff); /* f16 ~ 1e-3: keeps values small and finite */
    for (size_t off = 0; off < *bytes; off += block) {
        if (type == KQCL_TYPE_Q8_K) {
            float df = 1e-3f;
            memcpy(w + off, &df, 4);
        } else if (type == KQCL_TYPE_Q6_K) {
            memcpy(w + off + 208, &d, 2);
        } else {
            memcpy(w + off, &d, 2);
            memcpy(w + off + 2, &d, 2);
        }
    }
    return w;
}

/* Largest relative error of a sample of Y's columns against a float64 host reference. */
static double check_sample(kqcl_type type, const void *w, int64_t m, int64_t k, const float *x, int n, const float *y)
{
    size_t row_bytes = kqcl_row_size(type, k);
    float *wrow = malloc((size_t)k * sizeof *wrow);
    double worst = 0;
    for (int s = 0; s < 8 && wrow; s++) {
        int64_t r = (s * (m - 1)) / 7;
        kqcl_dequantize(type, (const unsigned char *)w + r * row_bytes, wrow, 1, k);
        for (int j = 0; j < n; j += (n > 8 ? n / 7 : 1)) {
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                ref += (double)wrow[i] * x[(size_t)j * k + i];
                mag += fabs((double)wrow[i] * x[(size_t)j * k + i]);
            }
            double err = fabs(y[(size_t)j * m + r] - ref) / (mag > 0 ? mag : 1);
            if (!(err <= worst))
                worst = err; /* NaN counts as worst */
        }
    }
    free(wrow);
    return worst;
}

/* ---- one configuration -------------------------------------------------------------------------- */

typedef struct bench_state {
    kqcl_context *ctx;
    double bandwidth_gbps;
    bool is_gpu;
} bench_state;

/* How one timed run of a configuration goes: which matmul, and whether the device's events
 * (one device, kernels only) or the host clock around a finish (several kernels or devices at
 * once, launches included) time it. */
typedef struct timed_run {
    bench_state *b;
    kqcl_tensor **ws; /* weights, used in rotation */
    int n_ws;
    kqcl_tensor *x, *y;
    bool unfused, host_clock;
} timed_run;

static kqcl_status run_once(const timed_run *r, int i, double *us)
{
    kqcl_tensor *w = r->ws[i % r->n_ws];
    double t0 = r->host_clock ? kq_tool_now_us() : 0;
    kqcl_status st = r->unfused ? kq_matmul_unfused(r->b->ctx, w, r->x, r->y) : kqcl_matmul(r->b->ctx, w, r->x, r->y);
    if (st == KQCL_OK && r->host_clock) {
        st = kqcl_finish(r->b->ctx);
        *us = kq_tool_now_us() - t0;
    } else if (st == KQCL_OK) {
        uint64_t ns = 0;
        st = kqcl_last_device_time(r->b->ctx, &ns);
        *us = (double)ns / 1e3;
    }
    return st;
}

/* Median of `reps` runs after two warm-ups. */
static kqcl_status time_median(const timed_run *r, int reps, double *us)
{
    double *t = calloc((size_t)reps, sizeof *t);
    kqcl_status st = t == NULL ? KQCL_ERR_OUT_OF_MEMORY : r->host_clock ? kqcl_finish(r->b->ctx) : KQCL_OK;
    for (int i = -2; i < reps && st == KQCL_OK; i++) {
        double one = 0;
        st = run_once(r, i + 2, &one);
        if (i >= 0)
            t[i] = one;
    }
    if (st == KQCL_OK)
        *us = kq_tool_median(t, reps);
    free(t);
    return st;
}

static kqcl_status bench_one(bench_state *b, const bench_options *o, bench_row *row)
{
    int64_t m = row->m, k = row->k;
    int n = row->n;
    size_t w_bytes;
    void *w_host = random_weights(row->type, m, k, &w_bytes);
    float *x_host = malloc((size_t)n * k * sizeof(float));
    float *y_host = malloc((size_t)n * m * sizeof(float));
    int n_ws = 1;
    kqcl_split x_split, y_split;
    kq_tool_operand_splits(o->split, &x_split, &y_split);
    if (b->is_gpu && o->rotate_mib > 0 && o->split == KQCL_SPLIT_NONE)
        n_ws = (int)(((size_t)o->rotate_mib << 20) / w_bytes) + 1;
    if (n_ws > 256)
        n_ws = 256;
    kqcl_tensor **ws = calloc((size_t)n_ws, sizeof *ws);
    kqcl_tensor *x = NULL, *y = NULL;
    kqcl_status st = (w_host && x_host && y_host && ws) ? KQCL_OK : KQCL_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; st == KQCL_OK && i < (int64_t)n * k; i++)
        x_host[i] = rng_uniform();
    for (int i = 0; i < n_ws && st == KQCL_OK; i++) {
        st = kq_tool_create_placed(b->ctx, row->type, m, k, o->split, &ws[i]);
        if (st == KQCL_OK)
            st = kqcl_tensor_write(ws[i], w_host, w_bytes);
    }
    if (st == KQCL_OK)
        st = kq_tool_create_placed(b->ctx, KQCL_TYPE_F32, n, k, x_split, &x);
    if (st == KQCL_OK)
        st = kq_tool_create_placed(b->ctx, KQCL_TYPE_F32, n, m, y_split, &y);
    if (st == KQCL_OK)
        st = kqcl_tensor_write(x, x_host, (size_t)n * k * sizeof(float));

    /* Correctness first: poison Y, run once, compare a sample with the host. */
    if (st == KQCL_OK) {
        memset(y_host, 0xff, (size_t)n * m * sizeof(float));
        st = kqcl_tensor_write(y, y_host, (size_t)n * m * sizeof(float));
    }
    if (st == KQCL_OK)
        st = kqcl_matmul(b->ctx, ws[0], x, y);
    if (st == KQCL_OK)
        st = kqcl_tensor_read(y, y_host, (size_t)n * m * sizeof(float));
    if (st == KQCL_OK) {
        row->max_rel_err = check_sample(row->type, w_host, m, k, x_host, n, y_host);
        if (!(row->max_rel_err < 1e-4)) {
            fprintf(stderr, "kqcl bench: %s m=%lld k=%lld n=%d gives wrong results (relative error %.3g)\n",
                    kqcl_type_name(row->type), (long long)m, (long long)k, n, row->max_rel_err);
            st = KQCL_ERR_DEVICE;
        }
    }
    /* Split runs use several devices at once (device times would add up): host clock. */
    timed_run run = {b, ws, 1, x, y, false, o->host_clock};
    if (st == KQCL_OK)
        st = time_median(&run, o->reps, &row->us);
    run.n_ws = n_ws;
    if (st == KQCL_OK && n_ws > 1)
        st = time_median(&run, o->reps, &row->us_rotating);
    if (st == KQCL_OK && o->unfused && o->split == KQCL_SPLIT_NONE) {
        /* several kernels (CLBlast may add padding passes): host clock, an upper bound */
        timed_run unfused = {b, ws, 1, x, y, true, true};
        kqcl_status su = time_median(&unfused, o->reps, &row->us_unfused);
        if (su != KQCL_OK)
            row->us_unfused = 0; /* e.g. built without CLBlast, or no room for f32 weights */
    }
    for (int i = 0; i < n_ws && ws; i++)
        kqcl_tensor_destroy(ws[i]);
    kqcl_tensor_destroy(x);
    kqcl_tensor_destroy(y);
    free(ws);
    free(w_host);
    free(x_host);
    free(y_host);
    return st;
}

/* ---- output -------------------------------------------------------------------------------- */

static double weight_gbps(const bench_row *r, double us)
{
    return us > 0 ? (double)kqcl_row_size(r->type, r->k) * r->m / (us * 1e3) : 0;
}

static void print_table(const bench_state *b, const kqcl_device_info *dev, const bench_row *rows, int n_rows)
{
    printf("\ndevice: %s (%s), kernels: %s, streaming read %.1f GB/s\n", dev->name, dev->platform, dev->variant,
           b->bandwidth_gbps);
    printf("| type | m | k | n | us | us rotating | weight GB/s | %% of bw | GFLOP/s | unfused us | speed-up |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < n_rows; i++) {
        const bench_row *r = &rows[i];
        double us = r->us_rotating > 0 ? r->us_rotating : r->us;
        double gbps = weight_gbps(r, us);
        double gflops = 2.0 * r->m * r->k * r->n / (r->us * 1e3);
        printf("| %s%s%s | %lld | %lld | %d | %.1f | ", r->label ? r->label : "", r->label ? " " : "",
               kqcl_type_name(r->type), (long long)r->m, (long long)r->k, r->n, r->us);
        if (r->us_rotating > 0)
            printf("%.1f | ", r->us_rotating);
        else
            printf("- | ");
        printf("%.1f | %.1f | %.1f | ", gbps, 100.0 * gbps / b->bandwidth_gbps, gflops);
        if (r->us_unfused > 0)
            printf("%.1f | %.2fx |\n", r->us_unfused, r->us_unfused / r->us);
        else
            printf("- | - |\n");
    }
}

static void print_json(const bench_state *b, const kqcl_device_info *dev, const bench_row *rows, int n_rows)
{
    printf("{\"device\": \"%s\", \"platform\": \"%s\", \"stream_read_gbps\": %.2f, \"results\": [", dev->name,
           dev->platform, b->bandwidth_gbps);
    for (int i = 0; i < n_rows; i++) {
        const bench_row *r = &rows[i];
        printf("%s\n  {\"type\": \"%s\", \"m\": %lld, \"k\": %lld, \"n\": %d, \"us\": %.3f, \"us_rotating\": %.3f, "
               "\"weight_gbps\": %.2f, \"gflops\": %.2f, \"unfused_us\": %.3f, \"max_rel_err\": %.3g%s%s%s}",
               i ? "," : "", kqcl_type_name(r->type), (long long)r->m, (long long)r->k, r->n, r->us, r->us_rotating,
               weight_gbps(r, r->us), 2.0 * r->m * r->k * r->n / (r->us * 1e3), r->us_unfused, r->max_rel_err,
               r->label ? ", \"tensor\": \"" : "", r->label ? r->label : "", r->label ? "\"" : "");
    }
    printf("\n]}\n");
}

/* ---- the Llama-3-8B decode sweep ---------------------------------------------------------------- */

/* One layer of Llama-3-8B as a Q4_K_M file holds it: q, k, v, o, gate, up, down (m x k), with
 * v and down in q6_K (Q4_K_M puts half of them there; kqcl times the q6_K case for both). */
static const struct {
    const char *name;
    int64_t m, k;
    kqcl_type type;
} llama3_8b_layer[] = {
    {"attn_q", 4096, 4096, KQCL_TYPE_Q4_K},     {"attn_k", 1024, 4096, KQCL_TYPE_Q4_K},
    {"attn_v", 1024, 4096, KQCL_TYPE_Q6_K},     {"attn_output", 4096, 4096, KQCL_TYPE_Q4_K},
    {"ffn_gate", 14336, 4096, KQCL_TYPE_Q4_K},  {"ffn_up", 14336, 4096, KQCL_TYPE_Q4_K},
    {"ffn_down", 4096, 14336, KQCL_TYPE_Q6_K},
};
#define LLAMA3_LAYERS 32

static int model_rows(bench_row *rows)
{
    int n = 0;
    for (size_t i = 0; i < sizeof llama3_8b_layer / sizeof llama3_8b_layer[0]; i++)
        rows[n++] = (bench_row){.label = llama3_8b_layer[i].name, .type = llama3_8b_layer[i].type,
                                .m = llama3_8b_layer[i].m, .k = llama3_8b_layer[i].k, .n = 1};
    return n;
}

static void print_model_summary(const bench_state *b, const bench_row *rows, int n_rows)
{
    double us = 0, bytes = 0;
    for (int i = 0; i < n_rows; i++) {
        us += rows[i].us_rotating > 0 ? rows[i].us_rotating : rows[i].us;
        bytes += (double)kqcl_row_size(rows[i].type, rows[i].k) * rows[i].m;
    }
    us *= LLAMA3_LAYERS;
    bytes *= LLAMA3_LAYERS;
    double bound_us = bytes / (b->bandwidth_gbps * 1e3);
    printf("\nllama3-8b decode, matmuls only (%d layers, %.2f GB of weights): %.0f us a token = %.1f tokens/s; "
           "bandwidth bound %.1f tokens/s (%.0f%%)\n",
           LLAMA3_LAYERS, bytes / 1e9, us, 1e6 / us, 1e6 / bound_us, 100.0 * bound_us / us);
}

/* ---- arguments ------------------------------------------------------------------------------------ */

static void bench_usage(FILE *out)
{
    fprintf(out,
            "usage: kqcl bench [--type q4_K,q5_K,...] [--m M] [--k K] [--n 1,8,512] [--device SPEC]\n"
            "                  [--reps R] [--rotate MIB] [--no-unfused] [--model llama3-8b] [--json]\n"
            "                  [--split none|rows|cols] [--host-clock] [--collectives]\n"
            "Times the fused matmul Y = X . W^T (device events, 2 warm-ups, median of R repeats), the\n"
            "unfused path (dequantize + CLBlast SGEMM, host-timed) and a streaming-read kernel.\n"
            "Defaults: m 4096, k 14336, the four k-quants, n 1,8 (and 512 on a GPU); R 20 on a GPU,\n"
            "3 on a CPU; on a GPU the weights are also rotated over --rotate MiB (1024) so they do not\n"
            "sit in the cache. Results are checked against the host before they are timed.\n"
            "--split rows|cols spreads W evenly over every device of --device (X and Y placed to\n"
            "match) and times on the host; --host-clock times on the host (around a finish, device\n"
            "timing off) without a split too; --collectives times all-reduce and broadcast instead.\n");
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 1 << 20)
            return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n;
}

static int parse_types(const char *s, kqcl_type *out, int max)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        if (kqcl_type_from_name(t, &out[n++]) != KQCL_OK)
            return -1;
    return n;
}

static int parse_bench_args(int argc, char **argv, bench_options *o)
{
    static const struct option longs[] = {
        {"type", required_argument, 0, 't'}, {"m", required_argument, 0, 'm'},  {"k", required_argument, 0, 'k'},
        {"n", required_argument, 0, 'n'},    {"device", required_argument, 0, 'd'},
        {"devices", required_argument, 0, 'd'}, {"reps", required_argument, 0, 'r'},
        {"rotate", required_argument, 0, 'R'}, {"no-unfused", no_argument, 0, 'U'},
        {"model", required_argument, 0, 'M'}, {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'},
        {"split", required_argument, 0, 'S'}, {"collectives", no_argument, 0, 'C'},
        {"host-clock", no_argument, 0, 'H'},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 't': o->n_types = parse_types(optarg, o->types, MAX_LIST); if (o->n_types <= 0) return 2; break;
        case 'm': o->m = atoll(optarg); if (o->m <= 0) return 2; break;
        case 'k': o->k = atoll(optarg); if (o->k <= 0) return 2; break;
        case 'n': o->n_ns = parse_list(optarg, o->ns, MAX_LIST); if (o->n_ns <= 0) return 2; break;
        case 'd': o->devices = optarg; break;
        case 'r': o->reps = atoi(optarg); if (o->reps <= 0) return 2; break;
        case 'R': o->rotate_mib = atoi(optarg); if (o->rotate_mib < 0) return 2; break;
        case 'U': o->unfused = false; break;
        case 'M': if (strcmp(optarg, "llama3-8b") != 0) return 2; o->model = true; break;
        case 'j': o->json = true; break;
        case 'S':
            if (strcmp(optarg, "rows") == 0)
                o->split = KQCL_SPLIT_ROWS;
            else if (strcmp(optarg, "cols") == 0)
                o->split = KQCL_SPLIT_COLS;
            else if (strcmp(optarg, "none") != 0)
                return 2;
            break;
        case 'C': o->collectives = true; break;
        case 'H': o->host_clock = true; break;
        case 'h': bench_usage(stdout); return -1;
        default: return 2;
        }
    }
    return optind < argc ? 2 : 0;
}

int kq_cmd_bench(int argc, char **argv)
{
    bench_options o = {.m = 4096, .k = 14336, .reps = 0, .rotate_mib = 1024, .unfused = true};
    int r = parse_bench_args(argc, argv, &o);
    if (r != 0) {
        if (r > 0)
            bench_usage(stderr);
        return r > 0 ? r : 0;
    }
    bench_state b = {0};
    kqcl_status st = kqcl_context_create(o.devices, &b.ctx);
    if (st != KQCL_OK) {
        fprintf(stderr, "kqcl bench: %s: %s\n", kqcl_status_string(st), kqcl_last_error(NULL));
        return 1;
    }
    /* Device timing costs the driver time on every command (doc/perf.md run 12): on only where
     * device events time the runs. */
    o.host_clock = o.host_clock || o.split != KQCL_SPLIT_NONE;
    if (!o.collectives && !o.host_clock && (st = kqcl_context_set_timing(b.ctx, 1)) != KQCL_OK) {
        fprintf(stderr, "kqcl bench: %s: %s\n", kqcl_status_string(st), kqcl_last_error(b.ctx));
        kqcl_context_destroy(b.ctx);
        return 1;
    }
    if (o.collectives) {
        int rc = kq_bench_collectives(b.ctx, o.json);
        kqcl_context_destroy(b.ctx);
        return rc;
    }
    kqcl_device_info dev;
    kqcl_device_get_info(b.ctx, 0, &dev);
    b.is_gpu = dev.is_gpu;
    if (o.reps == 0)
        o.reps = b.is_gpu ? 20 : 3;
    if (o.n_types == 0) {
        kqcl_type defaults[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K};
        memcpy(o.types, defaults, sizeof defaults);
        o.n_types = 4;
    }
    if (o.n_ns == 0) {
        int defaults[] = {1, 8, 512};
        memcpy(o.ns, defaults, sizeof defaults);
        o.n_ns = b.is_gpu ? 3 : 2;
    }
    st = kq_bench_stream_read(b.ctx, 0, b.is_gpu ? (size_t)1 << 30 : (size_t)256 << 20, b.is_gpu ? 20 : 3,
                              &b.bandwidth_gbps);
    bench_row rows[MAX_LIST * MAX_LIST];
    int n_rows = 0;
    if (o.model) {
        n_rows = model_rows(rows);
    } else {
        for (int t = 0; t < o.n_types; t++)
            for (int j = 0; j < o.n_ns; j++)
                rows[n_rows++] = (bench_row){.type = o.types[t], .m = o.m, .k = o.k, .n = o.ns[j]};
    }
    for (int i = 0; i < n_rows && st == KQCL_OK; i++) {
        st = bench_one(&b, &o, &rows[i]);
        if (st == KQCL_OK && !o.json)
            fprintf(stderr, "  %s n=%d: %.1f us\n", kqcl_type_name(rows[i].type), rows[i].n, rows[i].us);
    }
    if (st != KQCL_OK) {
        fprintf(stderr, "kqcl bench: %s: %s\n", kqcl_status_string(st), kqcl_last_error(b.ctx));
        kqcl_context_destroy(b.ctx);
        return 1;
    }
    kqcl_device_get_info(b.ctx, 0, &dev); /* the kernel variant may have changed (fallback) */
    if (o.split != KQCL_SPLIT_NONE && !o.json)
        printf("\nW split by %s over %d devices, evenly; times on the host around a finish\n",
               o.split == KQCL_SPLIT_ROWS ? "rows" : "columns", kqcl_device_count(b.ctx));
    else if (o.host_clock && !o.json)
        printf("\ntimes on the host around a finish (device timing off)\n");
    if (o.json)
        print_json(&b, &dev, rows, n_rows);
    else
        print_table(&b, &dev, rows, n_rows);
    if (o.model && !o.json)
        print_model_summary(&b, rows, n_rows);
    kqcl_context_destroy(b.ctx);
    return 0;
}
