/*
 * bench.c -- `kqcl bench`: times the fused matmul with device events (warm-up, then the median
 * of repeats), beside the unfused path (device dequantize + CLBlast SGEMM) and a streaming-read
 * kernel that measures the device's memory bandwidth, for each precision mode asked
 * (--precision). Every configuration's result is checked against the host reference of what
 * that mode multiplies (kq_activations_as_used) before its time is printed.
 *
 * It links the library's internals (lib/ops/ops.h) for the unfused path and the bandwidth probe.
 */
#include "commands.h"
#include "ops/ops.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LIST 16
#define MAX_MODES 5 /* precision modes: f32, q8, f16, bf16, auto */
#define MAX_PARTS 4 /* weights of one kqcl_matmul_group row */

typedef enum bench_output { OUTPUT_MD, OUTPUT_JSON, OUTPUT_CSV } bench_output;

typedef struct bench_options {
    kqcl_type types[MAX_LIST];
    int n_types;
    int64_t m, k;
    int ns[MAX_LIST];
    int n_ns;
    kqcl_precision precisions[MAX_MODES]; /* none given: the context's (KQCL_PRECISION, else f32) */
    int n_precisions;
    const char *devices;
    int reps;
    int rotate_mib; /* rotate weights over at least this many MiB (0: same buffer only); -1: default */
    bench_output output;
    bool unfused, model, collectives;
    bool host_clock;  /* host clock around a finish, device timing off (always so for a split) */
    kqcl_split split; /* KQCL_SPLIT_NONE: W on device 0; ROWS or COLS: W spread evenly */
} bench_options;

/* One weight of a row. */
typedef struct bench_part {
    kqcl_type type;
    int64_t m;
    const char *name; /* a model tensor's name, or NULL */
} bench_part;

/* One timed configuration: a weight (kqcl_matmul), or several that share X (kqcl_matmul_group:
 * a model layer's Q/K/V, gate/up), in one precision mode. */
typedef struct bench_row {
    const char *label; /* a model tensor's name, or a group's names joined by '+'; NULL in a sweep */
    bench_part parts[MAX_PARTS];
    int n_parts;
    int64_t m, k; /* m: the rows of every part together */
    int n;
    kqcl_precision precision;        /* the context's mode for the row */
    kqcl_precision used[MAX_MODES];  /* what kqcl_precision_chosen says the row ran, each once */
    int n_used;
    kq_stats us, us_rotating, us_unfused; /* count 0 where not measured */
    double max_rel_err;
} bench_row;

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float rng_uniform(void) { return kq_rng_unit(&rng_state); }

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

/* Weights for timing: a few rows of random floats quantized with the host codec, repeated down
 * the matrix. Valid blocks of any type without special cases, and quick: quantizing all of a
 * 4096 x 14336 matrix with the reference quantizers would take longer than the benchmark. */
#define DISTINCT_ROWS 16
static void *random_weights(kqcl_type type, int64_t rows, int64_t cols, size_t *bytes)
{
    size_t row_bytes = kqcl_row_size(type, cols);
    int64_t distinct = rows < DISTINCT_ROWS ? rows : DISTINCT_ROWS;
    *bytes = (size_t)rows * row_bytes;
    unsigned char *w = malloc(*bytes);
    float *f = malloc((size_t)distinct * (size_t)cols * sizeof *f);
    kqcl_status st = w && f ? KQCL_OK : KQCL_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; st == KQCL_OK && i < (size_t)distinct * (size_t)cols; i++)
        f[i] = rng_uniform();
    if (st == KQCL_OK)
        st = kqcl_quantize(type, f, w, distinct, cols);
    for (int64_t r = distinct; st == KQCL_OK && r < rows; r++)
        memcpy(w + (size_t)r * row_bytes, w + (size_t)(r % distinct) * row_bytes, row_bytes);
    free(f);
    if (st != KQCL_OK) {
        free(w);
        return NULL;
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
        for (int j = 0; j < n; j += (n > 8 ? n / 7 : 1)) /* NaN counts as worst, and stays */
            worst = kq_error_worse(worst, kq_relative_error(x + (size_t)j * k, wrow, k, y[(size_t)j * m + r]));
    }
    free(wrow);
    return worst;
}

/* ---- one configuration -------------------------------------------------------------------------- */

typedef struct bench_state {
    kqcl_context *ctx;
    double bandwidth_gbps; /* the reference of `% of bw`: the best streaming read */
    kq_stats bandwidth;    /* the streaming read over PROBE_RUNS runs */
    bool bandwidth_reliable;
    bool is_gpu;
    bool reported; /* the failure has been told on stderr already */
} bench_state;

/* How one timed run of a configuration goes: which matmul, and whether the device's events
 * (one device, kernels only) or the host clock around a finish (several kernels or devices at
 * once, launches included) time it. */
typedef struct timed_run {
    bench_state *b;
    kqcl_tensor **ws; /* n_ws sets of n_parts weights, used in rotation */
    int n_ws, n_parts;
    kqcl_tensor *x, **ys;
    bool unfused, host_clock;
} timed_run;

/* One call of the row: kqcl_matmul for one weight, kqcl_matmul_group for several (X prepared
 * once, up to four weights of a type a launch); the unfused path a weight at a time. */
