/*
 * kqcl.h -- the public interface of kqcl, quantized LLM matmuls on any OpenCL device.
 *
 * This header is the whole contract. Handles are opaque; every call that can fail returns a
 * kqcl_status and never aborts or exits. The detail of the last failure is kept with the
 * context (kqcl_last_error(ctx)); failures of calls that have no context (context creation,
 * host codecs, GGUF files) are kept per thread and read with kqcl_last_error(NULL).
 *
 * Threads: a context and its tensors may be used from one thread at a time (calls on one
 * context are serialised by the caller); different contexts are independent and may be used
 * from different threads at once. Host codecs and GGUF readers keep no shared state. The
 * context-less last error is per thread. What processes and threads share is the OpenCL driver,
 * the process's list of devices (discovered once, under pthread_once) and the on-disk kernel
 * cache, whose entries are written to a private file and renamed into place. kqcl reads its environment variables during calls: do not setenv() while another
 * thread is inside kqcl (POSIX getenv/setenv rule). Checked by tests/test_threads.c, also under
 * ThreadSanitizer (make check-tsan).
 *
 * Faults: a failed call leaves its context usable. An OpenCL failure (device lost, out of
 * resources) fails that call with KQCL_ERR_DEVICE or KQCL_ERR_OUT_OF_MEMORY and a message naming
 * the OpenCL call and error; later calls succeed again when the device does. A context whose
 * device is gone for good keeps failing cleanly and is still destroyed with
 * kqcl_context_destroy. A corrupt or unwritable kernel cache only costs a rebuild.
 *
 * Kernel cache (KQCL_CACHE_DIR, else $XDG_CACHE_HOME/kqcl, else ~/.cache/kqcl; on by default
 * except on PoCL; KQCL_CACHE=off|force): its binaries are run as kqcl's kernels, so it trusts
 * only what is the user's own. The directory is created 0700 and used only if it is owned by
 * the effective user and not group- or world-writable; otherwise kqcl builds from source
 * without it, silently. An entry is read only if it is a regular file of that owner, not
 * writable by others, opened without following links or blocking; it must hold its full key
 * and the SHA-256 of key + binary. Any entry that fails to read, load or build, or lacks a
 * kernel, is rebuilt from source and replaced: a bad entry never becomes a persistent error.
 * doc/reliability.md lists every promise and how it is tested.
 *
 * Shapes: tensors are 2-D and row-major. A row of a k-quant type is a concatenation of
 * 256-value blocks in ggml's byte layout (doc/design.md, shared k-quants spec), so a row's
 * length must be a multiple of 256 for those types; one of q4_0, q4_1, q5_0, q5_1 or q8_0 is of
 * 32-value blocks, a multiple of 32.
 */
#ifndef KQCL_H
#define KQCL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KQCL_BUILDING) && defined(__GNUC__)
#define KQCL_API __attribute__((visibility("default")))
#else
#define KQCL_API
#endif

#define KQCL_VERSION_MAJOR 0
#define KQCL_VERSION_MINOR 1
#define KQCL_VERSION_PATCH 0
#define KQCL_VERSION_STRING "0.1.0"

/* The version of the library linked at run time, e.g. "0.1.0". */
KQCL_API const char *kqcl_version(void);

/* ------------------------------------------------------------------------------------------ */
/* Status codes                                                                                */

typedef enum kqcl_status {
    KQCL_OK = 0,
    KQCL_ERR_INVALID_ARG = 1,   /* NULL pointer, bad shape, wrong byte count, bad spec      */
    KQCL_ERR_NO_DEVICE = 2,     /* no OpenCL device matches                                 */
    KQCL_ERR_BUILD = 3,         /* a kernel failed to compile; the log is in last_error     */
    KQCL_ERR_OUT_OF_MEMORY = 4, /* host or device allocation failed                         */
    KQCL_ERR_DEVICE = 5,        /* an OpenCL call failed at run time                        */
    KQCL_ERR_UNSUPPORTED = 6,   /* valid request this build or device cannot do             */
    KQCL_ERR_IO = 7,            /* a file could not be opened, read or written              */
    KQCL_ERR_FORMAT = 8         /* a file or buffer is malformed                            */
} kqcl_status;

/* A short English name for a status ("invalid argument"); never NULL. */
KQCL_API const char *kqcl_status_string(kqcl_status status);

/* ------------------------------------------------------------------------------------------ */
/* Types: values are GGML's type ids, as in GGUF files                                         */

typedef enum kqcl_type {
    KQCL_TYPE_F32 = 0,
    KQCL_TYPE_F16 = 1,
    KQCL_TYPE_Q4_0 = 2,  /* 18 bytes per 32 values: an f16 scale, 4-bit quants */
    KQCL_TYPE_Q4_1 = 3,  /* 20 bytes per 32 values: an f16 scale and min, 4-bit quants */
    KQCL_TYPE_Q5_0 = 6,  /* 22 bytes per 32 values: an f16 scale, 5-bit quants */
    KQCL_TYPE_Q5_1 = 7,  /* 24 bytes per 32 values: an f16 scale and min, 5-bit quants */
    KQCL_TYPE_Q8_0 = 8,  /* 34 bytes per 32 values: an f16 scale, 8-bit quants */
    KQCL_TYPE_Q4_K = 12, /* 144 bytes per 256 values */
    KQCL_TYPE_Q5_K = 13, /* 176 bytes per 256 values */
    KQCL_TYPE_Q6_K = 14, /* 210 bytes per 256 values */
    KQCL_TYPE_Q8_K = 15, /* 292 bytes per 256 values */
    KQCL_TYPE_BF16 = 30
} kqcl_type;

/* Bytes of one row of `cols` values of `type`; 0 when the type is unknown, cols <= 0, or cols
 * is not a whole number of blocks. */
KQCL_API size_t kqcl_row_size(kqcl_type type, int64_t cols);

/* Values per block of `type`: 256 for the k-quants, 32 for q4_0, q4_1, q5_0, q5_1 and q8_0, 1 for
 * f32/f16/bf16, 0 for unknown types. */
KQCL_API int64_t kqcl_block_size(kqcl_type type);

/* ggml's name of a type ("q4_K", "f16"); NULL for a type kqcl does not know. */
KQCL_API const char *kqcl_type_name(kqcl_type type);

/* The type named `name` as ggml names it ("q4_K", "q8_0"), in any case ("Q4_K", "q4_k").
 * KQCL_ERR_INVALID_ARG if unknown. */
KQCL_API kqcl_status kqcl_type_from_name(const char *name, kqcl_type *out);

/* Any type id ggml defines, whether or not kqcl computes with it (q8_0, iq2_xs, i32, ...):
 * its ggml name, values per block and bytes per block, each written where not NULL. What the
 * GGUF reader bounds every tensor's data with. KQCL_ERR_INVALID_ARG for an id ggml does not
 * define (removed ids such as 4, 5 and 31-33 included). */
KQCL_API kqcl_status kqcl_ggml_type_info(uint32_t type, const char **name, int64_t *block_values,
                                         size_t *block_bytes);

/* ------------------------------------------------------------------------------------------ */
/* Host codecs: no device needed                                                                */

/* Dequantize `rows` rows of `cols` values of `type` (k-quants, q4_0, q4_1, q5_0, q5_1, q8_0, f16,
 * bf16, f32) from `src` (kqcl_row_size(type, cols) * rows bytes, ggml layout) into `dst`
 * (rows * cols floats).
 * Bit-exact with ggml's dequantize_row_* and fp16/bf16 conversions. */
KQCL_API kqcl_status kqcl_dequantize(kqcl_type type, const void *src, float *dst, int64_t rows,
                                     int64_t cols);

/* Quantize `rows` rows of `cols` floats into `type` (k-quants, q4_0, q4_1, q5_0, q5_1, q8_0, f16,
 * bf16, f32). q8_K, q4_0, q4_1, q5_0, q5_1, q8_0 and the f16/bf16 conversions are bit-exact with
 * ggml's reference quantizers (q8_0: d = max|x| / 127, q = roundf(x / d); q4_0: d = m / -8 for m
 * the value of largest magnitude, q = min(15, (int)(x / d + 8.5)); q5_0: d = m / -16,
 * q = min(31, (int)(x / d + 16.5)); q4_1 and q5_1: the block's min and max, d = (max - min) /
 * 15 (31), q = (int)((x - min) / d + 0.5), q4_1's capped at 15; each 1/d taken once, as ggml's
 * id); q4_K/q5_K/q6_K follow ggml's reference
 * quantizers (error within 5% of theirs). Round to nearest even; NaN stays NaN. */
KQCL_API kqcl_status kqcl_quantize(kqcl_type type, const float *src, void *dst, int64_t rows,
                                   int64_t cols);

/* ------------------------------------------------------------------------------------------ */
/* Contexts and devices                                                                         */

typedef struct kqcl_context kqcl_context;
typedef struct kqcl_tensor kqcl_tensor;

/* Create a context on the devices named by `devices`; NULL means the environment variable
 * KQCL_DEVICES, and when that is unset or empty, the first GPU, else the first device.
 * Spec grammar: a comma-separated list of terms, each one of
 *   all          every device of every platform
 *   gpu | cpu | accelerator   every device of that kind
 *   N            the N-th device (0-based) in discovery order, as `kqcl devices` lists them
 *   P:N          device N of platform P
 *   TEXT         every device whose device or platform name contains TEXT (case-insensitive)
 * Duplicates are dropped; order is kept. KQCL_ERR_NO_DEVICE if nothing matches,
 * KQCL_ERR_INVALID_ARG for a malformed spec. On failure *out is NULL and the reason is in
 * kqcl_last_error(NULL). Platforms and devices are discovered once per process, on the first
 * call that needs them (this, kqcl_list_devices), safely from any number of threads at once;
 * later calls reuse that list, and a failed discovery (no platform, no device) is reported
 * again by every later call, as the OpenCL ICD loader keeps its platforms. */
