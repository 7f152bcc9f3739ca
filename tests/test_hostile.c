/*
 * test_hostile.c -- hostile input and misuse from outside (issue 12): the planner given a
 * device name without a NUL or sizes that wrap, and the kqcl tool given files that lie about
 * their data, pad to 2 GiB, are FIFOs, carry terminal escapes in their names, or hold tensors
 * `kqcl run` cannot compute. The tool is run as a user runs it ($KQCL_BUILDDIR/tools/kqcl).
 */
#define _XOPEN_SOURCE 700

#include "kqcl.h"
#include "base/sha256.h"
#include "toolutil.h"

#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ---- the planner (item 9) ----------------------------------------------------------------- */

/* A device name that fills its 64 bytes without a NUL was read past its end (a heap over-read
 * under ASan); the description must show exactly those 64 bytes. */
START_TEST(plan_device_name_without_nul)
{
    kqcl_plan_device *dev = malloc(sizeof *dev); /* on the heap: ASan sees a read past it */
    ck_assert_ptr_nonnull(dev);
    memset(dev->name, 'A', sizeof dev->name);
    dev->memory_bytes = 0x4141414141414141ull; /* bytes that would extend the name */
    dev->speed_gbps = 100, dev->link_gbps = 10, dev->link_latency_us = 10;
    const uint64_t bytes[] = {1000};
    kqcl_plan_layer layer = {"blk.0", 1, NULL, bytes};
    kqcl_plan_request req = {1, dev, 1, &layer, KQCL_PLAN_LAYERS, 4096};
    kqcl_plan *plan = NULL;
    ck_assert_int_eq(kqcl_plan_create(&req, &plan), KQCL_OK);
    char text[4096], want[80];
    ck_assert_int_eq(kqcl_plan_describe(plan, text, sizeof text, NULL), KQCL_OK);
    snprintf(want, sizeof want, "(%.64s)", dev->name);
    ck_assert_has(text, want);
    kqcl_plan_destroy(plan);
    free(dev);
}
END_TEST

/* Tensor sizes that sum past 2^64 wrapped and an impossible plan "fit". */
START_TEST(plan_sizes_that_wrap)
{
    kqcl_plan_device devs[2] = {{"a", UINT64_MAX, 100, 10, 10}, {"b", UINT64_MAX, 100, 10, 10}};
    const uint64_t halves[] = {(uint64_t)1 << 63, (uint64_t)1 << 63}, plus_one[] = {UINT64_MAX, 1};
    kqcl_plan_layer layers[2] = {{"blk.0", 2, NULL, halves}, {"blk.1", 2, NULL, plus_one}};
    for (int mode = KQCL_PLAN_AUTO; mode <= KQCL_PLAN_TENSOR; mode++) {
        for (int l = 0; l < 2; l++) {
            kqcl_plan_request req = {2, devs, 1, &layers[l], (kqcl_plan_mode)mode, 4096};
            kqcl_plan *plan = (kqcl_plan *)1;
            kqcl_status st = kqcl_plan_create(&req, &plan);
            ck_assert_msg(st == KQCL_ERR_INVALID_ARG, "mode %d layer %d: %s (plan %p)", mode, l,
                          kqcl_status_string(st), (void *)plan);
            ck_assert_ptr_null(plan);
            ck_assert_has(kqcl_last_error(NULL), "2^64");
        }
        /* the sum over layers wraps too, each layer alone does not */
        const uint64_t big[] = {(uint64_t)3 << 62};
        kqcl_plan_layer two[2] = {{"blk.0", 1, NULL, big}, {"blk.1", 1, NULL, big}};
        kqcl_plan_request req = {2, devs, 2, two, (kqcl_plan_mode)mode, 4096};
        kqcl_plan *plan = (kqcl_plan *)1;
        ck_assert_int_eq(kqcl_plan_create(&req, &plan), KQCL_ERR_INVALID_ARG);
        ck_assert_ptr_null(plan);
    }
    /* a total just below 2^64 is taken; its shares, computed in double, round to 2^64, which
     * must not be converted to uint64_t as it is (UBSan; found by fuzz_plan) */
    const uint64_t most[] = {UINT64_MAX - 1};
    kqcl_plan_layer layer = {"blk.0", 1, NULL, most};
    kqcl_plan_device one[2] = {{"a", UINT64_MAX, 100, 10, 10}, {"b", 0, 1e-300, 10, 10}};
    kqcl_plan_request req = {2, one, 1, &layer, KQCL_PLAN_TENSOR, 4096};
    kqcl_plan *plan = NULL;
    ck_assert_int_eq(kqcl_plan_create(&req, &plan), KQCL_OK);
    ck_assert_uint_eq(kqcl_plan_device_bytes(plan, 0), UINT64_MAX);
    kqcl_plan_destroy(plan);
}
END_TEST