static kqcl_status launch(const timed_run *r, kqcl_tensor **w)
{
    kqcl_context *ctx = r->b->ctx;
    kqcl_status st = KQCL_OK;
    if (r->unfused) {
        for (int p = 0; p < r->n_parts && st == KQCL_OK; p++)
            st = kq_matmul_unfused(ctx, w[p], r->x, r->ys[p]);
        return st;
    }
    if (r->n_parts == 1)
        return kqcl_matmul(ctx, w[0], r->x, r->ys[0]);
    return kqcl_matmul_group(ctx, r->n_parts, (const kqcl_tensor *const *)w, r->x, r->ys);
}

static kqcl_status run_once(const timed_run *r, int i, double *us)
{
    kqcl_tensor **w = r->ws + (size_t)(i % r->n_ws) * (size_t)r->n_parts;
    double t0 = r->host_clock ? kq_tool_now_us() : 0;
    kqcl_status st = launch(r, w);
    if (st == KQCL_OK) /* device time: every kernel of the call, X's preparation too */
        st = kq_call_time_us(r->b->ctx, r->host_clock, t0, us);
    return st;
}

/* Median, min and max of `reps` runs after two warm-ups. */
static kqcl_status time_runs(const timed_run *r, int reps, kq_stats *us)
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
        *us = kq_tool_stats(t, reps);
    free(t);
    return st;
}

static size_t row_weight_bytes(const bench_row *r)
{
    size_t bytes = 0;
    for (int p = 0; p < r->n_parts; p++)
        bytes += kqcl_row_size(r->parts[p].type, r->k) * (size_t)r->parts[p].m;
    return bytes;
}

/* The parts' types joined by '+' ("q4_K", "q4_K+q4_K+q6_K"). */
static const char *row_type_name(const bench_row *r, char *buf, size_t size)
{
    buf[0] = '\0';
    for (int p = 0; p < r->n_parts; p++)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", p ? "+" : "", kqcl_type_name(r->parts[p].type));
    return buf;
}

/* What the row's mode gives each part on the context's devices (kqcl_precision_chosen), each
 * mode once; false when the library cannot say. */
static bool find_used(kqcl_context *ctx, bench_row *row)
{
    row->n_used = 0;
    for (int p = 0; p < row->n_parts; p++) {
        kqcl_precision modes[MAX_MODES];
        int count = kq_precisions_used(ctx, row->parts[p].type, row->n, modes, MAX_MODES);
        if (count == 0)
            return false;
        for (int i = 0; i < count; i++)
            kq_precision_add(row->used, &row->n_used, MAX_MODES, modes[i]);
    }
    return true;
}

static const char *used_name(const bench_row *r, char *buf, size_t size)
{
    return kq_precision_names(r->used, r->n_used, buf, size);
}

#define MAX_ROTATION_COPIES 256

/* Copies of the weights (group_bytes a copy) that fill rotate_mib MiB, one more than fit, at
 * most MAX_ROTATION_COPIES. Counted in size_t and capped before it becomes an int: 1 TiB of
 * small rows is more copies than an int holds (it wrapped negative and passed the cap). */
static int rotation_copies(int rotate_mib, size_t group_bytes)
{
    if (rotate_mib <= 0 || group_bytes == 0)
        return 1;
    uint64_t copies = ((uint64_t)rotate_mib << 20) / group_bytes + 1;
    return copies < MAX_ROTATION_COPIES ? (int)copies : MAX_ROTATION_COPIES;
}

/* time_unfused: time the unfused path (else the caller copies it from the row of another mode:
 * it does not depend on the mode). */