KQCL_API kqcl_status kqcl_context_create(const char *devices, kqcl_context **out);

/* Release a context and everything it owns. NULL is a no-op. Collectives still in flight
 * (kqcl_allreduce_start, kqcl_broadcast_start) are waited for first, never cancelled; their
 * requests stay valid and must still be given to kqcl_request_wait, which then returns their
 * status and frees them. Tensors not yet destroyed are released with the context and left
 * detached: kqcl_tensor_destroy (still needed, to free them) and the shape getters work,
 * every other call on them fails with KQCL_ERR_INVALID_ARG. */
KQCL_API void kqcl_context_destroy(kqcl_context *ctx);

/* Number of devices in the context (0 for NULL). */
KQCL_API int kqcl_device_count(const kqcl_context *ctx);

/* The message of the last failure on `ctx`, or of this thread's last context-less failure
 * when ctx is NULL. Empty string when there was none. Valid until the next call on ctx. */
KQCL_API const char *kqcl_last_error(const kqcl_context *ctx);

/* What kqcl knows and uses of one device. */
typedef struct kqcl_device_info {
    char name[128];
    char vendor[64];
    char platform[128];
    char driver[64];
    char variant[96];           /* kernels chosen for this device: "GPU family" or "CPU family"
                                 * (KQCL_KERNELS), "portable", and on NVIDIA "+ NVIDIA inline PTX,
                                 * tensor cores" unless a build of those failed (KQCL_PORTABLE) */
    int is_gpu;
    int compute_units;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;
    uint64_t local_mem_bytes;
    /* What the device reports. Only has_int_dot is used (the Q8 decode's dot products); the
     * kernels are OpenCL C 1.2 otherwise. */
    int has_fp16;               /* cl_khr_fp16 */
    int has_subgroups;          /* cl_khr_subgroups or cl_intel_subgroups */
    int has_int_dot;            /* cl_khr_integer_dot_product */
    int nv_compute_capability;  /* 10*major + minor on NVIDIA, else 0 */
    /* Added for `kqcl devices` (issue 13); appended so that the fields above keep their
     * offsets. Where the device sits in discovery order: */
    int list_index;             /* its N in a device spec: the kqcl_list_devices order */
    int platform_index;         /* P of a P:D spec */
    int platform_device_index;  /* D of a P:D spec */
    char opencl_version[64];    /* CL_DEVICE_VERSION, e.g. "OpenCL 3.0 PoCL ...", cut to fit */
    char opencl_c_version[64];  /* CL_DEVICE_OPENCL_C_VERSION, e.g. "OpenCL C 1.2 PoCL", cut to fit */
} kqcl_device_info;

/* Fill *out for device `index` (0 .. kqcl_device_count-1) of the context. */
KQCL_API kqcl_status kqcl_device_get_info(const kqcl_context *ctx, int index,
                                          kqcl_device_info *out);

/* Every OpenCL device present, whether or not in a context: *count is set to the number
 * found; up to `capacity` are written to `out` (which may be NULL when capacity is 0).
 * The fields `variant` are left empty. */
KQCL_API kqcl_status kqcl_list_devices(kqcl_device_info *out, int capacity, int *count);

/* Wait until every command queued on every device of the context has finished. */
KQCL_API kqcl_status kqcl_finish(kqcl_context *ctx);

/* Device timing on (on != 0) or off (the default). Timed queues record when each command
 * starts and ends, which costs the driver time on every command (NVIDIA: an enqueue takes
 * 8.5 us instead of 3, a 16 KiB all-reduce 54 instead of 29; doc/perf.md run 12). Waits for
 * the queued work, then remakes the devices' queues. */
KQCL_API kqcl_status kqcl_context_set_timing(kqcl_context *ctx, int on);

/* Device time, in nanoseconds, of the kernels enqueued by the last kqcl_matmul,
 * kqcl_convert or kqcl_reduce on the context, summed over devices. Waits for them. From
 * OpenCL profiling events: KQCL_ERR_UNSUPPORTED unless timing is on. */
KQCL_API kqcl_status kqcl_last_device_time(kqcl_context *ctx, uint64_t *nanoseconds);

/* ------------------------------------------------------------------------------------------ */
/* Precision                                                                                    */

/* How kqcl_matmul treats activations (the weights are never changed). A context starts with the
 * environment variable KQCL_PRECISION (f32, q8, f16, bf16 or auto; a malformed value makes
 * kqcl_context_create fail with KQCL_ERR_INVALID_ARG), else KQCL_PRECISION_F32.
 *
 *   F32   Activations as given, f32 products and sums: within 1e-5 * sum |w x| of float64.
 *   Q8    Decode (n <= 8) with quantized weights (q4_K, q5_K, q6_K, q8_K, q4_0, q4_1, q5_0, q5_1,
 *         q8_0): each row of X is quantized on the device, once a call, in blocks of 32 values,
 *         exactly so:
 *           amax = max |x_i| of the block;  d = amax * (float)(1/127)   (one f32 multiply)
 *           q_i  = the integer nearest x_i / d (the exact quotient; halves away from zero),
 *                  clamped to -127..127;  q_i = 0 when d is 0;  d is NaN when a value is NaN.
 *         Weights stay quantized: each scale group's sum(q_w * q_x) is exact in int32, then scaled
 *         in f32 by the weight scale and d; q4_K/q5_K's mins multiply d * sum(q_x) of the 16
 *         activations they meet, q4_1/q5_1's those of the 32 of their block; q6_K's, q4_0's and
 *         q5_0's stored offsets are taken out of the weight quants first (exact). Error: that of
 *         the quantized X, within 1e-5 * sum |w x| of a float64 product of W with the quantized
 *         X -- the error ggml's integer paths have, with ggml's CUDA block size (32). Prefill
 *         (n > 8) and float weights take the BF16 path.
 *   F16   Activations rounded once to f16 (nearest even); products of those exact, sums f32.
 *   BF16  Activations rounded once to bf16 (nearest even); products of those exact, sums f32.
 *   AUTO  The fastest mode a device has for the weight type and n, within ggml's error (measured
 *         on an H200, doc/perf.md): on GPUs, decode Q8 for quantized weights (F32 for q6_K, as
 *         fast there), prefill BF16 where tensor cores serve the type (else F32); f16 weights
 *         F16, bf16 weights BF16, f32 weights F32. On CPUs F32. kqcl_precision_chosen says what
 *         a call gets.
 *
 * A mode a device has no kernel for is served by a more exact one, never refused: every mode runs
 * on every device. Non-finite inputs keep kqcl_matmul's promise in every mode (a NaN activation
 * makes its block's d NaN; an infinite one, every output it reaches non-finite). */
typedef enum kqcl_precision {
    KQCL_PRECISION_F32 = 0,
    KQCL_PRECISION_Q8 = 1,
    KQCL_PRECISION_F16 = 2,
    KQCL_PRECISION_BF16 = 3,
    KQCL_PRECISION_AUTO = 4
} kqcl_precision;

/* Set the precision of the context's later matmuls. KQCL_ERR_INVALID_ARG for a value outside the
 * enum. Queued work is not affected. */
KQCL_API kqcl_status kqcl_context_set_precision(kqcl_context *ctx, kqcl_precision precision);

/* The context's precision as set (AUTO stays AUTO); KQCL_PRECISION_F32 for NULL. */
KQCL_API kqcl_precision kqcl_context_precision(const kqcl_context *ctx);

/* The mode a kqcl_matmul of weights of `wtype` with n activation rows gets on device `device`
 * of the context under its current precision: AUTO and the fallbacks resolved (never AUTO).
 * (A device whose limits fit no Q8 kernel -- less local memory than any candidate needs, which
 * no device kqcl has met has -- is found out at the call, which then runs BF16.) */
KQCL_API kqcl_status kqcl_precision_chosen(const kqcl_context *ctx, int device, kqcl_type wtype,
                                           int64_t n, kqcl_precision *out);

/* "f32", "q8", "f16", "bf16", "auto"; "?" for other values. */
KQCL_API const char *kqcl_precision_name(kqcl_precision precision);

/* The precision named `name` (as kqcl_precision_name spells it, any case);
 * KQCL_ERR_INVALID_ARG for anything else. */
KQCL_API kqcl_status kqcl_precision_from_name(const char *name, kqcl_precision *out);

/* ------------------------------------------------------------------------------------------ */
/* Parameters                                                                                   */

/* The launch parameters of the kernels and the collectives, for tuning experiments: each is an
 * int with documented bounds (kqcl_param_bounds), KQCL_PARAM_AUTO by default -- kqcl's choice:
 * its tuning table's values for the device's vendor and architecture (kqcl_device_tuning
 * names the entry), or a choice per call. A context takes the environment's overrides once, at
 * kqcl_context_create (the variable named beside each; the tuples set their members in order,
 * e.g. KQCL_MATVEC="32,4,2": decimal digits and commas only, no blank or sign), and a
 * malformed value makes the creation fail with KQCL_ERR_INVALID_ARG. Set members of one
 * kernel's set are used with the others' defaults; a set that breaks the kernel's constraints
 * or does not fit the device makes the calls that would use it fail with KQCL_ERR_INVALID_ARG,
 * naming where it came from. */
#define KQCL_PARAM_AUTO (-1)

