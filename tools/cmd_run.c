/*
 * cmd_run.c -- `kqcl run FILE [--devices SPEC] [--n N] [--split rows|cols] [--precision MODE]
 * [--progress]`: load a GGUF model's 2-D weights and time and check their matmuls. Public API
 * only. Exit status: 0 success, 1 failure, 2 bad usage.
 */
#include "commands.h"
#include "kqcl.h"
#include "util.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define escaped kq_text_escaped /* names made safe for a terminal (tools/util.c) */

/* ------------------------------------------------------------------------------------------ */
/* kqcl run                                                                                     */

#define RUN_REPEATS 5      /* timed matmuls per tensor; the median is reported */
#define RUN_CHECK_ROWS 8   /* rows of W checked against the host reference */
/* Error bound of a checked value, relative to sum |x_j * w_j| against X as the precision mode
 * multiplies it (kq_activations_as_used): f32 accumulation over k terms in any order stays far
 * below this for the sizes of real models. */
#define RUN_TOLERANCE 1e-3
#define RUN_MAX_MODES 5

typedef struct run_options {
    const char *path;
    const char *devices;
    int n;
    kqcl_split split; /* of the weights over the context's devices */
    bool progress;    /* the bar even when stderr is not a terminal */
    kqcl_precision precision;
    bool precision_set; /* --precision given; else the context's (KQCL_PRECISION, else f32) */
} run_options;

typedef struct type_stats {
    int tensors;
    uint64_t bytes;
    double seconds;
    double max_error;
    int failures;
    kqcl_precision used[RUN_MAX_MODES]; /* what kqcl_precision_chosen says its matmuls ran */
    int n_used;
} type_stats;

/* Add modes to a set of them, each once. */
static void add_modes(kqcl_precision *set, int *count, const kqcl_precision *modes, int n)
{
    for (int i = 0; i < n; i++)
        kq_precision_add(set, count, RUN_MAX_MODES, modes[i]);
}

static double now_seconds(void) { return kq_tool_now_us() * 1e-6; }

/* A progress bar on stderr: bytes done, rate and time left. On a terminal (or with --progress),
 * one line that always fits the terminal's width (kq_terminal_columns): a line as wide as the
 * terminal wraps, and every redraw after \r then stacks another copy. */
typedef struct progress {
    bool enabled;
    int columns;
    uint64_t total;
    double start, last_draw;
} progress;

#define BAR_MIN 5
#define BAR_MAX 40

static void progress_draw(progress *p, uint64_t done, bool final)
{
    double now = now_seconds();
    if (!p->enabled || (!final && now - p->last_draw < 0.1))
        return;
    p->last_draw = now;
    double elapsed = now - p->start, fraction = p->total ? (double)done / (double)p->total : 1;
    double rate = elapsed > 0 ? (double)done / elapsed : 0;
    double left = rate > 0 ? (double)(p->total - done) / rate : 0;
    char tail[96], line[256], bar[BAR_MAX + 1];
    snprintf(tail, sizeof tail, " %.2f/%.2f GB %.2f GB/s %.0fs left", (double)done / 1e9, (double)p->total / 1e9,
             rate / 1e9, left);
    /* the widest that fits: "loading [" + bar + "]" + tail, one column kept free */
    int room = p->columns - 1 - (int)strlen("loading []") - (int)strlen(tail);
    int width = room > BAR_MAX ? BAR_MAX : room;
    if (width >= BAR_MIN) {
        int filled = (int)(fraction * width);
        for (int k = 0; k < width; k++)
            bar[k] = k < filled ? '#' : '-';
        bar[width] = '\0';
        snprintf(line, sizeof line, "loading [%s]%s", bar, tail);
    } else {
        snprintf(line, sizeof line, "loading %3.0f%%%s", 100 * fraction, tail);
    }
    if ((int)strlen(line) > p->columns - 1 && p->columns > 1)
        line[p->columns - 1] = '\0'; /* a very narrow terminal: cut, never wrap */
    /* \r and clear to the end of the line: a shorter redraw leaves nothing of the last one */
    fprintf(stderr, "\r%s\033[K", line);
    if (final)
        fputc('\n', stderr);
}

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float random_unit(void) { return kq_rng_unit(&rng_state); }

