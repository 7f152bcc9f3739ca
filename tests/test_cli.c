/*
 * test_cli.c -- the kqcl command line as a user meets it (issue 13): every bad argument named in
 * one line with exit status 2, -h everywhere, bench's outputs (markdown, JSON with nulls, CSV),
 * devices (P:D, versions, --json, the default marked by index, what precision auto picks),
 * bench and run --precision (a row per mode, what each used), quantize (case-insensitive
 * types, the Q4_K_M mix, general.file_type, a line per tensor), run's progress bar in 60
 * columns, and the man pages against the README. The tool is run as a user runs it:
 * $KQCL_BUILDDIR/tools/kqcl through the shell, stdout and stderr to files.
 */
#define _POSIX_C_SOURCE 200809L
#include "kqcl.h"
#include "toolutil.h"

#include <check.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The tool, with KQCL_DEVICES unset unless `prefix` (shell words: environment, ...) sets it;
 * tool_out and tool_err get its output. Returns the exit status. */
static int tool(const char *prefix, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tool(const char *prefix, const char *fmt, ...)
{
    char words[512];
    snprintf(words, sizeof words, "unset KQCL_DEVICES; %s", prefix);
    va_list ap;
    va_start(ap, fmt);
    int rc = tool_runv(words, fmt, ap);
    va_end(ap);
    return rc;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- a small JSON checker: the whole text must be one value ------------------------------------ */

static const char *json_value(const char *p);

static const char *json_space(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

static const char *json_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (; *p && *p != '"'; p++) {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)p[i]))
                        return NULL;
                p += 4;
            } else if (!strchr("\"\\/bfnrt", *p) || *p == '\0') {
                return NULL;
            }
        }
    }
    return *p == '"' ? p + 1 : NULL;
}

static const char *json_number(const char *p)
{
    const char *start = p;
    if (*p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return NULL;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return p > start ? p : NULL;
}

static const char *json_list(const char *p, char close, bool keyed)
{
    p = json_space(p + 1);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (keyed) {
            if ((p = json_string(json_space(p))) == NULL)
                return NULL;
            p = json_space(p);
            if (*p++ != ':')
                return NULL;
        }
        if ((p = json_value(p)) == NULL)
            return NULL;
        p = json_space(p);
        if (*p == close)
            return p + 1;
        if (*p++ != ',')
            return NULL;
    }
}

static const char *json_value(const char *p)
{
    p = json_space(p);
    if (*p == '{')
        return json_list(p, '}', true);
    if (*p == '[')
        return json_list(p, ']', false);
    if (*p == '"')
        return json_string(p);
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "null", 4) == 0)
        return p + 4;
    if (strncmp(p, "false", 5) == 0)
        return p + 5;
    return json_number(p);
}

static void ck_assert_json(const char *text)
{
    const char *end = json_value(text);
    ck_assert_msg(end != NULL && *json_space(end) == '\0', "not one JSON value: %s", text);
}

