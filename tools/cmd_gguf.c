/*
 * cmd_gguf.c -- the GGUF subcommands of the kqcl tool:
 *   kqcl gguf FILE [--json]          describe a file: version, metadata, tensors
 *   kqcl run FILE [--devices SPEC] [--n N] [--split rows|cols]
 *                                    load a model's 2-D weights and time their matmuls
 *   kqcl quantize IN OUT TYPE        re-quantize float weights to a k-quant
 * Public API only. Exit status: 0 success, 1 failure, 2 bad usage.
 */
#include "commands.h"
#include "kqcl.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2

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

static bool is_help(const char *arg) { return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0; }

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

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when it is not one. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    size_t length = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2
                  : s[0] >= 0xE0 && s[0] <= 0xEF ? 3 : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    if (length == 0 || length > n)
        return 0;
    for (size_t k = 1; k < length; k++)
        if ((s[k] & 0xC0) != 0x80)
            return 0;
    return length;
}

/* A JSON string literal: quotes, backslashes and control bytes escaped, invalid UTF-8 shown as
 * U+FFFD, so the output always parses. At most max_bytes of s (0: all), then "…". */
static void print_quoted(FILE *out, const char *s, size_t n, size_t max_bytes)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t shown = max_bytes != 0 && n > max_bytes ? max_bytes : n;
    fputc('"', out);
    for (size_t i = 0; i < shown;) {
        size_t length = utf8_sequence(p + i, shown - i);
        if (length == 0) {
            fputs("\\ufffd", out);
            i++;
        } else if (length == 2 && p[i] == 0xC2 && p[i + 1] < 0xA0) {
            fprintf(out, "\\u%04x", p[i + 1]); /* a C1 control: U+009B is a CSI to some terminals */
            i += 2;
        } else if (length > 1) {
            fwrite(p + i, 1, length, out);
            i += length;
        } else {
            unsigned char c = p[i++];
            if (c == '"' || c == '\\')
                fprintf(out, "\\%c", c);
            else if (c == '\n')
                fputs("\\n", out);
            else if (c == '\t')
                fputs("\\t", out);
            else if (c < 0x20 || c == 0x7F)
                fprintf(out, "\\u%04x", c);
            else
                fputc(c, out);
        }
    }
    if (shown < n)
        fputs("\xE2\x80\xA6", out); /* … */
    fputc('"', out);
}

/* A key or tensor name for text mode, into buf: control bytes (C0, DEL, C1) and backslashes
 * escaped as in string values, invalid UTF-8 as \ufffd, so a file cannot send escape
 * sequences to the terminal. Cut (with "...") to fit `size`. */
static const char *escaped(const char *s, char *buf, size_t size)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), used = 0;
    for (size_t i = 0; i < n;) {
        char piece[16];
        size_t length = utf8_sequence(p + i, n - i);
        if (length == 0)
            snprintf(piece, sizeof piece, "\\ufffd"), length = 1;
        else if (length == 2 && p[i] == 0xC2 && p[i + 1] < 0xA0)
            snprintf(piece, sizeof piece, "\\u%04x", p[i + 1]);
        else if (length == 1 && (p[i] < 0x20 || p[i] == 0x7F))
            snprintf(piece, sizeof piece, "\\u%04x", p[i]);
        else if (length == 1 && p[i] == '\\')
            snprintf(piece, sizeof piece, "\\\\");
        else
            memcpy(piece, p + i, length), piece[length] = '\0';
        size_t add = strlen(piece);
        if (used + add + 4 > size) {
            snprintf(buf + used, size - used, "...");
            return buf;
        }
        memcpy(buf + used, piece, add + 1);
        used += add;
        i += length;
    }
    if (used == 0 && size > 0)
        buf[0] = '\0';
    return buf;
}

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
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            gguf_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "kqcl gguf: unknown option '%s'\n", argv[i]);
            gguf_usage(stderr);
            return EXIT_USAGE;
        } else if (path != NULL) {
            fprintf(stderr, "kqcl gguf: one FILE only ('%s' and '%s')\n", path, argv[i]);
            return EXIT_USAGE;
        } else {
            path = argv[i];
        }
    }
    if (path == NULL) {
        gguf_usage(stderr);
        return EXIT_USAGE;
    }
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
/* Error bound of a checked value, relative to sum |x_j * w_j|: f32 accumulation over k terms
 * in any order stays far below this for the sizes of real models. */
#define RUN_TOLERANCE 1e-3

typedef struct run_options {
    const char *path;
    const char *devices;
    int n;
    kqcl_split split; /* of the weights over the context's devices */
} run_options;

typedef struct type_stats {
    int tensors;
    uint64_t bytes;
    double seconds;
    double max_error;
    int failures;
} type_stats;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A progress bar on stderr: bytes done, rate and time left. Only on a terminal. */
typedef struct progress {
    bool enabled;
    uint64_t total;
    double start, last_draw;
} progress;