/* Why tensor t is not timed, or NULL when it is a weight kqcl run takes. */
static const char *skip_reason(const kqcl_gguf_tensor *t)
{
    if (t->n_dims != 2)
        return "not a 2-D matrix";
    if (!t->known) /* kqcl computes with every type it knows */
        return kq_ggml_type_sized(t->type) ? "a type kqcl does not compute with"
                                      : "a type id ggml does not define";
    if (t->nbytes == 0)
        return "empty";
    if (kqcl_row_size((kqcl_type)t->type, t->ne[0]) == 0)
        return "its rows are not whole blocks";
    return NULL;
}

/* The 2-D tensors of a type kqcl computes with: the model's matmul weights. Every other tensor
 * is named on stderr with the reason, so that a count of weights never hides one. */
static int64_t select_weights(const kqcl_gguf *g, int64_t *indices, uint64_t *total_bytes)
{
    int64_t count = 0, skipped = 0;
    *total_bytes = 0;
    for (int64_t i = 0; i < kqcl_gguf_tensor_count(g); i++) {
        kqcl_gguf_tensor t;
        char safe[256], label[24];
        kqcl_gguf_tensor_info(g, i, &t);
        const char *why = skip_reason(&t);
        if (why == NULL) {
            indices[count++] = i;
            *total_bytes += t.nbytes;
            continue;
        }
        fprintf(stderr, "kqcl run: skipping '%s' (%s, %d-D): %s\n", escaped(t.name, safe, sizeof safe),
                kq_ggml_type_label(t.type, label), t.n_dims, why);
        skipped++;
    }
    if (skipped > 0)
        fprintf(stderr, "kqcl run: %" PRId64 " of %" PRId64 " tensors skipped\n", skipped,
                kqcl_gguf_tensor_count(g));
    return count;
}

static int load_weights(kqcl_context *ctx, const kqcl_gguf *g, const int64_t *indices,
                        int64_t count, uint64_t total_bytes, kqcl_split split, bool force_bar, kqcl_tensor **weights)
{
    progress bar = {.enabled = force_bar || isatty(STDERR_FILENO) != 0, .columns = kq_terminal_columns(),
                    .total = total_bytes, .start = now_seconds()};
    uint64_t done = 0;
    for (int64_t k = 0; k < count; k++) {
        kqcl_gguf_tensor t;
        kqcl_gguf_tensor_info(g, indices[k], &t);
        kqcl_status st = kqcl_gguf_load_tensor_split(ctx, g, indices[k], split, &weights[k]);
        if (st != KQCL_OK) {
            progress_draw(&bar, done, true);
            char safe[256];
            fprintf(stderr, "kqcl run: loading '%s': %s (%s)\n", escaped(t.name, safe, sizeof safe),
                    kqcl_last_error(ctx), kqcl_status_string(st));
            return 1;
        }
        done += t.nbytes;
        progress_draw(&bar, done, k + 1 == count);
    }
    double seconds = now_seconds() - bar.start;
    /* in the table's unit (MB, 1e6 bytes), of the same tensors, so the two lines agree */
    fprintf(stderr, "loaded %" PRId64 " tensors, %.1f MB in %.2f s (%.2f GB/s)\n", count,
            (double)total_bytes / 1e6, seconds, seconds > 0 ? (double)total_bytes / 1e9 / seconds : 0);
    return 0;
}

/* Largest error of sampled Y values against X . W^T computed in double from the host
 * dequantization of the same rows of W, relative to sum |x_j w_j|. */
static double check_rows(const kqcl_gguf_tensor *t, const float *x, const float *y, int n,
                         kqcl_status *status)
{
    int64_t k = t->ne[0], m = t->ne[1];
    size_t row_bytes = kqcl_row_size((kqcl_type)t->type, k);
    float *w = malloc((size_t)k * sizeof *w);
    double worst = 0;
    *status = w ? KQCL_OK : KQCL_ERR_OUT_OF_MEMORY;
    for (int s = 0; s < RUN_CHECK_ROWS && *status == KQCL_OK; s++) {
        int64_t r = m <= RUN_CHECK_ROWS ? s % m : (int64_t)((double)s * (double)(m - 1) / (RUN_CHECK_ROWS - 1));
        *status = kqcl_dequantize((kqcl_type)t->type, (const uint8_t *)t->data + (size_t)r * row_bytes,
                                  w, 1, k);
        for (int i = 0; i < n && *status == KQCL_OK; i++)
            worst = kq_error_worse(worst, kq_relative_error(x + (size_t)i * (size_t)k, w, k,
                                                            y[(size_t)i * (size_t)m + (size_t)r]));
    }
    free(w);
    return worst;
}