/* Occurrences of `what` in text. */
static int count_of(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = strstr(text, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

/* ---- bad arguments: one line naming the argument, exit 2 ----------------------------------------- */

static const struct {
    const char *args, *says;
} bad_arguments[] = {
    {"bench --n 0", "kqcl bench: --n '0': must be from 1 to"},
    {"bench --m -1", "kqcl bench: --m '-1': must be from 1 to"},
    {"bench --m abc", "kqcl bench: --m 'abc': not a whole number"},
    {"bench --m 1e3", "kqcl bench: --m '1e3': not a whole number"},
    {"bench --m ' 12'", "kqcl bench: --m ' 12': not a whole number"},
    {"bench --k 0x100", "kqcl bench: --k '0x100': not a whole number"},
    {"bench --k 100 --type q4_K", "kqcl bench: --k 100: not a whole number of q4_K blocks"},
    {"bench --n 1,,8", "kqcl bench: --n '1,,8': item '' not a whole number"},
    {"bench --type q9_K", "kqcl bench: --type 'q9_K': 'q9_K' is not a type kqcl knows"},
    {"bench --type q4_K,q9_K", "kqcl bench: --type 'q4_K,q9_K': 'q9_K' is not a type kqcl knows"},
    {"bench --reps 0", "kqcl bench: -r/--reps '0': must be from 1 to"},
    {"bench -r x", "kqcl bench: -r/--reps 'x': not a whole number"},
    {"bench --rotate -5", "kqcl bench: --rotate '-5': must be from 0 to"},
    {"bench --split diag", "kqcl bench: --split 'diag': want one of none, rows, cols"},
    {"bench --model llama2", "kqcl bench: --model 'llama2': want one of llama3-8b"},
    {"bench -o xml", "kqcl bench: -o 'xml': want one of md, json, csv"},
    {"bench --precision bogus", "kqcl bench: --precision 'bogus': 'bogus' is not a precision (want f32, q8,"},
    {"bench --precision f32,q9", "kqcl bench: --precision 'f32,q9': 'q9' is not a precision"},
    {"bench --precision f32,F32", "kqcl bench: --precision 'f32,F32': 'F32' is listed twice"},
    {"bench --frobnicate", "kqcl bench: --frobnicate: unknown option"},
    {"bench --m", "kqcl bench: --m: needs a value"},
    {"bench stray", "kqcl bench: 'stray': unexpected argument"},
    {"plan --mode diag", "kqcl plan: --mode 'diag': want one of auto, layers, tensor"},
    {"plan --tokens 0", "kqcl plan: --tokens '0': must be from 1 to"},
    {"plan --layers 3x", "kqcl plan: --layers '3x': not a whole number"},
    {"plan --hidden 100", "kqcl plan: --hidden 100 / --ffn 14336: not whole numbers of q4_K blocks"},
    {"plan --type q9_K", "kqcl plan: --type 'q9_K': 'q9_K' is not a type kqcl knows"},
    {"plan --assume 2x141:4000:25:15junk", "kqcl plan: --assume '2x141:4000:25:15junk': want COUNTx"},
    {"plan --assume 2x141:4000:25", "kqcl plan: --assume '2x141:4000:25': want COUNTx"},
    /* issue 23, item 10: NaN passed every range check (exit 0), inf became a uint64_t (exit 1) */
    {"plan --assume 1xnan:nan:nan:nan", "kqcl plan: --assume '1xnan:nan:nan:nan': MEM_GiB 'nan': not a finite number"},
    {"plan --assume 1xinf:1:1:1", "kqcl plan: --assume '1xinf:1:1:1': MEM_GiB 'inf': not a finite number"},
    {"plan --assume 1x1:1:1:-inf", "kqcl plan: --assume '1x1:1:1:-inf': LATENCY_us '-inf': not a finite number"},
    {"plan --assume 1x1e300:1:1:1", "kqcl plan: --assume '1x1e300:1:1:1': MEM_GiB '1e300': must be below 2^34"},
    {"plan --assume 1x141:0:25:15", "kqcl plan: --assume '1x141:0:25:15': SPEED_GBps '0': must be above 0"},
    {"plan --assume 1x141:4000:25:-1", "kqcl plan: --assume '1x141:4000:25:-1': LATENCY_us '-1': must not be"},
    {"plan --assume 99999999999x1:1:1:1", "kqcl plan: --assume '99999999999x1:1:1:1': COUNT '99999999999': must be "
                                           "from 1 to 64"},
    {"plan a.gguf b.gguf", "kqcl plan: 'b.gguf': one FILE only"},
    {"run", "kqcl run: no FILE given"},
    {"run model.gguf --n 0", "kqcl run: --n '0': must be from 1 to 65536"},
    {"run model.gguf --n 2.5", "kqcl run: --n '2.5': not a whole number"},
    {"run model.gguf --split diag", "kqcl run: --split 'diag': want one of rows, cols"},
    {"run model.gguf --precision f8", "kqcl run: --precision 'f8': not a precision (want f32, q8, f16, bf16 or auto)"},
    {"run --frobnicate model.gguf", "kqcl run: --frobnicate: unknown option"},
    {"gguf", "kqcl gguf: no FILE given"},
    {"gguf --yaml x.gguf", "kqcl gguf: --yaml: unknown option"},
    {"gguf a.gguf b.gguf", "kqcl gguf: 'b.gguf': one FILE only"},
    {"quantize in.gguf out.gguf", "kqcl quantize: want IN.gguf OUT.gguf TYPE, got 2 arguments"},
    {"quantize in.gguf out.gguf q9_K", "kqcl quantize: TYPE 'q9_K': not a type kqcl quantizes to"},
    {"quantize --fast in.gguf out.gguf q4_K", "kqcl quantize: --fast: unknown option"},
    {"devices --frobnicate", "kqcl devices: --frobnicate: unknown option"},
    {"devices stray", "kqcl devices: 'stray': unexpected argument"},
    {"devices --device", "kqcl devices: --device: needs a value"},
    {"version stray", "kqcl version: 'stray': unexpected argument"},
};

START_TEST(bad_argument_is_named_in_one_line)
{
    int rc = tool("", "%s", bad_arguments[_i].args);
    ck_assert_msg(rc == 2, "kqcl %s: exit %d, want 2 (stderr: %s)", bad_arguments[_i].args, rc, tool_err);
    ck_assert_msg(strncmp(tool_err, bad_arguments[_i].says, strlen(bad_arguments[_i].says)) == 0,
                  "kqcl %s says '%s', want it to begin '%s'", bad_arguments[_i].args, tool_err,
                  bad_arguments[_i].says);
    ck_assert_msg(count_lines(tool_err) == 1, "kqcl %s: %d lines on stderr, want one: %s", bad_arguments[_i].args,
                  count_lines(tool_err), tool_err);
    ck_assert_str_eq(tool_out, "");
}
END_TEST

static const char *const subcommands[] = {"devices", "bench", "gguf", "run", "quantize", "plan", "version"};

START_TEST(help_works_everywhere)
{
    for (int form = 0; form < 2; form++) {
        int rc = tool("", "%s %s", subcommands[_i], form ? "--help" : "-h");
        ck_assert_msg(rc == 0, "kqcl %s %s: exit %d (%s)", subcommands[_i], form ? "--help" : "-h", rc, tool_err);
        char want[64];
        snprintf(want, sizeof want, "usage: kqcl %s", subcommands[_i]);
        ck_assert_has(tool_out, want);
        ck_assert_str_eq(tool_err, "");
    }
}
END_TEST

/* ---- bench ------------------------------------------------------------------------------------ */

#define SMALL "--m 64 --k 256 --n 1 -r 2 --type q4_K"

START_TEST(bench_json_parses_and_has_nulls)
{
    int rc = tool("", "bench " SMALL " --no-unfused --rotate 0 -o json");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    ck_assert_json(tool_out);
    char version[64];
    snprintf(version, sizeof version, "\"kqcl_version\": \"%s\"", kqcl_version());
    ck_assert_has(tool_out, version);
    ck_assert_has(tool_out, "\"date\": \"20");
    ck_assert_has(tool_out, "\"device\": \"");
    ck_assert_has(tool_out, "\"driver\": \"");
    ck_assert_has(tool_out, "\"kernels\": \"");
    ck_assert_has(tool_out, "\"precision\": \"f32\"");
    ck_assert_has(tool_out, "\"repetitions\": 2");
    ck_assert_has(tool_out, "\"us_min\": ");
    ck_assert_has(tool_out, "\"us_max\": ");
    /* not measured: no rotation, no unfused path */
    ck_assert_has(tool_out, "\"us_rotating\": null");
    ck_assert_has(tool_out, "\"unfused_us\": null");
    ck_assert_has(tool_out, "\"speedup\": null");
    ck_assert_has(tool_out, "\"bandwidth_reference_reliable\": ");
    /* --json is the same output */
    rc = tool("", "bench " SMALL " --no-unfused --json");
    ck_assert_int_eq(rc, 0);
    ck_assert_json(tool_out);
    ck_assert_has(tool_out, "\"precision\": \"f32\"");
    ck_assert_has(tool_out, "\"us_rotating\": ");
}
END_TEST

START_TEST(bench_csv_has_a_header)
{
    int rc = tool("", "bench " SMALL " --no-unfused -o csv");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    const char *header = "tensor,type,m,k,n,precision,used,us,us_min,us_max,us_rotating,us_rotating_min,"
                         "us_rotating_max,weight_gbps,percent_of_bandwidth,gflops,unfused_us,speedup,max_rel_err\n";
    ck_assert_msg(strncmp(tool_out, header, strlen(header)) == 0, "csv begins '%s'", tool_out);
    ck_assert_int_eq(count_lines(tool_out), 2);
    const char *row = tool_out + strlen(header);
    ck_assert_msg(strncmp(row, ",q4_K,64,256,1,f32,f32,", 23) == 0, "row '%s'", row);
    ck_assert_int_eq(count_of(row, ","), 18);
    ck_assert_has(row, ",,,"); /* unfused_us and speedup empty: not measured */
}
END_TEST

/* A row per mode, each with what it ran: f32 is f32 everywhere, and q8 with q4_K weights at n = 1
 * is Q8 on every device (asked for, it is never moved to another mode in decode). */
START_TEST(bench_precision_list_gives_a_row_per_mode_with_what_it_used)
{
    int rc = tool("", "bench " SMALL " --no-unfused --rotate 0 --precision f32,q8 -o json");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    ck_assert_json(tool_out);
    ck_assert_has(tool_out, "\"precisions\": [\"f32\", \"q8\"]");
    ck_assert_int_eq(count_of(tool_out, "\"type\": \"q4_K\""), 2);
    ck_assert_int_eq(count_of(tool_out, "\"used\": \""), 2);
    ck_assert_has(tool_out, "\"precision\": \"f32\", \"used\": \"f32\"");
    ck_assert_has(tool_out, "\"precision\": \"q8\", \"used\": \"q8\"");
    /* q8 outside decode (n > 8) runs bf16, and says so; the table has both columns */
    rc = tool("", "bench --m 64 --k 256 --n 16 -r 1 --type q4_K --no-unfused --rotate 0 --precision Q8");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    ck_assert_has(tool_out, "| n | precision | used | us |");
    ck_assert_has(tool_out, "| q4_K | 64 | 256 | 16 | q8 | bf16 | ");
    /* without --precision: the context's, from KQCL_PRECISION */
    rc = tool("KQCL_PRECISION=bf16", "bench " SMALL " --no-unfused --rotate 0 -o csv");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    ck_assert_has(tool_out, "\n,q4_K,64,256,1,bf16,bf16,");
}
END_TEST

START_TEST(bench_table_shows_spread_and_the_bandwidth_caveat)
{
    int rc = tool("", "bench " SMALL " --no-unfused");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    ck_assert_has(tool_out, "median of 2, min-max beside it");
    ck_assert_has(tool_out, "| us | min-max |");
    kqcl_context *ctx = NULL;
    kqcl_device_info info;
    ck_assert_int_eq(kqcl_context_create(NULL, &ctx), KQCL_OK);
    ck_assert_int_eq(kqcl_device_get_info(ctx, 0, &info), KQCL_OK);
    kqcl_context_destroy(ctx);
    if (!info.is_gpu) { /* weights in L3, a probe that varies: the column says so */
        ck_assert_has(tool_out, "% of bw (unreliable)");
        ck_assert_has(tool_out, "note: % of bw is unreliable here");
    }
}
END_TEST

START_TEST(bench_split_or_collectives_on_one_device_says_so)
{
    const char *forms[] = {"--split rows", "--split cols", "--collectives"};
    for (int i = 0; i < 3; i++) {
        int rc = tool("", "bench " SMALL " --device 0 %s", forms[i]);
        ck_assert_msg(rc == 2, "%s: exit %d (%s)", forms[i], rc, tool_err);
        char want[96];
        snprintf(want, sizeof want, "kqcl bench: %s needs two or more devices; --device selects one", forms[i]);
        ck_assert_has(tool_err, want);
        ck_assert_int_eq(count_lines(tool_err), 1);
    }
}
END_TEST

/* ---- devices ---------------------------------------------------------------------------------- */

START_TEST(devices_json_and_versions)
{
    int rc = tool("", "devices --json");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    ck_assert_json(tool_out);
    ck_assert_has(tool_out, "\"selected_by\": \"default\"");
    ck_assert_has(tool_out, "\"platform_index\": 0");
    ck_assert_has(tool_out, "\"opencl_version\": \"OpenCL ");
    ck_assert_has(tool_out, "\"opencl_c_version\": \"OpenCL C ");
    ck_assert_has(tool_out, "\"precision\": \"f32\"");
    ck_assert_int_eq(count_of(tool_out, "\"selected\": true"), 1);
    rc = tool("", "devices");
    ck_assert_int_eq(rc, 0);
    ck_assert_has(tool_out, " (0:0): ");
    ck_assert_has(tool_out, "   OpenCL    OpenCL ");
}
END_TEST

/* What AUTO picks on the default device, as include/kqcl.h says it: GPUs q8 for quantized decode,
 * bf16 prefill where tensor cores serve the type (f32 on the portable kernels: KQCL_PORTABLE=1,
 * or a GPU without them), f16 for f16 weights; CPUs f32. (Until 2026-12-07 this expected bf16
 * prefill on every GPU and failed on the H100's portable path.) */
START_TEST(devices_says_what_precision_auto_picks)
{
    kqcl_context *ctx = NULL;
    kqcl_device_info info;
    ck_assert_int_eq(kqcl_context_create("0", &ctx), KQCL_OK);
    ck_assert_int_eq(kqcl_device_get_info(ctx, 0, &info), KQCL_OK);
    kqcl_context_destroy(ctx);
    int rc = tool("", "devices --device 0");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    ck_assert_has(tool_out, "   precision auto: ");
    if (info.is_gpu) {
        bool tensor_cores = strstr(info.variant, "tensor cores") != NULL;
        ck_assert_has(tool_out, tensor_cores ? "   precision auto: q4_K decode q8, prefill bf16; f16 weights f16\n"
                                             : "   precision auto: q4_K decode q8, prefill f32; f16 weights f16\n");
        ck_assert_has(tool_out, "GPU: integer dot products for quantized decode, ");
    } else {
        ck_assert_has(tool_out, "   precision auto: q4_K decode f32, prefill f32; f16 weights f32\n");
        ck_assert_has(tool_out, "CPU: f32, the tuned CPU kernels");
    }
    rc = tool("", "devices --device 0 --json");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    ck_assert_json(tool_out);
    ck_assert_has(tool_out, info.is_gpu ? "\"precision_auto\": {\"q4_K_decode\": \"q8\", \"q4_K_prefill\": \"bf16\""
                                        : "\"precision_auto\": {\"q4_K_decode\": \"f32\", \"q4_K_prefill\": \"f32\"");
    ck_assert_has(tool_out, "\"q8_integer_dot\": \"");
    /* "precision" is what a context gets as created: KQCL_PRECISION */
    rc = tool("KQCL_PRECISION=q8", "devices --device 0 --json");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    ck_assert_has(tool_out, "\"precision\": \"q8\", \"precision_auto\": {");
    /* a malformed KQCL_PRECISION fails every context: named in one line, the list still shown */
    rc = tool("KQCL_PRECISION=bogus", "devices");
    ck_assert_int_eq(rc, 1);
    ck_assert_has(tool_out, " (0:0): ");
    ck_assert_str_eq(tool_err, "kqcl devices: KQCL_PRECISION 'bogus': want f32, q8, f16, bf16 or auto\n");
}
END_TEST

/* Two identical PoCL devices: the default given as index 1 was marked on device 0, found by name. */
START_TEST(devices_marks_the_default_by_index)
{
    const char *env = "POCL_DEVICES='pthread pthread' KQCL_DEVICES=1";
    int rc = tool(env, "devices --json");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    if (count_of(tool_out, "\"index\": ") < 2)
        return; /* not PoCL: one device, nothing to tell apart */
    ck_assert_has(tool_out, "\"selected_by\": \"KQCL_DEVICES\"");
    ck_assert_int_eq(count_of(tool_out, "\"selected\": true"), 1);
    const char *one = strstr(tool_out, "{\"index\": 1,");
    ck_assert_ptr_nonnull(one);
    ck_assert_ptr_nonnull(strstr(one, "\"selected\": true"));
    rc = tool(env, "devices");
    ck_assert_int_eq(rc, 0);
    ck_assert_has(tool_out, "\n*1 (");
    ck_assert_msg(strncmp(tool_out, " 0 (", 4) == 0, "device 0 is marked: %s", tool_out);
    rc = tool("POCL_DEVICES='pthread pthread'", "devices --device 0,1");
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(count_of(tool_out, "*"), 2);
}
END_TEST

START_TEST(devices_spec_that_matches_nothing_says_so)
{
    int rc = tool("", "devices --device no-such-device");
    ck_assert_int_eq(rc, 2);
    ck_assert_has(tool_err, "kqcl devices: --device 'no-such-device' selects no device");
    ck_assert_int_eq(count_lines(tool_err), 1);
    ck_assert_has(tool_out, " (0:0): "); /* the list is still shown */
    ck_assert_int_eq(count_of(tool_out, "\n*"), 0);
    rc = tool("KQCL_DEVICES=no-such-device", "devices");
    ck_assert_int_eq(rc, 1);
    ck_assert_has(tool_err, "kqcl devices: KQCL_DEVICES 'no-such-device' selects no device");
}
END_TEST

/* ---- quantize --------------------------------------------------------------------------------- */

#define LAYERS 8
#define COLS 256
#define ROWS 4

/* A little llama-shaped f32 model: token_embd, LAYERS blocks of attn_q, attn_v, ffn_down and a
 * 1-D attn_norm, output_norm and output; general.file_type 0 (all f32). */
static const char *write_model(bool with_output)
{
    static float data[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++)
        data[i] = (float)((i * 37) % 101 - 50) / 50.0f;
    kqcl_gguf_writer *w;
    ck_assert_int_eq(kqcl_gguf_writer_create(&w), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_set_string(w, "general.architecture", "llama"), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_set_u32(w, "general.file_type", 0), KQCL_OK);
    int64_t ne2[2] = {COLS, ROWS}, ne1[1] = {COLS};
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "token_embd.weight", 0, 2, ne2, data, sizeof data), KQCL_OK);
    for (int l = 0; l < LAYERS; l++) {
        const char *names[] = {"attn_q", "attn_v", "ffn_down"};
        char name[64];
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, names[k]);
            ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, name, 0, 2, ne2, data, sizeof data), KQCL_OK);
        }
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, name, 0, 1, ne1, data, COLS * sizeof(float)), KQCL_OK);
    }
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "output_norm.weight", 0, 1, ne1, data, COLS * sizeof(float)),
                     KQCL_OK);
    if (with_output)
        ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "output.weight", 0, 2, ne2, data, sizeof data), KQCL_OK);
    const char *path = tool_tmp_path(with_output ? "model.gguf" : "tied.gguf");
    ck_assert_int_eq(kqcl_gguf_writer_write(w, path), KQCL_OK);
    kqcl_gguf_writer_destroy(w);
    return path;
}