typedef enum kqcl_param {
    /* decode (matvec.cl): KQCL_MATVEC="threads_per_row,row_groups,rows_per_thread" */
    KQCL_PARAM_MATVEC_THREADS_PER_ROW = 0, /* lanes along k of a row, a power of two: 1..1024 */
    KQCL_PARAM_MATVEC_ROW_GROUPS,          /* groups of lanes a work-group: 1..1024 */
    KQCL_PARAM_MATVEC_ROWS_PER_THREAD,     /* rows a lane: 1..16 */
    /* Q8 decode (q8.cl): KQCL_MATVEC_Q8, the same three */
    KQCL_PARAM_MATVEC_Q8_THREADS_PER_ROW,
    KQCL_PARAM_MATVEC_Q8_ROW_GROUPS,
    KQCL_PARAM_MATVEC_Q8_ROWS_PER_THREAD,
    /* prefill (matmul.cl): KQCL_MATMUL="tile_m,tile_n,wpt_m,wpt_n,kunits" */
    KQCL_PARAM_MATMUL_TILE_M, /* 1..4096 */
    KQCL_PARAM_MATMUL_TILE_N, /* 1..4096 */
    KQCL_PARAM_MATMUL_WPT_M,  /* outputs a work-item along m: 1..256 */
    KQCL_PARAM_MATMUL_WPT_N,  /* along n: 1..256 */
    KQCL_PARAM_MATMUL_KUNITS, /* 32-value units a k step: 1..64 */
    /* NVIDIA tensor cores (mma.cl): KQCL_MMA_TUNE="warps,m_tiles" (decode), KQCL_MMA_MIN_N,
     * KQCL_MMA_PREFILL="warps,m_tiles,n_tiles", KQCL_MMA_KSPLIT */
    KQCL_PARAM_MMA_WARPS,         /* 1..32 */
    KQCL_PARAM_MMA_M_TILES,       /* 16-row tiles a warp: 1..16 */
    KQCL_PARAM_MMA_MIN_N,         /* the smallest n the decode kernel takes: 1..4096 */
    KQCL_PARAM_MMA_PREFILL_WARPS, /* 1..32 */
    KQCL_PARAM_MMA_PREFILL_M_TILES, /* 1..16 */
    KQCL_PARAM_MMA_PREFILL_N_TILES, /* 8-column tiles a work-group: 1..16 */
    KQCL_PARAM_MMA_KSPLIT,        /* work-groups along k, summed after: 1..64 */
    /* the collectives, context-wide (device -1): KQCL_COLL_CHUNK_KIB, KQCL_COLL_THREADS,
     * KQCL_COLL_SPIN_US, KQCL_COLL_SUMS=host|device */
    KQCL_PARAM_COLL_CHUNK_KIB, /* 1..1048575 */
    KQCL_PARAM_COLL_THREADS,   /* host threads a large collective: 1..64 */
    KQCL_PARAM_COLL_SPIN_US,   /* how long small ones poll before a blocking wait: 0..1000000 */
    KQCL_PARAM_COLL_SUMS,      /* where chunks are combined: 0 on the host, 1 on a device */
    KQCL_PARAM_COUNT
} kqcl_param;

/* Set `param` on device `device` of the context (-1: every device; the context-wide collective
 * parameters take -1 only), or back to kqcl's choice with KQCL_PARAM_AUTO.
 * KQCL_ERR_INVALID_ARG for an unknown parameter or device, or a value outside the bounds. */
KQCL_API kqcl_status kqcl_context_set_param(kqcl_context *ctx, int device, kqcl_param param, int value);

/* The value in force: the one set (by call or environment), else the device's default from the
 * tuning table, else KQCL_PARAM_AUTO where kqcl chooses per call (the tensor-core prefill's
 * tiles and k-splits, the collectives' chunks and threads). `device` as for set (-1: device 0,
 * or the context for a collective parameter). */
KQCL_API kqcl_status kqcl_context_get_param(const kqcl_context *ctx, int device, kqcl_param param, int *value);

/* The bounds of an explicit value of `param`; KQCL_ERR_INVALID_ARG for an unknown one. */
KQCL_API kqcl_status kqcl_param_bounds(kqcl_param param, int *min, int *max);

/* "matvec_threads_per_row", ... (the enum's name in lower case, without KQCL_PARAM_); "?" for
 * others. */
KQCL_API const char *kqcl_param_name(kqcl_param param);

/* The tuning-table entry device `device` of the context takes its defaults from, e.g. "NVIDIA
 * sm_80+ (measured on an H200)"; "" for a bad argument. */
KQCL_API const char *kqcl_device_tuning(const kqcl_context *ctx, int device);

/* ------------------------------------------------------------------------------------------ */
/* Tensors                                                                                      */

/* Create a rows x cols tensor of `type` on the context's first device. Contents are
 * undefined until written. KQCL_ERR_INVALID_ARG when cols is not a whole number of blocks;
 * KQCL_ERR_OUT_OF_MEMORY when the device's memory cannot hold it. A tensor larger than the
 * device's largest allocation is held in several buffers (chunks of whole rows) and every
 * operation works across them; KQCL_ERR_UNSUPPORTED when one row is larger than that
 * allocation. */
KQCL_API kqcl_status kqcl_tensor_create(kqcl_context *ctx, kqcl_type type, int64_t rows,
                                        int64_t cols, kqcl_tensor **out);

/* Copy the whole tensor from host memory in ggml/GGUF layout. nbytes must equal
 * kqcl_tensor_bytes(t). Blocks until the data has been taken. */
KQCL_API kqcl_status kqcl_tensor_write(kqcl_tensor *t, const void *src, size_t nbytes);

/* Copy the whole tensor to host memory in ggml/GGUF layout (waits for pending work).
 * nbytes must equal kqcl_tensor_bytes(t). */
KQCL_API kqcl_status kqcl_tensor_read(kqcl_tensor *t, void *dst, size_t nbytes);

/* Release a tensor. NULL is a no-op. */
KQCL_API void kqcl_tensor_destroy(kqcl_tensor *t);

/* Shape and type of a tensor (0 / KQCL_TYPE_F32 for NULL). */
KQCL_API int64_t kqcl_tensor_rows(const kqcl_tensor *t);
KQCL_API int64_t kqcl_tensor_cols(const kqcl_tensor *t);
KQCL_API kqcl_type kqcl_tensor_type(const kqcl_tensor *t);
/* Bytes of the tensor in host layout: rows * kqcl_row_size(type, cols). */
KQCL_API size_t kqcl_tensor_bytes(const kqcl_tensor *t);

/* ------------------------------------------------------------------------------------------ */
/* Buffers: raw device memory, and tensors over it                                              */
/*
 * A buffer is bytes of one device's memory, untyped, written, read, filled and copied by byte
 * ranges; tensors are made over parts of it with kqcl_tensor_view, without a copy. What a ggml
 * backend needs: one buffer a ggml buffer, its tensors at byte offsets in it (doc/design.md).
 * Units are bytes throughout. Every range (offset, bytes) must lie inside the buffer:
 * offset + bytes <= kqcl_buffer_size, computed without overflow; otherwise
 * KQCL_ERR_INVALID_ARG, with a message naming the argument. bytes = 0 is a valid empty range
 * (offset <= size): nothing is done. Messages go to the buffer's context (kqcl_last_error(ctx));
 * those of a NULL or detached buffer to kqcl_last_error(NULL). A buffer belongs to one context
 * and is used, like its tensors, from one thread at a time. Commands on one device run in the
 * order they were issued (one in-order queue a device), so a write, fill or copy is seen by
 * every later call on that device, through the buffer or any view of it. Two arguments of one
 * call that overlap in a buffer (a view given as both X and Y of kqcl_matmul, say) are not
 * supported: the result is undefined (kqcl never crashes on them; NVIDIA's driver does on views
 * that overlap in part, see kqcl_tensor_view); kqcl_buffer_copy alone takes overlapping ranges
 * (memmove).
 * A buffer outlived by its context is left detached, as tensors are: kqcl_buffer_destroy
 * (still needed) and kqcl_buffer_size work, every other call fails with KQCL_ERR_INVALID_ARG.
 */
typedef struct kqcl_buffer kqcl_buffer;

/* Allocate `bytes` bytes on device `device` (0 .. kqcl_device_count-1) of the context; *out
 * gets the buffer (NULL on failure). Contents are undefined until written. Freed with
 * kqcl_buffer_destroy. KQCL_ERR_INVALID_ARG for NULL ctx or out, a bad device index or bytes 0;
 * KQCL_ERR_UNSUPPORTED when bytes is more than the device's largest allocation
 * (kqcl_device_info.max_alloc_bytes); KQCL_ERR_OUT_OF_MEMORY when the host or the device has
 * no memory for it (some drivers allocate at first use: that use then fails so);
 * KQCL_ERR_DEVICE for another OpenCL error. */
KQCL_API kqcl_status kqcl_buffer_create(kqcl_context *ctx, int device, size_t bytes, kqcl_buffer **out);

/* Release a buffer. NULL is a no-op. Destroy its views (kqcl_tensor_view) first: a buffer
 * destroyed before its views only drops its own reference, the device memory stays until the
 * last view is destroyed, and the views keep working meanwhile. Work queued on it finishes
 * first (OpenCL keeps the memory until then). */
KQCL_API void kqcl_buffer_destroy(kqcl_buffer *b);

/* The buffer's size in bytes, as created; 0 for NULL. */
KQCL_API size_t kqcl_buffer_size(const kqcl_buffer *b);

/* Copy `bytes` bytes from host `src` into the buffer at byte `offset`. Blocking: ordered after
 * the work queued on the buffer's device before it, and src may be reused on return.
 * KQCL_ERR_INVALID_ARG for a NULL b or src, a range outside the buffer, a detached buffer;
 * KQCL_ERR_DEVICE (KQCL_ERR_OUT_OF_MEMORY for an allocation failure) when the copy fails. */
KQCL_API kqcl_status kqcl_buffer_write(kqcl_buffer *b, size_t offset, const void *src, size_t bytes);

/* Copy `bytes` bytes at byte `offset` of the buffer to host `dst`. Waits for the work queued
 * on the buffer's device before it, then for the copy. Statuses as kqcl_buffer_write's. */
KQCL_API kqcl_status kqcl_buffer_read(kqcl_buffer *b, size_t offset, void *dst, size_t bytes);

/* Set `bytes` bytes at byte `offset` (any offset and size) to `value`. Queued: returns before
 * the device has done it; later calls on the device see it. Statuses as kqcl_buffer_write's
 * (no host pointer). */
