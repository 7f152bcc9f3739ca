/*
 * util.c -- the helpers the kqcl subcommands share (tools/util.h).
 */
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* ---- argument errors ---------------------------------------------------------------------- */

int kq_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kqcl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return KQ_EXIT_USAGE;
}

int kq_option_error(const char *cmd, int c, char **argv)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    if (c == ':')
        return kq_usage_error(cmd, "%s: needs a value (kqcl %s -h for usage)", arg, cmd);
    return kq_usage_error(cmd, "%s: unknown option (kqcl %s -h for usage)", arg, cmd);
}

int kq_one_file(const char *cmd, int argc, char **argv, const char **path)
{
    *path = optind < argc ? argv[optind++] : NULL;
    if (optind < argc)
        return kq_usage_error(cmd, "'%s': one FILE only, '%s' given already", argv[optind], *path);
    if (*path == NULL)
        return kq_usage_error(cmd, "no FILE given (kqcl %s -h for usage)", cmd);
    return 0;
}

/* ---- numbers ------------------------------------------------------------------------------ */

bool kq_parse_int64(const char *text, int64_t min, int64_t max, int64_t *out, const char **why)
{
    static char range[96];
    const char *p = text;
    if (*p == '-')
        p++;
    /* digits only: strtoll alone would take " 12", "+12", "0x1f" and stop quietly at "1e3" */
    if (*p == '\0' || strspn(p, "0123456789") != strlen(p)) {
        *why = "not a whole number";
        return false;
    }
    errno = 0;
    long long v = strtoll(text, NULL, 10);
    if (errno == ERANGE || v < min || v > max) {
        if (max == INT64_MAX)
            snprintf(range, sizeof range, "must be at least %lld", (long long)min);
        else
            snprintf(range, sizeof range, "must be from %lld to %lld", (long long)min, (long long)max);
        *why = range;
        return false;
    }
    *out = v;
    return true;
}

int kq_option_int64(const char *cmd, const char *option, const char *text, int64_t min, int64_t max,
                    int64_t *out)
{
    const char *why = NULL;
    if (kq_parse_int64(text, min, max, out, &why))
        return 0;
    return kq_usage_error(cmd, "%s '%s': %s", option, text, why);
}

int kq_option_int(const char *cmd, const char *option, const char *text, int min, int max, int *out)
{
    int64_t v = 0;
    int rc = kq_option_int64(cmd, option, text, min, max, &v);
    if (rc == 0)
        *out = (int)v;
    return rc;
}

/* The next comma-separated item of *cursor into buf; false at the end. An empty item ("1,,2",
 * "1,") is returned as "" so that the caller names it. */
static bool next_item(const char **cursor, bool *done, char *buf, size_t size)
{
    if (*done)
        return false;
    const char *comma = strchr(*cursor, ',');
    size_t n = comma ? (size_t)(comma - *cursor) : strlen(*cursor);
    snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), *cursor);
    if (comma)
        *cursor = comma + 1;
    else
        *done = true;
    return true;
}

int kq_option_int_list(const char *cmd, const char *option, const char *text, int min, int max, int *out,
                       int capacity)
{
    const char *cursor = text;
    bool done = false;
    char item[64];
    int n = 0;
    while (next_item(&cursor, &done, item, sizeof item)) {
        const char *why = NULL;
        int64_t v = 0;
        if (n == capacity) {
            kq_usage_error(cmd, "%s '%s': at most %d values", option, text, capacity);
            return -1;
        }
        if (!kq_parse_int64(item, min, max, &v, &why)) {
            if (strchr(text, ',') == NULL)
                kq_usage_error(cmd, "%s '%s': %s", option, text, why);
            else
                kq_usage_error(cmd, "%s '%s': item '%s' %s", option, text, item, why);
            return -1;
        }
        out[n++] = (int)v;
    }
    return n;
}

int kq_option_type_list(const char *cmd, const char *option, const char *text, kqcl_type *out, int capacity)
{
    const char *cursor = text;
    bool done = false;
    char item[64];
    int n = 0;
    while (next_item(&cursor, &done, item, sizeof item)) {
        if (n == capacity) {
            kq_usage_error(cmd, "%s '%s': at most %d types", option, text, capacity);
            return -1;
        }
        if (kqcl_type_from_name(item, &out[n]) != KQCL_OK) {
            kq_usage_error(cmd, "%s '%s': '%s' is not a type kqcl knows (e.g. q4_K, q6_K, q8_0, f16)", option,
                           text, item);
            return -1;
        }
        n++;
    }
    return n;
}