static uint32_t tensor_type(const kqcl_gguf *g, const char *name)
{
    kqcl_gguf_tensor t;
    int64_t i = kqcl_gguf_find_tensor(g, name);
    ck_assert_msg(i >= 0, "no tensor %s", name);
    ck_assert_int_eq(kqcl_gguf_tensor_info(g, i, &t), KQCL_OK);
    return t.type;
}

static int64_t file_type(const kqcl_gguf *g)
{
    int64_t i = kqcl_gguf_find_key(g, "general.file_type"), v = -1;
    if (i >= 0)
        ck_assert_int_eq(kqcl_gguf_get_int64(g, i, &v), KQCL_OK);
    return v;
}

START_TEST(quantize_q4_k_m_follows_llama_cpp)
{
    char in[512], out[512];
    snprintf(in, sizeof in, "%s", write_model(true));
    snprintf(out, sizeof out, "%s", tool_tmp_path("q4km.gguf"));
    int rc = tool("", "quantize %s %s q4_k_m", in, out); /* any case */
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    /* first and last eighth of 8 layers (0, 7) and every third between (3, 6) keep q6_K */
    ck_assert_has(tool_out, "  blk.0.attn_v.weight: f32 -> q6_K (Q4_K_M: attn_v 0 of 8 keeps more bits)\n");
    ck_assert_has(tool_out, "  blk.1.attn_v.weight: f32 -> q4_K\n");
    ck_assert_has(tool_out, "  blk.3.ffn_down.weight: f32 -> q6_K (Q4_K_M: ffn_down 3 of 8 keeps more bits)\n");
    ck_assert_has(tool_out, "  blk.0.attn_q.weight: f32 -> q4_K\n");
    ck_assert_has(tool_out, "  blk.0.attn_norm.weight: f32 kept (1-D)\n");
    ck_assert_has(tool_out, "  output.weight: f32 -> q6_K (Q4_K_M: the output projection keeps more bits)\n");
    ck_assert_has(tool_out, "  token_embd.weight: f32 -> q4_K\n");
    ck_assert_has(tool_out, "general.file_type = 15");
    kqcl_gguf *g;
    ck_assert_int_eq(kqcl_gguf_open(out, &g), KQCL_OK);
    ck_assert_int_eq(file_type(g), 15);
    const int more[LAYERS] = {1, 0, 0, 1, 0, 0, 1, 1};
    for (int l = 0; l < LAYERS; l++) {
        char v[64], down[64], q[64];
        snprintf(v, sizeof v, "blk.%d.attn_v.weight", l);
        snprintf(down, sizeof down, "blk.%d.ffn_down.weight", l);
        snprintf(q, sizeof q, "blk.%d.attn_q.weight", l);
        ck_assert_int_eq(tensor_type(g, v), more[l] ? KQCL_TYPE_Q6_K : KQCL_TYPE_Q4_K);
        ck_assert_int_eq(tensor_type(g, down), more[l] ? KQCL_TYPE_Q6_K : KQCL_TYPE_Q4_K);
        ck_assert_int_eq(tensor_type(g, q), KQCL_TYPE_Q4_K);
    }
    ck_assert_int_eq(tensor_type(g, "output.weight"), KQCL_TYPE_Q6_K);
    ck_assert_int_eq(tensor_type(g, "output_norm.weight"), KQCL_TYPE_F32);
    int64_t qv = kqcl_gguf_find_key(g, "general.quantization_version"), version = 0;
    ck_assert_int_ge(qv, 0);
    ck_assert_int_eq(kqcl_gguf_get_int64(g, qv, &version), KQCL_OK);
    ck_assert_int_eq(version, 2);
    kqcl_gguf_close(g);

    /* tied embeddings (no output.weight): token_embd takes the output's bits, as in llama.cpp */
    snprintf(in, sizeof in, "%s", write_model(false));
    rc = tool("", "quantize %s %s Q4_K_M", in, out);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    ck_assert_has(tool_out, "  token_embd.weight: f32 -> q6_K (Q4_K_M: the output projection keeps more bits)\n");
}
END_TEST

