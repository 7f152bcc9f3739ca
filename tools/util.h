/*
 * util.h -- helpers every subcommand of the kqcl tool shares: checked parsing of numbers and
 * lists, option errors in the one-line form kqcl(1) promises, GGUF files and ggml's type
 * names, precision modes and the host references of what they multiply, the clock and the
 * timing of a call, checking results, random numbers, medians and spreads, and escaping for
 * JSON and the terminal.
 *
 * Every argument error is one line on stderr, "kqcl SUBCOMMAND: WHAT: WHY", and exit status 2.
 */
#ifndef KQCL_TOOLS_UTIL_H
#define KQCL_TOOLS_UTIL_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "kqcl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KQ_EXIT_USAGE 2

/* ---- argument errors ---- */

/* Print "kqcl CMD: " + the formatted text + newline to stderr; returns KQ_EXIT_USAGE. */
int kq_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What getopt_long (run with opterr = 0 and an optstring starting with ':') returned as '?' or
 * ':' means, as one line: an unknown option or a missing value. argv and optind as getopt left
 * them. Returns KQ_EXIT_USAGE. */
int kq_option_error(const char *cmd, int c, char **argv);

/* The one FILE operand after the options (argv[optind]; optind as getopt left it), into *path:
 * 0, or one line (none given, or a second one) and KQ_EXIT_USAGE. */
int kq_one_file(const char *cmd, int argc, char **argv, const char **path);

/* ---- numbers ---- */

/* A whole decimal number from min to max, the whole of `text` (no sign other than one '-', no
 * spaces, no exponent, no hex). On failure *why says what is wrong ("not a whole number",
 * "must be at least 1", ...) and false is returned. */
bool kq_parse_int64(const char *text, int64_t min, int64_t max, int64_t *out, const char **why);

/* As kq_parse_int64, reporting a failure for option `option` of `cmd` as one line; returns 0
 * or KQ_EXIT_USAGE. */
int kq_option_int64(const char *cmd, const char *option, const char *text, int64_t min, int64_t max,
                    int64_t *out);
int kq_option_int(const char *cmd, const char *option, const char *text, int min, int max, int *out);

/* A comma-separated list of whole numbers from min to max ("1,8,512"), at most `capacity` of
 * them. Returns the count, or reports one line and returns -1. */
int kq_option_int_list(const char *cmd, const char *option, const char *text, int min, int max, int *out,
                       int capacity);

/* A comma-separated list of type names (kqcl_type_from_name: any case). Returns the count, or
 * reports one line naming the bad item and returns -1. */
int kq_option_type_list(const char *cmd, const char *option, const char *text, kqcl_type *out, int capacity);

/* `text` is one of the NULL-terminated `choices`: its index, or one line listing them and -1. */
int kq_option_choice(const char *cmd, const char *option, const char *text, const char *const *choices);

/* ---- GGUF files and ggml's types ---- */

/* kqcl_gguf_open, or one line "kqcl CMD: why (status)" on stderr and 1; 0 when open. */
int kq_gguf_open_or_complain(const char *cmd, const char *path, kqcl_gguf **g);
/* The name ggml gives a type, or "type<N>" (in buffer) for an id ggml does not define. */
const char *kq_ggml_type_label(uint32_t id, char buffer[24]);
/* Does ggml define the type? The reader sizes every such tensor (kqcl_gguf_tensor.nbytes, checked
 * to lie in the file); nbytes is 0 for other ids. */
bool kq_ggml_type_sized(uint32_t id);

/* ---- precision modes ---- */

/* A comma-separated list of precision modes (kqcl_precision_from_name: f32, q8, f16, bf16, auto,
 * any case), each at most once. Returns the count, or reports one line naming the bad item and
 * returns -1. */
int kq_option_precision_list(const char *cmd, const char *option, const char *text, kqcl_precision *out,
                             int capacity);
/* One precision mode; 0 or KQ_EXIT_USAGE (one line naming it). */
int kq_option_precision(const char *cmd, const char *option, const char *text, kqcl_precision *out);