static kqcl_status bench_one(bench_state *b, const bench_options *o, bench_row *row, bool time_unfused)
{
    int64_t k = row->k, m_max = 0;
    int n = row->n, P = row->n_parts;
    void *w_host[MAX_PARTS] = {NULL};
    size_t w_bytes[MAX_PARTS] = {0}, group_bytes = 0;
    kqcl_status st = kqcl_context_set_precision(b->ctx, row->precision);
    if (st == KQCL_OK && !find_used(b->ctx, row))
        st = KQCL_ERR_INVALID_ARG; /* kqcl_precision_chosen's message is on the context */
    for (int p = 0; p < P && st == KQCL_OK; p++) {
        w_host[p] = random_weights(row->parts[p].type, row->parts[p].m, k, &w_bytes[p]);
        group_bytes += w_bytes[p];
        m_max = row->parts[p].m > m_max ? row->parts[p].m : m_max;
        if (w_host[p] == NULL)
            st = KQCL_ERR_OUT_OF_MEMORY;
    }
    float *x_host = malloc((size_t)n * k * sizeof(float));
    /* X as each mode used multiplies it: the references the results are checked against */
    float *x_used = malloc((size_t)(row->n_used > 0 ? row->n_used : 1) * (size_t)n * k * sizeof(float));
    float *y_host = malloc((size_t)n * (m_max > 0 ? m_max : 1) * sizeof(float));
    int n_ws = 1;
    kqcl_split x_split, y_split;
    kq_tool_operand_splits(o->split, &x_split, &y_split);
    if (o->rotate_mib > 0 && o->split == KQCL_SPLIT_NONE)
        n_ws = rotation_copies(o->rotate_mib, group_bytes);
    kqcl_tensor **ws = calloc((size_t)n_ws * (size_t)P, sizeof *ws);
    kqcl_tensor *x = NULL, *ys[MAX_PARTS] = {NULL};
    if (st == KQCL_OK && !(x_host && x_used && y_host && ws))
        st = KQCL_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; st == KQCL_OK && i < (int64_t)n * k; i++)
        x_host[i] = rng_uniform();
    for (int u = 0; u < row->n_used && st == KQCL_OK; u++)
        st = kq_activations_as_used(row->used[u], x_host, x_used + (size_t)u * n * k, n, k);
    for (int i = 0; i < n_ws * P && st == KQCL_OK; i++) {
        st = kq_tool_create_placed(b->ctx, row->parts[i % P].type, row->parts[i % P].m, k, o->split, &ws[i]);
        if (st == KQCL_OK)
            st = kqcl_tensor_write(ws[i], w_host[i % P], w_bytes[i % P]);
    }
    if (st == KQCL_OK)
        st = kq_tool_create_placed(b->ctx, KQCL_TYPE_F32, n, k, x_split, &x);
    for (int p = 0; p < P && st == KQCL_OK; p++)
        st = kq_tool_create_placed(b->ctx, KQCL_TYPE_F32, n, row->parts[p].m, y_split, &ys[p]);
    if (st == KQCL_OK)
        st = kqcl_tensor_write(x, x_host, (size_t)n * k * sizeof(float));

    /* Correctness first: poison Y, run once, compare a sample with the host. */
    if (y_host)
        memset(y_host, 0xff, (size_t)n * (m_max > 0 ? m_max : 1) * sizeof(float));
    for (int p = 0; p < P && st == KQCL_OK; p++)
        st = kqcl_tensor_write(ys[p], y_host, (size_t)n * row->parts[p].m * sizeof(float));
    timed_run run = {b, ws, 1, P, x, ys, false, o->host_clock};
    if (st == KQCL_OK)
        st = launch(&run, ws);
    row->max_rel_err = 0;
    for (int p = 0; p < P && st == KQCL_OK; p++) {
        int64_t m = row->parts[p].m;
        st = kqcl_tensor_read(ys[p], y_host, (size_t)n * m * sizeof(float));
        /* against X as the mode each device used multiplies it (kq_activations_as_used), so
         * every mode is held to the f32 bound of its own product; where a split mixes devices
         * of different modes, the nearest of their references */
        double err = NAN; /* NaN unless some reference gives a number */
        for (int u = 0; u < row->n_used && st == KQCL_OK; u++) {
            double e = check_sample(row->parts[p].type, w_host[p], m, k, x_used + (size_t)u * n * k, n, y_host);
            err = kq_error_nearest(err, e);
        }
        if (st == KQCL_OK)
            row->max_rel_err = kq_error_worse(row->max_rel_err, err); /* NaN counts as worst, and stays */
    }
    if (st == KQCL_OK && !(row->max_rel_err < 1e-4)) {
        char types[64], used[32];
        fprintf(stderr,
                "kqcl bench: %s%s%s m=%lld k=%lld n=%d, precision %s (used %s) gives wrong results (relative error "
                "%.3g)\n",
                row->label ? row->label : "", row->label ? " " : "", row_type_name(row, types, sizeof types),
                (long long)row->m, (long long)k, n, kqcl_precision_name(row->precision),
                used_name(row, used, sizeof used), row->max_rel_err);
        st = KQCL_ERR_DEVICE;
        b->reported = true;
    }
    /* Split runs use several devices at once (device times would add up): host clock. */
    if (st == KQCL_OK)
        st = time_runs(&run, o->reps, &row->us);
    run.n_ws = n_ws;
    if (st == KQCL_OK && n_ws > 1)
        st = time_runs(&run, o->reps, &row->us_rotating);
    if (st == KQCL_OK && time_unfused && o->unfused && o->split == KQCL_SPLIT_NONE) {
        /* several kernels (CLBlast may add padding passes): host clock, an upper bound */
        timed_run unfused = {b, ws, 1, P, x, ys, true, true};
        kqcl_status su = time_runs(&unfused, o->reps, &row->us_unfused);
        if (su != KQCL_OK)
            row->us_unfused.count = 0; /* e.g. built without CLBlast, or no room for f32 weights */
    }
    for (int i = 0; i < n_ws * P && ws; i++)
        kqcl_tensor_destroy(ws[i]);
    kqcl_tensor_destroy(x);
    for (int p = 0; p < P; p++) {
        kqcl_tensor_destroy(ys[p]);
        free(w_host[p]);
    }
    free(ws);
    free(x_host);
    free(x_used);
    free(y_host);
    return st;
}

/* ---- the bandwidth reference ------------------------------------------------------------------- */

/* The streaming-read probe, run several times: the reference is the best it reached (what the
 * memory can deliver, as the matmul's own best would be), the spread says how far to trust it.
 * On a CPU the matmul's weights can sit in a large L3 while the probe's 256 MiB cannot, and the
 * probe varies from run to run there, so `% of bw` is marked unreliable on CPUs. */