static const struct {
    const char *type;
    uint32_t id;
    int file_type; /* -1: none */
} single_types[] = {
    {"Q4_K", KQCL_TYPE_Q4_K, 14}, {"q5_k", KQCL_TYPE_Q5_K, 16}, {"Q6_K", KQCL_TYPE_Q6_K, 18},
    {"f16", KQCL_TYPE_F16, 1},    {"BF16", KQCL_TYPE_BF16, 32}, {"Q8_0", KQCL_TYPE_Q8_0, 7},
    {"q4_0", KQCL_TYPE_Q4_0, 2},  {"q8_K", KQCL_TYPE_Q8_K, -1}, {"Q4_1", KQCL_TYPE_Q4_1, 3},
    {"q5_0", KQCL_TYPE_Q5_0, 8},  {"Q5_1", KQCL_TYPE_Q5_1, 9},
};

START_TEST(quantize_writes_a_consistent_file_type)
{
    char in[512], out[512];
    snprintf(in, sizeof in, "%s", write_model(true));
    snprintf(out, sizeof out, "%s", tool_tmp_path("single.gguf"));
    int rc = tool("", "quantize %s %s %s", in, out, single_types[_i].type);
    ck_assert_msg(rc == 0, "%s: exit %d: %s", single_types[_i].type, rc, tool_err);
    kqcl_gguf *g;
    ck_assert_int_eq(kqcl_gguf_open(out, &g), KQCL_OK);
    ck_assert_int_eq(file_type(g), single_types[_i].file_type);
    ck_assert_int_eq(tensor_type(g, "blk.0.attn_v.weight"), single_types[_i].id);
    ck_assert_int_eq(tensor_type(g, "output.weight"), single_types[_i].id);
    ck_assert_int_eq(tensor_type(g, "blk.0.attn_norm.weight"), KQCL_TYPE_F32);
    kqcl_gguf_close(g);
    if (single_types[_i].file_type < 0)
        ck_assert_has(tool_out, "general.file_type: left out (llama.cpp has no file type for q8_K)");
    /* 3 x 8 + 2 converted, 9 kept */
    ck_assert_has(tool_out, " 26 tensors quantized to ");
    ck_assert_has(tool_out, ", 9 kept;");
    ck_assert_int_eq(count_of(tool_out, "  blk."), 4 * LAYERS);
}
END_TEST

