/*
 * cmd_gguf.c -- the GGUF subcommands of the kqcl tool:
 *   kqcl gguf FILE [--json]          describe a file: version, metadata, tensors
 *   kqcl run FILE [--devices SPEC] [--n N] [--split rows|cols] [--precision MODE]
 *                                    load a model's 2-D weights and time their matmuls
 *   kqcl quantize IN OUT TYPE        re-quantize float weights to a k-quant
 * Public API only. Exit status: 0 success, 1 failure, 2 bad usage.
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
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE KQ_EXIT_USAGE

/* ------------------------------------------------------------------------------------------ */
/* Names and sizes of ggml's types: the library's table (kqcl_ggml_type_info)                  */

/* The name ggml gives a type, or "type<N>" for an id ggml does not define. */
static const char *type_label(uint32_t id, char buffer[24])
{
    const char *name = NULL;
    if (kqcl_ggml_type_info(id, &name, NULL, NULL) == KQCL_OK && name != NULL)
        return name;
    snprintf(buffer, 24, "type%" PRIu32, id);
    return buffer;
}

/* Bytes of a tensor: the reader sizes every type ggml defines (and checked that they lie in
 * the file); 0 for other ids. */
static uint64_t tensor_bytes(const kqcl_gguf_tensor *t) { return t->nbytes; }

/* Does ggml define the type (so that nbytes is its size)? */
static bool type_is_sized(uint32_t id) { return kqcl_ggml_type_info(id, NULL, NULL, NULL) == KQCL_OK; }