int kq_option_choice(const char *cmd, const char *option, const char *text, const char *const *choices)
{
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        if (strcmp(text, choices[i]) == 0)
            return i;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", choices[i]);
    }
    kq_usage_error(cmd, "%s '%s': want one of %s", option, text, list);
    return -1;
}

/* ---- GGUF files and ggml's types ------------------------------------------------------------ */

int kq_gguf_open_or_complain(const char *cmd, const char *path, kqcl_gguf **g)
{
    kqcl_status st = kqcl_gguf_open(path, g);
    if (st != KQCL_OK) {
        fprintf(stderr, "kqcl %s: %s (%s)\n", cmd, kqcl_last_error(NULL), kqcl_status_string(st));
        return 1;
    }
    return 0;
}

const char *kq_ggml_type_label(uint32_t id, char buffer[24])
{
    const char *name = NULL;
    if (kqcl_ggml_type_info(id, &name, NULL, NULL) == KQCL_OK && name != NULL)
        return name;
    snprintf(buffer, 24, "type%" PRIu32, id);
    return buffer;
}

bool kq_ggml_type_sized(uint32_t id) { return kqcl_ggml_type_info(id, NULL, NULL, NULL) == KQCL_OK; }

/* ---- precision modes ---------------------------------------------------------------------- */

#define PRECISION_CHOICES "f32, q8, f16, bf16 or auto"

int kq_option_precision_list(const char *cmd, const char *option, const char *text, kqcl_precision *out,
                             int capacity)
{
    const char *cursor = text;
    bool done = false;
    char item[64];
    int n = 0;
    while (next_item(&cursor, &done, item, sizeof item)) {
        if (n == capacity) {
            kq_usage_error(cmd, "%s '%s': at most %d modes", option, text, capacity);
            return -1;
        }
        if (kqcl_precision_from_name(item, &out[n]) != KQCL_OK) {
            kq_usage_error(cmd, "%s '%s': '%s' is not a precision (want " PRECISION_CHOICES ")", option, text,
                           item);
            return -1;
        }
        for (int i = 0; i < n; i++)
            if (out[i] == out[n]) {
                kq_usage_error(cmd, "%s '%s': '%s' is listed twice", option, text, item);
                return -1;
            }
        n++;
    }
    return n;
}

int kq_option_precision(const char *cmd, const char *option, const char *text, kqcl_precision *out)
{
    if (kqcl_precision_from_name(text, out) == KQCL_OK)
        return 0;
    return kq_usage_error(cmd, "%s '%s': not a precision (want " PRECISION_CHOICES ")", option, text);
}

int kq_precisions_used(kqcl_context *ctx, kqcl_type wtype, int64_t n, kqcl_precision *modes, int capacity)
{
    int count = 0;
    for (int d = 0; d < kqcl_device_count(ctx); d++) {
        kqcl_precision p;
        if (kqcl_precision_chosen(ctx, d, wtype, n, &p) != KQCL_OK)
            return 0;
        kq_precision_add(modes, &count, capacity, p);
    }
    return count;
}

void kq_precision_add(kqcl_precision *set, int *count, int capacity, kqcl_precision mode)
{
    for (int i = 0; i < *count; i++)
        if (set[i] == mode)
            return;
    if (*count < capacity)
        set[(*count)++] = mode;
}

const char *kq_precision_names(const kqcl_precision *modes, int count, char *buf, size_t size)
{
    if (size == 0)
        return buf;
    snprintf(buf, size, "%s", count > 0 ? "" : "?");
    for (int i = 0; i < count; i++)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? "+" : "", kqcl_precision_name(modes[i]));
    return buf;
}

/* d * (the integer nearest x / d, halves away from zero, clamped to +-127). The quotient is taken
 * in double: near a half, x and that half times d are multiples of about ulp(d) / 4, so an exact
 * quotient that is not a half lies some 2^-26 d from one, far beyond double's rounding, and
 * round() gets the exact quotient's answer. A NaN or infinite d (a NaN or Inf in the block)
 * makes the block NaN, as its outputs are non-finite on the device. */
static float q8_value(float x, float d)
{
    if (!isfinite(d))
        return NAN;
    if (d == 0.0f)
        return 0.0f;
    double q = round((double)x / (double)d);
    q = q > 127 ? 127 : q < -127 ? -127 : q;
    return (float)(q * (double)d); /* exact: 8 bits times 24 */
}