/* ---- run -------------------------------------------------------------------------------------- */

START_TEST(run_progress_fits_60_columns_and_agrees_with_the_table)
{
    const char *in = write_model(true);
    int rc = tool("COLUMNS=60", "run %s --progress", in);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, tool_err);
    /* every redraw after \r, escape sequence aside, within 59 columns: nothing wraps */
    int draws = 0;
    for (char *line = tool_err; *line;) {
        size_t n = strcspn(line, "\r\n");
        char *clear = strstr(line, "\033[K");
        size_t shown = clear && (size_t)(clear - line) < n ? (size_t)(clear - line) : n;
        if (strncmp(line, "loading", 7) == 0) {
            draws++;
            ck_assert_msg(shown <= 59, "a redraw of %zu columns in 60: '%.*s'", shown, (int)shown, line);
        }
        line += n + (line[n] != '\0');
    }
    ck_assert_int_ge(draws, 1);
    /* "loaded N tensors, X MB" and the table's total row count the same tensors and bytes */
    int loaded = 0, total = 0;
    double loaded_mb = -1, total_mb = -2;
    const char *l = strstr(tool_err, "loaded ");
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(sscanf(l, "loaded %d tensors, %lf MB", &loaded, &loaded_mb), 2);
    const char *t = strstr(tool_out, "\ntotal ");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(sscanf(t, "\ntotal %d %lf", &total, &total_mb), 2);
    ck_assert_int_eq(loaded, total);
    ck_assert_msg(loaded_mb == total_mb, "loaded %.1f MB, table %.1f MB", loaded_mb, total_mb);
}
END_TEST

