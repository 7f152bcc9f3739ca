/* multi.h -- what the multi-device floor's files share (dispatch.c, parallel.c, collective.c,
 * plan.c, mpi.c, pipeline.c), and the root's teardown of its state. */
#ifndef KQCL_MULTI_H
#define KQCL_MULTI_H

#include "ops/ops.h" /* kq_kernel_choice */

#include <pthread.h>

/* ---- per-context state, ctx->multi (collective.c) ---------------------------------------------- */

/* One set of pinned staging buffers for a collective: per device, `slot_bytes` x `slots`,
 * created with CL_MEM_ALLOC_HOST_PTR and kept mapped. */
typedef struct kq_stage {
    int n_devices;
    size_t bytes; /* per device */
    cl_command_queue queue[KQ_MAX_DEVICES]; /* retained: where it was mapped, to unmap */
    cl_mem mem[KQ_MAX_DEVICES];
    unsigned char *host[KQ_MAX_DEVICES];
} kq_stage;

typedef struct kq_multi {
    /* Transfer queues of the collectives, apart from the compute queues so that device->host
     * and host->device copies overlap with each other and with compute. */
    cl_command_queue d2h[KQ_MAX_DEVICES], h2d[KQ_MAX_DEVICES];
    /* Staging sets not in use, reused by the next collective: [0] for the small ones (up to
     * KQ_SMALL_STAGE bytes), [1] the largest of the others -- a small collective on a
     * hundred-MiB set ran 25 us slower (two H200s, doc/perf.md run 12). */
    kq_stage *spare[2];
    /* Host->device copies a small collective left in flight out of a spare set (it returns
     * once they are queued: the devices' queues order them before later work); whoever takes
     * a spare set next waits for them first (kq_stage_take). */
    cl_event pending[KQ_MAX_DEVICES];
    pthread_mutex_t lock;
} kq_multi;

/* The state of ctx, created on first use; NULL (with the error recorded) on failure. */
kq_multi *kq_multi_get(kqcl_context *ctx);
/* Release ctx's state; for kqcl_context_destroy. */
void kq_multi_release(kqcl_context *ctx);

#define KQ_SMALL_STAGE (64u << 10) /* bytes a device: the small collectives' staging */

/* Take a staging set of at least `bytes` per device (the spare one if big enough, once the
 * copies still reading it are done), give it back when done. */
kqcl_status kq_stage_take(kqcl_context *ctx, kq_multi *m, size_t bytes, kq_stage **out);
void kq_stage_give(kq_multi *m, kq_stage *s);
/* Wait for (and release) the copies a small collective left reading the spare staging set. */
void kq_settle_pending(kq_multi *m);
void kq_stage_free(kq_stage *s);

/* Microseconds of a monotonic clock (host-side timing: the planner's link probe, the small
 * collectives' polling). */
double kq_now_us(void);

/* ---- compute --------------------------------------------------------------------------------- */

/* kqcl_matmul when some operand is split, replicated or on another device (parallel.c). The
 * operands are checked for type and shape already. */
kqcl_status kq_matmul_multi(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x, kqcl_tensor *y,
                            kq_kernel_choice choice);

/* ---- collectives (collective.c) -------------------------------------------------------------- */

enum { KQ_COLL_SUM = KQCL_REDUCE_SUM, KQ_COLL_MAX = KQCL_REDUCE_MAX, KQ_COLL_MIN = KQCL_REDUCE_MIN,
       KQ_COLL_BCAST = 100,
       KQ_COLL_LOCAL = 0x1000 /* or-ed in: among this process's devices only, never across ranks */ };

/* All-reduce (f32, op) or broadcast (any bytes, from local device `root`, or -1: rank
 * `root_rank`'s) over per-device buffers of `bytes` each; buffers[d] NULL for devices that take
 * no part. Queued after the work on the devices' queues, which wait for it in turn. `async`:
 * run on a thread of its own; else done when this returns. Either way finish with
 * kqcl_request_wait(*req). */
kqcl_status kq_collective(kqcl_context *ctx, cl_mem *buffers, size_t bytes, int op, int root, int root_rank,
                          bool async, kqcl_request **req);
/* For kqcl_context_destroy: wait for every collective of ctx still in flight and release what
 * it holds of the context; the requests stay valid for kqcl_request_wait, which then only
 * reports their status and frees them. */
void kq_requests_finish_all(kqcl_context *ctx);

/* ---- MPI (mpi.c) ----------------------------------------------------------------------------- */

/* Whether the host stage spans ranks (kqcl_mpi_init was called and size > 1). */
bool kq_mpi_active(void);
/* In-place all-reduce of n floats (op a KQ_COLL_*) or broadcast of bytes from rank `root`
 * across ranks; KQCL_OK without MPI. */
kqcl_status kq_mpi_allreduce_f32(float *data, size_t n, int op);
kqcl_status kq_mpi_bcast(void *data, size_t bytes, int root);

#endif