#define PROBE_RUNS 5
static kqcl_status measure_bandwidth(bench_state *b)
{
    double gbps[PROBE_RUNS];
    size_t bytes = b->is_gpu ? (size_t)1 << 30 : (size_t)256 << 20;
    kqcl_status st = KQCL_OK;
    for (int i = 0; i < PROBE_RUNS && st == KQCL_OK; i++)
        st = kq_bench_stream_read(b->ctx, 0, bytes, b->is_gpu ? 10 : 3, &gbps[i]);
    if (st != KQCL_OK)
        return st;
    b->bandwidth = kq_tool_stats(gbps, PROBE_RUNS);
    b->bandwidth_gbps = b->bandwidth.max;
    b->bandwidth_reliable = b->is_gpu && b->bandwidth.min >= 0.8 * b->bandwidth.max;
    return KQCL_OK;
}

static const char *bandwidth_note(const bench_state *b)
{
    static char note[256];
    if (b->bandwidth_reliable)
        return NULL;
    snprintf(note, sizeof note,
             "%% of bw is unreliable here: the streaming read gave %.1f-%.1f GB/s over %d runs%s", b->bandwidth.min,
             b->bandwidth.max, PROBE_RUNS,
             b->is_gpu ? "" : ", and on a CPU the weights can sit in the L3 cache where the probe's 256 MiB cannot");
    return note;
}

/* ---- output -------------------------------------------------------------------------------- */

static double weight_gbps(const bench_row *r, double us)
{
    return us > 0 ? (double)row_weight_bytes(r) / (us * 1e3) : 0;
}

/* The time that stands for the row: rotating weights where they were (out of cache). */
static const kq_stats *row_time(const bench_row *r) { return r->us_rotating.count ? &r->us_rotating : &r->us; }

static double row_gflops(const bench_row *r) { return 2.0 * r->m * r->k * r->n / (r->us.median * 1e3); }

static void print_table(const bench_state *b, const kqcl_device_info *dev, const bench_row *rows, int n_rows,
                        int reps)
{
    char safe[2][160];
    printf("\ndevice: %s (%s), kernels: %s, streaming read %.1f GB/s (best of %d, %.1f-%.1f)\n",
           kq_text_escaped(dev->name, safe[0], sizeof safe[0]), kq_text_escaped(dev->platform, safe[1], sizeof safe[1]),
           dev->variant, b->bandwidth_gbps, PROBE_RUNS, b->bandwidth.min, b->bandwidth.max);
    printf("times: median of %d, min-max beside it\n", reps);
    printf("| type | m | k | n | precision | used | us | min-max | us rotating | min-max | weight GB/s | %% of bw%s | "
           "GFLOP/s | unfused us | speed-up |\n",
           b->bandwidth_reliable ? "" : " (unreliable)");
    printf("| --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    bool grouped = false;
    for (int i = 0; i < n_rows; i++) {
        const bench_row *r = &rows[i];
        char types[64], used[32];
        double gbps = weight_gbps(r, row_time(r)->median);
        grouped |= r->n_parts > 1;
        printf("| %s%s%s | %lld | %lld | %d | %s | %s | %.1f | %.1f-%.1f | ", r->label ? r->label : "",
               r->label ? " " : "", row_type_name(r, types, sizeof types), (long long)r->m, (long long)r->k, r->n,
               kqcl_precision_name(r->precision), used_name(r, used, sizeof used), r->us.median, r->us.min,
               r->us.max);
        if (r->us_rotating.count)
            printf("%.1f | %.1f-%.1f | ", r->us_rotating.median, r->us_rotating.min, r->us_rotating.max);
        else
            printf("- | - | ");
        printf("%.1f | %.1f | %.1f | ", gbps, 100.0 * gbps / b->bandwidth_gbps, row_gflops(r));
        if (r->us_unfused.count)
            printf("%.1f | %.2fx |\n", r->us_unfused.median, r->us_unfused.median / r->us.median);
        else
            printf("- | - |\n");
    }
    if (grouped)
        printf("\na+b rows: one kqcl_matmul_group call over those weights, sharing X (m: their rows together; "
               "the unfused path runs them one by one)\n");
    if (!b->bandwidth_reliable)
        printf("\nnote: %s\n", bandwidth_note(b));
}

/* A JSON number, or null where it was not measured. */
static void json_number(const char *key, bool measured, double v)
{
    printf(", \"%s\": ", key);
    if (measured && isfinite(v))
        printf("%.4g", v);
    else
        printf("null");
}

static void json_stats(const char *key, const kq_stats *s)
{
    char name[64];
    json_number(key, s->count > 0, s->median);
    snprintf(name, sizeof name, "%s_min", key);
    json_number(name, s->count > 0, s->min);
    snprintf(name, sizeof name, "%s_max", key);
    json_number(name, s->count > 0, s->max);
}

static void print_json_header(const bench_state *b, const kqcl_device_info *dev, const bench_options *o)
{
    char date[32];
    time_t now = time(NULL);
    struct tm utc;
    gmtime_r(&now, &utc);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &utc);
    printf("{\"kqcl_version\": \"%s\", \"date\": \"%s\"", kqcl_version(), date);
    kq_json_field(stdout, "device", dev->name);
    kq_json_field(stdout, "platform", dev->platform);
    kq_json_field(stdout, "driver", dev->driver);
    kq_json_field(stdout, "kernels", dev->variant);
    printf(", \"repetitions\": %d, \"clock\": \"%s\", \"devices\": %d", o->reps,
           o->host_clock ? "host" : "device", kqcl_device_count(b->ctx));
    printf(", \"split\": \"%s\"", o->split == KQCL_SPLIT_ROWS ? "rows" : o->split == KQCL_SPLIT_COLS ? "cols" : "none");
    printf(", \"precisions\": [");
    for (int i = 0; i < o->n_precisions; i++)
        printf("%s\"%s\"", i ? ", " : "", kqcl_precision_name(o->precisions[i]));
    printf("]");
    json_number("stream_read_gbps", true, b->bandwidth_gbps);
    json_number("stream_read_gbps_min", true, b->bandwidth.min);
    printf(", \"bandwidth_reference_reliable\": %s", b->bandwidth_reliable ? "true" : "false");
    kq_json_field(stdout, "bandwidth_note", bandwidth_note(b));
}