/* Time one weight's matmul (median of RUN_REPEATS after a warm-up) and check it. */
/* The time of one matmul: device events on one device; with the weights split, the host clock
 * around a finish (the devices run at once, so their times would add up). */
static kqcl_status time_matmul(kqcl_context *ctx, kqcl_tensor *w, kqcl_tensor *x, kqcl_tensor *y, bool host_clock,
                               double *seconds)
{
    double t0 = host_clock ? kq_tool_now_us() : 0, us = 0;
    kqcl_status st = kqcl_matmul(ctx, w, x, y);
    if (st == KQCL_OK)
        st = kq_call_time_us(ctx, host_clock, t0, &us);
    *seconds = us * 1e-6;
    return st;
}

/* used: the modes the matmul ran in (one unless a split mixes devices of different modes); the
 * error is against the nearest of their references. */
static kqcl_status bench_weight(kqcl_context *ctx, const kqcl_gguf_tensor *t, kqcl_tensor *w,
                                int n, kqcl_split split, const kqcl_precision *used, int n_used,
                                double *seconds, double *error)
{
    kqcl_split x_split, y_split;
    kq_tool_operand_splits(split, &x_split, &y_split);
    int64_t k = t->ne[0], m = t->ne[1];
    kqcl_tensor *x = NULL, *y = NULL;
    float *xs = malloc((size_t)n * (size_t)k * sizeof *xs);
    float *xu = malloc((size_t)n * (size_t)k * sizeof *xu);
    float *ys = malloc((size_t)n * (size_t)m * sizeof *ys);
    double times[RUN_REPEATS];
    kqcl_status st = xs && xu && ys ? KQCL_OK : KQCL_ERR_OUT_OF_MEMORY;
    if (st == KQCL_OK) {
        for (size_t j = 0; j < (size_t)n * (size_t)k; j++)
            xs[j] = random_unit();
        st = kq_tool_create_placed(ctx, KQCL_TYPE_F32, n, k, x_split, &x);
    }
    if (st == KQCL_OK)
        st = kq_tool_create_placed(ctx, KQCL_TYPE_F32, n, m, y_split, &y);
    if (st == KQCL_OK)
        st = kqcl_tensor_write(x, xs, (size_t)n * (size_t)k * sizeof *xs);
    if (st == KQCL_OK)
        st = kqcl_matmul(ctx, w, x, y); /* warm-up: kernel build and first touch */
    for (int r = 0; r < RUN_REPEATS && st == KQCL_OK; r++)
        st = time_matmul(ctx, w, x, y, split != KQCL_SPLIT_NONE, &times[r]);
    if (st == KQCL_OK)
        st = kqcl_tensor_read(y, ys, (size_t)n * (size_t)m * sizeof *ys);
    if (st == KQCL_OK)
        *seconds = kq_tool_median(times, RUN_REPEATS);
    *error = NAN; /* NaN unless some reference gives a number */
    for (int u = 0; u < n_used && st == KQCL_OK; u++) {
        st = kq_activations_as_used(used[u], xs, xu, n, k);
        double e = st == KQCL_OK ? check_rows(t, xu, ys, n, &st) : 0;
        *error = kq_error_nearest(*error, e);
    }
    kqcl_tensor_destroy(x);
    kqcl_tensor_destroy(y);
    free(xs);
    free(xu);
    free(ys);
    return st;
}