static void progress_draw(progress *p, uint64_t done, bool final)
{
    double now = now_seconds();
    if (!p->enabled || (!final && now - p->last_draw < 0.1))
        return;
    p->last_draw = now;
    double elapsed = now - p->start, fraction = p->total ? (double)done / (double)p->total : 1;
    double rate = elapsed > 0 ? (double)done / elapsed : 0;
    double left = rate > 0 ? (double)(p->total - done) / rate : 0;
    char bar[31];
    int filled = (int)(fraction * 30);
    for (int k = 0; k < 30; k++)
        bar[k] = k < filled ? '#' : '-';
    bar[30] = '\0';
    fprintf(stderr, "\rloading [%s] %7.2f / %.2f GB  %6.2f GB/s  %4.0fs left ", bar,
            (double)done / 1e9, (double)p->total / 1e9, rate / 1e9, left);
    if (final)
        fputc('\n', stderr);
}

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

/* Uniform in [-1, 1): xorshift64*, fixed seed so runs compare. */
static float random_unit(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545F4914F6CDD1Dull;
    return (float)(r >> 40) / 8388608.0f - 1.0f;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

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
                        int64_t count, uint64_t total_bytes, kqcl_split split, kqcl_tensor **weights)
{
    progress bar = {.enabled = isatty(STDERR_FILENO) != 0, .total = total_bytes,
                    .start = now_seconds()};
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
    fprintf(stderr, "loaded %" PRId64 " tensors, %.2f GB in %.2f s (%.2f GB/s)\n", count,
            (double)total_bytes / 1e9, seconds, seconds > 0 ? (double)total_bytes / 1e9 / seconds : 0);
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

static kqcl_status bench_weight(kqcl_context *ctx, const kqcl_gguf_tensor *t, kqcl_tensor *w,
                                int n, kqcl_split split, double *seconds, double *error)
{
    kqcl_split x_split, y_split;
    kq_tool_operand_splits(split, &x_split, &y_split);
    int64_t k = t->ne[0], m = t->ne[1];
    kqcl_tensor *x = NULL, *y = NULL;
    float *xs = malloc((size_t)n * (size_t)k * sizeof *xs);
    float *ys = malloc((size_t)n * (size_t)m * sizeof *ys);
    double times[RUN_REPEATS];
    kqcl_status st = xs && ys ? KQCL_OK : KQCL_ERR_OUT_OF_MEMORY;
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
    if (st == KQCL_OK) {
        qsort(times, RUN_REPEATS, sizeof times[0], compare_doubles);
        *seconds = times[RUN_REPEATS / 2];
        *error = check_rows(t, xs, ys, n, &st);
    }
    kqcl_tensor_destroy(x);
    kqcl_tensor_destroy(y);
    free(xs);
    free(ys);
    return st;
}

static void print_run_report(const type_stats *stats, int n)
{
    type_stats total = {0};
    bool any_nan = false; /* a NaN error must show in the total, not vanish in a max */
    printf("%-6s %8s %12s %12s %9s %12s\n", "type", "tensors", "MB", "time ms", "GB/s",
           "max error");
    for (uint32_t type = 0; type < 64; type++) {
        const type_stats *s = &stats[type];
        if (s->tensors == 0)
            continue;
        printf("%-6s %8d %12.1f %12.3f %9.1f %12.2e%s\n", kqcl_type_name((kqcl_type)type),
               s->tensors, (double)s->bytes / 1e6, s->seconds * 1e3,
               s->seconds > 0 ? (double)s->bytes / s->seconds / 1e9 : 0, s->max_error,
               s->failures ? "  FAILED" : "");
        total.tensors += s->tensors;
        total.bytes += s->bytes;
        total.seconds += s->seconds;
        total.max_error = s->max_error > total.max_error ? s->max_error : total.max_error;
        any_nan |= isnan(s->max_error);
        total.failures += s->failures;
    }
    printf("%-6s %8d %12.1f %12.3f %9.1f %12.2e%s\n", "total", total.tensors,
           (double)total.bytes / 1e6, total.seconds * 1e3,
           total.seconds > 0 ? (double)total.bytes / total.seconds / 1e9 : 0,
           any_nan ? (double)NAN : total.max_error, total.failures ? "  FAILED" : "");
    if (total.seconds > 0)
        printf("matmul-only decode: %.1f tokens/s (every weight once per step, %d token%s a step)\n",
               (double)n / total.seconds, n, n == 1 ? "" : "s");
}

static void run_usage(FILE *out)
{
    fprintf(out, "usage: kqcl run FILE [--devices SPEC] [--n N] [--split rows|cols]\n"
                 "  Load every 2-D weight of a supported type (f32, f16, bf16, q4_K, q5_K, q6_K,\n"
                 "  q8_K) onto the device, time its matmul with a random f32 X of N rows (default\n"
                 "  1: decode) as the median of %d runs, check %d rows of each Y against a host\n"
                 "  reference, and report bytes, time, GB/s per type and the implied tokens/s.\n"
                 "  --devices SPEC   as kqcl devices lists them (default: KQCL_DEVICES, else the\n"
                 "                   first GPU)\n"
                 "  --split rows|cols  spread every weight over the devices of --devices in\n"
                 "                   equal shares (rows: column-parallel, outputs gathered;\n"
                 "                   cols: row-parallel, partial sums all-reduced); times are\n"
                 "                   then taken on the host around a finish\n",
            RUN_REPEATS, RUN_CHECK_ROWS);
}

/* "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i past what it used. */
static bool option_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t length = strlen(name);
    if (strncmp(argv[*i], name, length) != 0)
        return false;
    if (argv[*i][length] == '=') {
        *value = argv[*i] + length + 1;
        return true;
    }
    if (argv[*i][length] != '\0')
        return false;
    *value = *i + 1 < argc ? argv[++*i] : NULL;
    return true;
}