/* `kqcl run FILE` exits 0, skips no tensor and checks `tensors` of them. */
static void run_checks_every_tensor(const char *file, int tensors)
{
    int rc = tool("", "run %s", file);
    ck_assert_msg(rc == 0, "run: exit %d: %s", rc, tool_err);
    ck_assert_msg(strstr(tool_err, "skipping") == NULL, "run skipped a tensor: %s", tool_err);
    int total = 0;
    const char *t = strstr(tool_out, "\ntotal ");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(sscanf(t, "\ntotal %d", &total), 1);
    ck_assert_int_eq(total, tensors);
}

/* The file the gguf Python package wrote (tests/data/legacy.gguf: q8_0, q4_0 and f32 weights)
 * lists, runs with every result checked against the host, and quantizes. */
START_TEST(python_written_q8_0_q4_0_file_lists_runs_and_quantizes)
{
    char in[1024];
    const char *data = getenv("KQCL_TEST_DATA");
    snprintf(in, sizeof in, "%s/legacy.gguf", data && *data ? data : "tests/data");
    ck_assert_int_eq(tool("", "gguf %s", in), 0);
    ck_assert_has(tool_out, "blk.0.attn_q.weight  q8_0");
    ck_assert_has(tool_out, "blk.0.attn_k.weight  q4_0");
    run_checks_every_tensor(in, 3);
    ck_assert_has(tool_out, "\nq4_0 ");
    ck_assert_has(tool_out, "\nq8_0 ");
    const char *out = tool_tmp_path("legacy-q4_0.gguf");
    int rc = tool("", "quantize %s %s Q4_0", in, out);
    ck_assert_msg(rc == 0, "quantize: exit %d: %s", rc, tool_err);
    kqcl_gguf *g = NULL;
    ck_assert_int_eq(kqcl_gguf_open(out, &g), KQCL_OK);
    ck_assert_uint_eq(tensor_type(g, "blk.0.attn_v.weight"), KQCL_TYPE_Q4_0); /* the f32 one */
    ck_assert_uint_eq(tensor_type(g, "blk.0.attn_q.weight"), KQCL_TYPE_Q8_0); /* kept */
    kqcl_gguf_close(g);
    rc = tool("", "run %s", out);
    ck_assert_msg(rc == 0, "run of the quantized file: exit %d: %s", rc, tool_err);
}
END_TEST

