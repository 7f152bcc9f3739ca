/*
 * test_codec.c -- the host codecs against ggml's own reference vectors (tests/data, see its
 * README.md) and against properties that hold for any input.
 *
 * Only the public API is used, so this program links against the library as any user would.
 * Reference files are read from $KQCL_TEST_DATA (default "tests/data").
 */
#include <check.h>

#include "kqcl.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define R 96   /* weight rows in w.f32 */
#define K 1024 /* columns */
#define N 5    /* activation rows in x.f32 */
#define NCONV 4096
#define QK 256

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                      */

static const char *data_dir(void)
{
    const char *d = getenv("KQCL_TEST_DATA");
    return d && *d ? d : "tests/data";
}

/* Read exactly `bytes` bytes of file `name` of the data directory into buf; false when the
 * file is missing or its size differs. */
static bool read_file_exact(const char *name, void *buf, size_t bytes)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", data_dir(), name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    size_t got = fread(buf, 1, bytes, f);
    int extra = fgetc(f); /* the file must hold no more than we asked for */
    fclose(f);
    return got == bytes && extra == EOF;
}

/* malloc + read_file_exact, failing the test when the file is unusable. */
static void *load(const char *name, size_t bytes)
{
    void *p = malloc(bytes);
    ck_assert_ptr_nonnull(p);
    ck_assert_msg(read_file_exact(name, p, bytes), "cannot read %s/%s (%zu bytes)", data_dir(),
                  name, bytes);
    return p;
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes);
    ck_assert_ptr_nonnull(p);
    return p;
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Index of the first value whose bits differ (NaN matches any NaN), or -1. */
static long first_float_mismatch(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) && isnan(b[i]))
            continue;
        if (fbits(a[i]) != fbits(b[i]))
            return (long)i;
    }
    return -1;
}

static double rms_diff(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return sqrt(s / (double)n);
}

static double rms(const float *a, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return sqrt(s / (double)n);
}

typedef struct ktype {
    kqcl_type type;
    const char *name;
} ktype;

static const ktype kquants[] = {
    {KQCL_TYPE_Q4_K, "q4_K"}, {KQCL_TYPE_Q5_K, "q5_K"},
    {KQCL_TYPE_Q6_K, "q6_K"}, {KQCL_TYPE_Q8_K, "q8_K"},
};

/* ------------------------------------------------------------------------------------------ */
/* Dequantization of ggml's blocks: bit for bit                                                 */

static void check_reference_dequant(kqcl_type type, const char *name)
{
    char fname[64];
    size_t row_bytes = kqcl_row_size(type, K);
    ck_assert_uint_gt(row_bytes, 0);
    snprintf(fname, sizeof fname, "%s.blocks", name);
    uint8_t *blocks = load(fname, row_bytes * R);
    snprintf(fname, sizeof fname, "%s.deq.f32", name);
    float *ref = load(fname, sizeof(float) * R * K);
    float *out = xmalloc(sizeof(float) * R * K);

    /* one row at a time */
    memset(out, 0xFF, sizeof(float) * R * K);
    for (int r = 0; r < R; r++)
        ck_assert_int_eq(kqcl_dequantize(type, blocks + r * row_bytes, out + r * K, 1, K),
                         KQCL_OK);
    long bad = first_float_mismatch(out, ref, (size_t)R * K);
    ck_assert_msg(bad < 0, "%s row-wise: value %ld is %a, ggml %a", name, bad,
                  bad < 0 ? 0.0 : out[bad], bad < 0 ? 0.0 : ref[bad]);

    /* the whole matrix in one call */
    memset(out, 0xFF, sizeof(float) * R * K);
    ck_assert_int_eq(kqcl_dequantize(type, blocks, out, R, K), KQCL_OK);
    bad = first_float_mismatch(out, ref, (size_t)R * K);
    ck_assert_msg(bad < 0, "%s: value %ld is %a, ggml %a", name, bad, bad < 0 ? 0.0 : out[bad],
                  bad < 0 ? 0.0 : ref[bad]);
    free(blocks);
    free(ref);
    free(out);
}

START_TEST(test_dequant_reference)
{
    check_reference_dequant(kquants[_i].type, kquants[_i].name);
}
END_TEST

/* q4_0, q4_1, q5_0, q5_1 and q8_0 against the gguf Python package
 * (tests/data/make-legacy-quants.py), an implementation of ggml's reference quantizers
 * independent of kqcl's. */