KQCL_API kqcl_status kqcl_buffer_fill(kqcl_buffer *b, size_t offset, uint8_t value, size_t bytes);

/* Copy `bytes` bytes from src at src_offset to dst at dst_offset. Same device: a device-side
 * copy, queued (returns before it is done; later calls on the device see it); the ranges may
 * overlap, even in one buffer (memmove: then staged through a temporary device buffer). Two
 * devices: staged through host memory, in pieces of at most 16 MiB, after the work queued on
 * src's device, and blocking. Both buffers of one context. KQCL_ERR_INVALID_ARG for NULL
 * buffers, buffers of different contexts, a detached buffer, a range outside either buffer;
 * KQCL_ERR_OUT_OF_MEMORY when no host or device memory is left for the staging;
 * KQCL_ERR_DEVICE when a copy fails. The message is on dst's context. */
KQCL_API kqcl_status kqcl_buffer_copy(kqcl_buffer *dst, size_t dst_offset, const kqcl_buffer *src,
                                      size_t src_offset, size_t bytes);

/* The bytes a view's offset in a buffer of device `device` must be a multiple of: the device's
 * CL_DEVICE_MEM_BASE_ADDR_ALIGN in bytes, at least 64; a power of two. 0 for a NULL context or
 * a bad device index. */
KQCL_API size_t kqcl_buffer_alignment(const kqcl_context *ctx, int device);

/* A rows x cols tensor of `type` over the bytes [offset, offset + rows * kqcl_row_size(type,
 * cols)) of b, in host (ggml) layout, without a copy: writes through the buffer and through the
 * tensor are seen by both. *out gets it (NULL on failure). The view is a whole, single-buffer
 * tensor on b's device (KQCL_SPLIT_NONE), taken by every call that takes a tensor
 * (kqcl_matmul, kqcl_convert, kqcl_reduce, kqcl_tensor_read/write, kqcl_tensor_copy, ...).
 * It holds its own reference to the memory: kqcl_tensor_destroy frees the view only, never the
 * buffer, and a view outlives its buffer safely (kqcl_buffer_destroy). Views are cheap to make
 * again: the buffer keeps what the device needs for the ranges viewed last (an OpenCL
 * sub-buffer a range; a range viewed later that overlaps one in part takes its place) until
 * it is destroyed, so a view made for each call, as a ggml backend makes them, costs the host a
 * fraction of a microsecond. Do not keep views that overlap in part alive and use them in
 * turn: NVIDIA's driver crashes on such sub-buffers (doc/reliability.md). KQCL_ERR_INVALID_ARG for
 * NULL b or out, a detached buffer, an offset not a multiple of kqcl_buffer_alignment, a range
 * past the end of the buffer, or a shape kqcl_tensor_create refuses so (unknown type, rows <=
 * 0, cols not a positive whole number of blocks); KQCL_ERR_UNSUPPORTED for more than
 * 2147483647 rows or columns; KQCL_ERR_OUT_OF_MEMORY when no host or device memory is left for
 * the view; KQCL_ERR_DEVICE for another OpenCL error. */
KQCL_API kqcl_status kqcl_tensor_view(kqcl_buffer *b, size_t offset, kqcl_type type, int64_t rows, int64_t cols,
                                      kqcl_tensor **out);

/* ------------------------------------------------------------------------------------------ */
/* Compute                                                                                      */

/* Y (n x m) = X (n x k) . W^T, the fused path: W (m x k) of any type (q4_K, q5_K, q6_K,
 * q8_K, q4_0, q4_1, q5_0, q5_1, q8_0, f16, bf16, f32) is dequantized inside the kernel, never
 * written out. X is f32, f16 or bf16; Y is f32. Accumulation is f32. A matrix-vector kernel
 * serves n <= 8 (decode), a tiled kernel larger n (prefill). Queued: returns before the device finishes; read Y or
 * kqcl_finish to wait. KQCL_ERR_INVALID_ARG on shape mismatch or a tensor of another
 * context, KQCL_ERR_UNSUPPORTED for a type pair outside the above.
 * Results are within 1e-5 * sum |w x| of float64 on every device and kernel, and finite, for
 * activations with |x| <= 2^64 (1.8e19) and, with f32 or bf16 weights (or q8_K's f32 scale),
 * |w| <= 2^32 -- in every precision mode but F16, whose rounding to f16 makes |x| >= 65520
 * infinite. Beyond that range the kernels' f32 intermediates may overflow (unsigned quants
 * are folded as s * sum(u x) - m * sum(x)): an output whose exact value is finite may then be
 * +-Inf or NaN. Non-finite
 * inputs, on every device: a NaN scale, weight or activation makes the outputs it reaches NaN;
 * an infinite one makes them non-finite -- +-Inf or NaN, which one is not promised (an infinite
 * scale times a zero quant is NaN element by element, but a kernel that applies the scale once
 * per group gives +-Inf); every other output stays finite and within the bound.
 * KQCL_ERR_INVALID_ARG also when a tuning variable (KQCL_MATVEC, KQCL_MATVEC_Q8, KQCL_MATMUL,
 * KQCL_MMA_*) is malformed, breaks its kernel's constraints or does not fit the device.
 * KQCL_INT_DOT=0 keeps the Q8 decode off cl_khr_integer_dot_product (char arithmetic instead). */
KQCL_API kqcl_status kqcl_matmul(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x,
                                 kqcl_tensor *y);

/* Several products that share X, in one call: y[i] = X . w[i]^T for i < count (1..16), each
 * exactly as kqcl_matmul computes it (the same bits): Q, K and V, or gate and up, of a
 * transformer layer. X is rounded or quantized for the context's precision once for each run of
 * consecutive weights of one type on X's device (a weight split over devices prepares its own),
 * and in decode up to four weights of such a run are served by one kernel launch (a launch
 * costs ~6 us through NVIDIA's OpenCL); NVIDIA's tensor-core decode and prefill launch once a
 * weight. Every w[i] must
 * have X's width; the checks and errors are kqcl_matmul's, made for every i before anything
 * runs. kqcl_last_device_time covers the whole group. */
KQCL_API kqcl_status kqcl_matmul_group(kqcl_context *ctx, int count, const kqcl_tensor *const *w,
                                       const kqcl_tensor *x, kqcl_tensor *const *y);

/* Convert src into dst of the same shape on the device: f32 <-> f16 <-> bf16 (round to
 * nearest even; NaN, inf and subnormals kept), and quantized (k-quants, q4_0, q4_1, q5_0, q5_1,
 * q8_0) -> f32/f16/bf16 (device dequantization, bit-exact with the host codec for f32). Same
 * type copies. */
KQCL_API kqcl_status kqcl_convert(kqcl_context *ctx, const kqcl_tensor *src, kqcl_tensor *dst);

typedef enum kqcl_reduce_op {
    KQCL_REDUCE_SUM = 0,
    KQCL_REDUCE_MAX = 1,
    KQCL_REDUCE_MIN = 2,
    KQCL_REDUCE_MEAN = 3,
    KQCL_REDUCE_SUMSQ = 4
} kqcl_reduce_op;

/* Per-row reduction of src (f32, f16 or bf16, any row length) into dst (f32, rows x 1).
 * Sums are compensated: each work-item keeps a Neumaier (Kahan-Babuska) sum of its strided
 * elements, and the work-items' sums and compensations are combined by a pairwise tree in
 * local memory, so the error does not grow with the row length. MAX/MIN return NaN for a
 * row holding a NaN. */
KQCL_API kqcl_status kqcl_reduce(kqcl_context *ctx, kqcl_reduce_op op, const kqcl_tensor *src,
                                 kqcl_tensor *dst);

/* ------------------------------------------------------------------------------------------ */
/* A transformer layer's other operations                                                      */
/*
 * What a decode step does besides its products, on f32 tensors of one device (whole tensors or
 * views; KQCL_ERR_UNSUPPORTED for placed ones), computed in f32 whatever the context's precision.
 * y may be the same tensor as an operand of its shape (in place). Like every compute call they
 * are queued on the device and return; kqcl_tensor_read waits for them.
 */
typedef enum kqcl_binary_op {
    KQCL_BINARY_ADD = 0, /* a + b */
    KQCL_BINARY_SUB = 1, /* a - b */
    KQCL_BINARY_MUL = 2, /* a * b */
    KQCL_BINARY_DIV = 3  /* a / b */
} kqcl_binary_op;

/* y = a (op) b, element by element, y and a of one shape. b broadcasts: its rows divide a's and
 * its columns a's, and element (r, c) takes b's (r % b.rows, c % b.cols) -- a bias or a norm's
 * weight is one row, a residual a's own shape. Each element is the one IEEE f32 operation. */
KQCL_API kqcl_status kqcl_binary(kqcl_context *ctx, kqcl_binary_op op, const kqcl_tensor *a, const kqcl_tensor *b,
                                 kqcl_tensor *y);

/* y = x * scale + bias (two roundings: a multiply, then an add). */
KQCL_API kqcl_status kqcl_scale(kqcl_context *ctx, const kqcl_tensor *x, float scale, float bias, kqcl_tensor *y);

typedef enum kqcl_unary_op {
    KQCL_UNARY_SILU = 0, /* x / (1 + e^-x) */
    KQCL_UNARY_GELU = 1, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), ggml's GELU */
    KQCL_UNARY_RELU = 2  /* max(x, 0) */
} kqcl_unary_op;

/* y = op(x), element by element; within 4 ulp of the f32 result of the formula (OpenCL's exp
 * and tanh), relative error 1e-6 in the tests against a float64 reference. */
KQCL_API kqcl_status kqcl_unary(kqcl_context *ctx, kqcl_unary_op op, const kqcl_tensor *x, kqcl_tensor *y);

typedef enum kqcl_glu_op {
    KQCL_GLU_SWIGLU = 0, /* silu(gate) * up: Llama's feed-forward */
    KQCL_GLU_GEGLU = 1   /* gelu(gate) * up: Gemma's */
} kqcl_glu_op;

