/*
 * context.h -- the context, its devices and their compiled programs: the device floor's types,
 * which every floor above reads. device.c opens and closes devices, queue.c holds the queues,
 * errors of OpenCL calls and the events of a call.
 */
#ifndef KQCL_CONTEXT_H
#define KQCL_CONTEXT_H

#include "base/internal.h"

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001 /* cl_khr_icd: the loader found no platform */
#endif

#define KQ_MAX_DEVICES 64
#define KQ_MAX_PROGRAMS 48

#define KQ_KERNELS_PER_PROGRAM 12 /* elementwise.cl has 8 kernels */

/* One compiled program: a kernel family built with one set of options for one device, and
 * the kernel objects made from it (created once, reused by every call). */
typedef struct kq_program {
    char *options; /* the -D options it was built with (its key together with family) */
    int family;    /* kq_family */
    cl_program program;
    bool from_cache; /* loaded from a cached binary: rebuilt from source if it lacks a kernel */
    const char *kernel_names[KQ_KERNELS_PER_PROGRAM];
    cl_kernel kernels[KQ_KERNELS_PER_PROGRAM];
} kq_program;

/* Where a parameter's value came from: none (kqcl's default), the environment at creation, or
 * kqcl_context_set_param. */
typedef enum kq_param_source { KQ_FROM_DEFAULT = 0, KQ_FROM_ENV = 1, KQ_FROM_CALL = 2 } kq_param_source;

/* The launch parameters a device (or, for the collectives, the context) holds: params.c sets
 * them, the families' descriptors (family.c) and the collectives read them. */
typedef struct kq_params {
    int value[KQCL_PARAM_COUNT];
    unsigned char source[KQCL_PARAM_COUNT]; /* kq_param_source: 0 = unset, kqcl's default */
    unsigned changes; /* values set so far: a device's remembered picks hold for one count (family.c) */
} kq_params;

/* The value set for p, if any. */
static inline bool kq_param_get(const kq_params *ps, kqcl_param p, int *value)
{
    if (ps->source[p] == KQ_FROM_DEFAULT)
        return false;
    *value = ps->value[p];
    return true;
}

static inline kq_param_source kq_param_source_of(const kq_params *ps, kqcl_param p)
{
    return (kq_param_source)ps->source[p];
}

/* The device buffers the kernels keep between calls (scratch.c): each grown on demand, kept
 * until the context goes. */
typedef enum kq_scratch_slot {
    KQ_SCRATCH_UNFUSED_W, /* the unfused path's dequantized weights */
    KQ_SCRATCH_MMA_XS,    /* activations split into bf16 parts for the tensor cores */
    KQ_SCRATCH_MMA_XSUM,  /* their 32-value sums (the q4_K/q5_K mins) */
    KQ_SCRATCH_MMA_PART,  /* the tensor-core prefill's k-split sums */
    KQ_SCRATCH_XPREP,     /* activations rounded (F16, BF16) or quantized (Q8) */
    KQ_SCRATCH_GLU_GATE,  /* kqcl_matmul_glu unfused: the gate product ... */
    KQ_SCRATCH_GLU_UP,    /* ... and the up product */
    KQ_SCRATCH_NORM_X,    /* kqcl_norm_matmul_group unfused: the normalised X */
    KQ_SCRATCH_ARRIVALS,  /* matvec.cl's NORM form: its work-groups' counter (zero between launches) */
    KQ_SCRATCH_COUNT
} kq_scratch_slot;

typedef struct kq_scratch_buf {
    cl_mem mem;
    size_t bytes;
} kq_scratch_buf;