kqcl_status kq_activations_as_used(kqcl_precision mode, const float *x, float *out, int64_t rows, int64_t cols)
{
    size_t count = (size_t)rows * (size_t)cols;
    if (mode == KQCL_PRECISION_F16 || mode == KQCL_PRECISION_BF16) {
        kqcl_type type = mode == KQCL_PRECISION_F16 ? KQCL_TYPE_F16 : KQCL_TYPE_BF16;
        uint16_t *half = malloc(count * sizeof *half);
        kqcl_status st = half ? kqcl_quantize(type, x, half, rows, cols) : KQCL_ERR_OUT_OF_MEMORY;
        if (st == KQCL_OK)
            st = kqcl_dequantize(type, half, out, rows, cols);
        free(half);
        return st;
    }
    if (mode == KQCL_PRECISION_Q8) {
        if (cols % 32 != 0)
            return KQCL_ERR_INVALID_ARG;
        for (size_t b = 0; b < count; b += 32) {
            float amax = 0.0f;
            bool nan = false;
            for (int i = 0; i < 32; i++) {
                nan |= isnan(x[b + i]);
                amax = fabsf(x[b + i]) > amax ? fabsf(x[b + i]) : amax;
            }
            float d = nan ? NAN : amax * (float)(1.0 / 127.0); /* one f32 multiply, as the device */
            for (int i = 0; i < 32; i++)
                out[b + i] = q8_value(x[b + i], d);
        }
        return KQCL_OK;
    }
    if (out != x)
        memcpy(out, x, count * sizeof *out);
    return KQCL_OK;
}

/* ---- checking results against the host ---------------------------------------------------- */

double kq_relative_error(const float *x, const float *w, int64_t k, float y)
{
    double sum = 0, magnitude = 0;
    for (int64_t j = 0; j < k; j++) {
        sum += (double)x[j] * (double)w[j];
        magnitude += fabs((double)x[j] * (double)w[j]);
    }
    return fabs((double)y - sum) / (magnitude > 0 ? magnitude : 1);
}

double kq_error_worse(double worst, double e)
{
    if (isnan(worst))
        return worst;
    return isnan(e) || e > worst ? e : worst;
}

double kq_error_nearest(double best, double e) { return isnan(best) || e < best ? e : best; }

/* ---- time and statistics ------------------------------------------------------------------ */

double kq_tool_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

kqcl_status kq_call_time_us(kqcl_context *ctx, bool host_clock, double t0, double *us)
{
    if (host_clock) {
        kqcl_status st = kqcl_finish(ctx);
        *us = kq_tool_now_us() - t0;
        return st;
    }
    uint64_t ns = 0;
    kqcl_status st = kqcl_last_device_time(ctx, &ns);
    *us = (double)ns / 1e3;
    return st;
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

kq_stats kq_tool_stats(double *v, int n)
{
    kq_stats s = {0, 0, 0, 0};
    if (n <= 0)
        return s;
    s.median = kq_tool_median(v, n); /* sorted now */
    s.min = v[0];
    s.max = v[n - 1];
    s.count = n;
    return s;
}

/* ---- random numbers ----------------------------------------------------------------------- */

uint32_t kq_rng_next(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (uint32_t)(*state >> 16);
}

float kq_rng_unit(uint64_t *state)
{
    return (float)(kq_rng_next(state) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

/* ---- text --------------------------------------------------------------------------------- */

size_t kq_utf8_sequence(const unsigned char *s, size_t n)
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

void kq_json_string(FILE *out, const char *s, size_t n, size_t max_bytes)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t shown = max_bytes != 0 && n > max_bytes ? max_bytes : n;
    fputc('"', out);
    for (size_t i = 0; i < shown;) {
        size_t length = kq_utf8_sequence(p + i, shown - i);
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

void kq_json_cstring(FILE *out, const char *s) { kq_json_string(out, s, strlen(s), 0); }

void kq_json_cstring_or_null(FILE *out, const char *s)
{
    if (s)
        kq_json_cstring(out, s);
    else
        fputs("null", out);
}

void kq_json_field(FILE *out, const char *key, const char *value)
{
    fprintf(out, ", \"%s\": ", key);
    kq_json_cstring_or_null(out, value);
}

const char *kq_text_escaped(const char *s, char *buf, size_t size)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), used = 0;
    for (size_t i = 0; i < n;) {
        char piece[16];
        size_t length = kq_utf8_sequence(p + i, n - i);
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

int kq_terminal_columns(void)
{
    const char *env = getenv("COLUMNS");
    int64_t columns = 0;
    const char *why;
    if (env && kq_parse_int64(env, 1, 10000, &columns, &why))
        return (int)columns;
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}
