/*
 * test_mpi.c -- collectives across MPI ranks (tests/run-mpi.sh: mpirun -np 2 on this machine,
 * each rank with its PoCL devices). Every rank runs the same collectives whatever it finds, so
 * that a failed check never leaves the other rank waiting; the exit status says.
 */
#include "kqcl.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                                              \
    do {                                                                                              \
        if (!(cond)) {                                                                                \
            fprintf(stderr, "rank %d: %s:%d: ", kqcl_mpi_rank(), __FILE__, __LINE__);                 \
            fprintf(stderr, __VA_ARGS__);                                                             \
            fprintf(stderr, "\n");                                                                    \
            failures++;                                                                               \
        }                                                                                             \
    } while (0)

/* The contribution of global device g to element i. */
static float value(int g, size_t i) { return (float)((i * 2654435761u + (size_t)g * 40503u) % 1000003u) / 1000003.0f - 0.5f; }

static bool same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void check_allreduce(kqcl_context *ctx, size_t count, kqcl_reduce_op op)
{
    int local = kqcl_device_count(ctx), ranks = kqcl_mpi_size();
    kqcl_tensor *t = NULL;
    kqcl_status st = kqcl_tensor_create_split(ctx, KQCL_TYPE_F32, 1, (int64_t)count, KQCL_SPLIT_REPLICATE, &t);
    CHECK(st == KQCL_OK, "create: %s", kqcl_last_error(ctx));
    float *buf = malloc(count * sizeof(float)), *want = calloc(count, sizeof(float));
    for (int d = 0; d < local && st == KQCL_OK; d++) {
        for (size_t i = 0; i < count; i++)
            buf[i] = value(kqcl_global_device(ctx, d), i);
        kqcl_tensor_write_part(t, d, buf, count * sizeof(float));
    }
    /* each rank combines its devices in order, then the ranks combine their results; with two
     * ranks that last step is one commutative operation, so the bits are known */
    for (size_t i = 0; i < count; i++) {
        float total = 0;
        for (int r = 0; r < ranks; r++) {
            float part = value(r * local, i);
            for (int d = 1; d < local; d++) {
                float v = value(r * local + d, i);
                part = op == KQCL_REDUCE_SUM ? part + v : op == KQCL_REDUCE_MAX ? fmaxf(part, v) : fminf(part, v);
            }
            total = r == 0 ? part : op == KQCL_REDUCE_SUM ? total + part : op == KQCL_REDUCE_MAX ? fmaxf(total, part)
                                                                                                : fminf(total, part);
        }
        want[i] = total;
    }
    st = kqcl_allreduce(ctx, t, op);
    CHECK(st == KQCL_OK, "allreduce: %s", kqcl_last_error(ctx));
    for (int d = 0; d < local && st == KQCL_OK; d++) {
        kqcl_tensor_read_part(t, d, buf, count * sizeof(float));
        size_t bad = 0;
        for (size_t i = 0; i < count; i++)
            bad += !same_bits(buf[i], want[i]);
        CHECK(bad == 0, "allreduce op %d of %zu: %zu elements differ on device %d", (int)op, count, bad, d);
    }
    free(buf), free(want);
    kqcl_tensor_destroy(t);
}

static void check_broadcast(kqcl_context *ctx, int root)
{
    const size_t count = 70001;
    int local = kqcl_device_count(ctx);
    kqcl_tensor *t = NULL;
    kqcl_status st = kqcl_tensor_create_split(ctx, KQCL_TYPE_F32, 1, (int64_t)count, KQCL_SPLIT_REPLICATE, &t);
    float *buf = malloc(count * sizeof(float));
    for (int d = 0; d < local && st == KQCL_OK; d++) {
        for (size_t i = 0; i < count; i++)
            buf[i] = value(kqcl_global_device(ctx, d), i);
        kqcl_tensor_write_part(t, d, buf, count * sizeof(float));
    }
    st = kqcl_broadcast(ctx, t, root);
    CHECK(st == KQCL_OK, "broadcast from %d: %s", root, kqcl_last_error(ctx));
    for (int d = 0; d < local && st == KQCL_OK; d++) {
        kqcl_tensor_read_part(t, d, buf, count * sizeof(float));
        size_t bad = 0;
        for (size_t i = 0; i < count; i++)
            bad += !same_bits(buf[i], value(root, i));
        CHECK(bad == 0, "broadcast from %d: %zu elements differ on device %d", root, bad, d);
    }
    free(buf);
    kqcl_tensor_destroy(t);
}

int main(int argc, char **argv)
{
    kqcl_status st = kqcl_mpi_init(&argc, &argv);
    if (st != KQCL_OK) {
        fprintf(stderr, "kqcl_mpi_init: %s\n", kqcl_last_error(NULL));
        return 1;
    }
    kqcl_context *ctx = NULL;
    st = kqcl_context_create(NULL, &ctx);
    if (st != KQCL_OK) {
        fprintf(stderr, "rank %d: no context: %s\n", kqcl_mpi_rank(), kqcl_last_error(NULL));
        return 1; /* mpirun reports it; the other rank fails the same way on this machine */
    }
    int local = kqcl_device_count(ctx), ranks = kqcl_mpi_size();
    CHECK(ranks == 2, "want 2 ranks, have %d", ranks);
    CHECK(kqcl_global_device_count(ctx) == ranks * local, "global device count %d", kqcl_global_device_count(ctx));
    CHECK(kqcl_global_device(ctx, local - 1) == kqcl_mpi_rank() * local + local - 1, "global index");
    CHECK(kqcl_context_set_param(ctx, -1, KQCL_PARAM_COLL_CHUNK_KIB, 64) == KQCL_OK, "chunk parameter");
    check_allreduce(ctx, 16384 / 4, KQCL_REDUCE_SUM);
    check_allreduce(ctx, 1000003, KQCL_REDUCE_SUM);
    check_allreduce(ctx, 100003, KQCL_REDUCE_MAX);
    check_allreduce(ctx, 100003, KQCL_REDUCE_MIN);
    for (int root = 0; root < ranks * local; root++)
        check_broadcast(ctx, root);
    kqcl_context_destroy(ctx);
    printf("rank %d of %d, %d device(s): %s\n", kqcl_mpi_rank(), ranks, local, failures ? "FAILED" : "ok");
    kqcl_mpi_finalize();
    return failures ? 1 : 0;
}