typedef struct kq_device {
    cl_platform_id platform;
    cl_device_id id;
    cl_context cl_ctx;
    cl_command_queue queue;
    kqcl_device_info info;
    char cl_c_version[64];
    char platform_version[128];
    bool is_pocl;          /* PoCL: its own kernel cache, so kqcl's binary cache is skipped */
    bool nv_ptx;           /* NVIDIA: inline-PTX kernel variants on (off after a failed build) */
    bool nv_mma;           /* NVIDIA sm_80+: tensor-core decode kernel (mma.cl) on */
    bool int_dot;          /* cl_khr_integer_dot_product in the Q8 kernels (off after a failed build) */
    bool gpu_kernels;      /* the GPU kernel family (else the KQ_CPU kernels): the device's kind,
                            * or KQCL_KERNELS=gpu|cpu, a testing aid */
    size_t max_wg;         /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    size_t base_align;     /* CL_DEVICE_MEM_BASE_ADDR_ALIGN in bytes: a view's offset (buffer.c) */
    kq_program programs[KQ_MAX_PROGRAMS];
    int n_programs;
    kq_scratch_buf scratch[KQ_SCRATCH_COUNT]; /* scratch.c's, grown on demand */
    kq_params params;        /* the user's launch parameters (params.c) */
    struct kq_pick_memo *memo; /* the picks it remembers (family.c, made on first use); NULL: none */
    unsigned memo_epoch;       /* bumped where they stop holding: programs released, variants off */
} kq_device;

struct kqcl_context {
    char error[KQ_ERROR_BYTES]; /* first: the base floor's error.c writes it knowing only this */
    kq_device devices[KQ_MAX_DEVICES];
    int n_devices;
    struct kq_multi *multi; /* multi-device state (collective.c), created on first use */
    /* kqcl_measure_devices's speeds (GFLOP/s), the weights of an automatic split (tensor.c) */
    bool speeds_measured;
    double speeds[KQ_MAX_DEVICES];
    /* Events of the kernels enqueued by the last compute call, for kqcl_last_device_time;
     * recorded only while the queues time their commands (kqcl_context_set_timing). */
    bool timing;
    kqcl_precision precision; /* kqcl_context_set_precision; KQCL_PRECISION at creation */
    kq_params coll_params;    /* the collectives' parameters (params.c) */
    cl_event *events; /* queue.c: grown on demand */
    int n_events, events_cap;
    bool events_lost; /* an event could not be kept (no host memory) */
    /* What kqcl_context_destroy must settle first: the tensors not yet destroyed (released and
     * left detached, tensor.c) and the collectives not yet waited for (finished, collective.c).
     * Touched only by calls on the context, which its user serialises. */
    struct kqcl_tensor *live_tensors;
    struct kqcl_buffer *live_buffers; /* the same for buffers (buffer.c) */
    struct kqcl_request *live_requests;
};

/* Whether the device runs the GPU kernel family (matvec.cl / matmul.cl's work-group kernels)
 * rather than the KQ_CPU ones. */
static inline bool kq_gpu_kernels(const kq_device *dev) { return dev->gpu_kernels; }

/* queue.c. Record an OpenCL failure: "what: CL_ERROR_NAME (code)". Returns KQCL_ERR_OUT_OF_MEMORY for
 * allocation failures, KQCL_ERR_DEVICE otherwise. */
kqcl_status kq_cl_fail(kqcl_context *ctx, cl_int err, const char *what);
/* A compute queue for dev, timing its commands or not. */
cl_command_queue kq_create_queue(const kq_device *dev, bool timing, cl_int *err);
const char *kq_cl_error_name(cl_int err);
/* clEnqueueCopyBufferRect (no wait list, no event), taking sub-buffers as the buffers they lie
 * in with their offsets added to the origins: PoCL 3.1 crashes on a rect copy to or from a
 * sub-buffer (a view, kqcl_tensor_view), and every driver copies the parents alike. */
cl_int kq_copy_rect(cl_command_queue q, cl_mem src, cl_mem dst, const size_t src_origin[3],
                    const size_t dst_origin[3], const size_t region[3], size_t src_row_pitch, size_t dst_row_pitch);

/* device.c: open the devices `spec` (KQCL_DEVICES's syntax; NULL: the default) chooses into
 * ctx->devices, counting each in ctx->n_devices as soon as it is (partly) opened, so that
 * kq_device_close undoes it on failure too; close one. */
kqcl_status kq_devices_open(kqcl_context *ctx, const char *spec);
void kq_device_close(kq_device *dev);

/* Forget the events of the previous compute call; keep `ev` as one of the current call's
 * (queue.c); free the array with the context. */
void kq_events_reset(kqcl_context *ctx);
void kq_events_add(kqcl_context *ctx, cl_event ev);
void kq_events_free(kqcl_context *ctx);

#endif