/* The line of `text` that begins with `start`, into buf (without its newline). */
static const char *line_of(const char *text, const char *start, char *buf, size_t size)
{
    const char *p = strncmp(text, start, strlen(start)) == 0 ? text : NULL;
    if (p == NULL) {
        char with_newline[64];
        snprintf(with_newline, sizeof with_newline, "\n%s", start);
        p = strstr(text, with_newline);
        ck_assert_msg(p != NULL, "no line begins '%s' in: %s", start, text);
        p++;
    }
    snprintf(buf, size, "%.*s", (int)strcspn(p, "\n"), p);
    return buf;
}

/* The gguf package's file of the other 32-value types (tests/data/legacy-q4_1-q5.gguf: q4_1,
 * q5_0 and q5_1 weights) lists, and runs with no tensor skipped and every result checked against
 * the host, in F32 and in Q8 (each type's integer kernel at n = 1). */
START_TEST(python_written_q4_1_q5_file_lists_and_runs)
{
    char in[1024], line[256];
    const char *data = getenv("KQCL_TEST_DATA");
    snprintf(in, sizeof in, "%s/legacy-q4_1-q5.gguf", data && *data ? data : "tests/data");
    ck_assert_int_eq(tool("", "gguf %s", in), 0);
    ck_assert_has(tool_out, "blk.0.attn_q.weight  q4_1");
    ck_assert_has(tool_out, "blk.0.attn_k.weight  q5_0");
    ck_assert_has(tool_out, "blk.0.attn_v.weight  q5_1");
    run_checks_every_tensor(in, 3);
    int rc = tool("", "run %s --precision q8", in);
    ck_assert_msg(rc == 0, "run --precision q8: exit %d: %s", rc, tool_err);
    const char *types[] = {"q4_1 ", "q5_0 ", "q5_1 "};
    for (int i = 0; i < 3; i++) {
        line_of(tool_out, types[i], line, sizeof line);
        size_t n = strlen(line);
        ck_assert_msg(n > 4 && strcmp(line + n - 4, "  q8") == 0, "'%s' does not end '  q8'", line);
    }
}
END_TEST

/* run --precision q8 on the Python-written file: each type's matmul checked against X as Q8 or its
 * fallback multiplies it, the mode each got in the "used" column: q8 for q8_0 and q4_0 at n = 1,
 * bf16 (Q8's fallback) for f32 weights. */
START_TEST(run_precision_q8_checks_and_says_what_each_type_used)
{
    char in[1024], line[256];
    const char *data = getenv("KQCL_TEST_DATA");
    snprintf(in, sizeof in, "%s/legacy.gguf", data && *data ? data : "tests/data");
    int rc = tool("", "run %s --precision q8", in);
    ck_assert_msg(rc == 0, "run --precision q8: exit %d: %s", rc, tool_err);
    ck_assert_has(tool_out, ", n = 1, precision q8\n");
    ck_assert_has(tool_out, " max error  used\n");
    const char *ends[][2] = {{"q4_0 ", "  q8"}, {"q8_0 ", "  q8"}, {"f32 ", "  bf16"}};
    for (int i = 0; i < 3; i++) {
        line_of(tool_out, ends[i][0], line, sizeof line);
        size_t n = strlen(line), e = strlen(ends[i][1]);
        ck_assert_msg(n > e && strcmp(line + n - e, ends[i][1]) == 0, "'%s' does not end '%s'", line, ends[i][1]);
    }
    line_of(tool_out, "total ", line, sizeof line);
    ck_assert_msg(strstr(line, "bf16+q8") || strstr(line, "q8+bf16"), "total: '%s'", line);
    /* the context's own precision when not given: KQCL_PRECISION */
    rc = tool("KQCL_PRECISION=bf16", "run %s", in);
    ck_assert_msg(rc == 0, "KQCL_PRECISION=bf16 run: exit %d: %s", rc, tool_err);
    ck_assert_has(tool_out, ", precision bf16\n");
    line_of(tool_out, "total ", line, sizeof line);
    ck_assert_msg(strcmp(line + strlen(line) - 6, "  bf16") == 0, "total: '%s'", line);
}
END_TEST

/* ---- the manual against the README ------------------------------------------------------------ */

