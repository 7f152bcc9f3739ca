/*
 * cmd_gguf.c -- `kqcl gguf FILE [--json]`: describe a GGUF file (version, metadata, tensors).
 * `kqcl run` is in cmd_run.c, `kqcl quantize` in cmd_quantize.c. Public API only. Exit
 * status: 0 success, 1 failure, 2 bad usage.
 */
#include "commands.h"
#include "kqcl.h"
#include "util.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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
        uint64_t bytes = t.nbytes;
        printf("%s{\"name\": ", i ? ", " : "");
        print_quoted(stdout, t.name, strlen(t.name), 0);
        printf(", \"type\": \"%s\", \"shape\": [", kq_ggml_type_label(t.type, buffer));
        print_shape(stdout, &t, ", ");
        printf("], \"offset\": %" PRIu64 ", \"bytes\": ", t.offset);
        if (bytes != 0 || kq_ggml_type_sized(t.type))
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
        uint64_t bytes = t.nbytes;
        total += bytes;
        printf("  %5" PRId64 "  %-*s  %-8s  %-22s  ", i, name_width,
               escaped(t.name, safe, sizeof safe), kq_ggml_type_label(t.type, buffer), shape);
        if (bytes != 0 || kq_ggml_type_sized(t.type))
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
    const char *path;
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
    int rc = kq_one_file("gguf", argc, argv, &path);
    if (rc != 0)
        return rc;
    kqcl_gguf *g;
    if (kq_gguf_open_or_complain("gguf", path, &g) != 0)
        return 1;
    if (json)
        print_json(g);
    else
        print_text(g, path);
    kqcl_gguf_close(g);
    return ferror(stdout) ? 1 : 0;
}