/* The gated activation of a feed-forward block: y = act(gate) * up, gate, up and y of one shape. */
KQCL_API kqcl_status kqcl_glu(kqcl_context *ctx, kqcl_glu_op op, const kqcl_tensor *gate, const kqcl_tensor *up,
                              kqcl_tensor *y);

/* The gated feed-forward block's first half: y = act(X . w_gate^T) * (X . w_up^T), act as
 * kqcl_glu's op. w_gate and w_up have X's width and one height m; y is f32, X.rows x m; all
 * whole tensors on one device (else KQCL_ERR_UNSUPPORTED). In decode (X of at most 8 rows) in
 * the F32, F16 and BF16 modes, with both weights of one type, one launch: each lane sums its
 * rows of both weights and the activation is applied before the store, so neither product goes
 * to memory. Elsewhere (Q8, prefill, NVIDIA's tensor-core decode, mixed types) the two products
 * as kqcl_matmul_group computes them, then kqcl_glu: three launches or more. Either way the
 * products are kqcl_matmul's sums and the activation kqcl_glu's formula; the one-launch form
 * may differ from kqcl_glu in the last bit where a compiler contracts the formula differently. */
KQCL_API kqcl_status kqcl_matmul_glu(kqcl_context *ctx, kqcl_glu_op op, const kqcl_tensor *w_gate,
                                     const kqcl_tensor *w_up, const kqcl_tensor *x, kqcl_tensor *y);

/* RMS normalisation, row by row: y = x / sqrt(mean(x^2) + eps), multiplied by the weight w
 * (1 x cols; NULL: none) in the same pass. eps >= 0 and finite. The squares are summed in f32
 * by a tree of at most 256 strided sums (relative error about 1e-6 for any row length). */
KQCL_API kqcl_status kqcl_rms_norm(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_tensor *w, float eps,
                                   kqcl_tensor *y);

/* The residual add and the next norm in one pass (one launch, not two): sum = x + r, written,
 * then y = rms_norm(sum) times w as kqcl_rms_norm computes it. x, r, sum and y f32 of one
 * shape on one device; sum may be x or r, and y any of x, r and sum, each exactly (a row is read
 * whole before any of it is written): never overlapping one of them in part, at another offset,
 * where one row's result would overwrite another row still to be read; w is neither sum nor y. */
KQCL_API kqcl_status kqcl_add_rms_norm(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_tensor *r,
                                       const kqcl_tensor *w, float eps, kqcl_tensor *sum, kqcl_tensor *y);

/* The norm before a block's products, in the products' call: X' = rms_norm(x + r) times w, as
 * kqcl_add_rms_norm computes it, with x + r written to sum; r and sum NULL: rms_norm(x) times w,
 * as kqcl_rms_norm. w NULL: no weight. x, r, sum and w f32 on x's device; r and sum of x's shape
 * and each either x or r exactly or apart from both; w one row of x's columns. */
typedef struct kqcl_norm_prologue {
    const kqcl_tensor *r; /* the residual added to x first, or NULL */
    kqcl_tensor *sum;     /* where x + r goes (with r), or NULL */
    const kqcl_tensor *w; /* the norm's weight, or NULL */
    float eps;            /* >= 0 and finite */
} kqcl_norm_prologue;

/* y[i] = X' . w[i]^T for i < count (1..16), X' the normalised x of `norm` (above): a
 * transformer block's residual add, its norm and its Q, K and V, or the final norm and the
 * output, in one call. In decode (X of at most 8 rows whose width is a multiple of 32) in the
 * F32 mode, with 1..4 weights of one type that NVIDIA's tensor cores would not take, one launch
 * a run of one type: every work-group of the product normalises X itself into local memory, and
 * the one that reads x and r last writes sum, so X' never goes to memory and the norm costs no
 * launch. As every work-group reads X, this form is kept to where those reads stay under 8 MiB
 * (a small model's widths; at Llama-3-8B's they would cost what the launch saves).
 * Elsewhere kqcl_add_rms_norm (or kqcl_rms_norm) into a scratch X', then kqcl_matmul_group. The
 * products are kqcl_matmul's sums of X'; X' is the norm's within its stated error (the one-launch
 * form sums the squares in another order). All tensors whole on one device (else
 * KQCL_ERR_UNSUPPORTED); no y[i] may overlap x, r, sum or w, as the work-groups write y while
 * others still read them. */
KQCL_API kqcl_status kqcl_norm_matmul_group(kqcl_context *ctx, const kqcl_norm_prologue *norm, int count,
                                            const kqcl_tensor *const *w, const kqcl_tensor *x,
                                            kqcl_tensor *const *y);

/* kqcl_matmul_glu of the normalised X' of `norm`: the feed-forward block's residual add, norm,
 * gate, up and activation. One launch where kqcl_matmul_glu's one-launch form and
 * kqcl_norm_matmul_group's both apply; elsewhere the norm into a scratch X', then
 * kqcl_matmul_glu. The same conditions on the operands as kqcl_norm_matmul_group. */
KQCL_API kqcl_status kqcl_norm_matmul_glu(kqcl_context *ctx, const kqcl_norm_prologue *norm, kqcl_glu_op op,
                                          const kqcl_tensor *w_gate, const kqcl_tensor *w_up, const kqcl_tensor *x,
                                          kqcl_tensor *y);

/* Softmax of each row of x * scale + mask (a product's scale, then the attention mask): mask NULL
 * or an f32 tensor of x's columns whose rows divide x's (row r takes the mask's r % mask.rows;
 * -inf masks a position out). exp is OpenCL's; the sums are f32 trees (relative error 1e-6 in
 * the tests). A row whose every value is masked out gives NaN. */
KQCL_API kqcl_status kqcl_softmax(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_tensor *mask, float scale,
                                  kqcl_tensor *y);

/* Rotary position embedding (RoPE) as llama.cpp computes it, YaRN included. */
typedef struct kqcl_rope_params {
    int n_dims;                /* values of a row that turn (even, at most cols); the rest are copied */
    int neox;                  /* 0: pairs (2i, 2i + 1), Llama's; 1: (i, i + n_dims / 2), NeoX's (Gemma, Qwen) */
    float freq_base;           /* pair i turns by p * freq_base^(-2i / n_dims) ... */
    float freq_scale;          /* ... times freq_scale (1: none; below 1 interpolates) */
    float ext_factor;          /* YaRN: how far the pairs in the correction range go back to the
                                * unscaled angle (0: off), and the magnitude 1 + 0.1 ln(1 / freq_scale) */
    float attn_factor;         /* scales cos and sin (1: none) */
    float corr_low, corr_high; /* YaRN's correction range, in pairs (ggml_rope_yarn_corr_dims) */
} kqcl_rope_params;

/* y = x with each row's first n_dims values turned by its position: rows in groups of `heads`
 * consecutive rows (a token's heads) share position positions[offset / 4 + r / heads], int32
 * values in device memory (a buffer of x's device; offset a multiple of 4; x.rows / heads of
 * them). x and y f32 of one shape, cols even. cos and sin are OpenCL's (relative error 1e-5 in
 * the tests; the angle is formed in f32, so its error grows with p: about p * 1e-7 radians). */
KQCL_API kqcl_status kqcl_rope(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_buffer *positions, size_t offset,
                               int heads, const kqcl_rope_params *params, kqcl_tensor *y);

/* Attention of query rows over a KV cache: for query i and head h, y = softmax(s) . V with
 * s_j = softcap * tanh(scale * q . k_j / softcap) (scale * q . k_j when softcap is 0) + mask[i][j]
 * over the cache positions j < kv_len of KV head h / (heads / kv_heads) (grouped-query heads).
 * Rows are addressed by strides, so a cache with room for more positions, or with a position's
 * heads side by side, is read in place:
 *   q: f32, queries x heads rows of d values, query i's head h at row i * q_query_stride + h *
 *      q_head_stride;
 *   k, v: f16, f32 or q8_0 (one type), rows of d (keys) and dv (values) values, position j's KV head
 *      g at row j * kv_pos_stride + g * kv_head_stride of each;
 *   mask: NULL, or f32 or f16 with at least `queries` rows of kv_len values (-inf: not seen);
 *   y: f32, queries * heads rows of dv values, query i's head h at row i * heads + h.
 * A query that sees no position gets zeros. One launch: scores, softmax (taken online) and
 * weighted values in one pass, no score stored (f32 sums with fma; relative error about 1e-6
 * in the tests). */
typedef struct kqcl_attention_params {
    int heads, kv_heads;                   /* kv_heads divides heads */
    int64_t queries, kv_len;
    int64_t q_query_stride, q_head_stride; /* in rows of q */
    int64_t kv_pos_stride, kv_head_stride; /* in rows of k and of v */
    float scale, softcap;                  /* softcap 0: none */
} kqcl_attention_params;

KQCL_API kqcl_status kqcl_attention(kqcl_context *ctx, const kqcl_tensor *q, const kqcl_tensor *k,
                                    const kqcl_tensor *v, const kqcl_tensor *mask, const kqcl_attention_params *params,
                                    kqcl_tensor *y);

/* Row scatter, as a KV cache is written: row i of src (f32) becomes row idx[i] of dst, converted
 * to dst's type (f32, f16 or bf16; rounding as kqcl_convert), or quantized into q8_0 (a cache of
 * llama.cpp's -ctk/-ctv q8_0) with kqcl_quantize's bytes. The indices are src.rows int32
 * (index_bytes 4) or int64 (8) values in device memory: `indices` a buffer of dst's device, from
 * byte `offset` (a multiple of index_bytes). The host does not read them (that would wait for the
 * device): a row whose index is outside [0, dst.rows) is not written. One launch. */
KQCL_API kqcl_status kqcl_set_rows(kqcl_context *ctx, const kqcl_tensor *src, const kqcl_buffer *indices,
                                   size_t offset, int index_bytes, kqcl_tensor *dst);