/* ---- GGUF files for the tool ---------------------------------------------------------------- */

/* A model: "w.f32" (256 x 4, f32) then "w.q8_0" (64 x 32, ggml q8_0, 2176 bytes), written by
 * kqcl. Returns its path. */
static const char *write_model(const char *name)
{
    static float f32[4 * 256];
    static uint8_t q80[64 * 34];
    for (int i = 0; i < 4 * 256; i++)
        f32[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    for (size_t i = 0; i < sizeof q80; i++)
        q80[i] = (uint8_t)(i % 34 < 2 ? 0 : i * 13); /* zero scales: finite values */
    kqcl_gguf_writer *w;
    const int64_t ne_f32[] = {256, 4}, ne_q80[] = {64, 32};
    ck_assert_int_eq(kqcl_gguf_writer_create(&w), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "w.f32", KQCL_TYPE_F32, 2, ne_f32, f32, sizeof f32), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "w.q8_0", 8, 2, ne_q80, q80, sizeof q80), KQCL_OK);
    const char *path = tool_tmp_path(name);
    ck_assert_int_eq(kqcl_gguf_writer_write(w, path), KQCL_OK);
    kqcl_gguf_writer_destroy(w);
    return path;
}

/* Item 7: `kqcl quantize` of a file whose q8_0 tensor is cut to half its size exited 0 and
 * wrote process memory into its output. The reader bounds every ggml type: refused, no output. */
START_TEST(quantize_refuses_a_cut_tensor)
{
    char *in = strdup(write_model("cut.gguf"));
    kqcl_gguf *g;
    ck_assert_int_eq(kqcl_gguf_open(in, &g), KQCL_OK);
    kqcl_gguf_tensor t;
    ck_assert_int_eq(kqcl_gguf_tensor_info(g, 1, &t), KQCL_OK);
    ck_assert_str_eq(t.name, "w.q8_0");
    off_t cut = (off_t)(kqcl_gguf_data_offset(g) + t.offset + 64 * 34 / 2);
    kqcl_gguf_close(g);
    ck_assert_int_eq(truncate(in, cut), 0);
    const char *out = tool_tmp_path("cut.q4_K.gguf");
    unlink(out);
    int rc = tool_run("", "quantize %s %s q4_K", in, out);
    const char *err = tool_err;
    ck_assert_msg(rc == 1, "kqcl quantize of a cut file: exit %d (%s)", rc, err);
    ck_assert_has(err, "w.q8_0");
    ck_assert_has(err, "runs past the end");
    ck_assert_msg(!exists(out), "an output was written");
    /* the whole file still quantizes, the q8_0 tensor copied as it is */
    char *whole = strdup(write_model("whole.gguf"));
    ck_assert_int_eq(tool_run("", "quantize %s %s q4_K", whole, out), 0);
    ck_assert_int_eq(kqcl_gguf_open(out, &g), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_tensor_info(g, kqcl_gguf_find_tensor(g, "w.q8_0"), &t), KQCL_OK);
    ck_assert_uint_eq(t.nbytes, 64 * 34);
    kqcl_gguf_close(g);
    free(whole);
    free(in);
}
END_TEST

/* Item 8: general.alignment = 2^31 in a 64-byte file with no tensors was accepted and
 * `kqcl quantize` wrote 2 GiB. (The shell's file-size limit keeps a regression from filling the
 * disk.) */
START_TEST(quantize_refuses_an_absurd_alignment)
{
    uint8_t file[64] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, /* v3 */ 0, 0, 0, 0, 0, 0, 0, 0, /* 0 tensors */
                        1, 0, 0, 0, 0, 0, 0, 0, /* 1 key */ 17, 0, 0, 0, 0, 0, 0, 0};
    memcpy(file + 32, "general.alignment", 17);
    file[49] = 4; /* u32 */
    file[56] = 0x80; /* at 53..56: 0x80000000 little-endian */
    file[53] = 0, file[54] = 0, file[55] = 0;
    const char *in = tool_tmp_path("align.gguf");
    FILE *f = fopen(in, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(file, 1, sizeof file, f), sizeof file);
    fclose(f);
    kqcl_gguf *g = (kqcl_gguf *)1;
    ck_assert_int_eq(kqcl_gguf_open(in, &g), KQCL_ERR_FORMAT);
    const char *out = tool_tmp_path("align.q4_K.gguf");
    unlink(out);
    int rc = tool_run("ulimit -f 65536;", "quantize %s %s q4_K", in, out);
    ck_assert_msg(rc == 1, "kqcl quantize: exit %d (%s)", rc, tool_err);
    ck_assert_has(tool_err, "alignment");
    ck_assert_msg(!exists(out), "an output was written");
}
END_TEST

