/*
 * bench_multi.c -- collective timings for `kqcl bench --collectives`: all-reduce latency
 * (16 KiB) and all-reduce and broadcast bandwidth (1 .. 256 MiB) over the context's devices,
 * host-staged through pinned memory. Wall-clock medians after a warm-up, until the blocking call
 * returns (a small one leaves its writes queued, ahead of any later work) and, for 16 KiB, also
 * until kqcl_finish; bandwidth is the algorithm bandwidth, buffer bytes over time.
 */
#include "commands.h"
#include "kqcl.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Median microseconds of `reps` runs of an all-reduce (root < 0) or broadcast of `bytes`: until
 * the call returns (a small one may leave its host->device copies queued, ahead of any later
 * work), or with `done`, until kqcl_finish says they are done on every device. */
static kqcl_status time_collective(kqcl_context *ctx, size_t bytes, int root, int reps, bool done, double *us)
{
    kqcl_tensor *t = NULL;
    kqcl_status st = kqcl_tensor_create_split(ctx, KQCL_TYPE_F32, 1, (int64_t)(bytes / sizeof(float)),
                                              KQCL_SPLIT_REPLICATE, &t);
    double *times = calloc((size_t)reps, sizeof *times);
    float *zeros = calloc(1, bytes);
    if (st == KQCL_OK && (times == NULL || zeros == NULL))
        st = KQCL_ERR_OUT_OF_MEMORY;
    if (st == KQCL_OK)
        st = kqcl_tensor_write(t, zeros, bytes);
    for (int i = -1; i < reps && st == KQCL_OK; i++) { /* i = -1: warm-up, staging allocated */
        if ((st = kqcl_finish(ctx)) != KQCL_OK)
            break;
        double t0 = kq_tool_now_us();
        st = root < 0 ? kqcl_allreduce(ctx, t, KQCL_REDUCE_SUM) : kqcl_broadcast(ctx, t, root);
        if (st == KQCL_OK && done)
            st = kqcl_finish(ctx);
        if (i >= 0)
            times[i] = kq_tool_now_us() - t0;
    }
    if (st == KQCL_OK)
        *us = kq_tool_median(times, reps);
    free(times), free(zeros);
    kqcl_tensor_destroy(t);
    return st;
}

typedef struct coll_row {
    size_t bytes;
    double allreduce_us, broadcast_us;
} coll_row;

static void print_table(const kqcl_context *ctx, const coll_row *rows, int n, double done_us, bool json)
{
    int devices = kqcl_device_count(ctx);
    if (json) {
        printf("{\"devices\": %d, \"ranks\": %d, \"allreduce_16k_done_us\": %.2f, \"collectives\": [", devices,
               kqcl_mpi_size(), done_us);
        for (int i = 0; i < n; i++)
            printf("%s\n  {\"bytes\": %zu, \"allreduce_us\": %.2f, \"allreduce_gbps\": %.3f, \"broadcast_us\": %.2f, "
                   "\"broadcast_gbps\": %.3f}",
                   i ? "," : "", rows[i].bytes, rows[i].allreduce_us, rows[i].bytes / (rows[i].allreduce_us * 1e3),
                   rows[i].broadcast_us, rows[i].bytes / (rows[i].broadcast_us * 1e3));
        printf("\n]}\n");
        return;
    }
    printf("collectives over %d device(s), %d rank(s), host-staged (pinned, chunked)\n", devices, kqcl_mpi_size());
    for (int d = 0; d < devices; d++) {
        kqcl_device_info info;
        char safe[2][160];
        if (kqcl_device_get_info(ctx, d, &info) == KQCL_OK)
            printf("  %d: %s (%s)\n", d, kq_text_escaped(info.name, safe[0], sizeof safe[0]),
                   kq_text_escaped(info.platform, safe[1], sizeof safe[1]));
    }
    printf("%12s %14s %14s %14s %14s\n", "bytes", "allreduce us", "allreduce GB/s", "broadcast us", "broadcast GB/s");
    for (int i = 0; i < n; i++)
        printf("%12zu %14.1f %14.3f %14.1f %14.3f\n", rows[i].bytes, rows[i].allreduce_us,
               rows[i].bytes / (rows[i].allreduce_us * 1e3), rows[i].broadcast_us,
               rows[i].bytes / (rows[i].broadcast_us * 1e3));
    printf("latency: all-reduce of 16 KiB returns in %.1f us, done on every device (with kqcl_finish) in %.1f us\n",
           rows[0].allreduce_us, done_us);
}

int kq_bench_collectives(kqcl_context *ctx, bool json)
{
    static const size_t sizes[] = {16 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20};
    enum { N = sizeof sizes / sizeof sizes[0] };
    coll_row rows[N];
    int n = 0;
    for (int i = 0; i < N; i++) {
        int reps = sizes[i] <= (1 << 20) ? 50 : sizes[i] <= (16 << 20) ? 9 : 3;
        rows[n] = (coll_row){.bytes = sizes[i]};
        kqcl_status st = time_collective(ctx, sizes[i], -1, reps, false, &rows[n].allreduce_us);
        if (st == KQCL_OK)
            st = time_collective(ctx, sizes[i], 0, reps, false, &rows[n].broadcast_us);
        if (st != KQCL_OK) {
            fprintf(stderr, "kqcl bench --collectives: %zu bytes: %s: %s\n", sizes[i], kqcl_status_string(st),
                    kqcl_last_error(ctx));
            if (st != KQCL_ERR_OUT_OF_MEMORY || n == 0)
                return 1;
            break; /* the largest sizes may not fit: report what did */
        }
        n++;
    }
    double done_us = 0.0;
    kqcl_status st = time_collective(ctx, sizes[0], -1, 50, true, &done_us);
    if (st != KQCL_OK) {
        fprintf(stderr, "kqcl bench --collectives: %s: %s\n", kqcl_status_string(st), kqcl_last_error(ctx));
        return 1;
    }
    print_table(ctx, rows, n, done_us, json);
    return 0;
}