static void print_json(const bench_state *b, const kqcl_device_info *dev, const bench_options *o,
                       const bench_row *rows, int n_rows)
{
    print_json_header(b, dev, o);
    printf(", \"results\": [");
    for (int i = 0; i < n_rows; i++) {
        const bench_row *r = &rows[i];
        char types[64], used[32];
        double gbps = weight_gbps(r, row_time(r)->median);
        printf("%s\n  {\"tensor\": ", i ? "," : "");
        kq_json_cstring_or_null(stdout, r->label);
        printf(", \"type\": \"%s\", \"m\": %lld, \"k\": %lld, \"n\": %d", row_type_name(r, types, sizeof types),
               (long long)r->m, (long long)r->k, r->n);
        if (r->n_parts > 1) {
            printf(", \"parts\": [");
            for (int p = 0; p < r->n_parts; p++) {
                printf("%s{\"tensor\": ", p ? ", " : "");
                kq_json_cstring_or_null(stdout, r->parts[p].name);
                printf(", \"type\": \"%s\", \"m\": %lld}", kqcl_type_name(r->parts[p].type), (long long)r->parts[p].m);
            }
            printf("]");
        }
        printf(", \"precision\": \"%s\", \"used\": \"%s\"", kqcl_precision_name(r->precision),
               used_name(r, used, sizeof used));
        json_stats("us", &r->us);
        json_stats("us_rotating", &r->us_rotating);
        json_number("weight_gbps", true, gbps);
        json_number("percent_of_bandwidth", true, 100.0 * gbps / b->bandwidth_gbps);
        json_number("gflops", true, row_gflops(r));
        json_stats("unfused_us", &r->us_unfused);
        json_number("speedup", r->us_unfused.count > 0, r->us_unfused.median / r->us.median);
        json_number("max_rel_err", true, r->max_rel_err);
        printf("}");
    }
    printf("\n]}\n");
}

/* A CSV field that may be missing: empty where not measured. */
static void csv_number(bool measured, double v) { printf(measured && isfinite(v) ? ",%.4g" : ",", v); }