/* Item 3: `kqcl gguf FIFO` hung (a blocking open). It must fail at once. */
START_TEST(gguf_refuses_a_fifo)
{
    const char *fifo = tool_tmp_path("model.fifo");
    unlink(fifo);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    int rc = tool_run("timeout 10", "gguf %s", fifo);
    ck_assert_msg(rc == 1, "kqcl gguf FIFO: exit %d (124: it hung)", rc);
    ck_assert_has(tool_err, "not a regular file");
    unlink(fifo);
}
END_TEST

/* Item 10: text mode printed keys and tensor names raw, so a file could send terminal escape
 * sequences; they are escaped as string values already were. */
START_TEST(gguf_text_escapes_names)
{
    kqcl_gguf_writer *w;
    float x[8] = {0};
    const int64_t ne[] = {8};
    ck_assert_int_eq(kqcl_gguf_writer_create(&w), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_set_string(w, "evil\x1b[2J\x1b]0;title\x07key", "value\x1b[31m"), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_set_u32(w, "c1\xc2\x9bkey", 1), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "t\x1b[1m\rname", KQCL_TYPE_F32, 1, ne, x, sizeof x), KQCL_OK);
    const char *path = tool_tmp_path("escapes.gguf");
    ck_assert_int_eq(kqcl_gguf_writer_write(w, path), KQCL_OK);
    kqcl_gguf_writer_destroy(w);
    for (int json = 0; json < 2; json++) {
        ck_assert_int_eq(tool_run("", "gguf %s%s", path, json ? " --json" : ""), 0);
        size_t n = tool_out_length;
        const char *out = tool_out;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)out[i];
            ck_assert_msg(c >= 0x20 || c == '\n', "%s: control byte 0x%02x at %zu", json ? "json" : "text", c, i);
            ck_assert_msg(!(c == 0xC2 && i + 1 < n && (unsigned char)out[i + 1] < 0xA0),
                          "%s: a C1 control at %zu", json ? "json" : "text", i);
        }
        ck_assert_has(out, "evil\\u001b[2J\\u001b]0;title\\u0007key");
        ck_assert_has(out, "t\\u001b[1m\\u000dname");
        ck_assert_has(out, "c1\\u009bkey");
    }
}
END_TEST

/* ---- kqcl run (item 12) ---------------------------------------------------------------------- */

static bool have_device(void)
{
    kqcl_context *ctx = NULL;
    if (kqcl_context_create(NULL, &ctx) != KQCL_OK) {
        fprintf(stderr, "test_hostile: kqcl run tests skipped, no device (%s)\n", kqcl_last_error(NULL));
        return false;
    }
    kqcl_context_destroy(ctx);
    return true;
}

/* A tensor of a type kqcl cannot compute (q8_1 -- q8_0 and q5_0 were ones until kqcl learnt
 * them -- or an unknown id) was skipped without a word ("8 weights" for 9): every skipped tensor
 * is named with the reason. */
START_TEST(run_names_every_skipped_tensor)
{
    if (!have_device())
        return;
    static float f32[4 * 256], norm[256];
    static uint8_t q81[64 * 36], future[100];
    kqcl_gguf_writer *w;
    const int64_t ne_f32[] = {256, 4}, ne_q81[] = {64, 32}, ne_norm[] = {256}, ne_future[] = {10, 10};
    ck_assert_int_eq(kqcl_gguf_writer_create(&w), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "blk.0.w", KQCL_TYPE_F32, 2, ne_f32, f32, sizeof f32), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "blk.0.q8_1", 9, 2, ne_q81, q81, sizeof q81), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "blk.0.norm", KQCL_TYPE_F32, 1, ne_norm, norm, sizeof norm),
                     KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "blk.0.future", 12345, 2, ne_future, future, sizeof future),
                     KQCL_OK);
    const char *path = tool_tmp_path("skips.gguf");
    ck_assert_int_eq(kqcl_gguf_writer_write(w, path), KQCL_OK);
    kqcl_gguf_writer_destroy(w);
    int rc = tool_run("", "run %s", path);
    const char *err = tool_err;
    ck_assert_msg(rc == 0, "kqcl run: exit %d: %s", rc, err);
    ck_assert_has(tool_out, "1 weights");
    ck_assert_has(err, "skipping 'blk.0.q8_1' (q8_1, 2-D): a type kqcl does not compute with");
    ck_assert_has(err, "skipping 'blk.0.future' (type12345, 2-D): a type id ggml does not define");
    ck_assert_has(err, "skipping 'blk.0.norm' (f32, 1-D): not a 2-D matrix");
    ck_assert_has(err, "3 of 4 tensors skipped");
}
END_TEST