static int open_or_complain(const char *cmd, const char *path, kqcl_gguf **g)
{
    kqcl_status st = kqcl_gguf_open(path, g);
    if (st != KQCL_OK) {
        fprintf(stderr, "kqcl %s: %s (%s)\n", cmd, kqcl_last_error(NULL), kqcl_status_string(st));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* kqcl gguf                                                                                    */

/* The shared escapers (tools/util.c): JSON string literals, and names made safe for a terminal. */
#define print_quoted kq_json_string
#define escaped kq_text_escaped

static void print_number(FILE *out, const kqcl_gguf_value *v, bool json)
{
    int64_t s;
    uint64_t u;
    double d;
    if (kqcl_gguf_value_int64(v, &s) == KQCL_OK)
        fprintf(out, "%" PRId64, s);
    else if (kqcl_gguf_value_uint64(v, &u) == KQCL_OK)
        fprintf(out, "%" PRIu64, u);
    else if (kqcl_gguf_value_double(v, &d) == KQCL_OK && !isfinite(d) && json)
        fputs("null", out); /* JSON has no NaN or infinity */
    else if (kqcl_gguf_value_double(v, &d) == KQCL_OK)
        fprintf(out, v->type == KQCL_GGUF_TYPE_FLOAT32 ? "%.9g" : "%.17g", d);
}

/* A value as JSON; in text mode (json false) long strings are cut and arrays longer than 8
 * are summarised. */
static void print_value(FILE *out, const kqcl_gguf_value *v, bool json)
{
    int flag;
    const char *text;
    size_t length;
    if (kqcl_gguf_value_bool(v, &flag) == KQCL_OK) {
        fputs(flag ? "true" : "false", out);
    } else if (kqcl_gguf_value_string(v, &text, &length) == KQCL_OK) {
        print_quoted(out, text, length, json ? 0 : 120);
    } else if (v->type == KQCL_GGUF_TYPE_ARRAY) {
        if (!json && v->length > 8) {
            fprintf(out, "[\xE2\x80\xA6 %" PRIu64 " items]", v->length);
            return;
        }
        fputc('[', out);
        for (uint64_t j = 0; j < v->length; j++) {
            kqcl_gguf_value e;
            if (kqcl_gguf_value_item(v, j, &e) != KQCL_OK)
                break;
            fputs(j ? ", " : "", out);
            print_value(out, &e, json);
        }
        fputc(']', out);
    } else {
        print_number(out, v, json);
    }
}

static void print_shape(FILE *out, const kqcl_gguf_tensor *t, const char *separator)
{
    for (int d = 0; d < t->n_dims; d++)
        fprintf(out, "%s%" PRId64, d ? separator : "", t->ne[d]);
}

static void print_json(const kqcl_gguf *g)
{
    printf("{\"version\": %d, \"metadata\": {", kqcl_gguf_version(g));
    for (int64_t i = 0; i < kqcl_gguf_kv_count(g); i++) {
        kqcl_gguf_value v;
        const char *key = kqcl_gguf_key(g, i);
        kqcl_gguf_get_value(g, i, &v);
        printf("%s", i ? ", " : "");
        print_quoted(stdout, key, strlen(key), 0);
        printf(": ");
        print_value(stdout, &v, true);
    }
    printf("}, \"tensors\": [");
    for (int64_t i = 0; i < kqcl_gguf_tensor_count(g); i++) {
        kqcl_gguf_tensor t;
        char buffer[24];
        kqcl_gguf_tensor_info(g, i, &t);
        uint64_t bytes = tensor_bytes(&t);
        printf("%s{\"name\": ", i ? ", " : "");
        print_quoted(stdout, t.name, strlen(t.name), 0);
        printf(", \"type\": \"%s\", \"shape\": [", type_label(t.type, buffer));
        print_shape(stdout, &t, ", ");
        printf("], \"offset\": %" PRIu64 ", \"bytes\": ", t.offset);
        if (bytes != 0 || type_is_sized(t.type))
            printf("%" PRIu64 "}", bytes);
        else
            printf("null}");
    }
    printf("]}\n");
}

static void print_text(const kqcl_gguf *g, const char *path)
{
    int64_t n_kv = kqcl_gguf_kv_count(g), n_tensors = kqcl_gguf_tensor_count(g);
    int key_width = 8, name_width = 4;
    printf("%s: GGUF version %d, %" PRId64 " metadata keys, %" PRId64 " tensors, data at byte %"
           PRIu64 " (alignment %" PRIu64 ")\n", path, kqcl_gguf_version(g), n_kv, n_tensors,
           kqcl_gguf_data_offset(g), kqcl_gguf_alignment(g));
    char safe[512];
    for (int64_t i = 0; i < n_kv; i++) {
        int w = (int)strlen(escaped(kqcl_gguf_key(g, i), safe, sizeof safe));
        key_width = w > key_width ? (w < 48 ? w : 48) : key_width;
    }
    printf("\nmetadata:\n");
    for (int64_t i = 0; i < n_kv; i++) {
        kqcl_gguf_value v;
        char type[32];
        kqcl_gguf_get_value(g, i, &v);
        if (v.type == KQCL_GGUF_TYPE_ARRAY)
            snprintf(type, sizeof type, "%s[]", kqcl_gguf_type_name(v.elem_type));
        else
            snprintf(type, sizeof type, "%s", kqcl_gguf_type_name(v.type));
        printf("  %-*s %-9s ", key_width, escaped(kqcl_gguf_key(g, i), safe, sizeof safe), type);
        print_value(stdout, &v, false);
        printf("\n");
    }
    for (int64_t i = 0; i < n_tensors; i++) {
        kqcl_gguf_tensor t;
        kqcl_gguf_tensor_info(g, i, &t);
        int w = (int)strlen(escaped(t.name, safe, sizeof safe));
        name_width = w > name_width ? (w < 48 ? w : 48) : name_width;
    }
    printf("\ntensors:\n  %5s  %-*s  %-8s  %-22s  %12s  %12s\n", "#", name_width, "name", "type",
           "shape", "bytes", "offset");
    uint64_t total = 0;
    for (int64_t i = 0; i < n_tensors; i++) {
        kqcl_gguf_tensor t;
        char buffer[24], shape[96] = "";
        kqcl_gguf_tensor_info(g, i, &t);
        for (int d = 0; d < t.n_dims; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%" PRId64,
                     d ? " x " : "", t.ne[d]);
        uint64_t bytes = tensor_bytes(&t);
        total += bytes;
        printf("  %5" PRId64 "  %-*s  %-8s  %-22s  ", i, name_width,
               escaped(t.name, safe, sizeof safe), type_label(t.type, buffer), shape);
        if (bytes != 0 || type_is_sized(t.type))
            printf("%12" PRIu64 "  %12" PRIu64 "\n", bytes, t.offset);
        else
            printf("%12s  %12" PRIu64 "\n", "?", t.offset);
    }
    printf("\n%" PRId64 " tensors, %.2f MiB of data\n", n_tensors, (double)total / (1 << 20));
}

static void gguf_usage(FILE *out)
{
    fprintf(out, "usage: kqcl gguf FILE [--json]\n"
                 "  Describe a GGUF file (versions 2 and 3): version, metadata (arrays longer\n"
                 "  than 8 are summarised) and tensors with ggml's type names, shapes in GGUF\n"
                 "  order (ne0 first), bytes and data offsets.\n"
                 "  --json   one JSON object {\"version\", \"metadata\", \"tensors\"}, arrays in full\n");
}

int kq_cmd_gguf(int argc, char **argv)
{
    static const struct option longs[] = {{"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *path = NULL;
    bool json = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 'h': gguf_usage(stdout); return 0;
        default: return kq_option_error("gguf", c, argv);
        }
    }
    if (optind < argc)
        path = argv[optind++];
    if (optind < argc)
        return kq_usage_error("gguf", "'%s': one FILE only, '%s' given already", argv[optind], path);
    if (path == NULL)
        return kq_usage_error("gguf", "no FILE given (kqcl gguf -h for usage)");
    kqcl_gguf *g;
    if (open_or_complain("gguf", path, &g) != 0)
        return 1;
    if (json)
        print_json(g);
    else
        print_text(g, path);
    kqcl_gguf_close(g);
    return ferror(stdout) ? 1 : 0;
}

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
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int j = 0; j < *count; j++)
            seen |= set[j] == modes[i];
        if (!seen && *count < RUN_MAX_MODES)
            set[(*count)++] = modes[i];
    }
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
        return type_is_sized(t->type) ? "a type kqcl does not compute with"
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
                type_label(t.type, label), t.n_dims, why);
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
        for (int i = 0; i < n && *status == KQCL_OK; i++) {
            double sum = 0, magnitude = 0;
            for (int64_t j = 0; j < k; j++) {
                sum += (double)x[(size_t)i * (size_t)k + (size_t)j] * (double)w[j];
                magnitude += fabs((double)x[(size_t)i * (size_t)k + (size_t)j] * (double)w[j]);
            }
            double error = fabs((double)y[(size_t)i * (size_t)m + (size_t)r] - sum) /
                           (magnitude > 0 ? magnitude : 1);
            worst = error > worst || isnan(error) ? error : worst;
        }
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
    double t0 = host_clock ? kq_tool_now_us() : 0;
    kqcl_status st = kqcl_matmul(ctx, w, x, y);
    if (st == KQCL_OK && host_clock) {
        st = kqcl_finish(ctx);
        *seconds = (kq_tool_now_us() - t0) * 1e-6;
    } else if (st == KQCL_OK) {
        uint64_t ns = 0;
        st = kqcl_last_device_time(ctx, &ns);
        *seconds = (double)ns * 1e-9;
    }
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
        *error = isnan(*error) || e < *error ? e : *error;
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
    bool any_nan = false; /* a NaN error must show in the total, not vanish in a max */
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
        total.max_error = s->max_error > total.max_error ? s->max_error : total.max_error;
        any_nan |= isnan(s->max_error);
        total.failures += s->failures;
    }
    printf("%-6s %8d %12.1f %12.3f %9.1f %12.2e  %s%s\n", "total", total.tensors,
           (double)total.bytes / 1e6, total.seconds * 1e3,
           total.seconds > 0 ? (double)total.bytes / total.seconds / 1e9 : 0,
           any_nan ? (double)NAN : total.max_error, kq_precision_names(total.used, total.n_used, used, sizeof used),
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
            rc = choice < 0 ? EXIT_USAGE : 0;
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
    if (rc != 0)
        return rc;
    if (optind < argc)
        o->path = argv[optind++];
    if (optind < argc)
        return kq_usage_error("run", "'%s': one FILE only, '%s' given already", argv[optind], o->path);
    if (o->path == NULL)
        return kq_usage_error("run", "no FILE given (kqcl run -h for usage)");
    return 0;
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
        s->max_error = error > s->max_error || isnan(error) ? error : s->max_error;
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
    if (open_or_complain("run", o.path, &g) != 0)
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

/* ------------------------------------------------------------------------------------------ */
/* kqcl quantize                                                                                */

#define QUANTIZE_CHUNK_FLOATS (16u << 20) /* 64 MiB of f32 per conversion step */

static void quantize_usage(FILE *out)
{
    fprintf(out, "usage: kqcl quantize IN.gguf OUT.gguf TYPE\n"
                 "  Re-quantize the f32/f16/bf16 2-D weights of IN to TYPE, one line per tensor\n"
                 "  saying what became of it. TYPE is a type name in any case (q4_K, Q4_K, q8_0,\n"
                 "  q6_K, f16, ...) or a llama.cpp mix: Q4_K_M (q4_K, with q6_K for output.weight\n"
                 "  and the attn_v and ffn_down of the first and last eighth of the layers and\n"
                 "  every third between) or Q5_K_M (the same over q5_K). 1-D tensors, norms (names\n"
                 "  containing \"norm\"), rows that are not whole blocks and tensors already\n"
                 "  quantized are copied unchanged, as is all metadata; general.file_type is set\n"
                 "  to llama.cpp's number for what was written. OUT is written as GGUF v3.\n");
}

/* ---- what to quantize to -------------------------------------------------------------------- */

/* One type for every weight, or a mix that keeps more bits where llama.cpp's does. */
typedef struct recipe {
    char name[32];
    kqcl_type base;      /* most weights */
    kqcl_type more_bits; /* a mix's type for output.weight and some attn_v / ffn_down; = base otherwise */
    int file_type;       /* llama.cpp's LLAMA_FTYPE for the result, -1 where it has none */
} recipe;

/* llama.cpp's mixes (LLAMA_FTYPE_MOSTLY_Q4_K_M = 15, _Q5_K_M = 17). */
static const struct {
    const char *name;
    kqcl_type base, more_bits;
    int file_type;
} mixes[] = {
    {"Q4_K_M", KQCL_TYPE_Q4_K, KQCL_TYPE_Q6_K, 15},
    {"Q5_K_M", KQCL_TYPE_Q5_K, KQCL_TYPE_Q6_K, 17},
};

/* llama.cpp's general.file_type (enum llama_ftype) for a file whose weights are mostly `type`:
 * ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7, MOSTLY_Q4_K_S 14 and MOSTLY_Q5_K_S 16
 * (the "mostly q4_K / q5_K" numbers), MOSTLY_Q6_K 18, MOSTLY_BF16 32. q8_K has none: llama.cpp
 * uses it only for activations. */
static int file_type_of(kqcl_type type)
{
    switch (type) {
    case KQCL_TYPE_F32: return 0;
    case KQCL_TYPE_F16: return 1;
    case KQCL_TYPE_Q4_0: return 2;
    case KQCL_TYPE_Q8_0: return 7;
    case KQCL_TYPE_Q4_K: return 14;
    case KQCL_TYPE_Q5_K: return 16;
    case KQCL_TYPE_Q6_K: return 18;
    case KQCL_TYPE_BF16: return 32;
    default: return -1;
    }
}

/* Can the host codec write `type`? Asked of the library, so a new type needs no change here. */
static bool can_quantize_to(kqcl_type type)
{
    int64_t block = kqcl_block_size(type);
    if (block <= 0 || block > 1024)
        return false;
    float zeros[1024] = {0};
    unsigned char out[4096];
    return kqcl_row_size(type, block) <= sizeof out && kqcl_quantize(type, zeros, out, 1, block) == KQCL_OK;
}

static bool parse_recipe(const char *text, recipe *r)
{
    snprintf(r->name, sizeof r->name, "%s", text);
    for (size_t i = 0; i < sizeof mixes / sizeof mixes[0]; i++) {
        if (strcasecmp(text, mixes[i].name) == 0) {
            snprintf(r->name, sizeof r->name, "%s", mixes[i].name);
            r->base = mixes[i].base, r->more_bits = mixes[i].more_bits, r->file_type = mixes[i].file_type;
            return true;
        }
    }
    if (kqcl_type_from_name(text, &r->base) != KQCL_OK || !can_quantize_to(r->base))
        return false;
    snprintf(r->name, sizeof r->name, "%s", kqcl_type_name(r->base));
    r->more_bits = r->base;
    r->file_type = file_type_of(r->base);
    return true;
}

/* llama.cpp's rule for which layers of attn_v and ffn_down a _M mix gives more bits: the
 * first and last eighth, and every third layer between. */
static bool more_bits_at(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* ---- one tensor ------------------------------------------------------------------------------ */

#define QUANTIZE_CHUNK_FLOATS (16u << 20) /* 64 MiB of f32 per conversion step */

/* Convert t into `type` in chunks of rows, so a large embedding never needs all its floats. */
static kqcl_status requantize(const kqcl_gguf_tensor *t, kqcl_type type, void **out,
                              size_t *out_bytes)
{
    int64_t cols = t->ne[0], rows = t->ne[1];
    size_t in_row = kqcl_row_size((kqcl_type)t->type, cols), out_row = kqcl_row_size(type, cols);
    int64_t chunk = (int64_t)(QUANTIZE_CHUNK_FLOATS / (size_t)cols);
    chunk = chunk < 1 ? 1 : chunk;
    *out_bytes = out_row * (size_t)rows;
    *out = malloc(*out_bytes);
    float *floats = malloc((size_t)(chunk < rows ? chunk : rows) * (size_t)cols * sizeof *floats);
    kqcl_status st = *out && floats ? KQCL_OK : KQCL_ERR_OUT_OF_MEMORY;
    for (int64_t r = 0; r < rows && st == KQCL_OK; r += chunk) {
        int64_t n = rows - r < chunk ? rows - r : chunk;
        st = kqcl_dequantize((kqcl_type)t->type, (const uint8_t *)t->data + (size_t)r * in_row,
                             floats, n, cols);
        if (st == KQCL_OK)
            st = kqcl_quantize(type, floats, (uint8_t *)*out + (size_t)r * out_row, n, cols);
    }
    free(floats);
    if (st != KQCL_OK) {
        free(*out);
        *out = NULL;
    }
    return st;
}

/* Refuse to write over the input: it is still mapped while OUT is written. */
static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

typedef struct quantize_job {
    kqcl_gguf *in;
    kqcl_gguf_writer *out;
    recipe recipe;
    void **buffers;        /* converted data, referenced by the writer until it writes */
    int64_t converted, kept;
    uint64_t bytes_in, bytes_out;
    int n_attn_v, n_ffn_down; /* in the file, for the mix's layer rule */
    int i_attn_v, i_ffn_down; /* seen so far */
    bool has_output;          /* output.weight present (else a mix gives token_embd its bits) */
} quantize_job;

static bool is_float_type(uint32_t type) { return kqcl_block_size((kqcl_type)type) == 1; }

/* NULL when t is converted; else why it is copied as it is. */
static const char *keep_reason(const kqcl_gguf_tensor *t, kqcl_type target, char *buf, size_t size)
{
    if (!t->known || !is_float_type(t->type))
        return "already quantized: kqcl converts f32, f16 and bf16 weights";
    if (t->n_dims != 2)
        return t->n_dims == 1 ? "1-D" : "not a 2-D matrix";
    if (strstr(t->name, "norm") != NULL)
        return "a norm";
    if (t->ne[0] <= 0 || t->ne[1] <= 0)
        return "empty";
    if (kqcl_row_size(target, t->ne[0]) == 0) {
        snprintf(buf, size, "rows of %" PRId64 " values are not whole %s blocks of %" PRId64, t->ne[0],
                 kqcl_type_name(target), kqcl_block_size(target));
        return buf;
    }
    return NULL;
}

/* The type a mix gives tensor t, and why in `why` (empty when it is the base type). */
static kqcl_type target_of(quantize_job *job, const kqcl_gguf_tensor *t, char *why, size_t size)
{
    const recipe *r = &job->recipe;
    why[0] = '\0';
    if (r->more_bits == r->base)
        return r->base;
    bool more = false;
    if (strcmp(t->name, "output.weight") == 0 || (!job->has_output && strcmp(t->name, "token_embd.weight") == 0)) {
        more = true;
        snprintf(why, size, "%s: the output projection keeps more bits", r->name);
    } else if (strstr(t->name, ".attn_v.") != NULL) {
        int i = job->i_attn_v++;
        more = more_bits_at(i, job->n_attn_v);
        if (more)
            snprintf(why, size, "%s: attn_v %d of %d keeps more bits", r->name, i, job->n_attn_v);
    } else if (strstr(t->name, ".ffn_down.") != NULL) {
        int i = job->i_ffn_down++;
        more = more_bits_at(i, job->n_ffn_down);
        if (more)
            snprintf(why, size, "%s: ffn_down %d of %d keeps more bits", r->name, i, job->n_ffn_down);
    }
    return more ? r->more_bits : r->base;
}

static int add_one_tensor(quantize_job *job, int64_t i)
{
    kqcl_gguf_tensor t;
    char safe[256], label[24], why[160], reason[160];
    kqcl_gguf_tensor_info(job->in, i, &t);
    int n_dims = t.n_dims > 0 ? t.n_dims : 1; /* a 0-D scalar is written as one value */
    uint64_t bytes = tensor_bytes(&t);
    const void *data = t.data;
    uint32_t type = t.type;
    kqcl_status st;
    escaped(t.name, safe, sizeof safe);
    const char *keep = keep_reason(&t, job->recipe.base, reason, sizeof reason);
    if (keep == NULL) {
        kqcl_type target = target_of(job, &t, why, sizeof why);
        size_t out_bytes;
        if ((st = requantize(&t, target, &job->buffers[i], &out_bytes)) != KQCL_OK) {
            fprintf(stderr, "kqcl quantize: '%s': %s\n", safe, kqcl_last_error(NULL));
            return 1;
        }
        printf("  %s: %s -> %s%s%s%s\n", safe, type_label(t.type, label), kqcl_type_name(target), why[0] ? " (" : "",
               why, why[0] ? ")" : "");
        data = job->buffers[i];
        type = (uint32_t)target;
        job->bytes_in += bytes;
        bytes = out_bytes;
        job->converted++;
    } else {
        int64_t elements = t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3];
        if (bytes == 0 && elements != 0) {
            fprintf(stderr, "kqcl quantize: '%s' has type %s, whose size is unknown: cannot copy "
                            "it\n", safe, type_label(t.type, label));
            return 1;
        }
        printf("  %s: %s kept (%s)\n", safe, type_label(t.type, label), keep);
        job->bytes_in += bytes;
        job->kept++;
    }
    job->bytes_out += bytes;
    st = kqcl_gguf_writer_add_tensor(job->out, t.name, type, n_dims, t.ne, data, bytes);
    if (st != KQCL_OK) {
        fprintf(stderr, "kqcl quantize: '%s': %s\n", safe, kqcl_last_error(NULL));
        return 1;
    }
    return 0;
}

/* Count what the mix's layer rule needs before the first tensor is converted. */
static void survey(quantize_job *job)
{
    for (int64_t i = 0; i < kqcl_gguf_tensor_count(job->in); i++) {
        kqcl_gguf_tensor t;
        char reason[160];
        kqcl_gguf_tensor_info(job->in, i, &t);
        if (strcmp(t.name, "output.weight") == 0)
            job->has_output = true;
        if (keep_reason(&t, job->recipe.base, reason, sizeof reason) != NULL)
            continue;
        job->n_attn_v += strstr(t.name, ".attn_v.") != NULL;
        job->n_ffn_down += strstr(t.name, ".ffn_down.") != NULL;
    }
}

/* general.file_type as llama.cpp numbers it, for what was written: the recipe's when any
 * weight was converted (left out where llama.cpp has no number for it), else the input's. */
static int write_file_type(quantize_job *job)
{
    kqcl_status st = KQCL_OK;
    if (job->converted == 0) {
        printf("general.file_type: as in the input (no tensor converted)\n");
    } else if (job->recipe.file_type >= 0) {
        st = kqcl_gguf_writer_set_u32(job->out, "general.file_type", (uint32_t)job->recipe.file_type);
        printf("general.file_type = %d (llama.cpp's number for %s)\n", job->recipe.file_type, job->recipe.name);
    } else {
        printf("general.file_type: left out (llama.cpp has no file type for %s)\n", job->recipe.name);
    }
    if (st == KQCL_OK && job->converted > 0 && kqcl_block_size(job->recipe.base) > 1)
        st = kqcl_gguf_writer_set_u32(job->out, "general.quantization_version", 2); /* GGML_QNT_VERSION */
    if (st != KQCL_OK) {
        fprintf(stderr, "kqcl quantize: metadata: %s\n", kqcl_last_error(NULL));
        return 1;
    }
    return 0;
}

static int quantize_into(quantize_job *job, const char *out_path)
{
    bool drop_file_type = job->recipe.file_type < 0;
    for (int64_t i = 0; i < kqcl_gguf_kv_count(job->in); i++) {
        if (drop_file_type && strcmp(kqcl_gguf_key(job->in, i), "general.file_type") == 0)
            continue; /* put back below if nothing is converted */
        if (kqcl_gguf_writer_copy_kv(job->out, job->in, i) != KQCL_OK) {
            fprintf(stderr, "kqcl quantize: metadata: %s\n", kqcl_last_error(NULL));
            return 1;
        }
    }
    survey(job);
    for (int64_t i = 0; i < kqcl_gguf_tensor_count(job->in); i++)
        if (add_one_tensor(job, i) != 0)
            return 1;
    int64_t kept_key = kqcl_gguf_find_key(job->in, "general.file_type");
    if (drop_file_type && job->converted == 0 && kept_key >= 0 &&
        kqcl_gguf_writer_copy_kv(job->out, job->in, kept_key) != KQCL_OK) {
        fprintf(stderr, "kqcl quantize: metadata: %s\n", kqcl_last_error(NULL));
        return 1;
    }
    if (write_file_type(job) != 0)
        return 1;
    if (kqcl_gguf_writer_write(job->out, out_path) != KQCL_OK) {
        fprintf(stderr, "kqcl quantize: %s\n", kqcl_last_error(NULL));
        return 1;
    }
    printf("%s: %" PRId64 " tensors quantized to %s, %" PRId64 " kept; %.1f MB -> %.1f MB\n",
           out_path, job->converted, job->recipe.name, job->kept,
           (double)job->bytes_in / 1e6, (double)job->bytes_out / 1e6);
    return 0;
}

int kq_cmd_quantize(int argc, char **argv)
{
    static const struct option longs[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
        if (c == 'h') {
            quantize_usage(stdout);
            return 0;
        }
        return kq_option_error("quantize", c, argv);
    }
    if (argc - optind != 3)
        return kq_usage_error("quantize", "want IN.gguf OUT.gguf TYPE, got %d argument%s (kqcl quantize -h for usage)",
                              argc - optind, argc - optind == 1 ? "" : "s");
    const char *in_path = argv[optind], *out_path = argv[optind + 1], *type_name = argv[optind + 2];
    quantize_job job = {.in = NULL};
    if (!parse_recipe(type_name, &job.recipe))
        return kq_usage_error("quantize", "TYPE '%s': not a type kqcl quantizes to, nor a mix "
                              "(q4_K, q5_K, q6_K, q8_K, q8_0, q4_0, f16, bf16, f32, Q4_K_M, Q5_K_M)", type_name);
    if (same_file(in_path, out_path))
        return kq_usage_error("quantize", "OUT must not be IN (%s)", in_path);
    if (open_or_complain("quantize", in_path, &job.in) != 0)
        return 1;
    int rc = 1;
    job.buffers = calloc((size_t)kqcl_gguf_tensor_count(job.in) + 1, sizeof *job.buffers);
    if (job.buffers == NULL || kqcl_gguf_writer_create(&job.out) != KQCL_OK)
        fprintf(stderr, "kqcl quantize: out of memory\n");
    else
        rc = quantize_into(&job, out_path);
    kqcl_gguf_writer_destroy(job.out);
    for (int64_t i = 0; job.buffers && i < kqcl_gguf_tensor_count(job.in); i++)
        free(job.buffers[i]);
    free(job.buffers);
    kqcl_gguf_close(job.in);
    return rc;
}