static void print_csv(const bench_state *b, const bench_row *rows, int n_rows)
{
    printf("tensor,type,m,k,n,precision,used,us,us_min,us_max,us_rotating,us_rotating_min,us_rotating_max,"
           "weight_gbps,percent_of_bandwidth,gflops,unfused_us,speedup,max_rel_err\n");
    for (int i = 0; i < n_rows; i++) {
        const bench_row *r = &rows[i];
        char types[64], used[32];
        double gbps = weight_gbps(r, row_time(r)->median);
        printf("%s,%s,%lld,%lld,%d,%s,%s", r->label ? r->label : "", row_type_name(r, types, sizeof types),
               (long long)r->m, (long long)r->k, r->n, kqcl_precision_name(r->precision),
               used_name(r, used, sizeof used));
        csv_number(true, r->us.median), csv_number(true, r->us.min), csv_number(true, r->us.max);
        csv_number(r->us_rotating.count, r->us_rotating.median);
        csv_number(r->us_rotating.count, r->us_rotating.min);
        csv_number(r->us_rotating.count, r->us_rotating.max);
        csv_number(true, gbps), csv_number(true, 100.0 * gbps / b->bandwidth_gbps), csv_number(true, row_gflops(r));
        csv_number(r->us_unfused.count, r->us_unfused.median);
        csv_number(r->us_unfused.count, r->us_unfused.median / r->us.median);
        csv_number(true, r->max_rel_err);
        printf("\n");
    }
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

/* The layer's calls, in its order: Q/K/V share the normed X, gate/up the FFN's, so each pair or
 * triple is one kqcl_matmul_group (X prepared once; Q and K, both q4_K, one launch in Q8
 * decode, V of q6_K another); the output and down projections take X of their own. */
static const struct {
    const char *label;
    int first, count;
} llama3_8b_calls[] = {
    {"attn_q+attn_k+attn_v", 0, 3}, {"attn_output", 3, 1}, {"ffn_gate+ffn_up", 4, 2}, {"ffn_down", 6, 1}};

/* The calls' rows, each call in every mode asked before the next call. */
static int model_rows(const bench_options *o, bench_row *rows)
{
    int n = 0;
    for (size_t c = 0; c < sizeof llama3_8b_calls / sizeof llama3_8b_calls[0]; c++) {
        bench_row r = {.label = llama3_8b_calls[c].label, .n = 1, .k = llama3_8b_layer[llama3_8b_calls[c].first].k};
        for (int p = 0; p < llama3_8b_calls[c].count; p++) {
            int t = llama3_8b_calls[c].first + p;
            r.parts[r.n_parts++] = (bench_part){llama3_8b_layer[t].type, llama3_8b_layer[t].m, llama3_8b_layer[t].name};
            r.m += llama3_8b_layer[t].m;
        }
        for (int j = 0; j < o->n_precisions; j++) {
            rows[n] = r;
            rows[n++].precision = o->precisions[j];
        }
    }
    return n;
}

/* Per mode: the layer's rows' times (rotating weights where measured), as the table has them --
 * device time of the kernels (launches not counted) unless the host clock timed them -- times 32. */
static void print_model_summary(const bench_state *b, const bench_options *o, const bench_row *rows, int n_rows)
{
    for (int j = 0; j < o->n_precisions; j++) {
        double us = 0, bytes = 0;
        char used[32] = "";
        for (int i = 0; i < n_rows; i++) {
            if (rows[i].precision != o->precisions[j])
                continue;
            char one[32];
            used_name(&rows[i], one, sizeof one);
            if (used[0] == '\0')
                snprintf(used, sizeof used, "%s", one);
            else if (strcmp(used, one) != 0)
                snprintf(used, sizeof used, "mixed");
            us += row_time(&rows[i])->median;
            bytes += (double)row_weight_bytes(&rows[i]);
        }
        us *= LLAMA3_LAYERS;
        bytes *= LLAMA3_LAYERS;
        double bound_us = bytes / (b->bandwidth_gbps * 1e3);
        printf("%sllama3-8b decode, precision %s (used %s), matmuls only (%d layers, %.2f GB of weights, 4 calls a "
               "layer; %s): %.0f us a token = %.1f tokens/s; bandwidth bound %.1f tokens/s (%.0f%%)\n",
               j == 0 ? "\n" : "", kqcl_precision_name(o->precisions[j]), used, LLAMA3_LAYERS, bytes / 1e9,
               o->host_clock ? "host clock around a finish, launches included"
                             : "device time of the kernels, launches not counted",
               us, 1e6 / us, 1e6 / bound_us, 100.0 * bound_us / us);
    }
}

/* ---- arguments ------------------------------------------------------------------------------------ */

static void bench_usage(FILE *out)
{
    fprintf(out,
            "usage: kqcl bench [--type q4_K,q5_K,...] [--m M] [--k K] [--n 1,8,512] [--device SPEC]\n"
            "                  [-r|--reps R] [--rotate MIB] [--no-unfused] [--model llama3-8b]\n"
            "                  [-o|--output md|json|csv] [--json] [--split none|rows|cols] [--host-clock]\n"
            "                  [--collectives] [--precision f32,q8,f16,bf16,auto]\n"
            "Times the fused matmul Y = X . W^T (device events, 2 warm-ups, median and min-max of R\n"
            "repeats), the unfused path (dequantize + CLBlast SGEMM, f32, host-timed) and a streaming-read\n"
            "kernel (best of 5 runs: the %% of bw reference; marked unreliable on CPUs).\n"
            "--precision: a row per mode listed (default: KQCL_PRECISION, else f32), each with the mode\n"
            "kqcl_precision_chosen says it ran (\"used\": auto resolved, q8 outside quantized\n"
            "decode as bf16).\n"
            "--model llama3-8b times one layer's decode matmuls as 4 calls (Q/K/V and gate/up grouped).\n"
            "Defaults: m 4096, k 14336, the four k-quants, n 1,8 (and 512 on a GPU); R 20 on a GPU,\n"
            "3 on a CPU; the weights are also rotated over --rotate MiB (1024 on a GPU, 256 on a CPU)\n"
            "so they do not sit in a cache. Results are checked against the host before they are timed.\n"
            "-o picks the output: a markdown table (md), one JSON object (json; --json is the same),\n"
            "or CSV with a header line (csv).\n"
            "--split rows|cols spreads W evenly over every device of --device (two or more; X and Y\n"
            "placed to match) and times on the host; --host-clock times on the host (around a finish,\n"
            "device timing off) without a split too; --collectives times all-reduce and broadcast\n"
            "over two or more devices instead.\n");
}

static int parse_bench_args(int argc, char **argv, bench_options *o)
{
    static const struct option longs[] = {
        {"type", required_argument, 0, 't'},    {"m", required_argument, 0, 'm'},
        {"k", required_argument, 0, 'k'},       {"n", required_argument, 0, 'n'},
        {"device", required_argument, 0, 'd'},  {"devices", required_argument, 0, 'd'},
        {"reps", required_argument, 0, 'r'},    {"rotate", required_argument, 0, 'R'},
        {"no-unfused", no_argument, 0, 'U'},    {"model", required_argument, 0, 'M'},
        {"json", no_argument, 0, 'j'},          {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},          {"split", required_argument, 0, 'S'},
        {"collectives", no_argument, 0, 'C'},   {"host-clock", no_argument, 0, 'H'},
        {"precision", required_argument, 0, 'P'}, {0, 0, 0, 0}};
    static const char *const outputs[] = {"md", "json", "csv", NULL};
    static const char *const splits[] = {"none", "rows", "cols", NULL};
    static const char *const models[] = {"llama3-8b", NULL};
    int c, rc = 0, choice;
    opterr = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, ":ho:r:", longs, NULL)) != -1) {
        switch (c) {
        case 't':
            o->n_types = kq_option_type_list("bench", "--type", optarg, o->types, MAX_LIST);
            rc = o->n_types < 0 ? KQ_EXIT_USAGE : o->n_types == 0 ? kq_usage_error("bench", "--type '': no type") : 0;
            break;
        case 'm': rc = kq_option_int64("bench", "--m", optarg, 1, INT32_MAX, &o->m); break;
        case 'k': rc = kq_option_int64("bench", "--k", optarg, 1, INT32_MAX, &o->k); break;
        case 'n':
            o->n_ns = kq_option_int_list("bench", "--n", optarg, 1, 1 << 20, o->ns, MAX_LIST);
            rc = o->n_ns < 0 ? KQ_EXIT_USAGE : o->n_ns == 0 ? kq_usage_error("bench", "--n '': no value") : 0;
            break;
        case 'd': o->devices = optarg; break;
        case 'r': rc = kq_option_int("bench", "-r/--reps", optarg, 1, 100000,
                                     &o->reps);
            break;
        case 'R': rc = kq_option_int("bench", "--rotate", optarg, 0, 1 << 20, &o->rotate_mib); break;
        case 'U': o->unfused = false; break;
        case 'M': rc = kq_option_choice("bench", "--model", optarg, models) < 0 ? KQ_EXIT_USAGE : 0; o->model = true; break;
        case 'j': o->output = OUTPUT_JSON; break;
        case 'o':
            choice = kq_option_choice("bench", "-o", optarg, outputs);
            rc = choice < 0 ? KQ_EXIT_USAGE : 0;
            o->output = choice == 1 ? OUTPUT_JSON : choice == 2 ? OUTPUT_CSV : OUTPUT_MD;
            break;
        case 'S':
            choice = kq_option_choice("bench", "--split", optarg, splits);
            rc = choice < 0 ? KQ_EXIT_USAGE : 0;
            o->split = choice == 1 ? KQCL_SPLIT_ROWS : choice == 2 ? KQCL_SPLIT_COLS : KQCL_SPLIT_NONE;
            break;
        case 'C': o->collectives = true; break;
        case 'H': o->host_clock = true; break;
        case 'P':
            o->n_precisions = kq_option_precision_list("bench", "--precision", optarg, o->precisions, MAX_MODES);
            rc = o->n_precisions < 0 ? KQ_EXIT_USAGE : 0;
            break;
        case 'h': bench_usage(stdout); return -1;
        default: return kq_option_error("bench", c, argv);
        }
    }
    if (rc == 0 && optind < argc)
        rc = kq_usage_error("bench", "'%s': unexpected argument (kqcl bench -h for usage)", argv[optind]);
    return rc;
}