static char *read_source(const char *relative)
{
    const char *data = getenv("KQCL_TEST_DATA"); /* SRCDIR/tests/data */
    ck_assert_ptr_nonnull(data);
    char path[1024];
    snprintf(path, sizeof path, "%s/../../%s", data, relative);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char bufs[3][1 << 18];
    static int next;
    char *buf = bufs[next++ % 3];
    size_t n = fread(buf, 1, sizeof bufs[0] - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The text of section `.SH NAME` of a man page, up to the next .SH. */
static char *section(char *page, const char *name)
{
    char head[64];
    snprintf(head, sizeof head, "\n.SH %s\n", name);
    char *start = strstr(page, head);
    ck_assert_msg(start != NULL, "no section %s", name);
    start += strlen(head);
    char *end = strstr(start, "\n.SH ");
    if (end)
        *end = '\0';
    return start;
}

/* The README also names the API's enumerators (KQCL_TYPE_Q4_K, KQCL_SPLIT_ROWS): not variables. */
static bool is_api_constant(const char *name)
{
    static const char *const prefixes[] = {"KQCL_TYPE_", "KQCL_SPLIT_", "KQCL_ERR_", "KQCL_OK", "KQCL_PLAN_",
                                           "KQCL_REDUCE_", "KQCL_GGUF_TYPE_", "KQCL_VERSION", "KQCL_PRECISION_"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

START_TEST(man_pages_list_every_variable_and_subcommand)
{
    char *readme = read_source("README.md");
    char *env1 = section(read_source("doc/kqcl.1"), "ENVIRONMENT");
    char *env3 = section(read_source("doc/kqcl.3"), "ENVIRONMENT");
    int checked = 0;
    for (const char *p = readme; (p = strpbrk(p, "KP")) != NULL; p++) {
        if (strncmp(p, "KQCL_", 5) != 0 && strncmp(p, "POCL_", 5) != 0)
            continue;
        char name[64];
        size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
        snprintf(name, sizeof name, "%.*s", (int)(n < 63 ? n : 63), p);
        if (p > readme && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
            continue;
        if (is_api_constant(name)) {
            p += n - 1;
            continue;
        }
        ck_assert_msg(strstr(env1, name) != NULL, "kqcl.1 ENVIRONMENT lacks %s (README lists it)", name);
        ck_assert_msg(strstr(env3, name) != NULL, "kqcl.3 ENVIRONMENT lacks %s (README lists it)", name);
        checked++;
        p += n - 1;
    }
    ck_assert_int_ge(checked, 20);
    char *synopsis = section(read_source("doc/kqcl.1"), "SYNOPSIS");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, ".B kqcl %s\n", subcommands[i]);
        ck_assert_msg(strstr(synopsis, want) != NULL, "kqcl.1 SYNOPSIS lacks kqcl %s", subcommands[i]);
    }
}
END_TEST

/* The README's example is examples/matmul.c, which make check builds and runs, word for word. */
START_TEST(readme_quotes_the_example_that_make_check_runs)
{
    char *readme = read_source("README.md");
    char *example = read_source("examples/matmul.c");
    ck_assert_int_gt(strlen(example), 500);
    char *quoted = strstr(readme, "```c\n");
    ck_assert_ptr_nonnull(quoted);
    ck_assert_msg(strncmp(quoted + 5, example, strlen(example)) == 0,
                  "README.md's ```c block is not examples/matmul.c as it is");
    ck_assert_has(readme, "LD_LIBRARY_PATH=");
    ck_assert_has(readme, "-Wl,-rpath,");
}
END_TEST

static void make_tmp_dir(void) { ck_assert(tool_make_tmp_dir("cli")); }

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *args = tcase_create("arguments");
    tcase_add_checked_fixture(args, make_tmp_dir, tool_remove_tmp_dir);
    tcase_add_loop_test(args, bad_argument_is_named_in_one_line, 0,
                        (int)(sizeof bad_arguments / sizeof bad_arguments[0]));
    tcase_add_loop_test(args, help_works_everywhere, 0, (int)(sizeof subcommands / sizeof subcommands[0]));
    tcase_add_test(args, man_pages_list_every_variable_and_subcommand);
    tcase_add_test(args, readme_quotes_the_example_that_make_check_runs);
    suite_add_tcase(s, args);
    TCase *bench = tcase_create("bench");
    tcase_add_checked_fixture(bench, make_tmp_dir, tool_remove_tmp_dir);
    tcase_add_test(bench, bench_json_parses_and_has_nulls);
    tcase_add_test(bench, bench_csv_has_a_header);
    tcase_add_test(bench, bench_precision_list_gives_a_row_per_mode_with_what_it_used);
    tcase_add_test(bench, bench_table_shows_spread_and_the_bandwidth_caveat);
    tcase_add_test(bench, bench_split_or_collectives_on_one_device_says_so);
    suite_add_tcase(s, bench);
    TCase *devices = tcase_create("devices");
    tcase_add_checked_fixture(devices, make_tmp_dir, tool_remove_tmp_dir);
    tcase_add_test(devices, devices_json_and_versions);
    tcase_add_test(devices, devices_says_what_precision_auto_picks);
    tcase_add_test(devices, devices_marks_the_default_by_index);
    tcase_add_test(devices, devices_spec_that_matches_nothing_says_so);
    suite_add_tcase(s, devices);
    TCase *files = tcase_create("quantize and run");
    tcase_add_checked_fixture(files, make_tmp_dir, tool_remove_tmp_dir);
    tcase_add_test(files, quantize_q4_k_m_follows_llama_cpp);
    tcase_add_loop_test(files, quantize_writes_a_consistent_file_type, 0,
                        (int)(sizeof single_types / sizeof single_types[0]));
    tcase_add_test(files, run_progress_fits_60_columns_and_agrees_with_the_table);
    tcase_add_test(files, python_written_q8_0_q4_0_file_lists_runs_and_quantizes);
    tcase_add_test(files, python_written_q4_1_q5_file_lists_and_runs);
    tcase_add_test(files, run_precision_q8_checks_and_says_what_each_type_used);
    suite_add_tcase(s, files);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(cli_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