static int parse_run_args(int argc, char **argv, run_options *o)
{
    const char *value;
    *o = (run_options){.n = 1};
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            run_usage(stdout);
            return -1;
        } else if (option_value(argc, argv, &i, "--devices", &value) ||
                   option_value(argc, argv, &i, "--device", &value)) {
            if (value == NULL)
                goto missing;
            o->devices = value;
        } else if (option_value(argc, argv, &i, "--n", &value)) {
            char *end;
            long n = value ? strtol(value, &end, 10) : 0;
            if (value == NULL || *end != '\0' || n < 1 || n > 65536) {
                fprintf(stderr, "kqcl run: --n wants a row count from 1 to 65536\n");
                return EXIT_USAGE;
            }
            o->n = (int)n;
        } else if (option_value(argc, argv, &i, "--split", &value)) {
            if (value != NULL && strcmp(value, "rows") == 0)
                o->split = KQCL_SPLIT_ROWS;
            else if (value != NULL && strcmp(value, "cols") == 0)
                o->split = KQCL_SPLIT_COLS;
            else {
                fprintf(stderr, "kqcl run: --split wants 'rows' or 'cols'\n");
                return EXIT_USAGE;
            }
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "kqcl run: unknown option '%s'\n", argv[i]);
            run_usage(stderr);
            return EXIT_USAGE;
        } else if (o->path != NULL) {
            fprintf(stderr, "kqcl run: one FILE only\n");
            return EXIT_USAGE;
        } else {
            o->path = argv[i];
        }
        continue;
    missing:
        fprintf(stderr, "kqcl run: %s needs a value\n", argv[i]);
        return EXIT_USAGE;
    }
    if (o->path == NULL) {
        run_usage(stderr);
        return EXIT_USAGE;
    }
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
        kqcl_status st = bench_weight(ctx, &t, weights[k], n, split, &seconds, &error);
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
    } else if (o.split == KQCL_SPLIT_NONE && kqcl_context_set_timing(ctx, 1) != KQCL_OK) { /* device-timed */
        fprintf(stderr, "kqcl run: %s\n", kqcl_last_error(ctx));
    } else if (load_weights(ctx, g, indices, count, total_bytes, o.split, weights) == 0) {
        kqcl_device_info info;
        if (kqcl_device_get_info(ctx, 0, &info) == KQCL_OK)
            printf("%s: %" PRId64 " weights on %s (%s), n = %d\n", o.path, count, info.name,
                   info.variant, o.n);
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
                 "  Re-quantize the f32/f16/bf16 2-D weights of IN whose rows are a multiple of\n"
                 "  256 values to TYPE (q4_K, q5_K, q6_K or q8_K); 1-D tensors, norms (names\n"
                 "  containing \"norm\") and everything else are copied unchanged, as is all\n"
                 "  metadata. OUT is written as GGUF v3.\n");
}

static bool should_requantize(const kqcl_gguf_tensor *t)
{
    bool is_float = t->type == KQCL_TYPE_F32 || t->type == KQCL_TYPE_F16 ||
                    t->type == KQCL_TYPE_BF16;
    return is_float && t->n_dims == 2 && t->ne[0] > 0 && t->ne[1] > 0 && t->ne[0] % 256 == 0 &&
           strstr(t->name, "norm") == NULL;
}

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
    kqcl_type type;
    void **buffers;        /* converted data, referenced by the writer until it writes */
    int64_t converted, kept;
    uint64_t bytes_in, bytes_out;
} quantize_job;