/* kqcl_rope, its result written as kqcl_set_rows writes rows, in one launch (a key's RoPE and
 * its KV-cache write): x's rows, `heads` consecutive rows a position, turned as kqcl_rope turns
 * them (positions from pos_offset, params), and position t's heads side by side become row
 * idx[t] of dst (f32, f16 or bf16 of heads * x.cols values, rounded as kqcl_convert). The indices
 * are x.rows / heads values as kqcl_set_rows takes them (an index outside [0, dst.rows) writes
 * nothing). The values written are the bits kqcl_rope then kqcl_set_rows would write. */
KQCL_API kqcl_status kqcl_rope_set_rows(kqcl_context *ctx, const kqcl_tensor *x, const kqcl_buffer *positions,
                                        size_t pos_offset, int heads, const kqcl_rope_params *params,
                                        const kqcl_buffer *indices, size_t idx_offset, int index_bytes,
                                        kqcl_tensor *dst);

/* Up to KQCL_ROPE_MAX_JOBS row sets of one step in one launch, each written as kqcl_rope
 * (indices NULL) or kqcl_rope_set_rows (indices given) would write it, with the rows copied
 * instead of turned where `copy` is set (then the values are kqcl_set_rows's, or x's): a step's
 * query turned, its key turned into the K cache and its value copied into the V cache. The jobs
 * share positions, pos_offset and params and cover the same positions (x.rows / heads equal);
 * x f32 with an even cols; a job's dst must not share bytes with another job's x or dst (the
 * jobs run at once). The same checks and statuses as the single calls.
 * A job with norm_w normalises each row first, as kqcl_rms_norm with w would (within its stated
 * error; the squares summed in another fixed order), then turns or copies it: a Gemma-3 query's
 * and key's norms inside the same launch. Each of a row's pairs sums the row's squares again
 * for itself on a GPU, which suits a decode step's few rows, not a prompt's many. out_scale
 * multiplies every value a job writes, last (Gemma-3's query scale, ggml's SCALE after ROPE). */
#define KQCL_ROPE_MAX_JOBS 3
typedef struct kqcl_rope_job {
    const kqcl_tensor *x;       /* the rows, `heads` consecutive rows a position */
    int heads;
    int copy;                   /* 1: copied as they are (a value's rows); 0: turned by params */
    kqcl_tensor *dst;           /* f32 of x's shape (indices NULL), or rows of heads * x.cols values */
    const kqcl_buffer *indices; /* NULL, or the destination rows as kqcl_set_rows takes them */
    size_t idx_offset;
    int index_bytes;
    const kqcl_tensor *norm_w;  /* NULL, or the norm's weight: f32, one row of x.cols values, x's device */
    float norm_eps;             /* the norm's eps (>= 0 and finite), with norm_w */
    float out_scale;            /* every value written times this, last (finite; 0 taken as 1: none):
                                 * Gemma-3's query scale */
} kqcl_rope_job;

KQCL_API kqcl_status kqcl_rope_jobs(kqcl_context *ctx, const kqcl_buffer *positions, size_t pos_offset,
                                    const kqcl_rope_params *params, int count, const kqcl_rope_job *jobs);

/* kqcl_rope_jobs, then kqcl_attention over what the jobs wrote: a decode step's query turned, its
 * key turned into the K cache and its value copied into the V cache, then the attention. One
 * launch where each (query, head) row reads of the jobs' rows only what its own work can write
 * first, on a device that runs the GPU kernels (on a CPU's, repeating a KV head's writes for each
 * of its query heads costs more than the launch it saves), which holds when: one query, and the
 * jobs cover one position; every job writes one operand -- q in place (its row h q's row h: dst
 * at q's first byte, q_head_stride 1), or the K or V cache that k or v views (f16 or f32 rows of
 * a position's kv_heads heads side by side, so kv_head_stride 1 and kv_pos_stride kv_heads, the
 * view starting on a whole row of dst); no job writes bytes another operand holds; y lies over
 * none of the jobs' rows, norm weights, indices or positions (but it may lie exactly over the
 * query job's x, row h over row h, where ggml puts it); and no other operand, index buffer or
 * the positions lies in the caches' buffers. Elsewhere the two
 * launches. Either way the jobs' rows are the bits kqcl_rope_jobs writes and y is what
 * kqcl_attention computes from them; the same checks and statuses as the two calls;
 * kqcl_last_device_time covers both launches. */
KQCL_API kqcl_status kqcl_rope_jobs_attention(kqcl_context *ctx, const kqcl_buffer *positions, size_t pos_offset,
                                              const kqcl_rope_params *rope, int count, const kqcl_rope_job *jobs,
                                              const kqcl_tensor *q, const kqcl_tensor *k, const kqcl_tensor *v,
                                              const kqcl_tensor *mask, const kqcl_attention_params *params,
                                              kqcl_tensor *y);

/* ------------------------------------------------------------------------------------------ */
/* Several devices: placement, tensor/data/pipeline parallelism, collectives, MPI               */
/*
 * A tensor is either on one device (kqcl_tensor_create, kqcl_tensor_create_on) or placed over
 * the context's devices. Devices hold nothing in common: every move between them is staged
 * through pinned host memory. doc/multi-device.md tells the whole story.
 */
typedef enum kqcl_split {
    KQCL_SPLIT_NONE = 0,      /* the whole tensor on one device                                */
    KQCL_SPLIT_ROWS = 1,      /* each device a contiguous range of rows (column-parallel W)    */
    KQCL_SPLIT_COLS = 2,      /* each device a range of columns in whole 256-value blocks     */
    KQCL_SPLIT_REPLICATE = 3  /* a whole copy on every device                                  */
} kqcl_split;

/* Create a tensor placed over all the context's devices. Shares follow the devices' measured
 * speeds (kqcl_measure_devices), else their memory sizes; a device may get nothing when the
 * tensor is too small to split (it then holds no part). _ex takes explicit `fractions`, one
 * per device (>= 0, not all 0; normalised), or NULL for the automatic shares. */
KQCL_API kqcl_status kqcl_tensor_create_split(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols,
                                              kqcl_split split, kqcl_tensor **out);
KQCL_API kqcl_status kqcl_tensor_create_split_ex(kqcl_context *ctx, kqcl_type type, int64_t rows,
                                                 int64_t cols, kqcl_split split, const double *fractions,
                                                 kqcl_tensor **out);
/* Create a whole tensor on device `device` (0 .. kqcl_device_count-1). */
KQCL_API kqcl_status kqcl_tensor_create_on(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols,
                                           int device, kqcl_tensor **out);
/* The tensor's placement (KQCL_SPLIT_NONE for NULL). */
KQCL_API kqcl_split kqcl_tensor_split(const kqcl_tensor *t);
/* The part device `device` holds: rows (KQCL_SPLIT_ROWS) or columns (KQCL_SPLIT_COLS)
 * [*first, *first + *count); the whole row range for a replica or the device of a whole
 * tensor; *count = 0 where the device holds nothing. */
KQCL_API kqcl_status kqcl_tensor_part(const kqcl_tensor *t, int device, int64_t *first, int64_t *count);
/* Write or read one device's part alone, in host layout (its rows x its columns). For a
 * replica this sets one device's copy: how each device's contribution to kqcl_allreduce is
 * given. nbytes must equal the part's size. */
KQCL_API kqcl_status kqcl_tensor_write_part(kqcl_tensor *t, int device, const void *src, size_t nbytes);
KQCL_API kqcl_status kqcl_tensor_read_part(kqcl_tensor *t, int device, void *dst, size_t nbytes);

/* Time a small fused matvec on every device and keep the speeds, so that later automatic
 * splits follow them. `gflops`, if not NULL, receives kqcl_device_count values. */
KQCL_API kqcl_status kqcl_measure_devices(kqcl_context *ctx, double *gflops);

/* Copy src into dst of the same shape and type, whatever the placements of both: gather
 * (split -> whole), scatter (whole -> split), all-gather (split -> replica), or a move between
 * devices. Staged through pinned host memory; returns when done. */
KQCL_API kqcl_status kqcl_tensor_copy(kqcl_context *ctx, const kqcl_tensor *src, kqcl_tensor *dst);
/* The same, each checking the placements its name promises. */
KQCL_API kqcl_status kqcl_gather(kqcl_context *ctx, const kqcl_tensor *src, kqcl_tensor *dst);
KQCL_API kqcl_status kqcl_scatter(kqcl_context *ctx, const kqcl_tensor *src, kqcl_tensor *dst);
KQCL_API kqcl_status kqcl_allgather(kqcl_context *ctx, const kqcl_tensor *src, kqcl_tensor *dst);

/* A collective in flight. */
typedef struct kqcl_request kqcl_request;

/* All-reduce over the copies of a replicated f32 tensor: afterwards every copy holds the
 * element-wise op (KQCL_REDUCE_SUM, _MAX or _MIN) of all copies -- and, in an MPI build after
 * kqcl_mpi_init, of every rank's copies. Staged through pinned host memory in chunks whose
 * device->host copies, host reductions (several threads) and host->device copies overlap.
 * Combined in device order (rank order across ranks): the same inputs give the same bits
 * whatever the timing. Blocks until done. */
KQCL_API kqcl_status kqcl_allreduce(kqcl_context *ctx, kqcl_tensor *t, kqcl_reduce_op op);
/* The non-blocking form: queued after the work already on the devices' queues; work queued
 * later waits for it on the queues, so the host may go on. Finish with kqcl_request_wait. */
KQCL_API kqcl_status kqcl_allreduce_start(kqcl_context *ctx, kqcl_tensor *t, kqcl_reduce_op op,
                                          kqcl_request **req);
/* Copy device `root`'s copy of a replicated tensor (any type) to every copy (with MPI: root
 * is a global device index, see kqcl_global_device). */