static const ktype legacy[] = {{KQCL_TYPE_Q4_0, "q4_0"}, {KQCL_TYPE_Q4_1, "q4_1"}, {KQCL_TYPE_Q5_0, "q5_0"},
                               {KQCL_TYPE_Q5_1, "q5_1"}, {KQCL_TYPE_Q8_0, "q8_0"}};
#define N_LEGACY ((int)(sizeof legacy / sizeof legacy[0]))

START_TEST(test_legacy_dequant_reference)
{
    check_reference_dequant(legacy[_i].type, legacy[_i].name);
}
END_TEST

/* Their quantization: byte for byte, every block of w.f32 (zero, constant, tiny, huge rows). */
START_TEST(test_legacy_quantize_reference)
{
    char fname[64];
    size_t row_bytes = kqcl_row_size(legacy[_i].type, K), bb = kqcl_row_size(legacy[_i].type, 32);
    float *w = load("w.f32", sizeof(float) * R * K);
    snprintf(fname, sizeof fname, "%s.blocks", legacy[_i].name);
    uint8_t *ref = load(fname, row_bytes * R);
    uint8_t *out = xmalloc(row_bytes * R);
    ck_assert_int_eq(kqcl_quantize(legacy[_i].type, w, out, R, K), KQCL_OK);
    for (size_t i = 0; i < row_bytes * R; i++)
        ck_assert_msg(out[i] == ref[i], "%s byte %zu (block %zu, offset %zu): %u, gguf %u", legacy[_i].name, i,
                      i / bb, i % bb, out[i], ref[i]);
    free(w);
    free(ref);
    free(out);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* q8_K quantization: byte for byte                                                             */

START_TEST(test_q8k_activations)
{
    size_t row_bytes = kqcl_row_size(KQCL_TYPE_Q8_K, K);
    float *x = load("x.f32", sizeof(float) * N * K);
    uint8_t *ref = load("x.q8_K.blocks", row_bytes * N);
    uint8_t *out = xmalloc(row_bytes * N);
    ck_assert_int_eq(kqcl_quantize(KQCL_TYPE_Q8_K, x, out, N, K), KQCL_OK);
    for (size_t i = 0; i < row_bytes * N; i++)
        ck_assert_msg(out[i] == ref[i], "byte %zu (block %zu, offset %zu): %u, ggml %u", i,
                      i / 292, i % 292, out[i], ref[i]);
    free(x);
    free(ref);
    free(out);
}
END_TEST

/* w.f32 has an all-zero row; ggml leaves the bsums of an all-zero block unwritten (whatever
 * was in its buffer), so those 32 bytes are not compared: kqcl writes zeros there. */
START_TEST(test_q8k_weights)
{
    const size_t bb = 292;
    size_t row_bytes = kqcl_row_size(KQCL_TYPE_Q8_K, K);
    float *w = load("w.f32", sizeof(float) * R * K);
    uint8_t *ref = load("q8_K.blocks", row_bytes * R);
    float *ref_deq = load("q8_K.deq.f32", sizeof(float) * R * K);
    uint8_t *out = xmalloc(row_bytes * R);
    float *deq = xmalloc(sizeof(float) * R * K);
    ck_assert_int_eq(kqcl_quantize(KQCL_TYPE_Q8_K, w, out, R, K), KQCL_OK);
    int zero_blocks = 0;
    for (size_t b = 0; b < (size_t)R * K / QK; b++) {
        const uint8_t *o = out + b * bb, *g = ref + b * bb;
        bool zero = memcmp(g, "\0\0\0\0", 4) == 0;
        zero_blocks += zero;
        size_t n = zero ? 260 : bb;
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(o[i] == g[i], "block %zu byte %zu: %u, ggml %u", b, i, o[i], g[i]);
        if (zero)
            for (size_t i = 260; i < bb; i++)
                ck_assert_uint_eq(o[i], 0);
    }
    ck_assert_int_gt(zero_blocks, 0); /* row 5 */
    ck_assert_int_eq(kqcl_dequantize(KQCL_TYPE_Q8_K, out, deq, R, K), KQCL_OK);
    long bad = first_float_mismatch(deq, ref_deq, (size_t)R * K);
    ck_assert_msg(bad < 0, "q8_K round trip: value %ld differs", bad);
    free(w);
    free(ref);
    free(ref_deq);
    free(out);
    free(deq);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* q4_K, q5_K, q6_K quantization: error within 5% of ggml's                                     */

static void check_kquant_quality(kqcl_type type, const char *name)
{
    char fname[64];
    size_t row_bytes = kqcl_row_size(type, K), bb = row_bytes / (K / QK);
    float *w = load("w.f32", sizeof(float) * R * K);
    snprintf(fname, sizeof fname, "%s.blocks", name);
    uint8_t *ref = load(fname, row_bytes * R);
    snprintf(fname, sizeof fname, "%s.deq.f32", name);
    float *ref_deq = load(fname, sizeof(float) * R * K);
    uint8_t *out = xmalloc(row_bytes * R);
    float *deq = xmalloc(sizeof(float) * R * K);

    ck_assert_int_eq(kqcl_quantize(type, w, out, R, K), KQCL_OK);
    ck_assert_int_eq(kqcl_dequantize(type, out, deq, R, K), KQCL_OK);
    double ours = rms_diff(deq, w, (size_t)R * K), ggml = rms_diff(ref_deq, w, (size_t)R * K);
    int same = 0, blocks = R * K / QK;
    for (int b = 0; b < blocks; b++)
        same += memcmp(out + b * bb, ref + b * bb, bb) == 0;
    printf("%s: RMS error %.9g (ggml %.9g, ratio %.6f); %d of %d blocks byte-identical\n", name,
           ours, ggml, ours / ggml, same, blocks);
    ck_assert_msg(ours <= 1.05 * ggml, "%s: RMS error %g vs ggml's %g", name, ours, ggml);
    free(w);
    free(ref);
    free(ref_deq);
    free(out);
    free(deq);
}

START_TEST(test_kquant_quality)
{
    check_kquant_quality(kquants[_i].type, kquants[_i].name);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* f16 and bf16                                                                                  */

static void check_half_conversion(kqcl_type type, const char *conv_name, const char *all_name)
{
    float *src = load("conv.f32", sizeof(float) * NCONV);
    uint16_t *ref = load(conv_name, sizeof(uint16_t) * NCONV);
    uint16_t out[NCONV];
    ck_assert_int_eq(kqcl_quantize(type, src, out, 1, NCONV), KQCL_OK);
    for (int i = 0; i < NCONV; i++) {
        bool nan_ref = (ref[i] & 0x7FFF) > (type == KQCL_TYPE_F16 ? 0x7C00 : 0x7F80);
        bool nan_out = (out[i] & 0x7FFF) > (type == KQCL_TYPE_F16 ? 0x7C00 : 0x7F80);
        if (nan_ref || nan_out)
            ck_assert_msg(nan_ref && nan_out, "%s[%d] (%a): NaN mismatch %04x vs ggml %04x",
                          conv_name, i, src[i], out[i], ref[i]);
        else
            ck_assert_msg(out[i] == ref[i], "%s[%d] (%a): %04x, ggml %04x", conv_name, i,
                          src[i], out[i], ref[i]);
    }

    /* every 16-bit pattern back to f32 */
    float *all_ref = load(all_name, sizeof(float) * 65536);
    uint16_t *pat = xmalloc(sizeof(uint16_t) * 65536);
    float *all = xmalloc(sizeof(float) * 65536);
    for (uint32_t i = 0; i < 65536; i++)
        pat[i] = (uint16_t)i;
    ck_assert_int_eq(kqcl_dequantize(type, pat, all, 1, 65536), KQCL_OK);
    long bad = first_float_mismatch(all, all_ref, 65536);
    ck_assert_msg(bad < 0, "%s: pattern %04lx gives %a, ggml %a", all_name, bad,
                  bad < 0 ? 0.0 : all[bad], bad < 0 ? 0.0 : all_ref[bad]);
    /* and every non-NaN pattern survives the round trip */
    uint16_t *back = xmalloc(sizeof(uint16_t) * 65536);
    ck_assert_int_eq(kqcl_quantize(type, all, back, 65536, 1), KQCL_OK);
    for (uint32_t i = 0; i < 65536; i++)
        if (!isnan(all[i]))
            ck_assert_msg(back[i] == i, "%s: %04x -> %04x", all_name, i, back[i]);
    free(src);
    free(ref);
    free(all_ref);
    free(pat);
    free(all);
    free(back);
}

START_TEST(test_f16_conversion)
{
    check_half_conversion(KQCL_TYPE_F16, "conv.f16", "f16_all.f32");
}
END_TEST

START_TEST(test_bf16_conversion)
{
    check_half_conversion(KQCL_TYPE_BF16, "conv.bf16", "bf16_all.f32");
}
END_TEST

START_TEST(test_f32_copy)
{
    float *src = load("conv.f32", sizeof(float) * NCONV);
    float out[NCONV], back[NCONV];
    ck_assert_int_eq(kqcl_quantize(KQCL_TYPE_F32, src, out, 16, NCONV / 16), KQCL_OK);
    ck_assert_int_eq(kqcl_dequantize(KQCL_TYPE_F32, out, back, 16, NCONV / 16), KQCL_OK);
    ck_assert_int_eq(memcmp(back, src, sizeof back), 0);
    free(src);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Random and special inputs                                                                    */

static uint64_t rng_state;

static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_uniform(void) { return ((rng_next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static float rng_gauss(void)
{
    return (float)(sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform()));
}

typedef struct codec_case {
    kqcl_type type;
    const char *name;
    double rel_rms; /* bound on RMS(error) / RMS(x) for Gaussian rows */
} codec_case;

/* Bounds about 1.4x above what ggml's algorithms reach on Gaussian data (0.072, 0.036, 0.018,
 * 0.0071 for the k-quants), well below what a broken codec gives. */
static const codec_case all_codecs[] = {
    {KQCL_TYPE_Q4_K, "q4_K", 0.10},  {KQCL_TYPE_Q5_K, "q5_K", 0.05},
    {KQCL_TYPE_Q6_K, "q6_K", 0.025}, {KQCL_TYPE_Q8_K, "q8_K", 0.01},
    {KQCL_TYPE_F16, "f16", 4e-4},   {KQCL_TYPE_BF16, "bf16", 3e-3},
    {KQCL_TYPE_F32, "f32", 0.0},
};
#define N_CODECS (sizeof all_codecs / sizeof all_codecs[0])

/* Quantize and dequantize rows x cols of x with codec c; returns RMS(error)/RMS(x) (or the
 * RMS error when x is all zero) and checks every output is finite. */
static double round_trip(const codec_case *c, const float *x, int64_t rows, int64_t cols)
{
    size_t row_bytes = kqcl_row_size(c->type, cols);
    uint8_t *q = xmalloc(row_bytes * (size_t)rows);
    float *y = xmalloc(sizeof(float) * (size_t)(rows * cols));
    ck_assert_int_eq(kqcl_quantize(c->type, x, q, rows, cols), KQCL_OK);
    ck_assert_int_eq(kqcl_dequantize(c->type, q, y, rows, cols), KQCL_OK);
    for (int64_t i = 0; i < rows * cols; i++)
        ck_assert_msg(isfinite(y[i]), "%s: value %lld not finite (%a from %a)", c->name,
                      (long long)i, y[i], x[i]);
    size_t n = (size_t)(rows * cols);
    double e = rms_diff(y, x, n), s = rms(x, n);
    free(q);
    free(y);
    return s > 0 ? e / s : e;
}

static void random_rows(uint64_t seed, float scale, float *x, size_t n)
{
    rng_state = seed;
    for (size_t i = 0; i < n; i++)
        x[i] = scale * rng_gauss();
}

static void check_random(uint64_t seed)
{
    const int64_t rows = 7, cols = 3 * QK; /* odd row count, several blocks a row */
    float *x = xmalloc(sizeof(float) * rows * cols);
    random_rows(seed, 1.0f, x, (size_t)(rows * cols));
    for (size_t i = 0; i < N_CODECS; i++) {
        double rel = round_trip(&all_codecs[i], x, rows, cols);
        ck_assert_msg(rel <= all_codecs[i].rel_rms, "%s seed %llu: relative RMS error %g > %g",
                      all_codecs[i].name, (unsigned long long)seed, rel, all_codecs[i].rel_rms);
    }
    free(x);
}

START_TEST(test_random_fixed_seed)
{
    check_random(12345);
}
END_TEST

START_TEST(test_random_time_seed)
{
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    printf("codec random test seed: %llu\n", (unsigned long long)seed);
    check_random(seed);
}
END_TEST

START_TEST(test_zero_rows)
{
    enum { rows = 3, cols = 2 * QK };
    static float x[rows * cols]; /* zero */
    for (size_t i = 0; i < N_CODECS; i++) {
        const codec_case *c = &all_codecs[i];
        uint8_t q[rows * cols * sizeof(float)]; /* room for the widest type, f32 */
        float y[rows * cols];
        memset(y, 0x7F, sizeof y);
        ck_assert_int_eq(kqcl_quantize(c->type, x, q, rows, cols), KQCL_OK);
        ck_assert_int_eq(kqcl_dequantize(c->type, q, y, rows, cols), KQCL_OK);
        for (int j = 0; j < rows * cols; j++)
            ck_assert_msg(y[j] == 0.0f, "%s: zero row gives %a", c->name, y[j]);
        /* rows == 0 is a valid empty request */
        ck_assert_int_eq(kqcl_quantize(c->type, x, q, 0, cols), KQCL_OK);
        ck_assert_int_eq(kqcl_dequantize(c->type, q, y, 0, cols), KQCL_OK);
    }
}
END_TEST

START_TEST(test_constant_rows)
{
    enum { rows = 5, cols = QK };
    static const float values[rows] = {3.25f, -1.5f, 1e-3f, -700.0f, 0.1f};
    float x[rows * cols];
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            x[r * cols + j] = values[r];
    for (size_t i = 0; i < N_CODECS; i++) {
        double rel = round_trip(&all_codecs[i], x, rows, cols);
        /* a constant is one scale times one quant: within the type's rounding */
        ck_assert_msg(rel <= all_codecs[i].rel_rms / 2, "%s: constant rows rel error %g",
                      all_codecs[i].name, rel);
    }
}
END_TEST

/* Large and small magnitudes: the relative error must not depend on scale as long as the
 * f16 super-block scales stay normal (k-quants) or the values stay in range (f16/bf16). */
START_TEST(test_magnitudes)
{
    enum { rows = 3, cols = 2 * QK };
    static const float k_scales[] = {1e-2f, 1e4f, 3e5f};
    static const float q8_scales[] = {1e-30f, 1e30f};
    float x[rows * cols];
    for (size_t s = 0; s < sizeof k_scales / sizeof k_scales[0]; s++) {
        random_rows(777 + s, k_scales[s], x, rows * cols);
        for (size_t i = 0; i < N_CODECS; i++) {
            if (all_codecs[i].type == KQCL_TYPE_F16 && k_scales[s] > 1e3f)
                continue; /* beyond f16's range */
            double rel = round_trip(&all_codecs[i], x, rows, cols);
            ck_assert_msg(rel <= all_codecs[i].rel_rms, "%s at scale %g: rel error %g",
                          all_codecs[i].name, k_scales[s], rel);
        }
    }
    const codec_case wide[] = {{KQCL_TYPE_Q8_K, "q8_K", 0.01}, {KQCL_TYPE_BF16, "bf16", 3e-3},
                               {KQCL_TYPE_F32, "f32", 0.0}};
    for (size_t s = 0; s < sizeof q8_scales / sizeof q8_scales[0]; s++) {
        random_rows(999 + s, q8_scales[s], x, rows * cols);
        for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++) {
            double rel = round_trip(&wide[i], x, rows, cols);
            ck_assert_msg(rel <= wide[i].rel_rms, "%s at scale %g: rel error %g", wide[i].name,
                          q8_scales[s], rel);
        }
    }
    /* Tiny values whose k-quant scales underflow f16: still finite, error below the values */
    random_rows(4242, 1e-9f, x, rows * cols);
    for (size_t i = 0; i < 4; i++)
        ck_assert(round_trip(&all_codecs[i], x, rows, cols) <= 1.0);
}
END_TEST

/* One block mixing a huge outlier with small values, and sub-blocks of one sign. */
START_TEST(test_outliers_and_signs)
{
    enum { cols = 2 * QK };
    float x[cols];
    random_rows(55, 1.0f, x, cols);
    x[17] = 300.0f;
    for (int j = QK; j < QK + 64; j++) /* all positive, then all negative sub-blocks */
        x[j] = fabsf(x[j]) + 2.0f;
    for (int j = QK + 64; j < QK + 128; j++)
        x[j] = -fabsf(x[j]) - 2.0f;
    for (size_t i = 0; i < 3; i++) {
        double rel = round_trip(&all_codecs[i], x, 1, cols);
        ck_assert_msg(rel <= all_codecs[i].rel_rms, "%s: rel error %g", all_codecs[i].name, rel);
    }
    /* q8_K has one scale per block: every error is at most half a step, max|x| / 254 */
    uint8_t q[2 * 292];
    float y[cols];
    ck_assert_int_eq(kqcl_quantize(KQCL_TYPE_Q8_K, x, q, 1, cols), KQCL_OK);
    ck_assert_int_eq(kqcl_dequantize(KQCL_TYPE_Q8_K, q, y, 1, cols), KQCL_OK);
    for (int b = 0; b < 2; b++) {
        float amax = 0;
        for (int j = b * QK; j < (b + 1) * QK; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        for (int j = b * QK; j < (b + 1) * QK; j++)
            ck_assert_msg(fabsf(y[j] - x[j]) <= amax / 254 * 1.001f, "q8_K value %d: %g vs %g",
                          j, y[j], x[j]);
    }
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Bad arguments                                                                                 */

static void expect_invalid(kqcl_status st, const char *what)
{
    ck_assert_msg(st == KQCL_ERR_INVALID_ARG, "%s: status %d", what, (int)st);
    ck_assert_msg(kqcl_last_error(NULL)[0] != '\0', "%s: empty kqcl_last_error", what);
}

START_TEST(test_bad_arguments)
{
    float x[QK] = {0};
    float y[QK];
    uint8_t q[292];
    expect_invalid(kqcl_quantize(KQCL_TYPE_Q4_K, NULL, q, 1, QK), "quantize NULL src");
    expect_invalid(kqcl_quantize(KQCL_TYPE_Q4_K, x, NULL, 1, QK), "quantize NULL dst");
    expect_invalid(kqcl_dequantize(KQCL_TYPE_Q4_K, NULL, y, 1, QK), "dequantize NULL src");
    expect_invalid(kqcl_dequantize(KQCL_TYPE_Q4_K, q, NULL, 1, QK), "dequantize NULL dst");
    expect_invalid(kqcl_quantize(KQCL_TYPE_Q4_K, x, q, 1, 100), "quantize cols=100");
    expect_invalid(kqcl_dequantize(KQCL_TYPE_Q4_K, q, y, 1, 100), "dequantize cols=100");
    expect_invalid(kqcl_quantize(KQCL_TYPE_Q6_K, x, q, -1, QK), "quantize rows=-1");
    expect_invalid(kqcl_dequantize(KQCL_TYPE_Q6_K, q, y, -1, QK), "dequantize rows=-1");
    expect_invalid(kqcl_quantize(KQCL_TYPE_F16, x, q, 1, 0), "quantize cols=0");
    expect_invalid(kqcl_dequantize(KQCL_TYPE_F32, q, y, 1, -4), "dequantize cols=-4");
    expect_invalid(kqcl_quantize((kqcl_type)9, x, q, 1, QK), "quantize type 9 (q8_1)");
    expect_invalid(kqcl_dequantize((kqcl_type)9, q, y, 1, QK), "dequantize type 9 (q8_1)");
    expect_invalid(kqcl_quantize(KQCL_TYPE_Q8_K, x, q, INT64_MAX / 2, QK), "rows overflow");
    expect_invalid(kqcl_dequantize(KQCL_TYPE_Q8_K, q, y, INT64_MAX / 2, QK), "rows overflow");
    /* a good call afterwards clears the message */
    ck_assert_int_eq(kqcl_quantize(KQCL_TYPE_Q8_K, x, q, 1, QK), KQCL_OK);
    ck_assert_str_eq(kqcl_last_error(NULL), "");
}
END_TEST

/* ------------------------------------------------------------------------------------------ */

static Suite *codec_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *tc;

    tc = tcase_create("reference_dequant");
    tcase_add_loop_test(tc, test_dequant_reference, 0, 4);
    tcase_add_loop_test(tc, test_legacy_dequant_reference, 0, N_LEGACY);
    tcase_add_loop_test(tc, test_legacy_quantize_reference, 0, N_LEGACY);
    suite_add_tcase(s, tc);

    tc = tcase_create("q8_K");
    tcase_add_test(tc, test_q8k_activations);
    tcase_add_test(tc, test_q8k_weights);
    suite_add_tcase(s, tc);

    tc = tcase_create("kquant_quality");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_kquant_quality, 0, 3);
    suite_add_tcase(s, tc);

    tc = tcase_create("half");
    tcase_add_test(tc, test_f16_conversion);
    tcase_add_test(tc, test_bf16_conversion);
    tcase_add_test(tc, test_f32_copy);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_random_fixed_seed);
    tcase_add_test(tc, test_random_time_seed);
    tcase_add_test(tc, test_zero_rows);
    tcase_add_test(tc, test_constant_rows);
    tcase_add_test(tc, test_magnitudes);
    tcase_add_test(tc, test_outliers_and_signs);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad_input");
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(codec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
