/* ops.h -- kernel launch parameters and the internal compute paths (tests and the bench). */
#ifndef KQCL_OPS_H
#define KQCL_OPS_H

#include "device/tensor.h"
#include "kernels/family.h" /* KQ_MATVEC_MAX_N */

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

/* KQCL_OK for a kqcl_glu_op, else KQCL_ERR_INVALID_ARG with a message naming `call`. */
kqcl_status kq_check_glu_op(kqcl_context *ctx, kqcl_glu_op op, const char *call);
/* kqcl_glu's launch on checked operands (gate, up and y f32 of one shape on one device). */
kqcl_status kq_glu_launch(kqcl_context *ctx, kqcl_glu_op op, const kqcl_tensor *gate, const kqcl_tensor *up,
                          kqcl_tensor *y);
/* y = act(X . w_gate^T) * (X . w_up^T) on one device, operands checked (kqcl_matmul_glu). */
kqcl_status kq_matmul_glu_launch(kqcl_context *ctx, kq_device *dev, kqcl_glu_op op, const kqcl_tensor *w_gate,
                                 const kqcl_tensor *w_up, const kqcl_tensor *x, kqcl_tensor *y);

/* layer.c: the operands of a norm before products (kqcl_norm_prologue) checked against x, and
 * that norm of x into xn (f32, x's shape and device: kqcl_rms_norm's or kqcl_add_rms_norm's
 * kernel, which also writes sum). */
kqcl_status kq_check_norm_prologue(kqcl_context *ctx, const kqcl_norm_prologue *norm, const kqcl_tensor *x,
                                   const char *call);
kqcl_status kq_norm_launch(kqcl_context *ctx, const kqcl_norm_prologue *norm, const kqcl_tensor *x, kqcl_tensor *xn,
                           const char *call);
/* matmul.c: whether the products of the normalised X take one launch (matvec.cl's NORM form):
 * `glu` 0 for a group of up to four weights of one type, op + 1 for kqcl_matmul_glu's pair (w[0]
 * the gate, one output y[0]); and that launch. */
bool kq_norm_fuses(kqcl_context *ctx, const kq_device *dev, const kqcl_norm_prologue *norm, int glu, int count,
                   const kqcl_tensor *const *w, const kqcl_tensor *x);
kqcl_status kq_norm_matmul_fused(kqcl_context *ctx, kq_device *dev, const kqcl_norm_prologue *norm, int glu,
                                 int count, const kqcl_tensor *const *w, const kqcl_tensor *x, kqcl_tensor *const *y);

/* layer.c: theta_scale = freq_base^(-2 / n_dims), the one rope_pair (common.cl) takes: every
 * launch of it passes this, so that they write the same bits. */
float kq_rope_theta_scale(const kqcl_rope_params *p);

/* layer.c: kqcl_rope_jobs' checks of its arguments, and its one launch over checked jobs (the
 * messages name `call`); kqcl_rope_jobs_attention takes both. */
kqcl_status kq_rope_jobs_check(kqcl_context *ctx, const kqcl_buffer *positions, size_t pos_offset,
                               const kqcl_rope_params *params, int count, const kqcl_rope_job *jobs, const char *call);
kqcl_status kq_rope_jobs_launch(kqcl_context *ctx, const kqcl_buffer *positions, size_t pos_offset,
                                const kqcl_rope_params *p, int count, const kqcl_rope_job *jobs, const char *call);
/* layer.c: a job's norm and scale as rope_pair takes them (weight, eps, normed, scale: 4
 * arguments from `first`); j NULL: none (the weight argument `none`, unread). */
cl_int kq_rope_job_norm_args(cl_kernel k, int first, const kqcl_rope_job *j, cl_mem none);

/* Enqueue a grid-striding element-wise kernel over `items` values: work-groups of 64, as many
 * work-items as fill the device (convert.c; the layer's ops and attention use it too). */
kqcl_status kq_launch_elements(kqcl_context *ctx, kq_device *dev, cl_kernel kernel, uint64_t items, const char *what);

/* Device-side dequantization/conversion of src into a float buffer (dst_type f32/f16/bf16). */
kqcl_status kq_convert_into(kqcl_context *ctx, const kqcl_tensor *src, cl_mem dst, kqcl_type dst_type);

/* The kernel `name` of reduce.cl for operation op on xtype data (reduce.c); the collectives
 * take combine_copies from it. */
kqcl_status kq_reduce_kernel(kqcl_context *ctx, kq_device *dev, kqcl_reduce_op op, kqcl_type xtype, const char *name,
                             cl_kernel *out);

/* Stream `bytes` of device memory through the read kernel `reps` times; the median
 * bandwidth in GB/s (1e9 bytes/s) from device events. */
kqcl_status kq_bench_stream_read(kqcl_context *ctx, int device, size_t bytes, int reps, double *gbps);

#endif