/* Every type must take rows of --k values: whole blocks. */
static int check_k(const bench_options *o)
{
    for (int t = 0; t < o->n_types && !o->model; t++)
        if (kqcl_row_size(o->types[t], o->k) == 0)
            return kq_usage_error("bench", "--k %lld: not a whole number of %s blocks (%lld values each)",
                                  (long long)o->k, kqcl_type_name(o->types[t]),
                                  (long long)kqcl_block_size(o->types[t]));
    return 0;
}

static void default_types_and_ns(bench_options *o, bool is_gpu)
{
    if (o->n_types == 0) {
        kqcl_type defaults[] = {KQCL_TYPE_Q4_K, KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, KQCL_TYPE_Q8_K};
        memcpy(o->types, defaults, sizeof defaults);
        o->n_types = 4;
    }
    if (o->n_ns == 0) {
        int defaults[] = {1, 8, 512};
        memcpy(o->ns, defaults, sizeof defaults);
        o->n_ns = is_gpu ? 3 : 2;
    }
}

static int fail(kqcl_context *ctx, kqcl_status st)
{
    fprintf(stderr, "kqcl bench: %s: %s\n", kqcl_status_string(st), kqcl_last_error(ctx));
    kqcl_context_destroy(ctx);
    return 1;
}

/* A split or a collective over one device would time a no-op: say so instead. */
static int check_devices_for(const bench_options *o, kqcl_context *ctx)
{
    if (kqcl_device_count(ctx) >= 2 || (!o->collectives && o->split == KQCL_SPLIT_NONE))
        return 0;
    return kq_usage_error("bench", "%s needs two or more devices; %s selects one (try --device all, or "
                          "POCL_DEVICES=\"pthread pthread\" on PoCL)",
                          o->collectives ? "--collectives" : o->split == KQCL_SPLIT_ROWS ? "--split rows" : "--split cols",
                          o->devices ? "--device" : getenv("KQCL_DEVICES") ? "KQCL_DEVICES" : "the default");
}