/* The "total" row showed a max error of 0 (or another type's) when a type's error was NaN. */
START_TEST(run_total_shows_a_nan_error)
{
    if (!have_device())
        return;
    static float bad[8 * 256];
    static uint16_t good[8 * 256];
    for (int i = 0; i < 8 * 256; i++) {
        bad[i] = i % 256 == 3 ? NAN : 0.25f; /* a NaN in every row */
        good[i] = 0x3400;                    /* f16 0.25 */
    }
    kqcl_gguf_writer *w;
    const int64_t ne[] = {256, 8};
    ck_assert_int_eq(kqcl_gguf_writer_create(&w), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "a", KQCL_TYPE_F32, 2, ne, bad, sizeof bad), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "b", KQCL_TYPE_F16, 2, ne, good, sizeof good), KQCL_OK);
    const char *path = tool_tmp_path("nan.gguf");
    ck_assert_int_eq(kqcl_gguf_writer_write(w, path), KQCL_OK);
    kqcl_gguf_writer_destroy(w);
    int rc = tool_run("", "run %s", path);
    ck_assert_msg(rc == 1, "kqcl run with NaN weights: exit %d", rc);
    const char *out = tool_out;
    const char *total = strstr(out, "\ntotal");
    ck_assert_msg(total != NULL, "no total row in: %s", out);
    char row[256];
    snprintf(row, sizeof row, "%.*s", (int)strcspn(total + 1, "\n"), total + 1);
    ck_assert_msg(strstr(row, "nan") != NULL, "the total row hides the NaN error: '%s'", row);
    ck_assert_has(row, "FAILED");
}
END_TEST

/* ---- kqcl bench and kqcl plan (issue 23) ------------------------------------------------------ */

/* Item 9: the number of weight copies --rotate asks for, (MiB << 20) / bytes, was cast to int:
 * 1 TiB of 6-byte f16 rows wrapped negative, passed the cap of 256 and failed the calloc
 * ("out of memory"). It is capped in size_t. */
START_TEST(bench_rotate_copies_capped)
{
    if (!have_device())
        return;
    int rc = tool_run("", "bench --type f16 --m 1 --k 3 --n 1 -r 1 --no-unfused --rotate 1048576 -o json");
    ck_assert_msg(rc == 0, "kqcl bench --rotate 1048576: exit %d (%s)", rc, tool_err);
    ck_assert_has(tool_out, "\"us_rotating\": ");
    ck_assert_msg(strstr(tool_out, "\"us_rotating\": null") == NULL, "no rotating time: %s", tool_out);
}
END_TEST

/* An f32 tensor of `values` zeros (at most 1024) named `name`, added to w. */
static void add_zeros(kqcl_gguf_writer *w, const char *name, int64_t values)
{
    static const float zeros[1024];
    const int64_t ne[] = {values};
    ck_assert_int_le(values, 1024);
    kqcl_status st = kqcl_gguf_writer_add_tensor(w, name, KQCL_TYPE_F32, 1, ne, zeros, (uint64_t)values * 4);
    ck_assert_msg(st == KQCL_OK, "%s: %s", name, kqcl_last_error(NULL));
}

/* w written to tool_tmp_dir/name and destroyed: the path. */
static const char *write_and_destroy(kqcl_gguf_writer *w, const char *name)
{
    const char *path = tool_tmp_path(name);
    ck_assert_int_eq(kqcl_gguf_writer_write(w, path), KQCL_OK);
    kqcl_gguf_writer_destroy(w);
    return path;
}

/* The bytes `kqcl plan FILE --json` places on one assumed device: every tensor's, when none is
 * left out. */
