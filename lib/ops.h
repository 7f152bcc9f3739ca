/* ops.h -- kernel launch parameters and the internal compute paths (tests and the bench). */
#ifndef KQCL_OPS_H
#define KQCL_OPS_H

#include "tensor.h"

/* The largest n the matrix-vector kernel serves; larger n go to the tiled kernel. */
#define KQ_MATVEC_MAX_N 8

/* Which kernel a product takes: by n (the public calls), or forced (tests, the bench's
 * comparisons); KQ_KERNEL_TILED_PIECE is tiled because the whole call's n is large, for a piece
 * of a split call (the tensor cores allowed, as for the whole). The values are the ints the
 * tests passed before the names. */
typedef enum kq_kernel_choice {
    KQ_KERNEL_MATVEC = -1,
    KQ_KERNEL_BY_N = 0,
    KQ_KERNEL_TILED = 1,
    KQ_KERNEL_TILED_PIECE = 2
} kq_kernel_choice;

typedef struct kq_matvec_tune {
    int threads_per_row, row_groups, rows_per_thread;
} kq_matvec_tune;

typedef struct kq_matmul_tune {
    int tile_m, tile_n, wpt_m, wpt_n, kunits;
} kq_matmul_tune;

typedef struct kq_mma_tune {
    int warps, m_tiles, n_tiles;
    int k_splits; /* prefill: work-groups along k, summed after (a function of k and n only) */
} kq_mma_tune;

/* Launch parameters for a device (lib/tune.c): the tuning table's defaults for its family, vendor
 * and architecture, with the user's parameters (kqcl_context_set_param, or KQCL_MATVEC,
 * KQCL_MATVEC_Q8, KQCL_MATMUL, KQCL_MMA_TUNE, KQCL_MMA_PREFILL, KQCL_MMA_KSPLIT, KQCL_MMA_MIN_N
 * read at creation: params.c) laid over them; *from_user says some member of the set is the
 * user's (variant.c then refuses what does not fit instead of choosing smaller ones, naming
 * kq_param_origin). The prefill's tiles and k-splits depend on how many work-groups the m x n
 * output makes for the device's compute units, the k-splits never on m (so that a row split
 * keeps the bits of one device). kq_mma_min_n: the smallest n the tensor-core decode kernel
 * takes -- below it the FMA matvec is faster, its cost growing with n where the mma kernel's
 * barely does. */
kqcl_status kq_matvec_tune_for(kqcl_context *ctx, const kq_device *dev, kq_matvec_tune *t, bool *from_user);
kqcl_status kq_q8_tune_for(kqcl_context *ctx, const kq_device *dev, kq_matvec_tune *t, bool *from_user);
kqcl_status kq_matmul_tune_for(kqcl_context *ctx, const kq_device *dev, kqcl_type wtype, kq_matmul_tune *t,
                               bool *from_user);
kqcl_status kq_mma_tune_for(kqcl_context *ctx, const kq_device *dev, kq_mma_tune *t, bool *from_user);
kqcl_status kq_mma_prefill_tune_for(kqcl_context *ctx, const kq_device *dev, int64_t m, int64_t n, int64_t k,
                                    kq_mma_tune *t, bool *from_user);
kqcl_status kq_mma_min_n(kqcl_context *ctx, const kq_device *dev, int *min_n);
/* The name of the tuning-table entry of dev. */
const char *kq_tuning_name(const kq_device *dev);

/* matmul.c, one device: kqcl_matmul's operand checks (types, shapes, aliasing); and the launch
 * of `count` weights of one type and width sharing X, all single-device tensors or views of
 * parts on dev (X prepared once for the call's precision). */
kqcl_status kq_matmul_check(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x, const kqcl_tensor *y);
kqcl_status kq_matmul_launch_group(kqcl_context *ctx, kq_device *dev, int count, const kqcl_tensor *const *w,
                                   const kqcl_tensor *x, kqcl_tensor *const *y, kq_kernel_choice choice);
/* One weight: kq_matmul_launch_group with count 1 (parallel.c's pieces). */
kqcl_status kq_matmul_launch(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *w, const kqcl_tensor *x,
                             kqcl_tensor *y, kq_kernel_choice choice);

/* Y = X . W^T with the kernel `choice` (dispatch.c). */
kqcl_status kq_matmul_with(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x, kqcl_tensor *y,
                           kq_kernel_choice choice);

/* The unfused reference path: dequantize W to f32 on the device, then CLBlast SGEMM.
 * KQCL_ERR_UNSUPPORTED when built without CLBlast; X must be f32. */
kqcl_status kq_matmul_unfused(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x, kqcl_tensor *y);

/* Device-side dequantization/conversion of src into a float buffer (dst_type f32/f16/bf16). */
kqcl_status kq_convert_into(kqcl_context *ctx, const kqcl_tensor *src, cl_mem dst, kqcl_type dst_type);

/* Stream `bytes` of device memory through the read kernel `reps` times; the median
 * bandwidth in GB/s (1e9 bytes/s) from device events. */
kqcl_status kq_bench_stream_read(kqcl_context *ctx, int device, size_t bytes, int reps, double *gbps);

#endif