/* Whether two rows are the same configuration but for the mode (the unfused path is timed once). */
static bool same_but_mode(const bench_row *a, const bench_row *b)
{
    bool same = a->n_parts == b->n_parts && a->k == b->k && a->n == b->n;
    for (int p = 0; same && p < a->n_parts; p++)
        same = a->parts[p].type == b->parts[p].type && a->parts[p].m == b->parts[p].m;
    return same;
}

static kqcl_status run_rows(bench_state *b, const bench_options *o, bench_row *rows, int n_rows)
{
    kqcl_status st = KQCL_OK;
    for (int i = 0; i < n_rows && st == KQCL_OK; i++) {
        bool again = i > 0 && same_but_mode(&rows[i - 1], &rows[i]);
        st = bench_one(b, o, &rows[i], !again);
        if (again)
            rows[i].us_unfused = rows[i - 1].us_unfused;
        if (st == KQCL_OK && o->output == OUTPUT_MD) {
            char types[64], used[32];
            fprintf(stderr, "  %s%s%s n=%d %s (used %s): %.1f us\n", rows[i].label ? rows[i].label : "",
                    rows[i].label ? " " : "", row_type_name(&rows[i], types, sizeof types), rows[i].n,
                    kqcl_precision_name(rows[i].precision), used_name(&rows[i], used, sizeof used),
                    rows[i].us.median);
        }
    }
    return st;
}

int kq_cmd_bench(int argc, char **argv)
{
    bench_options o = {.m = 4096, .k = 14336, .reps = 0, .rotate_mib = -1, .unfused = true};
    int r = parse_bench_args(argc, argv, &o);
    if (r == 0)
        r = check_k(&o);
    if (r != 0)
        return r > 0 ? r : 0;
    bench_state b = {0};
    kqcl_status st = kqcl_context_create(o.devices, &b.ctx);
    if (st != KQCL_OK)
        return fail(NULL, st);
    if ((r = check_devices_for(&o, b.ctx)) != 0) {
        kqcl_context_destroy(b.ctx);
        return r;
    }
    /* Device timing costs the driver time on every command (doc/perf.md run 12): on only where
     * device events time the runs. */
    o.host_clock = o.host_clock || o.split != KQCL_SPLIT_NONE;
    if (!o.collectives && !o.host_clock && (st = kqcl_context_set_timing(b.ctx, 1)) != KQCL_OK)
        return fail(b.ctx, st);
    if (o.collectives) {
        int rc = kq_bench_collectives(b.ctx, o.output == OUTPUT_JSON);
        kqcl_context_destroy(b.ctx);
        return rc;
    }
    kqcl_device_info dev;
    kqcl_device_get_info(b.ctx, 0, &dev);
    b.is_gpu = dev.is_gpu;
    if (o.reps == 0)
        o.reps = b.is_gpu ? 20 : 3;
    if (o.rotate_mib < 0)
        o.rotate_mib = b.is_gpu ? 1024 : 256;
    default_types_and_ns(&o, b.is_gpu);
    if (o.n_precisions == 0) /* the context's: KQCL_PRECISION, else f32 */
        o.precisions[o.n_precisions++] = kqcl_context_precision(b.ctx);
    if ((st = measure_bandwidth(&b)) != KQCL_OK)
        return fail(b.ctx, st);
    bench_row *rows = calloc((size_t)MAX_LIST * MAX_LIST * MAX_MODES, sizeof *rows);
    if (rows == NULL)
        return fail(b.ctx, KQCL_ERR_OUT_OF_MEMORY);
    int n_rows = 0;
    if (o.model) {
        n_rows = model_rows(&o, rows);
    } else {
        for (int t = 0; t < o.n_types; t++)
            for (int j = 0; j < o.n_ns; j++)
                for (int p = 0; p < o.n_precisions; p++)
                    rows[n_rows++] = (bench_row){.parts = {{o.types[t], o.m, NULL}}, .n_parts = 1, .m = o.m, .k = o.k,
                                                 .n = o.ns[j], .precision = o.precisions[p]};
    }
    if ((st = run_rows(&b, &o, rows, n_rows)) != KQCL_OK) {
        free(rows);
        if (b.reported) {
            kqcl_context_destroy(b.ctx);
            return 1;
        }
        return fail(b.ctx, st);
    }
    kqcl_device_get_info(b.ctx, 0, &dev); /* the kernel variant may have changed (fallback) */
    if (o.output == OUTPUT_JSON) {
        print_json(&b, &dev, &o, rows, n_rows);
    } else if (o.output == OUTPUT_CSV) {
        print_csv(&b, rows, n_rows);
    } else {
        if (o.split != KQCL_SPLIT_NONE)
            printf("\nW split by %s over %d devices, evenly; times on the host around a finish\n",
                   o.split == KQCL_SPLIT_ROWS ? "rows" : "columns", kqcl_device_count(b.ctx));
        else if (o.host_clock)
            printf("\ntimes on the host around a finish (device timing off)\n");
        print_table(&b, &dev, rows, n_rows, o.reps);
        if (o.model)
            print_model_summary(&b, &o, rows, n_rows);
    }
    free(rows);
    kqcl_context_destroy(b.ctx);
    return 0;
}