static unsigned long long planned_bytes(const char *path)
{
    static const char field[] = "\"device_bytes\": [";
    int rc = tool_run("", "plan %s --assume 1x1000:100:10:10 --json", path);
    ck_assert_msg(rc == 0, "kqcl plan: exit %d (%s)", rc, tool_err);
    const char *at = strstr(tool_out, field);
    ck_assert_msg(at != NULL, "no device bytes in: %s", tool_out);
    return strtoull(at + strlen(field), NULL, 10);
}

/* Item 11: token_embd.weight of {2^62, 0} (empty, so the reader takes it) made the activation
 * bytes per step, hidden * 4 * tokens, overflow int64_t (undefined; the plan said 0 bytes). */
START_TEST(plan_refuses_a_hidden_size_that_overflows)
{
    kqcl_gguf_writer *w;
    const int64_t ne[] = {(int64_t)1 << 62, 0};
    ck_assert_int_eq(kqcl_gguf_writer_create(&w), KQCL_OK);
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "token_embd.weight", KQCL_TYPE_F32, 2, ne, NULL, 0), KQCL_OK);
    add_zeros(w, "blk.0.attn_q.weight", 64);
    const char *path = write_and_destroy(w, "wide.gguf");
    int rc = tool_run("", "plan %s --assume 1x1:1:1:1", path);
    ck_assert_msg(rc == 1, "kqcl plan of hidden size 2^62: exit %d (%s)", rc, tool_err);
    ck_assert_has(tool_err, "token_embd.weight");
    ck_assert_has(tool_err, "overflow");
    /* a hidden size that fits, times tokens that do not */
    ck_assert_int_eq(kqcl_gguf_writer_create(&w), KQCL_OK);
    const int64_t ne_fits[] = {(int64_t)1 << 42, 0};
    ck_assert_int_eq(kqcl_gguf_writer_add_tensor(w, "token_embd.weight", KQCL_TYPE_F32, 2, ne_fits, NULL, 0),
                     KQCL_OK);
    add_zeros(w, "blk.0.attn_q.weight", 64);
    path = write_and_destroy(w, "wide2.gguf");
    ck_assert_int_eq(tool_run("", "plan %s --assume 1x1:1:1:1", path), 0);
    rc = tool_run("", "plan %s --assume 1x1:1:1:1 --tokens 1048576", path);
    ck_assert_msg(rc == 1, "kqcl plan of 2^42 x 2^20 tokens: exit %d (%s)", rc, tool_err);
    ck_assert_has(tool_err, "overflow");
}
END_TEST

/* Item 12: "blk.-3.w" was dropped (atoi gave -3, neither before, in nor after the blocks) and
 * "blk.x.w" went into block 0. A name that is not "blk.N." with N a whole number is counted
 * as plan counts any other name that is not a block's: with the tensors before the blocks. */
START_TEST(plan_counts_malformed_block_numbers)
{
    static const char *const odd[] = {"blk.-3.w", "blk.x.w", "blk.+1.w", "blk.99999999999.w", "blk.4"};
    kqcl_gguf_writer *w;
    ck_assert_int_eq(kqcl_gguf_writer_create(&w), KQCL_OK);
    add_zeros(w, "token_embd.weight", 16); /* 64 bytes */
    add_zeros(w, "blk.0.w", 32);           /* 128 */
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
        add_zeros(w, odd[i], 64); /* 256 each */
    add_zeros(w, "blk.1.w", 128);   /* 512 */
    add_zeros(w, "output.weight", 8); /* 32 */
    const char *path = write_and_destroy(w, "odd.gguf");
    ck_assert_uint_eq(planned_bytes(path), 64 + 128 + 5 * 256 + 512 + 32);
    ck_assert_has(tool_out, "{\"name\": \"input\", \"device\": 0}, {\"name\": \"blk.0\", \"device\": 0}, "
                            "{\"name\": \"blk.1\", \"device\": 0}, {\"name\": \"output\"");
    ck_assert_int_eq(tool_run("", "plan %s --assume 1x1000:100:10:10", path), 0);
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
        ck_assert_has(tool_out, odd[i]);
}
END_TEST

/* Item 13: plan kept the first 16383 tensors and 1024 layers: a file of 20000 tensors was
 * planned with 82% of its bytes, one of 2000 layers was "no tensors". Every one counts. */