static void print_run_report(const type_stats *stats, int n)
{
    type_stats total = {0};
    char used[32];
    printf("%-6s %8s %12s %12s %9s %12s  %s\n", "type", "tensors", "MB", "time ms", "GB/s",
           "max error", "used");
    for (uint32_t type = 0; type < 64; type++) {
        const type_stats *s = &stats[type];
        if (s->tensors == 0)
            continue;
        printf("%-6s %8d %12.1f %12.3f %9.1f %12.2e  %s%s\n", kqcl_type_name((kqcl_type)type),
               s->tensors, (double)s->bytes / 1e6, s->seconds * 1e3,
               s->seconds > 0 ? (double)s->bytes / s->seconds / 1e9 : 0, s->max_error,
               kq_precision_names(s->used, s->n_used, used, sizeof used), s->failures ? "  FAILED" : "");
        add_modes(total.used, &total.n_used, s->used, s->n_used);
        total.tensors += s->tensors;
        total.bytes += s->bytes;
        total.seconds += s->seconds;
        total.max_error = kq_error_worse(total.max_error, s->max_error); /* a NaN shows in the total */
        total.failures += s->failures;
    }
    printf("%-6s %8d %12.1f %12.3f %9.1f %12.2e  %s%s\n", "total", total.tensors,
           (double)total.bytes / 1e6, total.seconds * 1e3,
           total.seconds > 0 ? (double)total.bytes / total.seconds / 1e9 : 0,
           total.max_error, kq_precision_names(total.used, total.n_used, used, sizeof used),
           total.failures ? "  FAILED" : "");
    if (total.seconds > 0)
        printf("matmul-only decode: %.1f tokens/s (every weight once per step, %d token%s a step)\n",
               (double)n / total.seconds, n, n == 1 ? "" : "s");
}

static void run_usage(FILE *out)
{
    fprintf(out, "usage: kqcl run FILE [--devices SPEC] [--n N] [--split rows|cols] [--precision MODE]\n"
                 "                [--progress]\n"
                 "  Load every 2-D weight of a type kqcl computes with onto the device, time its\n"
                 "  matmul with a random f32 X of N rows (default 1: decode) as the median of %d\n"
                 "  runs, check %d rows of each Y against a host reference, and report bytes, time,\n"
                 "  GB/s per type and the implied tokens/s.\n"
                 "  --precision MODE f32, q8, f16, bf16 or auto: the context's precision for the\n"
                 "                   matmuls (default: KQCL_PRECISION, else f32); the report's\n"
                 "                   \"used\" column is what each type got (kqcl_precision_chosen),\n"
                 "                   and the check is against X as that mode multiplies it\n"
                 "  --devices SPEC   as kqcl devices lists them (default: KQCL_DEVICES, else the\n"
                 "                   first GPU)\n"
                 "  --split rows|cols  spread every weight over the devices of --devices in\n"
                 "                   equal shares (rows: column-parallel, outputs gathered;\n"
                 "                   cols: row-parallel, partial sums all-reduced); times are\n"
                 "                   then taken on the host around a finish\n"
                 "  --progress       draw the loading bar even when stderr is not a terminal\n"
                 "                   (it fits $COLUMNS, else the terminal's width)\n",
            RUN_REPEATS, RUN_CHECK_ROWS);
}

static int parse_run_args(int argc, char **argv, run_options *o)
{
    static const struct option longs[] = {
        {"devices", required_argument, 0, 'd'}, {"device", required_argument, 0, 'd'},
        {"n", required_argument, 0, 'n'},       {"split", required_argument, 0, 'S'},
        {"progress", no_argument, 0, 'P'},      {"help", no_argument, 0, 'h'},
        {"precision", required_argument, 0, 'p'}, {0, 0, 0, 0}};
    static const char *const splits[] = {"rows", "cols", NULL};
    int c, rc = 0, choice;
    *o = (run_options){.n = 1};
    opterr = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
        switch (c) {
        case 'd': o->devices = optarg; break;
        case 'n': rc = kq_option_int("run", "--n", optarg, 1, 65536, &o->n); break;
        case 'S':
            choice = kq_option_choice("run", "--split", optarg, splits);
            rc = choice < 0 ? KQ_EXIT_USAGE : 0;
            o->split = choice == 0 ? KQCL_SPLIT_ROWS : KQCL_SPLIT_COLS;
            break;
        case 'P': o->progress = true; break;
        case 'p':
            rc = kq_option_precision("run", "--precision", optarg, &o->precision);
            o->precision_set = rc == 0;
            break;
        case 'h': run_usage(stdout); return -1;
        default: return kq_option_error("run", c, argv);
        }
    }
    return rc != 0 ? rc : kq_one_file("run", argc, argv, &o->path);
}