KQCL_API kqcl_status kqcl_broadcast(kqcl_context *ctx, kqcl_tensor *t, int root);
KQCL_API kqcl_status kqcl_broadcast_start(kqcl_context *ctx, kqcl_tensor *t, int root, kqcl_request **req);
/* Wait for a collective and release the request; its status. NULL is KQCL_ERR_INVALID_ARG.
 * Also valid after kqcl_context_destroy (which waited for it); the message is then in
 * kqcl_last_error(NULL). */
KQCL_API kqcl_status kqcl_request_wait(kqcl_request *req);

/* Pipeline executor: y = x . W0^T . W1^T ... run layer by layer, each on the devices its
 * weight lives on, the activations moved between devices as the layers ask. n >= 1 weights;
 * weights[i]->cols == weights[i-1]->rows; x is n x weights[0]->cols, y n x last->rows (f32). */
KQCL_API kqcl_status kqcl_pipeline_run(kqcl_context *ctx, int n_layers, const kqcl_tensor *const *weights,
                                       const kqcl_tensor *x, kqcl_tensor *y);

/* ---- planning ---- */
typedef enum kqcl_plan_mode {
    KQCL_PLAN_AUTO = 0,   /* choose from transfer cost and device speeds, and say why        */
    KQCL_PLAN_LAYERS = 1, /* pipeline: contiguous stages of layers, one device each           */
    KQCL_PLAN_TENSOR = 2  /* every tensor split by rows over all devices                      */
} kqcl_plan_mode;

typedef struct kqcl_plan_device {
    char name[64];          /* need not end in a NUL: at most 64 bytes are ever read        */
    uint64_t memory_bytes;  /* what the planner may fill                                    */
    double speed_gbps;      /* weight bytes a second it streams through a matvec, GB/s      */
    double link_gbps;       /* host-staged transfer bandwidth to and from it, GB/s          */
    double link_latency_us; /* one small host-staged transfer (or collective step), us      */
} kqcl_plan_device;

typedef struct kqcl_plan_layer {
    const char *name;
    int n_tensors;
    const char *const *tensor_names; /* may be NULL */
    const uint64_t *tensor_bytes;
} kqcl_plan_layer;

typedef struct kqcl_plan_request {
    int n_devices;
    const kqcl_plan_device *devices;
    int n_layers;
    const kqcl_plan_layer *layers;
    kqcl_plan_mode mode;
    int64_t activation_bytes; /* bytes of the activations one step moves between layers      */
} kqcl_plan_request;

typedef struct kqcl_plan kqcl_plan;

/* Fill `out` (capacity entries) with the context's devices as the planner sees them: memory,
 * speed (measured by kqcl_measure_devices if not yet) and link cost (timed). */
KQCL_API kqcl_status kqcl_plan_devices(kqcl_context *ctx, kqcl_plan_device *out, int capacity);
/* Plan: KQCL_ERR_OUT_OF_MEMORY when the layers do not fit the devices' memory;
 * KQCL_ERR_INVALID_ARG for a malformed request, tensor sizes that sum past 2^64 or more than
 * INT32_MAX tensors. */
KQCL_API kqcl_status kqcl_plan_create(const kqcl_plan_request *req, kqcl_plan **out);
KQCL_API void kqcl_plan_destroy(kqcl_plan *plan);
/* The mode chosen (never AUTO), the device of layer i (-1: split over all), the bytes placed on
 * device d, and the bytes moved between devices per step. */
KQCL_API kqcl_plan_mode kqcl_plan_mode_chosen(const kqcl_plan *plan);
KQCL_API int kqcl_plan_layer_device(const kqcl_plan *plan, int layer);
KQCL_API uint64_t kqcl_plan_device_bytes(const kqcl_plan *plan, int device);
KQCL_API uint64_t kqcl_plan_transfer_bytes(const kqcl_plan *plan);
/* A readable report: the tensors on each device, bytes per device, transfer per step, the
 * expected step times of both modes and why the mode was chosen. NUL-terminated, truncated to
 * capacity; *needed (if not NULL) gets the full length + 1. */
KQCL_API kqcl_status kqcl_plan_describe(const kqcl_plan *plan, char *buf, size_t capacity, size_t *needed);

/* ---- several machines (MPI) ---- */
/* Join the MPI job (MPI_Init_thread if MPI is not initialised yet). KQCL_ERR_UNSUPPORTED when
 * built without --with-mpi. After it, collectives span every rank's devices. */
KQCL_API kqcl_status kqcl_mpi_init(int *argc, char ***argv);
/* Leave it (MPI_Finalize if kqcl_mpi_init initialised MPI). */
KQCL_API kqcl_status kqcl_mpi_finalize(void);
/* This process's rank and the number of ranks (0 and 1 without MPI). */
KQCL_API int kqcl_mpi_rank(void);
KQCL_API int kqcl_mpi_size(void);
/* Global index of local device `device`: rank x local devices + device. */
KQCL_API int kqcl_global_device(const kqcl_context *ctx, int device);
/* Devices over all ranks (every rank must have as many). */
KQCL_API int kqcl_global_device_count(const kqcl_context *ctx);

/* ------------------------------------------------------------------------------------------ */
/* GGUF files (read and write)                                                                  */
/*
 * Reader: GGUF versions 2 and 3 (little-endian). Every count, length, offset and shape is
 * checked against the file size and against overflow before it is used: a truncated, corrupt
 * or hostile file gives KQCL_ERR_FORMAT with a message naming what is wrong and where (byte
 * offset, key or tensor), read with kqcl_last_error(NULL). Every tensor's data range is checked
 * against the file for every type ggml defines (kqcl_ggml_type_info); tensors of a type kqcl
 * does not compute with (q8_1, iq2_xs, ...) are listed with known = 0, not rejected, and a type
 * id ggml does not define with nbytes = 0. general.alignment must be a power of two of at most
 * 1 MiB and the data section must start inside the file. Keys and tensor names holding a NUL
 * byte are refused. A handle is read-only after open and may be read from several threads at
 * once.
 *
 * A file that changes after it was opened: the header (metadata, names, shapes) is read into
 * memory at open, so metadata stays valid whatever happens to the file; kqcl_gguf_load_tensor
 * reads tensor data with pread, so a file truncated since open gives KQCL_ERR_IO, never a
 * signal. kqcl_gguf_tensor.data points into a read-only mapping of the file as it was at open:
 * touching it after the file was truncated raises SIGBUS in the caller, as any mapping does.
 */

/* The types of metadata values, as GGUF numbers them. */
typedef enum kqcl_gguf_type {
    KQCL_GGUF_TYPE_NONE = -1, /* no value (out-of-range index, element type of a scalar) */
    KQCL_GGUF_TYPE_UINT8 = 0,
    KQCL_GGUF_TYPE_INT8 = 1,
    KQCL_GGUF_TYPE_UINT16 = 2,
    KQCL_GGUF_TYPE_INT16 = 3,
    KQCL_GGUF_TYPE_UINT32 = 4,
    KQCL_GGUF_TYPE_INT32 = 5,
    KQCL_GGUF_TYPE_FLOAT32 = 6,
    KQCL_GGUF_TYPE_BOOL = 7,
    KQCL_GGUF_TYPE_STRING = 8,
    KQCL_GGUF_TYPE_ARRAY = 9,
    KQCL_GGUF_TYPE_UINT64 = 10,
    KQCL_GGUF_TYPE_INT64 = 11,
    KQCL_GGUF_TYPE_FLOAT64 = 12
} kqcl_gguf_type;

/* A short name of a value type ("u32", "string", "array"); "none" for anything else. */
KQCL_API const char *kqcl_gguf_type_name(kqcl_gguf_type type);

typedef struct kqcl_gguf kqcl_gguf;

/* One metadata value, or one element of an array value. Filled by kqcl_gguf_get_value and
 * kqcl_gguf_value_item; points into its kqcl_gguf and is valid until kqcl_gguf_close. */
typedef struct kqcl_gguf_value {
    kqcl_gguf_type type;      /* the value's type */
    kqcl_gguf_type elem_type; /* arrays: the elements' type; else KQCL_GGUF_TYPE_NONE */
    uint64_t length;          /* arrays: number of elements; strings: bytes (no NUL); else 0 */
    const void *impl_;        /* private: where the value lives */
} kqcl_gguf_value;

/* One tensor of a GGUF file. Pointers are into the kqcl_gguf, valid until kqcl_gguf_close. */
typedef struct kqcl_gguf_tensor {
    const char *name;
    uint32_t type;     /* ggml type id as stored (kqcl_type when known) */
    int known;         /* 1 when kqcl knows the type (nbytes valid), else 0 */
    int n_dims;        /* 0 .. 4 */
    int64_t ne[4];     /* GGUF order: ne[0] varies fastest (a row's length); unused dims are 1 */
    uint64_t offset;   /* from the start of the data section; a multiple of the alignment */
    uint64_t nbytes;   /* bytes of the data, for every type ggml defines; 0 for other ids */
    const void *data;  /* the data, inside the mapping (see above for truncated files) */
} kqcl_gguf_tensor;

/* Open and parse the GGUF file at `path` (header read into memory, data mapped read-only, not
 * copied). *out is NULL on failure. The file is opened without blocking and must be a regular
 * file: a FIFO, device or directory gives KQCL_ERR_IO at once. KQCL_ERR_IO if the file cannot
 * be opened, read or mapped, KQCL_ERR_FORMAT if it is malformed or truncated (a file cut
 * anywhere before the end of its last tensor's data), KQCL_ERR_UNSUPPORTED for GGUF v1,
 * big-endian files or versions after 3, KQCL_ERR_OUT_OF_MEMORY, KQCL_ERR_INVALID_ARG for NULL
 * arguments. The file stays open until kqcl_gguf_close. */
KQCL_API kqcl_status kqcl_gguf_open(const char *path, kqcl_gguf **out);

/* Unmap and free. NULL is a no-op. */
KQCL_API void kqcl_gguf_close(kqcl_gguf *g);