START_TEST(plan_counts_every_tensor)
{
    kqcl_gguf_writer *w;
    char name[64];
    ck_assert_int_eq(kqcl_gguf_writer_create(&w), KQCL_OK);
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "blk.%d.t%d", i / 20, i % 20);
        add_zeros(w, name, 8);
    }
    const char *path = write_and_destroy(w, "many_tensors.gguf");
    ck_assert_uint_eq(planned_bytes(path), 20000ull * 32);
    ck_assert_int_eq(kqcl_gguf_writer_create(&w), KQCL_OK);
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "blk.%d.w", i);
        add_zeros(w, name, 8);
    }
    path = write_and_destroy(w, "many_layers.gguf");
    ck_assert_uint_eq(planned_bytes(path), 2000ull * 32);
    ck_assert_has(tool_out, "{\"name\": \"blk.1999\", \"device\": 0}");
}
END_TEST

/* ---- the kernel cache's hash (item 2): FIPS 180-4 test vectors ---------------------------------- */

static void hex(const uint8_t *d, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

START_TEST(sha256_fips_vectors)
{
    static const struct {
        const char *message, *digest;
    } vectors[] = {
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", /* 448 bits */
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    };
    uint8_t d[KQ_SHA256_BYTES];
    char text[65];
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        kq_sha256(vectors[i].message, strlen(vectors[i].message), d);
        hex(d, text);
        ck_assert_str_eq(text, vectors[i].digest);
        /* fed a byte at a time: the same */
        kq_sha256_ctx s;
        kq_sha256_init(&s);
        for (size_t k = 0; k < strlen(vectors[i].message); k++)
            kq_sha256_update(&s, vectors[i].message + k, 1);
        kq_sha256_final(&s, d);
        hex(d, text);
        ck_assert_str_eq(text, vectors[i].digest);
    }
    /* a million 'a' (FIPS 180-4 example), in pieces of 1000 that straddle blocks */
    char piece[1000];
    memset(piece, 'a', sizeof piece);
    kq_sha256_ctx s;
    kq_sha256_init(&s);
    for (int k = 0; k < 1000; k++)
        kq_sha256_update(&s, piece, sizeof piece);
    kq_sha256_final(&s, d);
    hex(d, text);
    ck_assert_str_eq(text, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* 55, 56 and 64 bytes: the padding's edge cases (against the one-shot digest of the same) */
    for (size_t n = 55; n <= 64; n++) {
        char msg[64];
        memset(msg, 'x', n);
        kq_sha256_init(&s);
        kq_sha256_update(&s, msg, n / 2);
        kq_sha256_update(&s, msg + n / 2, n - n / 2);
        uint8_t split[KQ_SHA256_BYTES];
        kq_sha256_final(&s, split);
        kq_sha256(msg, n, d);
        ck_assert(memcmp(split, d, sizeof d) == 0);
    }
}
END_TEST

static Suite *hostile_suite(void)
{
    Suite *s = suite_create("hostile");
    TCase *hash = tcase_create("sha256");
    tcase_add_test(hash, sha256_fips_vectors);
    suite_add_tcase(s, hash);
    TCase *plan = tcase_create("planner");
    tcase_add_test(plan, plan_device_name_without_nul);
    tcase_add_test(plan, plan_sizes_that_wrap);
    suite_add_tcase(s, plan);
    TCase *tool = tcase_create("kqcl gguf and quantize");
    tcase_set_timeout(tool, 60);
    tcase_add_test(tool, quantize_refuses_a_cut_tensor);
    tcase_add_test(tool, quantize_refuses_an_absurd_alignment);
    tcase_add_test(tool, gguf_refuses_a_fifo);
    tcase_add_test(tool, gguf_text_escapes_names);
    suite_add_tcase(s, tool);
    TCase *run = tcase_create("kqcl run");
    tcase_set_timeout(run, 600);
    tcase_add_test(run, run_names_every_skipped_tensor);
    tcase_add_test(run, run_total_shows_a_nan_error);
    suite_add_tcase(s, run);
    TCase *bench_plan = tcase_create("kqcl bench and plan");
    tcase_set_timeout(bench_plan, 300);
    tcase_add_test(bench_plan, bench_rotate_copies_capped);
    tcase_add_test(bench_plan, plan_refuses_a_hidden_size_that_overflows);
    tcase_add_test(bench_plan, plan_counts_malformed_block_numbers);
    tcase_add_test(bench_plan, plan_counts_every_tensor);
    suite_add_tcase(s, bench_plan);
    return s;
}

int main(void)
{
    if (!tool_make_tmp_dir("hostile")) {
        perror("mkdtemp");
        return 1;
    }
    SRunner *runner = srunner_create(hostile_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    tool_remove_tmp_dir();
    return failed == 0 ? 0 : 1;
}