/* Time and check every loaded weight; per-type totals go into stats (indexed by type id). */
static int bench_weights(kqcl_context *ctx, const kqcl_gguf *g, const int64_t *indices,
                         int64_t count, kqcl_tensor **weights, int n, kqcl_split split, type_stats *stats)
{
    int failed = 0;
    for (int64_t k = 0; k < count; k++) {
        kqcl_gguf_tensor t;
        char safe[256];
        double seconds = 0, error = 0;
        kqcl_gguf_tensor_info(g, indices[k], &t);
        kqcl_precision used[RUN_MAX_MODES];
        int n_used = kq_precisions_used(ctx, (kqcl_type)t.type, n, used, RUN_MAX_MODES);
        kqcl_status st = n_used > 0 ? bench_weight(ctx, &t, weights[k], n, split, used, n_used, &seconds, &error)
                                    : KQCL_ERR_INVALID_ARG; /* kqcl_precision_chosen's message is on ctx */
        if (st != KQCL_OK) {
            fprintf(stderr, "kqcl run: '%s': %s (%s)\n", escaped(t.name, safe, sizeof safe),
                    kqcl_last_error(ctx), kqcl_status_string(st));
            return 1;
        }
        type_stats *s = &stats[t.type];
        bool bad = !(error <= RUN_TOLERANCE);
        if (bad)
            fprintf(stderr, "kqcl run: '%s' (%s): relative error %.3g exceeds %.0e\n",
                    escaped(t.name, safe, sizeof safe), kqcl_type_name((kqcl_type)t.type), error,
                    RUN_TOLERANCE);
        s->tensors++;
        s->bytes += t.nbytes;
        s->seconds += seconds;
        s->max_error = kq_error_worse(s->max_error, error);
        s->failures += bad;
        add_modes(s->used, &s->n_used, used, n_used);
        failed |= bad;
    }
    return failed;
}

int kq_cmd_run(int argc, char **argv)
{
    run_options o;
    int rc = parse_run_args(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    kqcl_gguf *g;
    if (kq_gguf_open_or_complain("run", o.path, &g) != 0)
        return 1;
    int64_t *indices = malloc(((size_t)kqcl_gguf_tensor_count(g) + 1) * sizeof *indices);
    uint64_t total_bytes;
    int64_t count = indices ? select_weights(g, indices, &total_bytes) : 0;
    kqcl_tensor **weights = calloc((size_t)count + 1, sizeof *weights);
    kqcl_context *ctx = NULL;
    type_stats stats[64] = {{0}}; /* indexed by type id: kqcl's are all below 64 */
    rc = 1;
    if (indices == NULL || weights == NULL) {
        fprintf(stderr, "kqcl run: out of memory\n");
    } else if (count == 0) {
        fprintf(stderr, "kqcl run: %s has no 2-D tensor of a type kqcl computes with\n", o.path);
    } else if (kqcl_context_create(o.devices, &ctx) != KQCL_OK) {
        fprintf(stderr, "kqcl run: %s\n", kqcl_last_error(NULL));
    } else if (o.precision_set && kqcl_context_set_precision(ctx, o.precision) != KQCL_OK) {
        fprintf(stderr, "kqcl run: %s\n", kqcl_last_error(ctx));
    } else if (o.split == KQCL_SPLIT_NONE && kqcl_context_set_timing(ctx, 1) != KQCL_OK) { /* device-timed */
        fprintf(stderr, "kqcl run: %s\n", kqcl_last_error(ctx));
    } else if (load_weights(ctx, g, indices, count, total_bytes, o.split, o.progress, weights) == 0) {
        kqcl_device_info info;
        if (kqcl_device_get_info(ctx, 0, &info) == KQCL_OK)
            printf("%s: %" PRId64 " weights on %s (%s), n = %d, precision %s\n", o.path, count, info.name,
                   info.variant, o.n, kqcl_precision_name(kqcl_context_precision(ctx)));
        rc = bench_weights(ctx, g, indices, count, weights, o.n, o.split, stats);
        print_run_report(stats, o.n);
    }
    for (int64_t k = 0; weights && k < count; k++)
        kqcl_tensor_destroy(weights[k]);
    kqcl_context_destroy(ctx);
    free(weights);
    free(indices);
    kqcl_gguf_close(g);
    return rc;
}