/* The modes kqcl_precision_chosen gives a matmul of `wtype` weights and n rows of X on the
 * devices of ctx under its current precision, each once, in device order: the count (at most
 * `capacity`), 0 when it cannot say. One device, or devices alike, give one. */
int kq_precisions_used(kqcl_context *ctx, kqcl_type wtype, int64_t n, kqcl_precision *modes, int capacity);
/* Add mode to a set of *count modes (at most capacity), unless it is there already. */
void kq_precision_add(kqcl_precision *set, int *count, int capacity, kqcl_precision mode);
/* Their names joined with '+' ("q8", "bf16+f32") into buf; "?" for none. */
const char *kq_precision_names(const kqcl_precision *modes, int count, char *buf, size_t size);

/* X as a matmul in `mode` multiplies it (include/kqcl.h, "Precision"), for host references:
 * F32 as given; F16 and BF16 rounded once to nearest even (the host codecs); Q8 quantized in
 * blocks of 32 -- d = amax * (float)(1/127), q the integer nearest x / d (halves away from zero)
 * clamped to +-127, 0 when d is 0 -- and given back as d * q. rows x cols floats from x to out
 * (which may be x); cols a multiple of 32 for Q8. */
kqcl_status kq_activations_as_used(kqcl_precision mode, const float *x, float *out, int64_t rows, int64_t cols);

/* ---- checking results against the host ---- */

/* The error of one value y of Y = X . W^T against the reference sum_j x_j w_j computed in double
 * from k values of a row of X and of W (the host dequantization), relative to sum_j |x_j w_j|
 * (to 1 when that is 0). */
double kq_relative_error(const float *x, const float *w, int64_t k, float y);
/* The worse of two errors, a NaN the worst of all (it stays). */
double kq_error_worse(double worst, double e);
/* The smaller, where `best` starts as NaN and stays so until some error gives a number: the
 * error against the nearest of several references. */
double kq_error_nearest(double best, double e);

/* ---- time and statistics ---- */

/* A monotonic clock, microseconds. */
double kq_tool_now_us(void);
/* The time of the call just made on ctx, microseconds: with host_clock, from t0 (kq_tool_now_us
 * taken before the call) until kqcl_finish returns, launches included; else what the device's
 * events say its kernels took (kqcl_last_device_time; timing on). */
kqcl_status kq_call_time_us(kqcl_context *ctx, bool host_clock, double t0, double *us);
/* The median of n values (sorts them). */
double kq_tool_median(double *v, int n);

/* Median, smallest and largest of a set of repeated timings. */
typedef struct kq_stats {
    double median, min, max;
    int count; /* 0: not measured */
} kq_stats;
/* Sorts v. */
kq_stats kq_tool_stats(double *v, int n);

/* ---- random numbers (xorshift64, a fixed seed per state so runs compare) ---- */

uint32_t kq_rng_next(uint64_t *state);
/* Uniform in [-1, 1). */
float kq_rng_unit(uint64_t *state);

/* ---- text ---- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when it is not one. */
size_t kq_utf8_sequence(const unsigned char *s, size_t n);

/* A JSON string literal of n bytes of s: quotes, backslashes and control bytes escaped,
 * invalid UTF-8 as U+FFFD, so the output always parses. At most max_bytes (0: all), then "…". */
void kq_json_string(FILE *out, const char *s, size_t n, size_t max_bytes);
/* The same for a NUL-terminated string, whole. */
void kq_json_cstring(FILE *out, const char *s);
/* s as kq_json_cstring writes it, or null for NULL (a value that was not measured or is not there). */
void kq_json_cstring_or_null(FILE *out, const char *s);
/* `, "key": value` of an object being written, value as kq_json_cstring_or_null writes it. */
void kq_json_field(FILE *out, const char *key, const char *value);

/* s for a terminal, into buf: control bytes and backslashes escaped as in JSON, invalid UTF-8
 * as \ufffd, so that a file cannot send escape sequences. Cut (with "...") to fit `size`. */
const char *kq_text_escaped(const char *s, char *buf, size_t size);

/* Columns of the terminal on stderr: $COLUMNS if set to a number, else TIOCGWINSZ, else 80. */
int kq_terminal_columns(void);

#endif