static int add_one_tensor(quantize_job *job, int64_t i)
{
    kqcl_gguf_tensor t;
    char safe[256];
    kqcl_gguf_tensor_info(job->in, i, &t);
    int n_dims = t.n_dims > 0 ? t.n_dims : 1; /* a 0-D scalar is written as one value */
    uint64_t bytes = tensor_bytes(&t);
    const void *data = t.data;
    uint32_t type = t.type;
    kqcl_status st;
    if (should_requantize(&t)) {
        size_t out_bytes;
        if ((st = requantize(&t, job->type, &job->buffers[i], &out_bytes)) != KQCL_OK) {
            fprintf(stderr, "kqcl quantize: '%s': %s\n", escaped(t.name, safe, sizeof safe),
                    kqcl_last_error(NULL));
            return 1;
        }
        data = job->buffers[i];
        type = (uint32_t)job->type;
        job->bytes_in += bytes;
        bytes = out_bytes;
        job->converted++;
    } else {
        int64_t elements = t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3];
        if (bytes == 0 && elements != 0) {
            char buffer[24];
            fprintf(stderr, "kqcl quantize: '%s' has type %s, whose size is unknown: cannot copy "
                            "it\n", escaped(t.name, safe, sizeof safe), type_label(t.type, buffer));
            return 1;
        }
        job->bytes_in += bytes;
        job->kept++;
    }
    job->bytes_out += bytes;
    st = kqcl_gguf_writer_add_tensor(job->out, t.name, type, n_dims, t.ne, data, bytes);
    if (st != KQCL_OK) {
        fprintf(stderr, "kqcl quantize: '%s': %s\n", escaped(t.name, safe, sizeof safe),
                    kqcl_last_error(NULL));
        return 1;
    }
    return 0;
}

static int quantize_into(quantize_job *job, const char *out_path)
{
    for (int64_t i = 0; i < kqcl_gguf_kv_count(job->in); i++) {
        if (kqcl_gguf_writer_copy_kv(job->out, job->in, i) != KQCL_OK) {
            fprintf(stderr, "kqcl quantize: metadata: %s\n", kqcl_last_error(NULL));
            return 1;
        }
    }
    for (int64_t i = 0; i < kqcl_gguf_tensor_count(job->in); i++)
        if (add_one_tensor(job, i) != 0)
            return 1;
    if (kqcl_gguf_writer_write(job->out, out_path) != KQCL_OK) {
        fprintf(stderr, "kqcl quantize: %s\n", kqcl_last_error(NULL));
        return 1;
    }
    printf("%s: %" PRId64 " tensors quantized to %s, %" PRId64 " kept; %.1f MB -> %.1f MB\n",
           out_path, job->converted, kqcl_type_name(job->type), job->kept,
           (double)job->bytes_in / 1e6, (double)job->bytes_out / 1e6);
    return 0;
}

int kq_cmd_quantize(int argc, char **argv)
{
    const char *paths[3];
    int n_paths = 0;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            quantize_usage(stdout);
            return 0;
        }
        if ((argv[i][0] == '-' && argv[i][1] != '\0') || n_paths == 3) {
            fprintf(stderr, "kqcl quantize: unexpected argument '%s'\n", argv[i]);
            quantize_usage(stderr);
            return EXIT_USAGE;
        }
        paths[n_paths++] = argv[i];
    }
    kqcl_type type;
    if (n_paths != 3) {
        quantize_usage(stderr);
        return EXIT_USAGE;
    }
    if (kqcl_type_from_name(paths[2], &type) != KQCL_OK || kqcl_block_size(type) != 256) {
        fprintf(stderr, "kqcl quantize: TYPE must be q4_K, q5_K, q6_K or q8_K, not '%s'\n",
                paths[2]);
        return EXIT_USAGE;
    }
    if (same_file(paths[0], paths[1])) {
        fprintf(stderr, "kqcl quantize: OUT must not be IN (%s)\n", paths[0]);
        return EXIT_USAGE;
    }
    quantize_job job = {.type = type};
    if (open_or_complain("quantize", paths[0], &job.in) != 0)
        return 1;
    int rc = 1;
    job.buffers = calloc((size_t)kqcl_gguf_tensor_count(job.in) + 1, sizeof *job.buffers);
    if (job.buffers == NULL || kqcl_gguf_writer_create(&job.out) != KQCL_OK)
        fprintf(stderr, "kqcl quantize: out of memory\n");
    else
        rc = quantize_into(&job, paths[1]);
    kqcl_gguf_writer_destroy(job.out);
    for (int64_t i = 0; job.buffers && i < kqcl_gguf_tensor_count(job.in); i++)
        free(job.buffers[i]);
    free(job.buffers);
    kqcl_gguf_close(job.in);
    return rc;
}