/* The file's GGUF version (2 or 3); 0 for NULL. */
KQCL_API int kqcl_gguf_version(const kqcl_gguf *g);
/* The alignment of tensor data (general.alignment, default 32); 0 for NULL. */
KQCL_API uint64_t kqcl_gguf_alignment(const kqcl_gguf *g);
/* Byte offset of the data section in the file; 0 for NULL. */
KQCL_API uint64_t kqcl_gguf_data_offset(const kqcl_gguf *g);

/* Number of metadata key/value pairs (0 for NULL). Keys are indexed 0 .. count-1 in file
 * order. */
KQCL_API int64_t kqcl_gguf_kv_count(const kqcl_gguf *g);
/* The key of pair i (NUL-terminated), or NULL when i is out of range. */
KQCL_API const char *kqcl_gguf_key(const kqcl_gguf *g, int64_t i);
/* The value type of pair i, or KQCL_GGUF_TYPE_NONE when i is out of range. */
KQCL_API kqcl_gguf_type kqcl_gguf_kv_type(const kqcl_gguf *g, int64_t i);
/* The index of `key`, or -1 when absent. Keys are unique (duplicates are a format error). */
KQCL_API int64_t kqcl_gguf_find_key(const kqcl_gguf *g, const char *key);
/* The value of pair i. KQCL_ERR_INVALID_ARG when i is out of range. */
KQCL_API kqcl_status kqcl_gguf_get_value(const kqcl_gguf *g, int64_t i, kqcl_gguf_value *out);

/* Read a value. KQCL_ERR_INVALID_ARG when the value's type does not convert or the number does
 * not fit: _int64 and _uint64 take any integer type (not bool, not float); _double takes any
 * integer or float type; _bool only bool; _string only strings (*text is NUL-terminated,
 * *length, if not NULL, gets the byte count, which excludes the NUL and can differ from
 * strlen when the string holds NUL bytes). */
KQCL_API kqcl_status kqcl_gguf_value_int64(const kqcl_gguf_value *v, int64_t *out);
KQCL_API kqcl_status kqcl_gguf_value_uint64(const kqcl_gguf_value *v, uint64_t *out);
KQCL_API kqcl_status kqcl_gguf_value_double(const kqcl_gguf_value *v, double *out);
KQCL_API kqcl_status kqcl_gguf_value_bool(const kqcl_gguf_value *v, int *out);
KQCL_API kqcl_status kqcl_gguf_value_string(const kqcl_gguf_value *v, const char **text,
                                            size_t *length);
/* Element j of an array value (arrays of arrays nest). KQCL_ERR_INVALID_ARG when v is not an
 * array or j >= v->length. */
KQCL_API kqcl_status kqcl_gguf_value_item(const kqcl_gguf_value *v, uint64_t j,
                                          kqcl_gguf_value *out);

/* Shorthands: kqcl_gguf_get_value(g, i) followed by the matching kqcl_gguf_value_* call. */
KQCL_API kqcl_status kqcl_gguf_get_int64(const kqcl_gguf *g, int64_t i, int64_t *out);
KQCL_API kqcl_status kqcl_gguf_get_uint64(const kqcl_gguf *g, int64_t i, uint64_t *out);
KQCL_API kqcl_status kqcl_gguf_get_double(const kqcl_gguf *g, int64_t i, double *out);
KQCL_API kqcl_status kqcl_gguf_get_bool(const kqcl_gguf *g, int64_t i, int *out);
KQCL_API kqcl_status kqcl_gguf_get_string(const kqcl_gguf *g, int64_t i, const char **text,
                                          size_t *length);

/* Number of tensors (0 for NULL). */
KQCL_API int64_t kqcl_gguf_tensor_count(const kqcl_gguf *g);
/* Describe tensor i. KQCL_ERR_INVALID_ARG when i is out of range. */
KQCL_API kqcl_status kqcl_gguf_tensor_info(const kqcl_gguf *g, int64_t i,
                                           kqcl_gguf_tensor *out);
/* The index of the tensor named `name`, or -1 when absent. */
KQCL_API int64_t kqcl_gguf_find_tensor(const kqcl_gguf *g, const char *name);

/* Create a 2-D tensor on ctx from tensor `index` of g -- rows = ne[1]*ne[2]*ne[3], cols =
 * ne[0] -- and upload its data, read from the file with pread through a host buffer of the
 * tensor's size (a handle of kq_gguf_open_memory: from its buffer). *out is NULL on failure.
 * KQCL_ERR_UNSUPPORTED for a type kqcl does not know or an empty tensor; KQCL_ERR_IO when the
 * file no longer holds the data (truncated since open); otherwise the statuses of
 * kqcl_tensor_create and kqcl_tensor_write. The message is on ctx. */
KQCL_API kqcl_status kqcl_gguf_load_tensor(kqcl_context *ctx, const kqcl_gguf *g, int64_t index,
                                           kqcl_tensor **out);

/* As kqcl_gguf_load_tensor, placed over the context's devices as kqcl_tensor_create_split
 * places it (KQCL_SPLIT_NONE: on the first device). The data goes from the mapping to each
 * device's part. */
KQCL_API kqcl_status kqcl_gguf_load_tensor_split(kqcl_context *ctx, const kqcl_gguf *g, int64_t index,
                                                 kqcl_split split, kqcl_tensor **out);

/*
 * Writer: builds a GGUF v3 file in memory order -- metadata in the order first set, tensors in
 * the order added -- with tensor data aligned to general.alignment (32 unless that key is set
 * to another power of two, at most 1 MiB, as a u32). Tensor data is REFERENCED, not copied:
 * it must stay valid until kqcl_gguf_writer_write returns. Keys and names are copied. Setting
 * a key again replaces its value in place. Failures are KQCL_ERR_INVALID_ARG (NULL, bad type, duplicate
 * tensor name, wrong nbytes), KQCL_ERR_OUT_OF_MEMORY or KQCL_ERR_IO, read with
 * kqcl_last_error(NULL).
 */
typedef struct kqcl_gguf_writer kqcl_gguf_writer;

KQCL_API kqcl_status kqcl_gguf_writer_create(kqcl_gguf_writer **out);
/* Free the writer (not the tensor data it references). NULL is a no-op. */
KQCL_API void kqcl_gguf_writer_destroy(kqcl_gguf_writer *w);

/* Set a scalar of any numeric or bool type: `value` points to the host type of that GGUF type
 * (uint8_t .. int64_t, float, double, bool). */
KQCL_API kqcl_status kqcl_gguf_writer_set_scalar(kqcl_gguf_writer *w, const char *key,
                                                 kqcl_gguf_type type, const void *value);
KQCL_API kqcl_status kqcl_gguf_writer_set_u32(kqcl_gguf_writer *w, const char *key,
                                              uint32_t value);
KQCL_API kqcl_status kqcl_gguf_writer_set_i32(kqcl_gguf_writer *w, const char *key,
                                              int32_t value);
KQCL_API kqcl_status kqcl_gguf_writer_set_u64(kqcl_gguf_writer *w, const char *key,
                                              uint64_t value);
KQCL_API kqcl_status kqcl_gguf_writer_set_i64(kqcl_gguf_writer *w, const char *key,
                                              int64_t value);
KQCL_API kqcl_status kqcl_gguf_writer_set_f32(kqcl_gguf_writer *w, const char *key, float value);
KQCL_API kqcl_status kqcl_gguf_writer_set_f64(kqcl_gguf_writer *w, const char *key,
                                              double value);
KQCL_API kqcl_status kqcl_gguf_writer_set_bool(kqcl_gguf_writer *w, const char *key, int value);
/* A NUL-terminated string. */
KQCL_API kqcl_status kqcl_gguf_writer_set_string(kqcl_gguf_writer *w, const char *key,
                                                 const char *value);
/* An array of n numbers or bools of `elem_type`, `values` in that type's host layout (as for
 * set_scalar). */
KQCL_API kqcl_status kqcl_gguf_writer_set_array(kqcl_gguf_writer *w, const char *key,
                                                kqcl_gguf_type elem_type, const void *values,
                                                uint64_t n);
/* An array of n NUL-terminated strings. */
KQCL_API kqcl_status kqcl_gguf_writer_set_string_array(kqcl_gguf_writer *w, const char *key,
                                                       const char *const *values, uint64_t n);
/* Any value read from a kqcl_gguf, nested arrays included (copied now). */
KQCL_API kqcl_status kqcl_gguf_writer_set_value(kqcl_gguf_writer *w, const char *key,
                                                const kqcl_gguf_value *value);
/* Copy pair i of g, key and value. */
KQCL_API kqcl_status kqcl_gguf_writer_copy_kv(kqcl_gguf_writer *w, const kqcl_gguf *g,
                                              int64_t i);

/* Add a tensor of ggml type id `type` with n_dims (1..4) dimensions ne[] in GGUF order. For a
 * type ggml defines, nbytes must equal its size from the shape; other ids' nbytes are taken as
 * given. `data` (nbytes bytes) is referenced until kqcl_gguf_writer_write returns. Names must
 * be unique and shorter than 64 bytes (ggml's limit). */
KQCL_API kqcl_status kqcl_gguf_writer_add_tensor(kqcl_gguf_writer *w, const char *name,
                                                 uint32_t type, int n_dims, const int64_t *ne,
                                                 const void *data, uint64_t nbytes);

/* Write everything to `path` as GGUF v3: into a new temporary file beside the target
 * (kqcl-tmp-PID-N in PATH's directory: short, so any name up to NAME_MAX can be written),
 * renamed over it on success, so that a failure (disk full, write error)
 * leaves whatever was at `path` untouched and removes only that temporary file. An existing
 * file keeps its permissions; a symbolic link is followed to its target. A `path` that exists
 * and is not a regular file (a device such as /dev/full, a FIFO, a directory) or is a dangling
 * link is refused with KQCL_ERR_IO and left as it is. Needs write access to the directory. */
KQCL_API kqcl_status kqcl_gguf_writer_write(const kqcl_gguf_writer *w, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* KQCL_H */
