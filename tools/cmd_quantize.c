/*
 * cmd_quantize.c -- `kqcl quantize IN.gguf OUT.gguf TYPE`: re-quantize a GGUF file's float
 * weights to a type or a llama.cpp mix. Public API only. Exit status: 0 success, 1 failure,
 * 2 bad usage.
 */
#include "commands.h"
#include "kqcl.h"
#include "util.h"

#include <inttypes.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define escaped kq_text_escaped /* names made safe for a terminal (tools/util.c) */

/* ------------------------------------------------------------------------------------------ */
/* kqcl quantize                                                                                */

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
 * ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q4_1 3, MOSTLY_Q8_0 7, MOSTLY_Q5_0 8,
 * MOSTLY_Q5_1 9, MOSTLY_Q4_K_S 14 and MOSTLY_Q5_K_S 16 (the "mostly q4_K / q5_K" numbers),
 * MOSTLY_Q6_K 18, MOSTLY_BF16 32. q8_K has none: llama.cpp uses it only for activations. */
static int file_type_of(kqcl_type type)
{
    switch (type) {
    case KQCL_TYPE_F32: return 0;
    case KQCL_TYPE_F16: return 1;
    case KQCL_TYPE_Q4_0: return 2;
    case KQCL_TYPE_Q4_1: return 3;
    case KQCL_TYPE_Q8_0: return 7;
    case KQCL_TYPE_Q5_0: return 8;
    case KQCL_TYPE_Q5_1: return 9;
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
    uint64_t bytes = t.nbytes;
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
        printf("  %s: %s -> %s%s%s%s\n", safe, kq_ggml_type_label(t.type, label), kqcl_type_name(target), why[0] ? " (" : "",
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
                            "it\n", safe, kq_ggml_type_label(t.type, label));
            return 1;
        }
        printf("  %s: %s kept (%s)\n", safe, kq_ggml_type_label(t.type, label), keep);
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
                              "(q4_K, q5_K, q6_K, q8_K, q8_0, q5_1, q5_0, q4_1, q4_0, f16, bf16, f32, Q4_K_M, "
                              "Q5_K_M)", type_name);
    if (same_file(in_path, out_path))
        return kq_usage_error("quantize", "OUT must not be IN (%s)", in_path);
    if (kq_gguf_open_or_complain("quantize", in_path, &job.in) != 0)
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
