/*
 * ggml-kqcl.c -- a ggml backend on kqcl: llama.cpp's matrix products on any OpenCL device.
 *
 * A loadable module (libggml-kqcl.so) for an unmodified llama.cpp built with shared libraries:
 * GGML_BACKEND_PATH=/path/libggml-kqcl.so makes ggml call ggml_backend_init, which this file
 * exports through GGML_BACKEND_DL_IMPL. It is written against kqcl's public interface only
 * (kqcl.h) and ggml's backend interface (ggml-backend-impl.h), which is not versioned between
 * llama.cpp commits: configure builds it only against the pinned tree (configure.ac says which).
 *
 * What ggml sees:
 *   - one device per kqcl device of one kqcl context (KQCL_DEVICES chooses them, as in the
 *     library; KQCL_PRECISION sets the products' precision, F32 by default), named KQCL0,
 *     KQCL1, ..., described by the OpenCL device name, of GPU type whatever OpenCL says (llama.cpp
 *     offloads layers to GPU-type devices only);
 *   - a buffer type a device whose buffers are kqcl device memory (kqcl_buffer). ggml wants a
 *     base address: each buffer reserves an inaccessible range of address space of its size
 *     (PROT_NONE), so tensor->data = base + offset is unique, aligned, and faults if the host
 *     ever touches it;
 *   - a split buffer type (ggml_backend_split_buffer_type, llama.cpp's -sm row): weight
 *     matrices as kqcl tensors split by rows over the devices, their MUL_MATs one kqcl_matmul;
 *   - ops from a table (kq_ops below), each a pair: does the device take this node, and compute
 *     it. MUL_MAT for every weight type kqcl computes, GET_ROWS (an embedding lookup) for every
 *     type kqcl knows, SET_ROWS into f32/f16/bf16, and q8_0 from f32 rows in one batch (writing
 *     the KV cache, so that it may live on the device; -ctk/-ctv q8_0); a layer's element-wise
 *     and row-wise ops on contiguous f32 tensors (ADD, SUB, MUL, DIV with the broadcasts
 *     kqcl_binary takes, SCALE, UNARY SILU/GELU/RELU, GLU SWIGLU/GEGLU in their two-tensor form,
 *     RMS_NORM, SOFT_MAX with a causal mask, ROPE in the normal and NeoX modes, FLASH_ATTN_EXT
 *     over an f16, f32 or q8_0 cache); CPY/DUP/CONT between f32, f16 and bf16 where both sides
 *     are contiguous; NONE and the view ops cost nothing;
 *   - fusions from a second table (kq_fusions): a run of nodes computed as one kqcl call where
 *     ggml_can_fuse allows (RMS_NORM then MUL by its weight: one kqcl_rms_norm; the residual ADD
 *     before them too: one kqcl_add_rms_norm; MUL_MATs of one X: one kqcl_matmul_group, with
 *     their GLU after them: one kqcl_matmul_glu; a norm and the products that alone read it:
 *     one kqcl_norm_matmul_group or _glu; a key's ROPE and SET_ROWS: one kqcl_rope_set_rows),
 *     graph_optimize, which moves the products of one X side by side before the graph is
 *     allocated, and held jobs: a step's RoPE and cache writes held back and
 *     launched together (kqcl_rope_jobs), inside the attention's launch where it follows
 *     (kqcl_rope_jobs_attention). KQCL_GGML_FUSION=0 turns all three off;
 *     KQCL_GGML_PROFILE=1 tells, when the backend is freed, a graph's host enqueue time beside
 *     its time to the device's end; KQCL_GGML_PROFILE=ops also each kind of step's host and
 *     device time (kq_profile).
 *
 * kqcl's calls on one context are serialised by the caller (kqcl.h): every call here holds
 * kq_lock. Products are queued on the device (kqcl_matmul is asynchronous); a buffer read
 * waits for them, and synchronize is kqcl_finish.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */

#include "ggml-backend-impl.h"
#include "ggml-backend.h"
/* ggml_can_fuse; the header defines static helpers this file does not call */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "ggml-impl.h"
#pragma GCC diagnostic pop
#include "ggml.h"

#include <kqcl.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define KQ_NAME "KQCL"

/* ---- state ------------------------------------------------------------------------------- */

/* Scratch buffers a device keeps for operands that cannot be viewed in place: rows that are
 * not contiguous, or that start at an offset kqcl_tensor_view does not take. */
enum { KQ_SCRATCH_W, KQ_SCRATCH_X, KQ_SCRATCH_Y, KQ_SCRATCH_V, KQ_SCRATCH_M, KQ_SCRATCH_COUNT };

typedef struct kq_device {
    int index;                /* in the kqcl context */
    char name[16];            /* KQCL0 */
    char description[160];    /* the OpenCL device name */
    kqcl_device_info info;
    size_t alignment;         /* kqcl_buffer_alignment */
    size_t allocated;         /* bytes of the live buffers, for get_memory */
    kqcl_buffer *scratch[KQ_SCRATCH_COUNT]; /* freed with the device's last backend */
    int backends;             /* live backends of the device */
    struct ggml_backend_device dev;
    struct ggml_backend_buffer_type buft;
} kq_device;

/* A buffer's base address for ggml: an inaccessible (PROT_NONE) range of address space of the
 * buffer's size, so tensor->data = base + offset is unique, aligned, and faults if the host ever
 * touches it (kq_reserve, kq_unreserve). */
typedef struct kq_addresses {
    void *reserved;
    size_t reserved_bytes;
    char *base;               /* aligned, inside it */
} kq_addresses;

typedef struct kq_buffer {
    kq_device *dev;
    kqcl_buffer *mem;
    kq_addresses addr;
} kq_buffer;

#define KQ_PROFILE_KINDS 32

/* KQCL_GGML_PROFILE=1: where a graph's time goes, told on stderr when the backend is freed. The
 * host's time to enqueue a graph, and to its end on the device (a finish after each graph, which
 * llama.cpp's decode waits for anyway to read the logits): when enqueuing takes about as long as
 * the whole, the host is what limits. */
typedef struct kq_profile {
    long graphs, nodes;
    double enqueue_us, total_us;
    /* KQCL_GGML_PROFILE=ops: each kind of step (an op, or a fusion by its name) with its calls,
     * the host's time in them and the device's time of the kernels they launched (the queue
     * timed: kqcl_context_set_timing, so the host's figures include the events' cost). */
    int kinds;
    struct kq_profile_kind {
        const char *name;
        long calls;
        double host_us, device_us;
    } kind[KQ_PROFILE_KINDS];
} kq_profile;

/* A step's RoPE and cache writes held back to be one kqcl_rope_jobs launch ("held jobs"). */
typedef struct kq_jobs {
    int count;
    kqcl_rope_job job[KQCL_ROPE_MAX_JOBS]; /* their x, dst and norm_w views are ours */
    const struct ggml_tensor *reads[KQCL_ROPE_MAX_JOBS], *writes[KQCL_ROPE_MAX_JOBS];
    const struct ggml_tensor *weights[KQCL_ROPE_MAX_JOBS]; /* the norms' (NULL: none) */
    const struct ggml_tensor *pos; /* the positions of the turned jobs (none held: NULL) */
    kqcl_rope_params params;
    int64_t positions;             /* positions every job covers */
    unsigned long holds;           /* jobs ever held (KQCL_GGML_PROFILE=ops tells a holding step by it) */
} kq_jobs;

typedef struct kq_backend {
    kq_device *dev;
    kq_profile profile;
    kq_jobs jobs;
} kq_backend;

static pthread_mutex_t kq_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t kq_once = PTHREAD_ONCE_INIT;
static kqcl_context *kq_ctx;
static int kq_n_devices;
static kq_device *kq_devices;

/* KQCL_GGML_PROFILE: 0 (unset), 1 (a graph's times) or 2 ("ops": each kind of step too). */
static int kq_profiling(void)
{
    static int level = -1;
    if (level < 0) {
        const char *e = getenv("KQCL_GGML_PROFILE");
        level = e == NULL ? 0 : strcmp(e, "1") == 0 ? 1 : strcmp(e, "ops") == 0 ? 2 : 0;
    }
    return level;
}

static double kq_now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* KQCL_GGML_PROFILE=ops: a step of kind `name` that began on the host at t0 (kq_now_us) has
 * been queued; its kernels' device time is that of the last kqcl call it made (an op that also
 * copies an operand counts its last launch only). */
static void kq_profile_step(kq_backend *be, const char *name, double t0)
{
    kq_profile *p = &be->profile;
    const double host_us = kq_now_us() - t0;
    uint64_t ns = 0;
    if (kqcl_last_device_time(kq_ctx, &ns) != KQCL_OK)
        ns = 0;
    int k = 0;
    while (k < p->kinds && strcmp(p->kind[k].name, name) != 0)
        k++;
    if (k == KQ_PROFILE_KINDS)
        return;
    if (k == p->kinds)
        p->kind[p->kinds++].name = name;
    p->kind[k].calls++;
    p->kind[k].host_us += host_us;
    p->kind[k].device_us += (double)ns / 1e3;
}

static void kq_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ggml-kqcl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* A failed kqcl call: its status and the context's message. */
static bool kq_ok(kqcl_status st, const char *what)
{
    if (st == KQCL_OK)
        return true;
    kq_log("%s: %s (%s)", what, kqcl_status_string(st), kqcl_last_error(kq_ctx));
    return false;
}

static size_t kq_round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

/* ---- buffers ----------------------------------------------------------------------------- */

/* Address space only, never readable, never backed: `bytes` of it from an `align`ed base. False
 * (logged, naming `who`) when none is left. */
static bool kq_reserve(size_t bytes, size_t align, const char *who, kq_addresses *a)
{
    a->reserved_bytes = kq_round_up(bytes, 4096) + align;
    a->reserved = mmap(NULL, a->reserved_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (a->reserved == MAP_FAILED) {
        kq_log("%s: cannot reserve %zu bytes of address space for a buffer", who, a->reserved_bytes);
        return false;
    }
    a->base = (char *)kq_round_up((uintptr_t)a->reserved, align);
    return true;
}

static void kq_unreserve(kq_addresses *a) { munmap(a->reserved, a->reserved_bytes); }

static void kq_buffer_free(ggml_backend_buffer_t buffer)
{
    kq_buffer *b = buffer->context;
    pthread_mutex_lock(&kq_lock);
    /* Work still queued may read or write it: let it finish first. */
    kqcl_finish(kq_ctx);
    kqcl_buffer_destroy(b->mem);
    b->dev->allocated -= buffer->size;
    pthread_mutex_unlock(&kq_lock);
    kq_unreserve(&b->addr);
    free(b);
}

static void *kq_buffer_get_base(ggml_backend_buffer_t buffer) { return ((kq_buffer *)buffer->context)->addr.base; }

/* The bytes of a tensor's data in its buffer start at this offset. */
static size_t kq_offset(const kq_buffer *b, const struct ggml_tensor *t)
{
    return (size_t)((const char *)t->data - b->addr.base);
}

static void kq_buffer_memset_tensor(ggml_backend_buffer_t buffer, struct ggml_tensor *tensor, uint8_t value,
                                    size_t offset, size_t size)
{
    kq_buffer *b = buffer->context;
    pthread_mutex_lock(&kq_lock);
    kq_ok(kqcl_buffer_fill(b->mem, kq_offset(b, tensor) + offset, value, size), "memset_tensor");
    pthread_mutex_unlock(&kq_lock);
}

static void kq_buffer_set_tensor(ggml_backend_buffer_t buffer, struct ggml_tensor *tensor, const void *data,
                                 size_t offset, size_t size)
{
    kq_buffer *b = buffer->context;
    pthread_mutex_lock(&kq_lock);
    kq_ok(kqcl_buffer_write(b->mem, kq_offset(b, tensor) + offset, data, size), "set_tensor");
    pthread_mutex_unlock(&kq_lock);
}

static void kq_buffer_get_tensor(ggml_backend_buffer_t buffer, const struct ggml_tensor *tensor, void *data,
                                 size_t offset, size_t size)
{
    kq_buffer *b = buffer->context;
    pthread_mutex_lock(&kq_lock);
    kq_ok(kqcl_buffer_read(b->mem, kq_offset(b, tensor) + offset, data, size), "get_tensor");
    pthread_mutex_unlock(&kq_lock);
}

static ggml_backend_buffer_t kq_buft_alloc_buffer(ggml_backend_buffer_type_t buft, size_t size);

/* The kqcl buffer holding a tensor's data, or NULL when it is not in one of ours. */
static kq_buffer *kq_buffer_of(const struct ggml_tensor *t)
{
    ggml_backend_buffer_t buf = t->view_src ? t->view_src->buffer : t->buffer;
    if (buf == NULL || buf->buft == NULL || buf->buft->iface.alloc_buffer != kq_buft_alloc_buffer ||
        buf->context == NULL)
        return NULL;
    return buf->context;
}

/* dst is in this buffer; src may be anywhere. Between kqcl buffers kqcl copies (on the device,
 * or staged through the host between two devices); from elsewhere false, and ggml copies through
 * host memory. */
static bool kq_buffer_cpy_tensor(ggml_backend_buffer_t buffer, const struct ggml_tensor *src, struct ggml_tensor *dst)
{
    kq_buffer *d = buffer->context, *s = kq_buffer_of(src);
    if (s == NULL)
        return false;
    pthread_mutex_lock(&kq_lock);
    bool ok = kq_ok(kqcl_buffer_copy(d->mem, kq_offset(d, dst), s->mem, kq_offset(s, src), ggml_nbytes(src)),
                    "cpy_tensor");
    pthread_mutex_unlock(&kq_lock);
    return ok;
}

static void kq_buffer_clear(ggml_backend_buffer_t buffer, uint8_t value)
{
    kq_buffer *b = buffer->context;
    pthread_mutex_lock(&kq_lock);
    kq_ok(kqcl_buffer_fill(b->mem, 0, value, buffer->size), "clear");
    pthread_mutex_unlock(&kq_lock);
}

static const struct ggml_backend_buffer_i kq_buffer_iface = {
    .free_buffer = kq_buffer_free,
    .get_base = kq_buffer_get_base,
    .init_tensor = NULL,
    .memset_tensor = kq_buffer_memset_tensor,
    .set_tensor = kq_buffer_set_tensor,
    .get_tensor = kq_buffer_get_tensor,
    .set_tensor_2d = NULL,
    .get_tensor_2d = NULL,
    .cpy_tensor = kq_buffer_cpy_tensor,
    .clear = kq_buffer_clear,
    .reset = NULL,
};

/* ---- buffer types ------------------------------------------------------------------------ */

static const char *kq_buft_get_name(ggml_backend_buffer_type_t buft)
{
    return ((kq_device *)buft->context)->name;
}

static ggml_backend_buffer_t kq_buft_alloc_buffer(ggml_backend_buffer_type_t buft, size_t size)
{
    kq_device *d = buft->context;
    kq_buffer *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->dev = d;
    if (!kq_reserve(size, d->alignment, d->name, &b->addr)) {
        free(b);
        return NULL;
    }
    pthread_mutex_lock(&kq_lock);
    bool ok = kq_ok(kqcl_buffer_create(kq_ctx, d->index, size, &b->mem), "alloc_buffer");
    if (ok)
        d->allocated += size;
    pthread_mutex_unlock(&kq_lock);
    if (!ok) {
        kq_unreserve(&b->addr);
        free(b);
        return NULL;
    }
    return ggml_backend_buffer_init(buft, kq_buffer_iface, b, size);
}

static size_t kq_buft_get_alignment(ggml_backend_buffer_type_t buft) { return ((kq_device *)buft->context)->alignment; }

static size_t kq_buft_get_max_size(ggml_backend_buffer_type_t buft)
{
    uint64_t max = ((kq_device *)buft->context)->info.max_alloc_bytes;
    return max > SIZE_MAX ? SIZE_MAX : (size_t)max;
}

static bool kq_buft_is_host(ggml_backend_buffer_type_t buft)
{
    (void)buft;
    return false;
}

static const struct ggml_backend_buffer_type_i kq_buft_iface = {
    .get_name = kq_buft_get_name,
    .alloc_buffer = kq_buft_alloc_buffer,
    .get_alignment = kq_buft_get_alignment,
    .get_max_size = kq_buft_get_max_size,
    .get_alloc_size = NULL,
    .is_host = kq_buft_is_host,
};

/* ---- the row split buffer type (llama.cpp's -sm row) -------------------------------------------
 * ggml_backend_split_buffer_type(main_device, tensor_split), which llama.cpp finds through the
 * registry's get_proc_address: a layer's weight matrices each become one kqcl tensor split by
 * rows over the devices (kqcl_tensor_create_split_ex, in the proportions tensor_split gives each
 * device, or kqcl's own shares where they are all 0), and its MUL_MATs run on the layer's
 * device as one kqcl_matmul, which computes every device's rows there and gathers them: each
 * output the bits one device gives. ggml still places the tensors in a buffer (base + offset),
 * so a split buffer reserves address space as ours do; the data lives in the kqcl tensors
 * (tensor->extra), made by init_tensor. Only whole 2-D weights, written and read whole. */
#define KQ_MAX_SPLIT_BUFTS 16

typedef struct kq_split_buft {
    int main_device;           /* the layer's device, whose backend computes its products */
    double fractions[64];      /* a share for each kqcl device (all 0: kqcl's own shares) */
    bool automatic;
    char name[32];             /* KQCL0_Split */
    struct ggml_backend_buffer_type buft;
} kq_split_buft;

typedef struct kq_split_buffer {
    kq_split_buft *type;
    kq_addresses addr;
    kqcl_tensor **tensors;     /* every tensor init_tensor made, freed with the buffer */
    int count, capacity;
} kq_split_buffer;

static kq_split_buft kq_split_bufts[KQ_MAX_SPLIT_BUFTS];
static int kq_n_split_bufts;

static ggml_backend_buffer_t kq_split_buft_alloc_buffer(ggml_backend_buffer_type_t buft, size_t size);
static bool kq_weight_type(enum ggml_type type, int64_t cols);

/* The kqcl tensor of a tensor in a split buffer, or NULL when it is not in one. */
static kqcl_tensor *kq_split_of(const struct ggml_tensor *t)
{
    ggml_backend_buffer_t buf = t ? t->buffer : NULL;
    if (buf == NULL || buf->buft == NULL || buf->buft->iface.alloc_buffer != kq_split_buft_alloc_buffer ||
        t->view_src != NULL)
        return NULL;
    return t->extra;
}

/* A split weight's bytes on each device join (sign 1) or leave (-1) the devices' allocated
 * bytes (get_memory), under kq_lock. */
static void kq_split_account(const kqcl_tensor *t, int sign)
{
    for (int i = 0; i < kq_n_devices; i++) {
        int64_t first, count;
        if (kqcl_tensor_part(t, kq_devices[i].index, &first, &count) == KQCL_OK && count > 0) {
            size_t bytes = (size_t)count * kqcl_row_size(kqcl_tensor_type(t), kqcl_tensor_cols(t));
            kq_devices[i].allocated = sign > 0 ? kq_devices[i].allocated + bytes : kq_devices[i].allocated - bytes;
        }
    }
}

static void kq_split_buffer_free(ggml_backend_buffer_t buffer)
{
    kq_split_buffer *b = buffer->context;
    pthread_mutex_lock(&kq_lock);
    kqcl_finish(kq_ctx); /* products still queued may read them */
    for (int i = 0; i < b->count; i++)
        kq_split_account(b->tensors[i], -1), kqcl_tensor_destroy(b->tensors[i]);
    pthread_mutex_unlock(&kq_lock);
    kq_unreserve(&b->addr);
    free(b->tensors);
    free(b);
}

static void *kq_split_buffer_get_base(ggml_backend_buffer_t buffer)
{
    return ((kq_split_buffer *)buffer->context)->addr.base;
}

/* A weight of the buffer: one kqcl tensor split by rows (a 2-D tensor of a type kqcl computes). */
static enum ggml_status kq_split_buffer_init_tensor(ggml_backend_buffer_t buffer, struct ggml_tensor *tensor)
{
    kq_split_buffer *b = buffer->context;
    if (tensor->view_src != NULL)
        return GGML_STATUS_SUCCESS; /* a view's data is its source's: nothing of its own */
    if (tensor->ne[2] != 1 || tensor->ne[3] != 1 || !ggml_is_contiguous(tensor) ||
        !kq_weight_type(tensor->type, tensor->ne[0])) {
        kq_log("%s: %s (%s, %lld x %lld x %lld x %lld) cannot be split by rows", b->type->name, tensor->name,
               ggml_type_name(tensor->type), (long long)tensor->ne[0], (long long)tensor->ne[1],
               (long long)tensor->ne[2], (long long)tensor->ne[3]);
        return GGML_STATUS_FAILED;
    }
    if (b->count == b->capacity) {
        int cap = b->capacity ? 2 * b->capacity : 64;
        kqcl_tensor **t = realloc(b->tensors, (size_t)cap * sizeof *t);
        if (t == NULL)
            return GGML_STATUS_ALLOC_FAILED;
        b->tensors = t, b->capacity = cap;
    }
    kqcl_tensor *t = NULL;
    pthread_mutex_lock(&kq_lock);
    bool ok = kq_ok(kqcl_tensor_create_split_ex(kq_ctx, (kqcl_type)tensor->type, tensor->ne[1], tensor->ne[0],
                                                KQCL_SPLIT_ROWS, b->type->automatic ? NULL : b->type->fractions, &t),
                    "split weight");
    if (ok)
        kq_split_account(t, 1);
    pthread_mutex_unlock(&kq_lock);
    if (!ok)
        return GGML_STATUS_ALLOC_FAILED;
    b->tensors[b->count++] = t;
    tensor->extra = t;
    return GGML_STATUS_SUCCESS;
}

/* Whole tensors only: kqcl writes and reads a split tensor's parts in one call. */
static bool kq_split_whole(const struct ggml_tensor *tensor, size_t offset, size_t size, const char *what)
{
    if (offset == 0 && size == ggml_nbytes(tensor) && tensor->extra != NULL)
        return true;
    kq_log("%s of %s: %zu bytes at %zu of a split weight (only whole ones)", what, tensor->name, size, offset);
    return false;
}

static void kq_split_buffer_set_tensor(ggml_backend_buffer_t buffer, struct ggml_tensor *tensor, const void *data,
                                       size_t offset, size_t size)
{
    (void)buffer;
    if (!kq_split_whole(tensor, offset, size, "set_tensor"))
        return;
    pthread_mutex_lock(&kq_lock);
    kq_ok(kqcl_tensor_write(tensor->extra, data, size), "set_tensor (split)");
    pthread_mutex_unlock(&kq_lock);
}

static void kq_split_buffer_get_tensor(ggml_backend_buffer_t buffer, const struct ggml_tensor *tensor, void *data,
                                       size_t offset, size_t size)
{
    (void)buffer;
    if (!kq_split_whole(tensor, offset, size, "get_tensor"))
        return;
    pthread_mutex_lock(&kq_lock);
    kq_ok(kqcl_tensor_read(tensor->extra, data, size), "get_tensor (split)");
    pthread_mutex_unlock(&kq_lock);
}

static void kq_split_buffer_clear(ggml_backend_buffer_t buffer, uint8_t value)
{
    kq_split_buffer *b = buffer->context;
    for (int i = 0; i < b->count; i++) {
        size_t bytes = kqcl_tensor_bytes(b->tensors[i]);
        void *fill = malloc(bytes);
        if (fill == NULL) {
            kq_log("%s: clear: no host memory", b->type->name);
            return;
        }
        memset(fill, value, bytes);
        pthread_mutex_lock(&kq_lock);
        kq_ok(kqcl_tensor_write(b->tensors[i], fill, bytes), "clear (split)");
        pthread_mutex_unlock(&kq_lock);
        free(fill);
    }
}

static const struct ggml_backend_buffer_i kq_split_buffer_iface = {
    .free_buffer = kq_split_buffer_free,
    .get_base = kq_split_buffer_get_base,
    .init_tensor = kq_split_buffer_init_tensor,
    .memset_tensor = NULL,
    .set_tensor = kq_split_buffer_set_tensor,
    .get_tensor = kq_split_buffer_get_tensor,
    .set_tensor_2d = NULL,
    .get_tensor_2d = NULL,
    .cpy_tensor = NULL,
    .clear = kq_split_buffer_clear,
    .reset = NULL,
};

static const char *kq_split_buft_get_name(ggml_backend_buffer_type_t buft)
{
    return ((kq_split_buft *)buft->context)->name;
}

static ggml_backend_buffer_t kq_split_buft_alloc_buffer(ggml_backend_buffer_type_t buft, size_t size)
{
    kq_split_buft *type = buft->context;
    kq_split_buffer *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->type = type;
    /* addresses only, as our other buffers': the data lives in the kqcl tensors */
    if (!kq_reserve(size, kq_devices[type->main_device].alignment, type->name, &b->addr)) {
        free(b);
        return NULL;
    }
    return ggml_backend_buffer_init(buft, kq_split_buffer_iface, b, size);
}

static size_t kq_split_buft_get_alignment(ggml_backend_buffer_type_t buft)
{
    return kq_devices[((kq_split_buft *)buft->context)->main_device].alignment;
}

static const struct ggml_backend_buffer_type_i kq_split_buft_iface = {
    .get_name = kq_split_buft_get_name,
    .alloc_buffer = kq_split_buft_alloc_buffer,
    .get_alignment = kq_split_buft_get_alignment,
    .get_max_size = NULL,
    .get_alloc_size = NULL,
    .is_host = kq_buft_is_host,
};

static bool kq_is_split_buft(ggml_backend_buffer_type_t buft)
{
    return buft != NULL && buft->iface.alloc_buffer == kq_split_buft_alloc_buffer;
}

/* The split buffer type of a main device and proportions (one per ggml device of this registry,
 * as llama.cpp's tensor_split gives them; NULL or all 0: kqcl's own shares), made once for each
 * pair. NULL for a device out of range or negative proportions. */
static ggml_backend_buffer_type_t kq_split_buffer_type(int main_device, const float *tensor_split)
{
    if (main_device < 0 || main_device >= kq_n_devices)
        return NULL;
    kq_split_buft want = {.main_device = main_device, .automatic = true};
    for (int i = 0; tensor_split != NULL && i < kq_n_devices; i++) {
        if (!(tensor_split[i] >= 0.0f) || kq_devices[i].index >= 64)
            return NULL;
        want.fractions[kq_devices[i].index] = tensor_split[i];
        want.automatic = want.automatic && tensor_split[i] == 0.0f;
    }
    ggml_backend_buffer_type_t found = NULL;
    pthread_mutex_lock(&kq_lock);
    for (int i = 0; i < kq_n_split_bufts && found == NULL; i++) {
        kq_split_buft *t = &kq_split_bufts[i];
        if (t->main_device == want.main_device && t->automatic == want.automatic &&
            memcmp(t->fractions, want.fractions, sizeof want.fractions) == 0)
            found = &t->buft;
    }
    if (found == NULL && kq_n_split_bufts < KQ_MAX_SPLIT_BUFTS) {
        kq_split_buft *t = &kq_split_bufts[kq_n_split_bufts++];
        *t = want;
        snprintf(t->name, sizeof t->name, "%s_Split", kq_devices[main_device].name);
        t->buft = (struct ggml_backend_buffer_type){.iface = kq_split_buft_iface,
                                                     .device = &kq_devices[main_device].dev, .context = t};
        found = &t->buft;
    }
    pthread_mutex_unlock(&kq_lock);
    if (found == NULL)
        kq_log("more than %d split buffer types asked for", KQ_MAX_SPLIT_BUFTS);
    return found;
}

/* ---- operands ---------------------------------------------------------------------------- */

/* A device scratch buffer of at least `bytes`. Replacing one waits for the work that may still
 * use the old one. */
static kqcl_buffer *kq_scratch(kq_device *d, int slot, size_t bytes)
{
    kqcl_buffer *s = d->scratch[slot];
    if (s != NULL && kqcl_buffer_size(s) >= bytes)
        return s;
    if (s != NULL) {
        kqcl_finish(kq_ctx);
        kqcl_buffer_destroy(s);
        d->scratch[slot] = NULL;
    }
    /* Grow by half again, up to what one allocation may hold, so that slowly growing shapes
     * (a KV cache) do not reallocate each time. */
    size_t want = bytes + bytes / 2;
    if (want < bytes || want > d->info.max_alloc_bytes)
        want = bytes;
    want = kq_round_up(want, 256);
    if (want > d->info.max_alloc_bytes)
        want = bytes;
    if (!kq_ok(kqcl_buffer_create(kq_ctx, d->index, want, &d->scratch[slot]), "scratch buffer"))
        return NULL;
    return d->scratch[slot];
}

/* Whether kq_operand takes rows in place: contiguous (or one), from an aligned offset. */
static bool kq_operand_in_place(const kq_device *d, size_t offset, size_t stride, kqcl_type type, int64_t rows,
                                int64_t cols)
{
    return (stride == kqcl_row_size(type, cols) || rows == 1) && offset % d->alignment == 0;
}

/* A kqcl tensor of `rows` rows of `cols` values of `type` whose row r starts at byte
 * offset + r * stride of `mem`: a view where kq_operand_in_place, else a copy in scratch slot
 * `slot`. NULL on failure (logged). */
static kqcl_tensor *kq_operand(kq_device *d, kqcl_buffer *mem, size_t offset, size_t stride, kqcl_type type,
                               int64_t rows, int64_t cols, int slot)
{
    size_t row = kqcl_row_size(type, cols);
    kqcl_tensor *t = NULL;
    if (kq_operand_in_place(d, offset, stride, type, rows, cols)) {
        if (!kq_ok(kqcl_tensor_view(mem, offset, type, rows, cols, &t), "tensor view"))
            return NULL;
        return t;
    }
    kqcl_buffer *s = kq_scratch(d, slot, (size_t)rows * row);
    if (s == NULL)
        return NULL;
    if (stride == row || rows == 1) {
        if (!kq_ok(kqcl_buffer_copy(s, 0, mem, offset, (size_t)rows * row), "operand copy"))
            return NULL;
    } else {
        for (int64_t r = 0; r < rows; r++)
            if (!kq_ok(kqcl_buffer_copy(s, (size_t)r * row, mem, offset + (size_t)r * stride, row), "operand copy"))
                return NULL;
    }
    if (!kq_ok(kqcl_tensor_view(s, 0, type, rows, cols, &t), "tensor view"))
        return NULL;
    return t;
}

/* Is the ggml type one kqcl computes with, with ggml's byte layout for a row of `cols`? kqcl's
 * type ids are ggml's; a type kqcl learns (q4_1, q5_0, q5_1) is taken once kqcl names it. */
static bool kq_weight_type(enum ggml_type type, int64_t cols)
{
    if ((int)type < 0 || type >= GGML_TYPE_COUNT || kqcl_type_name((kqcl_type)type) == NULL)
        return false;
    size_t row = kqcl_row_size((kqcl_type)type, cols);
    return row != 0 && row == ggml_row_size(type, cols);
}

static bool kq_activation_type(enum ggml_type type)
{
    return type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16;
}

/* Rows of t spread over dimensions 1..last (those of more than one element) at one stride:
 * that stride in *stride (the row size when there is one row). */
static bool kq_rows_uniform(const struct ggml_tensor *t, int last, size_t *stride)
{
    int prev = -1;
    *stride = ggml_row_size(t->type, t->ne[0]);
    for (int j = 1; j <= last; j++) {
        if (t->ne[j] == 1)
            continue;
        if (prev < 0)
            *stride = t->nb[j];
        else if (t->nb[j] != t->nb[prev] * (size_t)t->ne[prev])
            return false;
        prev = j;
    }
    return true;
}

/* ---- ops --------------------------------------------------------------------------------- */

static bool kq_supports_view(const kq_device *d, const struct ggml_tensor *op)
{
    (void)d;
    (void)op;
    return true;
}

static enum ggml_status kq_compute_nothing(kq_backend *be, struct ggml_tensor *node)
{
    (void)be;
    (void)node;
    return GGML_STATUS_SUCCESS;
}

/*
 * MUL_MAT: dst[i3][i2] (ne11 x ne01, f32) = src1[i3][i2] (ne11 x k) . src0[i3/r3][i2/r2]^T,
 * r2 = ne12/ne02, r3 = ne13/ne03 (src0 broadcast over the batches). Each product is one
 * kqcl_matmul of kqcl views of the three buffers; src1 batches that share a src0 matrix and lie
 * at one row stride are one product (all of them when src0 is a single matrix).
 *
 * Taken: src0 of a type kqcl computes (kqcl_row_size agrees with ggml's row size), src1 f32,
 * f16 or bf16, dst f32 and contiguous; rows contiguous within (nb[0] the element size), any
 * other strides (rows are gathered into scratch). Declined: anything wider than kqcl's int
 * shapes or a scratch larger than one allocation.
 */
static bool kq_supports_mul_mat(const kq_device *d, const struct ggml_tensor *op)
{
    const struct ggml_tensor *s0 = op->src[0], *s1 = op->src[1];
    if (s0 == NULL || s1 == NULL || op->type != GGML_TYPE_F32 || !ggml_is_contiguous(op))
        return false;
    const int64_t k = s0->ne[0], m = s0->ne[1];
    if (k <= 0 || s1->ne[0] != k || !kq_weight_type(s0->type, k) || !kq_activation_type(s1->type))
        return false;
    if (s0->nb[0] != ggml_type_size(s0->type) || s1->nb[0] != ggml_type_size(s1->type))
        return false;
    if (s0->ne[2] <= 0 || s0->ne[3] <= 0 || s1->ne[2] % s0->ne[2] != 0 || s1->ne[3] % s0->ne[3] != 0)
        return false;
    const int64_t rows_x = s1->ne[1] * s1->ne[2] * s1->ne[3]; /* the most one product takes */
    if (k > INT32_MAX || m > INT32_MAX || rows_x > INT32_MAX)
        return false;
    const uint64_t max = d->info.max_alloc_bytes;
    return (uint64_t)m * ggml_row_size(s0->type, k) <= max && (uint64_t)rows_x * ggml_row_size(s1->type, k) <= max &&
           (uint64_t)rows_x * (uint64_t)m * sizeof(float) <= max;
}

/* MUL_MAT of a split weight (a 2-D kqcl tensor split by rows): one kqcl_matmul a src1 matrix
 * (all of them at once where their rows lie at one stride), y in place or through scratch Y. */
static enum ggml_status kq_compute_mul_mat_split(kq_backend *be, struct ggml_tensor *dst)
{
    kq_device *d = be->dev;
    const struct ggml_tensor *s0 = dst->src[0], *s1 = dst->src[1];
    kq_buffer *b1 = kq_buffer_of(s1), *bd = kq_buffer_of(dst);
    if (b1 == NULL || bd == NULL) {
        kq_log("%s: MUL_MAT %s: its input or result is not in a kqcl buffer", d->name, dst->name);
        return GGML_STATUS_FAILED;
    }
    const int64_t k = s0->ne[0], m = s0->ne[1];
    size_t x_stride;
    const bool at_once = kq_rows_uniform(s1, 3, &x_stride);
    const int64_t rows = at_once ? s1->ne[1] * s1->ne[2] * s1->ne[3] : s1->ne[1];
    if (!at_once)
        kq_rows_uniform(s1, 1, &x_stride);
    bool ok = true;
    for (int64_t i3 = 0; i3 < s1->ne[3] && ok; i3 += at_once ? s1->ne[3] : 1)
        for (int64_t i2 = 0; i2 < s1->ne[2] && ok; i2 += at_once ? s1->ne[2] : 1) {
            const size_t ox = kq_offset(b1, s1) + (size_t)i2 * s1->nb[2] + (size_t)i3 * s1->nb[3];
            const size_t od = kq_offset(bd, dst) + (size_t)i2 * dst->nb[2] + (size_t)i3 * dst->nb[3];
            const size_t y_bytes = (size_t)rows * (size_t)m * sizeof(float);
            kqcl_tensor *y = NULL;
            kqcl_tensor *x = kq_operand(d, b1->mem, ox, x_stride, (kqcl_type)s1->type, rows, k, KQ_SCRATCH_X);
            kqcl_buffer *y_mem = od % d->alignment == 0 ? bd->mem : kq_scratch(d, KQ_SCRATCH_Y, y_bytes);
            const size_t y_at = y_mem == bd->mem ? od : 0;
            ok = x != NULL && y_mem != NULL &&
                 kq_ok(kqcl_tensor_view(y_mem, y_at, KQCL_TYPE_F32, rows, m, &y), "tensor view") &&
                 kq_ok(kqcl_matmul(kq_ctx, s0->extra, x, y), "MUL_MAT (split weight)");
            if (ok && y_mem != bd->mem)
                ok = kq_ok(kqcl_buffer_copy(bd->mem, od, y_mem, 0, y_bytes), "MUL_MAT result copy");
            kqcl_tensor_destroy(x), kqcl_tensor_destroy(y);
        }
    if (!ok)
        kq_log("%s: MUL_MAT %s of the split weight %s failed", d->name, dst->name, s0->name);
    return ok ? GGML_STATUS_SUCCESS : GGML_STATUS_FAILED;
}

static enum ggml_status kq_compute_mul_mat(kq_backend *be, struct ggml_tensor *dst)
{
    kq_device *d = be->dev;
    const struct ggml_tensor *s0 = dst->src[0], *s1 = dst->src[1];
    if (kq_split_of(s0) != NULL)
        return kq_compute_mul_mat_split(be, dst);
    kq_buffer *b0 = kq_buffer_of(s0), *b1 = kq_buffer_of(s1), *bd = kq_buffer_of(dst);
    if (b0 == NULL || b1 == NULL || bd == NULL) {
        kq_log("%s: MUL_MAT %s: an operand is not in a kqcl buffer", d->name, dst->name);
        return GGML_STATUS_FAILED;
    }
    const kqcl_type tw = (kqcl_type)s0->type, tx = (kqcl_type)s1->type;
    const int64_t k = s0->ne[0], m = s0->ne[1], n = s1->ne[1];
    const int64_t r2 = s1->ne[2] / s0->ne[2], r3 = s1->ne[3] / s0->ne[3];
    const size_t off0 = kq_offset(b0, s0), off1 = kq_offset(b1, s1), offd = kq_offset(bd, dst);
    const size_t y_row = (size_t)m * sizeof(float);

    /* How many src1 batches one product takes: all (src0 one matrix, src1's rows at one
     * stride), or the r2 that share a src0 matrix, or one. */
    size_t x_stride;
    int64_t batches2 = 1, batches3 = 1;
    if (s0->ne[2] == 1 && s0->ne[3] == 1 && kq_rows_uniform(s1, 3, &x_stride)) {
        batches2 = s1->ne[2];
        batches3 = s1->ne[3];
    } else if (r2 > 1 && kq_rows_uniform(s1, 2, &x_stride)) {
        batches2 = r2;
    } else {
        kq_rows_uniform(s1, 1, &x_stride);
    }
    const int64_t rows = n * batches2 * batches3;

    enum ggml_status status = GGML_STATUS_SUCCESS;
    kqcl_tensor *w = NULL;
    size_t w_off = SIZE_MAX;
    for (int64_t i3 = 0; i3 < s1->ne[3] && status == GGML_STATUS_SUCCESS; i3 += batches3) {
        for (int64_t i2 = 0; i2 < s1->ne[2]; i2 += batches2) {
            const size_t o0 = off0 + (size_t)(i2 / r2) * s0->nb[2] + (size_t)(i3 / r3) * s0->nb[3];
            if (w == NULL || o0 != w_off) { /* a broadcast src0 matrix is prepared once */
                kqcl_tensor_destroy(w);
                w = kq_operand(d, b0->mem, o0, s0->nb[1], tw, m, k, KQ_SCRATCH_W);
                w_off = o0;
            }
            kqcl_tensor *x = w ? kq_operand(d, b1->mem, off1 + (size_t)i2 * s1->nb[2] + (size_t)i3 * s1->nb[3],
                                            x_stride, tx, rows, k, KQ_SCRATCH_X)
                               : NULL;
            const size_t od = offd + (size_t)i2 * dst->nb[2] + (size_t)i3 * dst->nb[3];
            kqcl_tensor *y = NULL;
            kqcl_buffer *y_mem = NULL;
            if (x != NULL) {
                if (od % d->alignment == 0) {
                    y_mem = bd->mem;
                    kq_ok(kqcl_tensor_view(bd->mem, od, KQCL_TYPE_F32, rows, m, &y), "tensor view");
                } else if ((y_mem = kq_scratch(d, KQ_SCRATCH_Y, (size_t)rows * y_row)) != NULL) {
                    kq_ok(kqcl_tensor_view(y_mem, 0, KQCL_TYPE_F32, rows, m, &y), "tensor view");
                }
            }
            bool ok = y != NULL && kq_ok(kqcl_matmul(kq_ctx, w, x, y), "MUL_MAT");
            if (ok && y_mem != bd->mem)
                ok = kq_ok(kqcl_buffer_copy(bd->mem, od, y_mem, 0, (size_t)rows * y_row), "MUL_MAT result copy");
            kqcl_tensor_destroy(x);
            kqcl_tensor_destroy(y);
            if (!ok) {
                kq_log("%s: MUL_MAT %s (%s x %s, m %lld n %lld k %lld) failed", d->name, dst->name,
                       ggml_type_name(s0->type), ggml_type_name(s1->type), (long long)m, (long long)n, (long long)k);
                status = GGML_STATUS_FAILED;
                break;
            }
        }
    }
    kqcl_tensor_destroy(w);
    return status;
}

/*
 * GET_ROWS: dst[i12][i11][i10] (a row of ne00 f32) = src0[i12][i11][idx] with idx =
 * src1[i12][i11][i10] (i32): an embedding lookup. The indices are read to the host (which waits
 * for the work queued before), the rows gathered into scratch and converted on the device
 * (kqcl_convert: dequantization, or a copy for f32). Taken: src0 of a type kqcl knows (rows
 * contiguous within), src1 i32 with contiguous rows, dst f32 and contiguous.
 */
static bool kq_supports_get_rows(const kq_device *d, const struct ggml_tensor *op)
{
    const struct ggml_tensor *s0 = op->src[0], *s1 = op->src[1];
    if (s0 == NULL || s1 == NULL || op->type != GGML_TYPE_F32 || !ggml_is_contiguous(op) || s1->type != GGML_TYPE_I32)
        return false;
    const int64_t k = s0->ne[0];
    if (k <= 0 || k > INT32_MAX || s1->ne[0] > INT32_MAX || !kq_weight_type(s0->type, k) ||
        s0->nb[0] != ggml_type_size(s0->type) || s1->nb[0] != sizeof(int32_t))
        return false;
    if (s0->ne[2] != s1->ne[1] || s0->ne[3] != s1->ne[2] || op->ne[0] != k || op->ne[1] != s1->ne[0])
        return false;
    const uint64_t max = d->info.max_alloc_bytes;
    return (uint64_t)s1->ne[0] * ggml_row_size(s0->type, k) <= max && (uint64_t)s1->ne[0] * (uint64_t)k * sizeof(float) <= max;
}

static enum ggml_status kq_compute_get_rows(kq_backend *be, struct ggml_tensor *dst)
{
    kq_device *d = be->dev;
    const struct ggml_tensor *s0 = dst->src[0], *s1 = dst->src[1];
    kq_buffer *b0 = kq_buffer_of(s0), *b1 = kq_buffer_of(s1), *bd = kq_buffer_of(dst);
    if (b0 == NULL || b1 == NULL || bd == NULL) {
        kq_log("%s: GET_ROWS %s: an operand is not in a kqcl buffer", d->name, dst->name);
        return GGML_STATUS_FAILED;
    }
    const kqcl_type type = (kqcl_type)s0->type;
    const int64_t k = s0->ne[0], n = s1->ne[0];
    const size_t row = kqcl_row_size(type, k), y_row = (size_t)k * sizeof(float);
    const size_t off0 = kq_offset(b0, s0), off1 = kq_offset(b1, s1), offd = kq_offset(bd, dst);
    int32_t *idx = malloc((size_t)n * sizeof *idx);
    if (idx == NULL)
        return GGML_STATUS_ALLOC_FAILED;
    enum ggml_status status = GGML_STATUS_SUCCESS;
    for (int64_t i12 = 0; i12 < s1->ne[2] && status == GGML_STATUS_SUCCESS; i12++) {
        for (int64_t i11 = 0; i11 < s1->ne[1]; i11++) {
            const size_t o1 = off1 + (size_t)i11 * s1->nb[1] + (size_t)i12 * s1->nb[2];
            const size_t o0 = off0 + (size_t)i11 * s0->nb[2] + (size_t)i12 * s0->nb[3];
            const size_t od = offd + (size_t)i11 * dst->nb[2] + (size_t)i12 * dst->nb[3];
            bool ok = kq_ok(kqcl_buffer_read(b1->mem, o1, idx, (size_t)n * sizeof *idx), "GET_ROWS indices");
            for (int64_t i = 0; ok && i < n; i++)
                if (idx[i] < 0 || idx[i] >= s0->ne[1]) {
                    kq_log("%s: GET_ROWS %s: row %d of %lld", d->name, dst->name, idx[i], (long long)s0->ne[1]);
                    ok = false;
                }
            kqcl_buffer *rows = ok ? kq_scratch(d, KQ_SCRATCH_W, (size_t)n * row) : NULL;
            ok = rows != NULL;
            /* Runs of consecutive rows are one copy. */
            for (int64_t i = 0; ok && i < n;) {
                int64_t j = i + 1;
                while (j < n && idx[j] == idx[j - 1] + 1)
                    j++;
                ok = kq_ok(kqcl_buffer_copy(rows, (size_t)i * row, b0->mem, o0 + (size_t)idx[i] * s0->nb[1],
                                            (size_t)(j - i) * row),
                           "GET_ROWS gather");
                i = j;
            }
            kqcl_tensor *src = NULL, *out = NULL;
            kqcl_buffer *y_mem = NULL;
            ok = ok && kq_ok(kqcl_tensor_view(rows, 0, type, n, k, &src), "tensor view");
            if (ok) {
                y_mem = od % d->alignment == 0 ? bd->mem : kq_scratch(d, KQ_SCRATCH_Y, (size_t)n * y_row);
                ok = y_mem != NULL &&
                     kq_ok(kqcl_tensor_view(y_mem, y_mem == bd->mem ? od : 0, KQCL_TYPE_F32, n, k, &out), "tensor view");
            }
            ok = ok && kq_ok(kqcl_convert(kq_ctx, src, out), "GET_ROWS convert");
            if (ok && y_mem != bd->mem)
                ok = kq_ok(kqcl_buffer_copy(bd->mem, od, y_mem, 0, (size_t)n * y_row), "GET_ROWS result copy");
            kqcl_tensor_destroy(src);
            kqcl_tensor_destroy(out);
            if (!ok) {
                kq_log("%s: GET_ROWS %s (%s, %lld rows of %lld) failed", d->name, dst->name, ggml_type_name(s0->type),
                       (long long)n, (long long)k);
                status = GGML_STATUS_FAILED;
                break;
            }
        }
    }
    free(idx);
    return status;
}

/*
 * SET_ROWS: dst[i03][i02][idx] = src0[i03][i02][i] converted to dst's type, idx =
 * src1[i03 % ne12][i02 % ne11][i] (i32 or i64), dst a view of the tensor written in place (the
 * KV cache). From f32 into dst rows at a view's offset: kqcl_set_rows, one launch, the indices
 * read on the device. Otherwise the indices are read to the host; each batch's rows are
 * converted on the device (kqcl_convert, rounding to nearest even) into scratch, then copied to
 * their rows. Taken: src0 f32 or f16, dst f32, f16 or bf16, rows contiguous within; quantized
 * destinations are not.
 */
static bool kq_supports_set_rows(const kq_device *d, const struct ggml_tensor *op)
{
    const struct ggml_tensor *s0 = op->src[0], *s1 = op->src[1];
    if (s0 == NULL || s1 == NULL || (s0->type != GGML_TYPE_F32 && s0->type != GGML_TYPE_F16) ||
        (op->type != GGML_TYPE_F32 && op->type != GGML_TYPE_F16 && op->type != GGML_TYPE_BF16 &&
         op->type != GGML_TYPE_Q8_0) ||
        (s1->type != GGML_TYPE_I32 && s1->type != GGML_TYPE_I64))
        return false;
    /* a q8_0 cache: quantized on the device (kqcl_set_rows), so f32 rows in one batch into
     * contiguous rows */
    if (op->type == GGML_TYPE_Q8_0 &&
        (s0->type != GGML_TYPE_F32 || s0->ne[0] % 32 != 0 || op->ne[2] != 1 || op->ne[3] != 1 ||
         op->nb[1] != ggml_row_size(GGML_TYPE_Q8_0, s0->ne[0])))
        return false;
    const int64_t k = s0->ne[0];
    if (k <= 0 || k > INT32_MAX || s0->ne[1] > INT32_MAX || op->ne[0] != k || s1->ne[0] != s0->ne[1] ||
        s0->nb[0] != ggml_type_size(s0->type) || op->nb[0] != ggml_type_size(op->type) ||
        s1->nb[0] != ggml_type_size(s1->type) || s1->ne[1] <= 0 || s1->ne[2] <= 0 || s0->ne[2] % s1->ne[1] != 0 ||
        s0->ne[3] % s1->ne[2] != 0 || op->ne[2] != s0->ne[2] || op->ne[3] != s0->ne[3])
        return false;
    const uint64_t max = d->info.max_alloc_bytes;
    return (uint64_t)s0->ne[1] * (uint64_t)k * sizeof(float) <= max;
}

/* One batch by kqcl_set_rows: the indices stay on the device (no wait for the queue, no copy
 * commands); src0's n rows of k floats at o0 (rows nb1 apart), the indices at o1 of b1, dst's
 * rows rows at od of bd. */
static bool kq_set_rows_on_device(kq_device *d, kq_buffer *b0, size_t o0, size_t nb1, int64_t n, int64_t k,
                                  kq_buffer *b1, size_t o1, int index_bytes, kq_buffer *bd, size_t od, kqcl_type td,
                                  int64_t rows)
{
    kqcl_tensor *x = kq_operand(d, b0->mem, o0, nb1, KQCL_TYPE_F32, n, k, KQ_SCRATCH_X), *y = NULL;
    bool ok = x != NULL && kq_ok(kqcl_tensor_view(bd->mem, od, td, rows, k, &y), "tensor view") &&
              kq_ok(kqcl_set_rows(kq_ctx, x, b1->mem, o1, index_bytes, y), "SET_ROWS");
    kqcl_tensor_destroy(x);
    kqcl_tensor_destroy(y);
    return ok;
}

/* A held job's norm before it turns and scale after (kqcl_rope_job's norm_w, norm_eps and
 * out_scale): w NULL, no norm; scale 1, none. */
typedef struct kq_job_norm {
    const struct ggml_tensor *w;
    float eps, scale;
} kq_job_norm;

static const kq_job_norm kq_no_norm = {NULL, 0.0f, 1.0f};

static int kq_jobs_hold(kq_backend *be, const struct ggml_tensor *pos, const kqcl_rope_params *p,
                        const struct ggml_tensor *src, int64_t x_rows, int64_t x_cols, int heads,
                        const struct ggml_tensor *dst, int64_t dst_rows, int64_t dst_cols,
                        const struct ggml_tensor *idx, const kq_job_norm *norm);
static bool kq_jobs_flush(kq_backend *be);

static enum ggml_status kq_compute_set_rows(kq_backend *be, struct ggml_tensor *dst)
{
    kq_device *d = be->dev;
    const struct ggml_tensor *s0 = dst->src[0], *s1 = dst->src[1];
    kq_buffer *b0 = kq_buffer_of(s0), *b1 = kq_buffer_of(s1), *bd = kq_buffer_of(dst);
    if (b0 == NULL || b1 == NULL || bd == NULL) {
        kq_log("%s: SET_ROWS %s: an operand is not in a kqcl buffer", d->name, dst->name);
        return GGML_STATUS_FAILED;
    }
    /* one batch of f32 rows into whole rows, an even width (a value's rows): with the held jobs */
    if (be->jobs.count > 0 && s0->ne[2] == 1 && s0->ne[3] == 1 && dst->ne[2] == 1 && dst->ne[3] == 1 &&
        s1->ne[0] == s0->ne[1] && ggml_nelements(s1) == s1->ne[0] && s0->ne[0] % 2 == 0 &&
        dst->nb[1] == kqcl_row_size((kqcl_type)dst->type, s0->ne[0]) &&
        (dst->type == GGML_TYPE_F32 || dst->type == GGML_TYPE_F16 || dst->type == GGML_TYPE_BF16)) {
        int held = kq_jobs_hold(be, NULL, NULL, s0, s0->ne[1], s0->ne[0], 1, dst, dst->ne[1], dst->ne[0], s1,
                                &kq_no_norm);
        if (held != 0)
            return held > 0 ? GGML_STATUS_SUCCESS : GGML_STATUS_FAILED;
    }
    if (!kq_jobs_flush(be))
        return GGML_STATUS_FAILED;
    const kqcl_type ts = (kqcl_type)s0->type, td = (kqcl_type)dst->type;
    const int64_t k = s0->ne[0], n = s0->ne[1];
    const size_t d_row = kqcl_row_size(td, k), isz = ggml_type_size(s1->type);
    const size_t off0 = kq_offset(b0, s0), off1 = kq_offset(b1, s1), offd = kq_offset(bd, dst);
    unsigned char *raw = malloc((size_t)n * isz);
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    if (raw == NULL || idx == NULL) {
        free(raw);
        free(idx);
        return GGML_STATUS_ALLOC_FAILED;
    }
    enum ggml_status status = GGML_STATUS_SUCCESS;
    for (int64_t i03 = 0; i03 < s0->ne[3] && status == GGML_STATUS_SUCCESS; i03++) {
        for (int64_t i02 = 0; i02 < s0->ne[2]; i02++) {
            const size_t o1 = off1 + (size_t)(i02 % s1->ne[1]) * s1->nb[1] + (size_t)(i03 % s1->ne[2]) * s1->nb[2];
            const size_t o0 = off0 + (size_t)i02 * s0->nb[2] + (size_t)i03 * s0->nb[3];
            const size_t od = offd + (size_t)i02 * dst->nb[2] + (size_t)i03 * dst->nb[3];
            if (ts == KQCL_TYPE_F32 && dst->nb[1] == d_row && od % d->alignment == 0 && o1 % isz == 0) {
                if (!kq_set_rows_on_device(d, b0, o0, s0->nb[1], n, k, b1, o1, (int)isz, bd, od, td, dst->ne[1])) {
                    status = GGML_STATUS_FAILED;
                    break;
                }
                continue;
            }
            if (td == KQCL_TYPE_Q8_0) { /* only the device quantizes (no host or copy path) */
                kq_log("%s: SET_ROWS %s: q8_0 rows at offset %zu, indices at %zu: want them aligned", d->name,
                       dst->name, od, o1);
                status = GGML_STATUS_FAILED;
                break;
            }
            bool ok = kq_ok(kqcl_buffer_read(b1->mem, o1, raw, (size_t)n * isz), "SET_ROWS indices");
            for (int64_t i = 0; ok && i < n; i++) {
                if (isz == sizeof(int64_t)) {
                    memcpy(&idx[i], raw + (size_t)i * isz, sizeof idx[i]);
                } else {
                    int32_t v;
                    memcpy(&v, raw + (size_t)i * isz, sizeof v);
                    idx[i] = v;
                }
                if (idx[i] < 0 || idx[i] >= dst->ne[1]) {
                    kq_log("%s: SET_ROWS %s: row %lld of %lld", d->name, dst->name, (long long)idx[i],
                           (long long)dst->ne[1]);
                    ok = false;
                }
            }
            /* The batch's rows in dst's type, contiguous: src0's rows themselves where they
             * already are, else converted into scratch. */
            kqcl_buffer *rows_mem = NULL;
            size_t rows_off = 0;
            if (ok && ts == td && (n == 1 || s0->nb[1] == d_row)) {
                rows_mem = b0->mem;
                rows_off = o0;
            } else if (ok) {
                kqcl_tensor *x = kq_operand(d, b0->mem, o0, s0->nb[1], ts, n, k, KQ_SCRATCH_X), *y = NULL;
                rows_mem = x ? kq_scratch(d, KQ_SCRATCH_Y, (size_t)n * d_row) : NULL;
                ok = rows_mem != NULL && kq_ok(kqcl_tensor_view(rows_mem, 0, td, n, k, &y), "tensor view") &&
                     kq_ok(kqcl_convert(kq_ctx, x, y), "SET_ROWS convert");
                kqcl_tensor_destroy(x);
                kqcl_tensor_destroy(y);
            }
            for (int64_t i = 0; ok && i < n;) { /* runs of consecutive rows are one copy */
                int64_t j = i + 1;
                while (j < n && idx[j] == idx[j - 1] + 1 && dst->nb[1] == d_row)
                    j++;
                ok = kq_ok(kqcl_buffer_copy(bd->mem, od + (size_t)idx[i] * dst->nb[1], rows_mem,
                                            rows_off + (size_t)i * (rows_mem == b0->mem ? s0->nb[1] : d_row),
                                            (size_t)(j - i) * d_row),
                           "SET_ROWS copy");
                i = j;
            }
            if (!ok) {
                kq_log("%s: SET_ROWS %s (%s to %s, %lld rows of %lld) failed", d->name, dst->name,
                       ggml_type_name(s0->type), ggml_type_name(dst->type), (long long)n, (long long)k);
                status = GGML_STATUS_FAILED;
                break;
            }
        }
    }
    free(raw);
    free(idx);
    return status;
}

/* ---- a layer's element-wise and row-wise ops ---------------------------------------------- */

/* A contiguous f32 ggml tensor as a kqcl tensor of its rows (all dimensions past the first) x
 * ne0: a view of its buffer, or a copy in scratch `slot` where its offset is not aligned. NULL on
 * failure (logged). */
static kqcl_tensor *kq_rows_of(kq_device *d, const struct ggml_tensor *t, int slot)
{
    kq_buffer *b = kq_buffer_of(t);
    if (b == NULL)
        return NULL;
    return kq_operand(d, b->mem, kq_offset(b, t), t->nb[1], KQCL_TYPE_F32, ggml_nrows(t), t->ne[0], slot);
}

/* Where an op writes dst: a view of dst's bytes, or scratch Y (then copied home by kq_out_end). */
typedef struct kq_out {
    kqcl_tensor *t;
    kq_buffer *home;
    kqcl_buffer *mem;
    size_t offset, bytes;
} kq_out;

/* dst's bytes as a rows x cols kqcl tensor of `type` (contiguous). */
static bool kq_out_begin_as(kq_device *d, const struct ggml_tensor *dst, kqcl_type type, int64_t rows, int64_t cols,
                            kq_out *o)
{
    memset(o, 0, sizeof *o);
    if ((o->home = kq_buffer_of(dst)) == NULL)
        return false;
    o->offset = kq_offset(o->home, dst);
    o->bytes = ggml_nbytes(dst);
    o->mem = o->offset % d->alignment == 0 ? o->home->mem : kq_scratch(d, KQ_SCRATCH_Y, o->bytes);
    return o->mem != NULL && kq_ok(kqcl_tensor_view(o->mem, o->mem == o->home->mem ? o->offset : 0, type, rows, cols,
                                                    &o->t),
                                   "tensor view");
}

/* An f32 dst's rows (all dimensions past the first) x ne0. */
static bool kq_out_begin(kq_device *d, const struct ggml_tensor *dst, kq_out *o)
{
    return kq_out_begin_as(d, dst, KQCL_TYPE_F32, ggml_nrows(dst), dst->ne[0], o);
}

/* After the op (ok: it was queued): the scratch result copied into dst, the views released. */
static enum ggml_status kq_out_end(kq_out *o, bool ok, kqcl_tensor *in0, kqcl_tensor *in1)
{
    if (ok && o->mem != o->home->mem)
        ok = kq_ok(kqcl_buffer_copy(o->home->mem, o->offset, o->mem, 0, o->bytes), "result copy");
    kqcl_tensor_destroy(o->t);
    kqcl_tensor_destroy(in0);
    kqcl_tensor_destroy(in1);
    return ok ? GGML_STATUS_SUCCESS : GGML_STATUS_FAILED;
}

/* f32, contiguous, and no dimension beyond what kqcl's shapes hold. */
static bool kq_plain_f32(const struct ggml_tensor *t)
{
    return t != NULL && t->type == GGML_TYPE_F32 && ggml_is_contiguous(t) && t->ne[0] <= INT32_MAX &&
           ggml_nrows(t) <= INT32_MAX;
}

/* dst and src0 plain f32 tensors of one shape, within one allocation of the device. */
static bool kq_same_plain(const kq_device *d, const struct ggml_tensor *op)
{
    return kq_plain_f32(op) && kq_plain_f32(op->src[0]) && ggml_are_same_shape(op, op->src[0]) &&
           ggml_nbytes(op) <= d->info.max_alloc_bytes;
}

/* ggml's broadcast of src1 over src0 (dimension j repeats src1's ne[j] over src0's) as kqcl's
 * (src1's rows and columns repeating over src0's): the columns divide, and the row dimensions of
 * src1 are src0's up to some dimension and 1 beyond it, so that src0's flat row r takes src1's
 * flat row r % rows(src1) as ggml's index arithmetic does. */
static bool kq_broadcast_fits(const struct ggml_tensor *a, const struct ggml_tensor *b)
{
    if (b->ne[0] <= 0 || a->ne[0] % b->ne[0] != 0)
        return false;
    int j = 1;
    while (j < GGML_MAX_DIMS && b->ne[j] == a->ne[j])
        j++;
    for (; j < GGML_MAX_DIMS; j++)
        if (b->ne[j] != 1)
            return false;
    return true;
}

static bool kq_supports_binary(const kq_device *d, const struct ggml_tensor *op)
{
    return kq_same_plain(d, op) && kq_plain_f32(op->src[1]) && kq_broadcast_fits(op->src[0], op->src[1]);
}

static kqcl_binary_op kq_binary_of(enum ggml_op op)
{
    return op == GGML_OP_ADD ? KQCL_BINARY_ADD : op == GGML_OP_SUB ? KQCL_BINARY_SUB
                                              : op == GGML_OP_MUL ? KQCL_BINARY_MUL
                                                                  : KQCL_BINARY_DIV;
}

static enum ggml_status kq_compute_binary(kq_backend *be, struct ggml_tensor *dst)
{
    kq_device *d = be->dev;
    kq_out o;
    kqcl_tensor *a = kq_rows_of(d, dst->src[0], KQ_SCRATCH_X), *b = a ? kq_rows_of(d, dst->src[1], KQ_SCRATCH_W) : NULL;
    bool ok = b != NULL && kq_out_begin(d, dst, &o);
    if (!ok) {
        kqcl_tensor_destroy(a), kqcl_tensor_destroy(b);
        return GGML_STATUS_FAILED;
    }
    ok = kq_ok(kqcl_binary(kq_ctx, kq_binary_of(dst->op), a, b, o.t), ggml_op_name(dst->op));
    return kq_out_end(&o, ok, a, b);
}

static bool kq_supports_scale(const kq_device *d, const struct ggml_tensor *op) { return kq_same_plain(d, op); }

static enum ggml_status kq_compute_scale(kq_backend *be, struct ggml_tensor *dst)
{
    kq_device *d = be->dev;
    float scale, bias;
    memcpy(&scale, (const char *)dst->op_params, sizeof scale);
    memcpy(&bias, (const char *)dst->op_params + sizeof scale, sizeof bias);
    kq_out o;
    kqcl_tensor *x = kq_rows_of(d, dst->src[0], KQ_SCRATCH_X);
    if (x == NULL || !kq_out_begin(d, dst, &o)) {
        kqcl_tensor_destroy(x);
        return GGML_STATUS_FAILED;
    }
    return kq_out_end(&o, kq_ok(kqcl_scale(kq_ctx, x, scale, bias, o.t), "SCALE"), x, NULL);
}

/* ggml's unary ops kqcl computes, as kqcl's; -1 for the others. */
static int kq_unary_of(enum ggml_unary_op op)
{
    return op == GGML_UNARY_OP_SILU ? KQCL_UNARY_SILU : op == GGML_UNARY_OP_GELU ? KQCL_UNARY_GELU
                                                     : op == GGML_UNARY_OP_RELU ? KQCL_UNARY_RELU
                                                                                 : -1;
}

static bool kq_supports_unary(const kq_device *d, const struct ggml_tensor *op)
{
    return kq_same_plain(d, op) && kq_unary_of(ggml_get_unary_op(op)) >= 0;
}

static enum ggml_status kq_compute_unary(kq_backend *be, struct ggml_tensor *dst)
{
    kq_device *d = be->dev;
    kq_out o;
    kqcl_tensor *x = kq_rows_of(d, dst->src[0], KQ_SCRATCH_X);
    if (x == NULL || !kq_out_begin(d, dst, &o)) {
        kqcl_tensor_destroy(x);
        return GGML_STATUS_FAILED;
    }
    kqcl_unary_op op = (kqcl_unary_op)kq_unary_of(ggml_get_unary_op(dst));
    return kq_out_end(&o, kq_ok(kqcl_unary(kq_ctx, op, x, o.t), "UNARY"), x, NULL);
}

/* GLU with the gate and up halves in two tensors (ggml_swiglu_split, ggml_geglu_split): src0
 * the gate, src1 up (swapped: the other way round); the one-tensor form is declined. */
static int kq_glu_of(enum ggml_glu_op op)
{
    return op == GGML_GLU_OP_SWIGLU ? KQCL_GLU_SWIGLU : op == GGML_GLU_OP_GEGLU ? KQCL_GLU_GEGLU : -1;
}

/* A split GLU's gate and up operands, in that order whatever ggml's `swapped` (op_params[1],
 * ggml_glu_impl). */
static void kq_glu_operands(const struct ggml_tensor *glu, const struct ggml_tensor **gate,
                            const struct ggml_tensor **up)
{
    int32_t swapped;
    memcpy(&swapped, (const char *)glu->op_params + sizeof(int32_t), sizeof swapped);
    *gate = glu->src[swapped ? 1 : 0];
    *up = glu->src[swapped ? 0 : 1];
}

static bool kq_supports_glu(const kq_device *d, const struct ggml_tensor *op)
{
    return kq_same_plain(d, op) && kq_plain_f32(op->src[1]) && ggml_are_same_shape(op->src[0], op->src[1]) &&
           kq_glu_of(ggml_get_glu_op(op)) >= 0;
}

static enum ggml_status kq_compute_glu(kq_backend *be, struct ggml_tensor *dst)
{
    kq_device *d = be->dev;
    const struct ggml_tensor *gate, *up;
    kq_glu_operands(dst, &gate, &up);
    kq_out o;
    kqcl_tensor *g = kq_rows_of(d, gate, KQ_SCRATCH_X), *u = g ? kq_rows_of(d, up, KQ_SCRATCH_W) : NULL;
    if (u == NULL || !kq_out_begin(d, dst, &o)) {
        kqcl_tensor_destroy(g), kqcl_tensor_destroy(u);
        return GGML_STATUS_FAILED;
    }
    kqcl_glu_op op = (kqcl_glu_op)kq_glu_of(ggml_get_glu_op(dst));
    return kq_out_end(&o, kq_ok(kqcl_glu(kq_ctx, op, g, u, o.t), "GLU"), g, u);
}

/*
 * CPY, DUP, CONT between f32, f16 and bf16: one kqcl_convert (round to nearest even) of the
 * elements in order. Taken where source and destination are both contiguous, so that the i-th
 * element of one is the i-th of the other whatever their shapes; a permuted or strided view
 * (most CONTs) stays on the CPU backend.
 */
static bool kq_float_type(enum ggml_type t)
{
    return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16;
}

static bool kq_supports_copy(const kq_device *d, const struct ggml_tensor *op)
{
    const struct ggml_tensor *src = op->src[0];
    return src != NULL && kq_float_type(src->type) && kq_float_type(op->type) && ggml_is_contiguous(src) &&
           ggml_is_contiguous(op) && ggml_nelements(src) == ggml_nelements(op) && src->ne[0] > 0 &&
           src->ne[0] <= INT32_MAX && ggml_nbytes(op) <= d->info.max_alloc_bytes &&
           ggml_nbytes(src) <= d->info.max_alloc_bytes;
}

static enum ggml_status kq_compute_copy(kq_backend *be, struct ggml_tensor *dst)
{
    kq_device *d = be->dev;
    const struct ggml_tensor *src = dst->src[0];
    const int64_t cols = src->ne[0], rows = ggml_nelements(src) / cols; /* one flat order for both */
    kq_buffer *bs = kq_buffer_of(src);
    kq_out o;
    kqcl_tensor *x = bs ? kq_operand(d, bs->mem, kq_offset(bs, src), (size_t)cols * ggml_type_size(src->type),
                                     (kqcl_type)src->type, rows, cols, KQ_SCRATCH_X)
                        : NULL;
    if (x == NULL || !kq_out_begin_as(d, dst, (kqcl_type)dst->type, rows, cols, &o)) {
        kqcl_tensor_destroy(x);
        return GGML_STATUS_FAILED;
    }
    return kq_out_end(&o, kq_ok(kqcl_convert(kq_ctx, x, o.t), ggml_op_name(dst->op)), x, NULL);
}

/* RMS_NORM over each row (ne0), eps in op_params; ggml's weight multiply is a separate MUL. */
static bool kq_supports_rms_norm(const kq_device *d, const struct ggml_tensor *op)
{
    float eps;
    memcpy(&eps, op->op_params, sizeof eps);
    return kq_same_plain(d, op) && eps >= 0.0f && eps < INFINITY;
}

static enum ggml_status kq_compute_rms_norm(kq_backend *be, struct ggml_tensor *dst)
{
    kq_device *d = be->dev;
    float eps;
    memcpy(&eps, dst->op_params, sizeof eps);
    kq_out o;
    kqcl_tensor *x = kq_rows_of(d, dst->src[0], KQ_SCRATCH_X);
    if (x == NULL || !kq_out_begin(d, dst, &o)) {
        kqcl_tensor_destroy(x);
        return GGML_STATUS_FAILED;
    }
    return kq_out_end(&o, kq_ok(kqcl_rms_norm(kq_ctx, x, NULL, eps, o.t), "RMS_NORM"), x, NULL);
}

/*
 * SOFT_MAX: softmax(src0 * scale + mask) over each row, scale and max_bias in op_params. Taken:
 * max_bias 0 (no ALiBi slopes), no sinks, src0 and dst plain f32 of one shape, the mask absent
 * or f32 with rows contiguous within, src0's columns, at least src0's rows a matrix and one
 * matrix for all (ne2 = ne3 = 1: llama.cpp's causal mask) -- so that src0's flat row r takes
 * the mask's row r % ne01, as kqcl_softmax does with a view of the mask's first ne01 rows.
 */
static bool kq_supports_soft_max(const kq_device *d, const struct ggml_tensor *op)
{
    float max_bias;
    memcpy(&max_bias, (const char *)op->op_params + sizeof(float), sizeof max_bias);
    const struct ggml_tensor *x = op->src[0], *m = op->src[1];
    if (!kq_same_plain(d, op) || max_bias != 0.0f || op->src[2] != NULL)
        return false;
    return m == NULL || (m->type == GGML_TYPE_F32 && m->nb[0] == sizeof(float) && m->ne[0] == x->ne[0] &&
                         m->ne[1] >= x->ne[1] && m->ne[2] == 1 && m->ne[3] == 1);
}

static enum ggml_status kq_compute_soft_max(kq_backend *be, struct ggml_tensor *dst)
{
    kq_device *d = be->dev;
    const struct ggml_tensor *src = dst->src[0], *m = dst->src[1];
    float scale;
    memcpy(&scale, dst->op_params, sizeof scale);
    kq_buffer *bm = m ? kq_buffer_of(m) : NULL;
    kq_out o;
    kqcl_tensor *x = kq_rows_of(d, src, KQ_SCRATCH_X), *mask = NULL;
    bool ok = x != NULL && (m == NULL || (bm != NULL && (mask = kq_operand(d, bm->mem, kq_offset(bm, m), m->nb[1],
                                                                          KQCL_TYPE_F32, src->ne[1], src->ne[0],
                                                                          KQ_SCRATCH_W)) != NULL));
    if (!ok || !kq_out_begin(d, dst, &o)) {
        kqcl_tensor_destroy(x), kqcl_tensor_destroy(mask);
        return GGML_STATUS_FAILED;
    }
    return kq_out_end(&o, kq_ok(kqcl_softmax(kq_ctx, x, mask, scale, o.t), "SOFT_MAX"), x, mask);
}

/*
 * ROPE: src0 [head values, heads, tokens, 1] turned by the positions src1 (i32, one a token), the
 * rest of its parameters in op_params (ggml_rope_impl's layout: n_dims [1], mode [2],
 * n_ctx_orig [4], freq_base .. beta_slow as floats [5..10], n_offs [15]). Taken: the normal and
 * NeoX modes turning from the row's start, no frequency factors (src2), src0 and dst plain f32
 * of one shape, the positions contiguous.
 */
/* A ROPE node's op_params as kqcl's. YaRN's correction range is read only where ext_factor is
 * not 0 (by ggml's CPU backend and by kqcl alike); elsewhere it is 0, 0, since ggml_rope()'s
 * defaults (no original context, betas 0) make it NaN, which kqcl_rope refuses. */
static void kq_rope_params_of(const struct ggml_tensor *rope, kqcl_rope_params *p)
{
    const int32_t *ip = (const int32_t *)rope->op_params;
    float f[6]; /* freq_base, freq_scale, ext_factor, attn_factor, beta_fast, beta_slow */
    memcpy(f, ip + 5, sizeof f);
    *p = (kqcl_rope_params){.n_dims = ip[1], .neox = ip[2] == GGML_ROPE_TYPE_NEOX, .freq_base = f[0],
                            .freq_scale = f[1], .ext_factor = f[2], .attn_factor = f[3]};
    if (p->ext_factor == 0.0f)
        return;
    float corr[2];
    ggml_rope_yarn_corr_dims(p->n_dims, ip[4], f[0], f[4], f[5], corr);
    /* With no original context (n_ctx_orig 0) the range's end is -inf; ggml's ramp then divides
     * by its floor of 0.001, as kqcl's does for an empty range: the same angles. */
    p->corr_low = corr[0], p->corr_high = corr[1] >= corr[0] ? corr[1] : corr[0];
}

/* What kqcl_rope takes: every parameter finite, freq_base and freq_scale above 0. */
static bool kq_rope_params_fit(const struct ggml_tensor *rope)
{
    kqcl_rope_params p;
    kq_rope_params_of(rope, &p);
    return p.freq_base > 0.0f && p.freq_scale > 0.0f && isfinite(p.freq_base) && isfinite(p.freq_scale) &&
           isfinite(p.ext_factor) && isfinite(p.attn_factor) && isfinite(p.corr_low) && isfinite(p.corr_high);
}

static bool kq_supports_rope(const kq_device *d, const struct ggml_tensor *op)
{
    const int32_t *ip = (const int32_t *)op->op_params;
    const struct ggml_tensor *x = op->src[0], *pos = op->src[1];
    const int n_dims = ip[1], mode = ip[2], n_offs = ip[15]; /* ggml_rope_set_offset's: rotated from there */
    return kq_same_plain(d, op) && (mode == 0 || mode == GGML_ROPE_TYPE_NEOX) && n_offs == 0 && op->src[2] == NULL &&
           pos != NULL &&
           pos->type == GGML_TYPE_I32 && ggml_is_contiguous(pos) && pos->ne[0] == x->ne[2] && x->ne[3] == 1 &&
           x->ne[0] % 2 == 0 && n_dims > 0 && n_dims % 2 == 0 && n_dims <= x->ne[0] && x->ne[1] <= INT32_MAX &&
           kq_rope_params_fit(op);
}

/* ---- a step's RoPE and cache writes, one launch ---------------------------------------------
 * Q's ROPE, K's ROPE + SET_ROWS (a fusion, below) and V's SET_ROWS come one after another with
 * only views between them, three launches. They are held back as kqcl_rope_jobs' jobs and
 * launched together when a node that computes anything else comes (kq_backend_graph_compute),
 * when the graph ends, or when a job does not fit with those held: other positions or
 * parameters, three held already, bytes it reads or writes that a held job writes, or writes
 * that one reads. Only operands that are views in place are held: scratch would be reused
 * before the launch. A copied job (V's rows) joins turned ones; it never starts a launch. */
static bool kq_bytes_overlap(const struct ggml_tensor *a, const struct ggml_tensor *b);
static bool kq_fusion_enabled(void);

/* The held jobs' views freed, none held. */
static void kq_jobs_release(kq_jobs *h)
{
    for (int i = 0; i < h->count; i++)
        kqcl_tensor_destroy((kqcl_tensor *)h->job[i].x), kqcl_tensor_destroy(h->job[i].dst),
            kqcl_tensor_destroy((kqcl_tensor *)h->job[i].norm_w);
    h->count = 0;
    h->pos = NULL;
}

/* The held jobs launched (nothing held: nothing done). */
static bool kq_jobs_flush(kq_backend *be)
{
    kq_jobs *h = &be->jobs;
    if (h->count == 0)
        return true;
    const double t0 = kq_profiling() == 2 ? kq_now_us() : 0;
    kq_buffer *bp = kq_buffer_of(h->pos);
    bool ok = kq_ok(kqcl_rope_jobs(kq_ctx, bp->mem, kq_offset(bp, h->pos), &h->params, h->count, h->job),
                    "ROPE and SET_ROWS jobs");
    if (kq_profiling() == 2)
        kq_profile_step(be, "rope jobs (held)", t0);
    kq_jobs_release(h);
    return ok;
}

/* Whether a job may join the held ones (pos NULL: a copied job; weight NULL: no norm). */
static bool kq_jobs_fit(const kq_jobs *h, const struct ggml_tensor *pos, const kqcl_rope_params *p, int64_t positions,
                        const struct ggml_tensor *reads, const struct ggml_tensor *weight,
                        const struct ggml_tensor *writes)
{
    if (h->count == KQCL_ROPE_MAX_JOBS || (h->count > 0 && positions != h->positions))
        return false;
    if (pos != NULL && h->pos != NULL) {
        kq_buffer *b = kq_buffer_of(pos), *held = kq_buffer_of(h->pos);
        if (b != held || kq_offset(b, pos) != kq_offset(held, h->pos) || memcmp(p, &h->params, sizeof *p) != 0)
            return false;
    }
    for (int i = 0; i < h->count; i++)
        if (kq_bytes_overlap(h->writes[i], reads) || kq_bytes_overlap(h->writes[i], writes) ||
            kq_bytes_overlap(writes, h->reads[i]) || (weight && kq_bytes_overlap(h->writes[i], weight)) ||
            (h->weights[i] && kq_bytes_overlap(writes, h->weights[i])))
            return false;
    return true;
}

/* Whether a job's norm weight can go with it: a plain f32 row in place, apart from what the job
 * writes (each of a row's pairs reads all of it, and the row's x, before any writes). */
static bool kq_norm_viewable(const kq_device *d, const kq_job_norm *norm, const struct ggml_tensor *src,
                             const struct ggml_tensor *dst)
{
    if (norm->w == NULL)
        return true;
    kq_buffer *bw = kq_buffer_of(norm->w);
    return bw != NULL && kq_plain_f32(norm->w) && kq_offset(bw, norm->w) % d->alignment == 0 &&
           !kq_bytes_overlap(src, dst) && !kq_bytes_overlap(norm->w, dst);
}

/* Hold a job: `x_rows` rows of `x_cols` f32 values of src (contiguous, aligned: a view in place),
 * `heads` rows a position, normalised and scaled as `norm` says, into dst viewed as dst_rows x
 * dst_cols of its type (aligned), through `idx` (a SET_ROWS index tensor) or in place (NULL); pos
 * NULL: copied. Returns 1 held, 0 not here (the caller computes the nodes itself, the held ones
 * launched first), -1 on failure. */
static int kq_jobs_hold(kq_backend *be, const struct ggml_tensor *pos, const kqcl_rope_params *p,
                        const struct ggml_tensor *src, int64_t x_rows, int64_t x_cols, int heads,
                        const struct ggml_tensor *dst, int64_t dst_rows, int64_t dst_cols,
                        const struct ggml_tensor *idx, const kq_job_norm *norm)
{
    kq_device *d = be->dev;
    kq_jobs *h = &be->jobs;
    kq_buffer *bs = kq_buffer_of(src), *bd = kq_buffer_of(dst), *bi = idx ? kq_buffer_of(idx) : NULL;
    const int64_t positions = x_rows / heads;
    bool viewable = kq_fusion_enabled() && bs != NULL && bd != NULL && src->type == GGML_TYPE_F32 &&
                    ggml_is_contiguous(src) && kq_offset(bs, src) % d->alignment == 0 &&
                    kq_offset(bd, dst) % d->alignment == 0 &&
                    (idx == NULL || (bi != NULL && ggml_is_contiguous(idx) &&
                                     kq_offset(bi, idx) % ggml_type_size(idx->type) == 0)) &&
                    kq_norm_viewable(d, norm, src, dst);
    if (!viewable || !kq_jobs_fit(h, pos, p, positions, src, norm->w, dst)) {
        if (!kq_jobs_flush(be))
            return -1;
        if (!viewable || pos == NULL)
            return 0; /* a copied job does not start a launch */
    }
    kqcl_tensor *x = NULL, *y = NULL, *w = NULL;
    kq_buffer *bw = norm->w ? kq_buffer_of(norm->w) : NULL;
    if (!kq_ok(kqcl_tensor_view(bs->mem, kq_offset(bs, src), KQCL_TYPE_F32, x_rows, x_cols, &x), "tensor view") ||
        !kq_ok(kqcl_tensor_view(bd->mem, kq_offset(bd, dst), (kqcl_type)dst->type, dst_rows, dst_cols, &y),
               "tensor view") ||
        (bw != NULL &&
         !kq_ok(kqcl_tensor_view(bw->mem, kq_offset(bw, norm->w), KQCL_TYPE_F32, 1, x_cols, &w), "tensor view"))) {
        kqcl_tensor_destroy(x), kqcl_tensor_destroy(y);
        return -1;
    }
    h->job[h->count] = (kqcl_rope_job){.x = x,
                                       .heads = heads,
                                       .copy = pos == NULL,
                                       .dst = y,
                                       .indices = bi ? bi->mem : NULL,
                                       .idx_offset = bi ? kq_offset(bi, idx) : 0,
                                       .index_bytes = idx ? (int)ggml_type_size(idx->type) : 0,
                                       .norm_w = w,
                                       .norm_eps = norm->eps,
                                       .out_scale = norm->scale};
    h->reads[h->count] = src;
    h->writes[h->count] = dst;
    h->weights[h->count] = norm->w;
    if (h->pos == NULL && pos != NULL) {
        h->pos = pos;
        h->params = *p;
    }
    h->positions = positions;
    h->count++;
    h->holds++;
    return 1;
}

static enum ggml_status kq_compute_rope(kq_backend *be, struct ggml_tensor *dst)
{
    kq_device *d = be->dev;
    const struct ggml_tensor *src = dst->src[0], *pos = dst->src[1];
    kqcl_rope_params p;
    kq_rope_params_of(dst, &p);
    kq_buffer *bp = kq_buffer_of(pos);
    if (bp != NULL && ggml_is_contiguous(dst)) {
        int held = kq_jobs_hold(be, pos, &p, src, ggml_nrows(src), src->ne[0], (int)src->ne[1], dst, ggml_nrows(dst),
                                dst->ne[0], NULL, &kq_no_norm);
        if (held != 0)
            return held > 0 ? GGML_STATUS_SUCCESS : GGML_STATUS_FAILED;
    }
    if (!kq_jobs_flush(be))
        return GGML_STATUS_FAILED;
    kq_out o;
    kqcl_tensor *x = bp ? kq_rows_of(d, src, KQ_SCRATCH_X) : NULL;
    if (x == NULL || !kq_out_begin(d, dst, &o)) {
        kqcl_tensor_destroy(x);
        return GGML_STATUS_FAILED;
    }
    bool ok = kq_ok(kqcl_rope(kq_ctx, x, bp->mem, kq_offset(bp, pos), (int)src->ne[1], &p, o.t), "ROPE");
    return kq_out_end(&o, ok, x, NULL);
}

/*
 * FLASH_ATTN_EXT: kqcl_attention, once a stream (dimension 3). q [D, n_q, heads, streams] f32,
 * k [D, n_kv, kv_heads, streams] and v [Dv, n_kv, kv_heads, streams] of one type (f16 or f32),
 * their rows at whole-row strides (the cache's views), the mask f16 [n_kv, >= n_q, 1, 1 or
 * streams], dst [Dv, heads, n_q, streams] f32 contiguous: a query's heads side by side, as
 * kqcl_attention writes y. op_params: scale, max_bias, logit_softcap
 * (ggml divides the scale by the cap inside; kqcl's softcap * tanh(scale * qk / softcap) is the
 * same). Taken: no ALiBi (max_bias 0), no sinks, k and v strides equal in rows.
 */
static bool kq_row_strides(const struct ggml_tensor *t, int64_t *s1, int64_t *s2)
{
    size_t row = ggml_row_size(t->type, t->ne[0]);
    if (t->nb[0] != ggml_type_size(t->type) || t->nb[1] % row != 0 || t->nb[2] % row != 0)
        return false;
    *s1 = (int64_t)(t->nb[1] / row), *s2 = (int64_t)(t->nb[2] / row);
    return true;
}

/* Rows a strided tensor spans: its last (i1, i2) row's index + 1. */
static int64_t kq_rows_spanned(const struct ggml_tensor *t, int64_t s1, int64_t s2)
{
    return (t->ne[1] - 1) * s1 + (t->ne[2] - 1) * s2 + 1;
}

static bool kq_supports_flash_attn(const kq_device *d, const struct ggml_tensor *op)
{
    const struct ggml_tensor *q = op->src[0], *k = op->src[1], *v = op->src[2], *m = op->src[3];
    float prm[3];
    memcpy(prm, op->op_params, sizeof prm);
    int64_t qs1, qs2, ks1, ks2, vs1, vs2;
    if (q == NULL || k == NULL || v == NULL || op->src[4] != NULL || prm[1] != 0.0f || !(prm[2] >= 0.0f))
        return false;
    if (q->type != GGML_TYPE_F32 ||
        (k->type != GGML_TYPE_F16 && k->type != GGML_TYPE_F32 && k->type != GGML_TYPE_Q8_0) || v->type != k->type ||
        op->type != GGML_TYPE_F32 || !ggml_is_contiguous(op))
        return false;
    if (k->ne[3] != q->ne[3] || v->ne[3] != q->ne[3] || k->ne[0] != q->ne[0] || v->ne[1] != k->ne[1] ||
        v->ne[2] != k->ne[2] || q->ne[2] % k->ne[2] != 0 || q->ne[2] > INT32_MAX)
        return false;
    if (!kq_row_strides(q, &qs1, &qs2) || !kq_row_strides(k, &ks1, &ks2) || !kq_row_strides(v, &vs1, &vs2) ||
        ks1 != vs1 || ks2 != vs2)
        return false;
    if (m != NULL && (m->type != GGML_TYPE_F16 || !ggml_is_contiguous(m) || m->ne[0] != k->ne[1] ||
                      m->ne[1] < q->ne[1] || m->ne[2] != 1 || (m->ne[3] != 1 && m->ne[3] != q->ne[3])))
        return false;
    const uint64_t max = d->info.max_alloc_bytes;
    return (uint64_t)q->ne[1] * q->ne[2] * k->ne[1] * sizeof(float) <= max && ggml_nbytes(op) <= max;
}

/* kqcl_attention, with the held jobs inside its launch where any are held
 * (kqcl_rope_jobs_attention, which takes the two launches where it must); the jobs' views freed. */
static bool kq_attend(kq_backend *be, const kqcl_tensor *q, const kqcl_tensor *k, const kqcl_tensor *v,
                      const kqcl_tensor *m, const kqcl_attention_params *p, kqcl_tensor *y)
{
    kq_jobs *h = &be->jobs;
    if (h->count == 0)
        return kq_ok(kqcl_attention(kq_ctx, q, k, v, m, p, y), "FLASH_ATTN_EXT");
    kq_buffer *bp = kq_buffer_of(h->pos);
    bool ok = kq_ok(kqcl_rope_jobs_attention(kq_ctx, bp->mem, kq_offset(bp, h->pos), &h->params, h->count, h->job, q,
                                             k, v, m, p, y),
                    "ROPE and SET_ROWS jobs with FLASH_ATTN_EXT");
    kq_jobs_release(h);
    return ok;
}

/* The rows of stream i3 of an attention operand: its buffer's offset, its row stride and the rows
 * its strides span (the mask: one row a query). */
typedef struct kq_attn_rows {
    size_t offset, stride;
    int64_t rows;
} kq_attn_rows;

static kq_attn_rows kq_attn_rows_of(const struct ggml_tensor *t, int64_t i3, bool mask, int64_t queries)
{
    kq_buffer *b = kq_buffer_of(t);
    int64_t s1, s2;
    if (mask)
        return (kq_attn_rows){kq_offset(b, t) + (size_t)(t->ne[3] > 1 ? i3 : 0) * t->nb[3], t->nb[1], queries};
    kq_row_strides(t, &s1, &s2);
    return (kq_attn_rows){kq_offset(b, t) + (size_t)i3 * t->nb[3], ggml_row_size(t->type, t->ne[0]),
                          kq_rows_spanned(t, s1, s2)};
}

/* Whether every operand of a one-stream attention is a view in place (kq_operand_in_place): then
 * the held jobs may join its launch, since no operand is a copy taken before they run. */
static bool kq_flash_attn_in_place(const kq_device *d, const struct ggml_tensor *dst)
{
    const struct ggml_tensor *q = dst->src[0], *m = dst->src[3];
    if (q->ne[3] != 1)
        return false;
    for (int i = 0; i < 4; i++) {
        const struct ggml_tensor *t = dst->src[i];
        if (t == NULL)
            continue;
        if (kq_buffer_of(t) == NULL)
            return false;
        kq_attn_rows r = kq_attn_rows_of(t, 0, t == m, q->ne[1]);
        kqcl_type type = t == m ? KQCL_TYPE_F16 : (kqcl_type)t->type;
        if (!kq_operand_in_place(d, r.offset, r.stride, type, r.rows, t->ne[0]))
            return false;
    }
    return true;
}

/* One stream (dimension 3) of FLASH_ATTN_EXT: q, k, v, the mask and dst at the stream's offsets;
 * the held jobs (be->jobs) inside its launch (kqcl_rope_jobs_attention) where any are held. */
static bool kq_flash_attn_stream(kq_backend *be, struct ggml_tensor *dst, int64_t i3)
{
    kq_device *d = be->dev;
    const struct ggml_tensor *q = dst->src[0], *k = dst->src[1], *v = dst->src[2], *m = dst->src[3];
    float prm[3];
    memcpy(prm, dst->op_params, sizeof prm);
    int64_t qs1, qs2, ks1, ks2, vs1, vs2;
    kq_row_strides(q, &qs1, &qs2), kq_row_strides(k, &ks1, &ks2), kq_row_strides(v, &vs1, &vs2);
    kqcl_attention_params p = {.heads = (int)q->ne[2], .kv_heads = (int)k->ne[2], .queries = q->ne[1],
                               .kv_len = k->ne[1], .q_query_stride = qs1, .q_head_stride = qs2, .kv_pos_stride = ks1,
                               .kv_head_stride = ks2, .scale = prm[0], .softcap = prm[2]};
    kq_buffer *bq = kq_buffer_of(q), *bk = kq_buffer_of(k), *bv = kq_buffer_of(v), *bm = m ? kq_buffer_of(m) : NULL;
    kq_buffer *bd = kq_buffer_of(dst);
    if (bq == NULL || bk == NULL || bv == NULL || bd == NULL || (m != NULL && bm == NULL))
        return false;
    const size_t yrow = (size_t)v->ne[0] * sizeof(float);
    const size_t y_bytes = (size_t)(p.queries * p.heads) * yrow, od = kq_offset(bd, dst) + (size_t)i3 * dst->nb[3];
    const kq_attn_rows rq = kq_attn_rows_of(q, i3, false, 0), rk = kq_attn_rows_of(k, i3, false, 0);
    const kq_attn_rows rv = kq_attn_rows_of(v, i3, false, 0);
    kqcl_tensor *tq = kq_operand(d, bq->mem, rq.offset, rq.stride, KQCL_TYPE_F32, rq.rows, q->ne[0], KQ_SCRATCH_X);
    kqcl_tensor *tk = tq ? kq_operand(d, bk->mem, rk.offset, rk.stride, (kqcl_type)k->type, rk.rows, k->ne[0],
                                      KQ_SCRATCH_W)
                         : NULL;
    kqcl_tensor *tv = tk ? kq_operand(d, bv->mem, rv.offset, rv.stride, (kqcl_type)v->type, rv.rows, v->ne[0],
                                      KQ_SCRATCH_V)
                         : NULL;
    kqcl_tensor *tm = NULL, *ty = NULL;
    if (tv != NULL && m != NULL) {
        const kq_attn_rows rm = kq_attn_rows_of(m, i3, true, q->ne[1]);
        tm = kq_operand(d, bm->mem, rm.offset, rm.stride, KQCL_TYPE_F16, rm.rows, m->ne[0], KQ_SCRATCH_M);
    }
    /* y in place where dst's stream starts aligned, else in scratch Y and copied */
    kqcl_buffer *y_mem = od % d->alignment == 0 ? bd->mem : kq_scratch(d, KQ_SCRATCH_Y, y_bytes);
    bool ok = tv != NULL && (m == NULL || tm != NULL) && y_mem != NULL &&
              kq_ok(kqcl_tensor_view(y_mem, y_mem == bd->mem ? od : 0, KQCL_TYPE_F32, p.queries * p.heads, v->ne[0], &ty),
                    "tensor view") &&
              kq_attend(be, tq, tk, tv, tm, &p, ty);
    if (ok && y_mem != bd->mem)
        ok = kq_ok(kqcl_buffer_copy(bd->mem, od, y_mem, 0, y_bytes), "FLASH_ATTN_EXT result copy");
    kqcl_tensor_destroy(tq), kqcl_tensor_destroy(tk), kqcl_tensor_destroy(tv), kqcl_tensor_destroy(tm);
    kqcl_tensor_destroy(ty);
    return ok;
}

static enum ggml_status kq_compute_flash_attn(kq_backend *be, struct ggml_tensor *dst)
{
    if (!kq_flash_attn_in_place(be->dev, dst) && !kq_jobs_flush(be))
        return GGML_STATUS_FAILED;
    for (int64_t i3 = 0; i3 < dst->src[0]->ne[3]; i3++)
        if (!kq_flash_attn_stream(be, dst, i3))
            return GGML_STATUS_FAILED;
    return GGML_STATUS_SUCCESS;
}

/* The op table: what the device takes (supports) and how it computes it (compute). An op
 * without an entry is declined and stays with another backend. */
typedef struct kq_op {
    bool (*supports)(const kq_device *d, const struct ggml_tensor *op);
    enum ggml_status (*compute)(kq_backend *be, struct ggml_tensor *node);
} kq_op;

static const kq_op kq_ops[GGML_OP_COUNT] = {
    [GGML_OP_NONE] = {kq_supports_view, kq_compute_nothing},
    [GGML_OP_RESHAPE] = {kq_supports_view, kq_compute_nothing},
    [GGML_OP_VIEW] = {kq_supports_view, kq_compute_nothing},
    [GGML_OP_PERMUTE] = {kq_supports_view, kq_compute_nothing},
    [GGML_OP_TRANSPOSE] = {kq_supports_view, kq_compute_nothing},
    [GGML_OP_MUL_MAT] = {kq_supports_mul_mat, kq_compute_mul_mat},
    [GGML_OP_GET_ROWS] = {kq_supports_get_rows, kq_compute_get_rows},
    [GGML_OP_SET_ROWS] = {kq_supports_set_rows, kq_compute_set_rows},
    [GGML_OP_ADD] = {kq_supports_binary, kq_compute_binary},
    [GGML_OP_SUB] = {kq_supports_binary, kq_compute_binary},
    [GGML_OP_MUL] = {kq_supports_binary, kq_compute_binary},
    [GGML_OP_DIV] = {kq_supports_binary, kq_compute_binary},
    [GGML_OP_SCALE] = {kq_supports_scale, kq_compute_scale},
    [GGML_OP_UNARY] = {kq_supports_unary, kq_compute_unary},
    [GGML_OP_GLU] = {kq_supports_glu, kq_compute_glu},
    [GGML_OP_RMS_NORM] = {kq_supports_rms_norm, kq_compute_rms_norm},
    [GGML_OP_SOFT_MAX] = {kq_supports_soft_max, kq_compute_soft_max},
    [GGML_OP_ROPE] = {kq_supports_rope, kq_compute_rope},
    [GGML_OP_FLASH_ATTN_EXT] = {kq_supports_flash_attn, kq_compute_flash_attn},
    [GGML_OP_CPY] = {kq_supports_copy, kq_compute_copy},
    [GGML_OP_DUP] = {kq_supports_copy, kq_compute_copy},
    [GGML_OP_CONT] = {kq_supports_copy, kq_compute_copy},
};

static const kq_op *kq_op_of(enum ggml_op op)
{
    if ((int)op < 0 || op >= GGML_OP_COUNT || kq_ops[op].supports == NULL)
        return NULL;
    return &kq_ops[op];
}

/* ---- fusions: a run of graph nodes as one kqcl call -----------------------------------------
 * Each saves launches (on PoCL a launch costs some 10 us of thread wake-ups; on NVIDIA ~6 us).
 * A fusion applies only where ggml_can_fuse says the run's inner results go nowhere else. */

/* A fused run reads its first node's inputs and writes its last node's result in one kernel,
 * a work-group a row. ggml's allocator frees a node's inputs once the node is allocated, so a
 * later node's result may lie over them at another offset: in one kernel that result would
 * overwrite rows another work-group has yet to read (exactly the same range is safe: each row
 * is read before it is written). Such a run is not fused. (It happened: with -sm layer over two
 * devices, whose graph splits are allocated differently, the perplexity moved, 6.9340 for
 * 6.7691, doc/reliability.md.) */
/* Whether a and b share bytes of one kqcl buffer; *same: they are the very same range. */
static bool kq_bytes_overlap_as(const struct ggml_tensor *a, const struct ggml_tensor *b, bool *same)
{
    kq_buffer *ba = kq_buffer_of(a), *bb = kq_buffer_of(b);
    *same = false;
    if (ba == NULL || ba != bb)
        return false;
    size_t oa = kq_offset(ba, a), ob = kq_offset(bb, b), na = ggml_nbytes(a), nb = ggml_nbytes(b);
    *same = oa == ob && na == nb;
    return oa < ob + nb && ob < oa + na;
}

static bool kq_bytes_overlap(const struct ggml_tensor *a, const struct ggml_tensor *b)
{
    bool same;
    return kq_bytes_overlap_as(a, b, &same);
}

/* Whether a and b share bytes without being the very same range. */
static bool kq_overlap_apart(const struct ggml_tensor *a, const struct ggml_tensor *b)
{
    bool same;
    return kq_bytes_overlap_as(a, b, &same) && !same;
}

/* RMS_NORM, then MUL by a weight of one row (llama.cpp's attn_norm and ffn_norm): kqcl_rms_norm
 * with w multiplies in the same pass. */
static int kq_fits_norm_mul(const struct ggml_cgraph *g, int i)
{
    static const enum ggml_op ops[] = {GGML_OP_RMS_NORM, GGML_OP_MUL};
    if (!ggml_can_fuse(g, i, ops, 2))
        return 0;
    const struct ggml_tensor *norm = g->nodes[i], *mul = g->nodes[i + 1];
    const struct ggml_tensor *w = mul->src[0] == norm ? mul->src[1] : mul->src[0];
    return mul->src[0] == norm && kq_plain_f32(w) && w->ne[0] == norm->ne[0] && ggml_nrows(w) == 1 &&
                   kq_plain_f32(mul) && !kq_overlap_apart(mul, norm->src[0])
               ? 2
               : 0;
}

static enum ggml_status kq_compute_norm_mul(kq_backend *be, const struct ggml_cgraph *g, int i, int nodes)
{
    (void)nodes;
    kq_device *d = be->dev;
    const struct ggml_tensor *norm = g->nodes[i];
    struct ggml_tensor *mul = g->nodes[i + 1];
    float eps;
    memcpy(&eps, norm->op_params, sizeof eps);
    kq_out o;
    kqcl_tensor *x = kq_rows_of(d, norm->src[0], KQ_SCRATCH_X), *w = x ? kq_rows_of(d, mul->src[1], KQ_SCRATCH_W) : NULL;
    if (w == NULL || !kq_out_begin(d, mul, &o)) {
        kqcl_tensor_destroy(x), kqcl_tensor_destroy(w);
        return GGML_STATUS_FAILED;
    }
    return kq_out_end(&o, kq_ok(kqcl_rms_norm(kq_ctx, x, w, eps, o.t), "RMS_NORM+MUL"), x, w);
}

/* ADD of two same-shape tensors (the residual stream), then RMS_NORM of the sum and MUL by a
 * one-row weight (the next block's norm): one kqcl_add_rms_norm writes both the sum, which later
 * nodes read, and the weighted norm. */
static int kq_fits_add_norm_mul(const struct ggml_cgraph *g, int i)
{
    if (i + 2 >= g->n_nodes)
        return 0;
    const struct ggml_tensor *add = g->nodes[i], *norm = g->nodes[i + 1];
    if (add->op != GGML_OP_ADD || (add->flags & GGML_TENSOR_FLAG_COMPUTE) == 0 || norm->src[0] != add ||
        !kq_fits_norm_mul(g, i + 1))
        return 0;
    const struct ggml_tensor *mul = g->nodes[i + 2], *x = add->src[0], *r = add->src[1];
    return kq_plain_f32(add) && kq_plain_f32(x) && kq_plain_f32(r) && ggml_are_same_shape(add, x) &&
                   ggml_are_same_shape(add, r) && !kq_overlap_apart(add, x) && !kq_overlap_apart(add, r) &&
                   !kq_overlap_apart(mul, x) && !kq_overlap_apart(mul, r) && !kq_overlap_apart(mul, add)
               ? 3
               : 0;
}

static enum ggml_status kq_compute_add_norm_mul(kq_backend *be, const struct ggml_cgraph *g, int i, int nodes)
{
    (void)nodes;
    kq_device *d = be->dev;
    struct ggml_tensor *add = g->nodes[i], *mul = g->nodes[i + 2];
    kq_buffer *bs = kq_buffer_of(add), *by = kq_buffer_of(mul);
    if (bs == NULL || by == NULL)
        return GGML_STATUS_FAILED;
    /* both results written in place, or the ops one by one (a result off the alignment would
     * need the one scratch output slot each) */
    if (kq_offset(bs, add) % d->alignment != 0 || kq_offset(by, mul) % d->alignment != 0) {
        enum ggml_status st = kq_compute_binary(be, add);
        return st == GGML_STATUS_SUCCESS ? kq_compute_norm_mul(be, g, i + 1, 2) : st;
    }
    float eps;
    memcpy(&eps, g->nodes[i + 1]->op_params, sizeof eps);
    kq_out sum, y;
    kqcl_tensor *x = kq_rows_of(d, add->src[0], KQ_SCRATCH_X), *r = x ? kq_rows_of(d, add->src[1], KQ_SCRATCH_V) : NULL;
    kqcl_tensor *w = r ? kq_rows_of(d, mul->src[1], KQ_SCRATCH_W) : NULL;
    if (w == NULL || !kq_out_begin(d, add, &sum)) {
        kqcl_tensor_destroy(x), kqcl_tensor_destroy(r), kqcl_tensor_destroy(w);
        return GGML_STATUS_FAILED;
    }
    if (!kq_out_begin(d, mul, &y)) {
        kqcl_tensor_destroy(w);
        return kq_out_end(&sum, false, x, r);
    }
    bool ok = kq_ok(kqcl_add_rms_norm(kq_ctx, x, r, w, eps, sum.t, y.t), "ADD+RMS_NORM+MUL");
    kqcl_tensor_destroy(w);
    enum ggml_status st = kq_out_end(&y, ok, NULL, NULL);
    return kq_out_end(&sum, ok, x, r) == GGML_STATUS_SUCCESS ? st : GGML_STATUS_FAILED;
}

/* Consecutive MUL_MATs of one X (Q, K and V; gate and up, side by side after graph_optimize):
 * one kqcl_matmul_group, which serves up to four weights of a type with one decode launch.
 * Taken where every product is one kqcl product in place: a single 2-D weight of one type and
 * width, viewed where it lies; X 2-D; each result aligned; no result over X or another. */
#define KQ_MAX_GROUP 4

/* One product of the group, viewable in place (first: the group's first, whose X and weight
 * type the others must share). */
static bool kq_group_member(const kq_device *d, const struct ggml_tensor *t, const struct ggml_tensor *first)
{
    const struct ggml_tensor *w = t->src[0], *x = t->src[1];
    kq_buffer *bw = kq_buffer_of(w), *by = kq_buffer_of(t);
    if (t->op != GGML_OP_MUL_MAT || (t->flags & GGML_TENSOR_FLAG_COMPUTE) == 0 || ggml_is_empty(t) || bw == NULL ||
        by == NULL || !kq_supports_mul_mat(d, t))
        return false;
    if (x != first->src[1] || w->type != first->src[0]->type || w->ne[0] != first->src[0]->ne[0])
        return false;
    return w->ne[2] == 1 && w->ne[3] == 1 && x->ne[2] == 1 && x->ne[3] == 1 &&
           w->nb[1] == ggml_row_size(w->type, w->ne[0]) && kq_offset(bw, w) % d->alignment == 0 &&
           kq_offset(by, t) % d->alignment == 0 && !kq_bytes_overlap(t, x);
}

static int kq_fits_mul_mat_group(const struct ggml_cgraph *g, int i)
{
    const struct ggml_tensor *first = g->nodes[i];
    kq_buffer *b = kq_buffer_of(first);
    if (b == NULL || !kq_group_member(b->dev, first, first))
        return 0;
    int n = 1;
    while (i + n < g->n_nodes && n < KQ_MAX_GROUP && kq_group_member(b->dev, g->nodes[i + n], first)) {
        for (int j = 0; j < n; j++)
            if (kq_bytes_overlap(g->nodes[i + n], g->nodes[i + j]))
                return n > 1 ? n : 0;
        n++;
    }
    return n > 1 ? n : 0;
}

/* A fused product's X (2-D, rows of one stride: in place or gathered into scratch X) and its
 * weight (a single 2-D matrix viewed where it lies), as kq_group_member admitted them. NULL on
 * failure (logged). */
static kqcl_tensor *kq_product_x(kq_device *d, const struct ggml_tensor *xs)
{
    kq_buffer *bx = kq_buffer_of(xs);
    size_t x_stride;
    kq_rows_uniform(xs, 1, &x_stride);
    return bx ? kq_operand(d, bx->mem, kq_offset(bx, xs), x_stride, (kqcl_type)xs->type, xs->ne[1], xs->ne[0],
                           KQ_SCRATCH_X)
              : NULL;
}

static kqcl_tensor *kq_product_w(const struct ggml_tensor *ws)
{
    kq_buffer *bw = kq_buffer_of(ws);
    kqcl_tensor *w = NULL;
    kq_ok(kqcl_tensor_view(bw->mem, kq_offset(bw, ws), (kqcl_type)ws->type, ws->ne[1], ws->ne[0], &w), "tensor view");
    return w;
}

/* The weights and results of the group's `nodes` products from node i, viewed in place (NULL
 * where that failed; false then). */
static bool kq_group_views(const struct ggml_cgraph *g, int i, int nodes, kqcl_tensor **w, kqcl_tensor **y)
{
    bool ok = true;
    for (int j = 0; j < nodes && ok; j++) {
        const struct ggml_tensor *t = g->nodes[i + j], *ws = t->src[0];
        kq_buffer *by = kq_buffer_of(t);
        ok = (w[j] = kq_product_w(ws)) != NULL &&
             kq_ok(kqcl_tensor_view(by->mem, kq_offset(by, t), KQCL_TYPE_F32, t->src[1]->ne[1], ws->ne[1], &y[j]),
                   "tensor view");
    }
    return ok;
}

static enum ggml_status kq_compute_mul_mat_group(kq_backend *be, const struct ggml_cgraph *g, int i, int nodes)
{
    kq_device *d = be->dev;
    kqcl_tensor *x = kq_product_x(d, g->nodes[i]->src[1]);
    kqcl_tensor *w[KQ_MAX_GROUP] = {NULL}, *y[KQ_MAX_GROUP] = {NULL};
    bool ok = x != NULL && kq_group_views(g, i, nodes, w, y) &&
              kq_ok(kqcl_matmul_group(kq_ctx, nodes, (const kqcl_tensor *const *)w, x, y), "MUL_MAT group");
    for (int j = 0; j < nodes; j++)
        kqcl_tensor_destroy(w[j]), kqcl_tensor_destroy(y[j]);
    kqcl_tensor_destroy(x);
    if (!ok)
        kq_log("%s: MUL_MAT group of %d from %s failed", d->name, nodes, g->nodes[i]->name);
    return ok ? GGML_STATUS_SUCCESS : GGML_STATUS_FAILED;
}

/* MUL_MAT (gate), MUL_MAT (up) of one X, then their GLU (SWIGLU or GEGLU, split form): one
 * kqcl_matmul_glu, which in decode is one launch and writes neither product. Taken where the two
 * products would be a group (above), nothing else reads them, and the result does not overlap X
 * (every work-group reads all of X while others write). */
static int kq_fits_mul_mat_glu(const struct ggml_cgraph *g, int i)
{
    static const enum ggml_op ops[] = {GGML_OP_MUL_MAT, GGML_OP_MUL_MAT, GGML_OP_GLU};
    const int out = i + 2;
    if (i + 2 >= g->n_nodes || !ggml_can_fuse_subgraph(g, i, 3, ops, &out, 1))
        return 0;
    const struct ggml_tensor *a = g->nodes[i], *b = g->nodes[i + 1], *glu = g->nodes[i + 2];
    kq_buffer *bd = kq_buffer_of(glu);
    if (bd == NULL || !kq_group_member(bd->dev, a, a) || !kq_group_member(bd->dev, b, a) ||
        kq_glu_of(ggml_get_glu_op(glu)) < 0 || glu->src[1] == NULL)
        return 0;
    if (!((glu->src[0] == a && glu->src[1] == b) || (glu->src[0] == b && glu->src[1] == a)))
        return 0;
    return kq_plain_f32(glu) && ggml_are_same_shape(glu, a) && !kq_bytes_overlap(glu, a->src[1]) ? 3 : 0;
}

static enum ggml_status kq_compute_mul_mat_glu(kq_backend *be, const struct ggml_cgraph *g, int i, int nodes)
{
    (void)nodes;
    kq_device *d = be->dev;
    struct ggml_tensor *glu = g->nodes[i + 2];
    const struct ggml_tensor *gate, *up;
    kq_glu_operands(glu, &gate, &up);
    kqcl_tensor *x = kq_product_x(d, gate->src[1]), *wg = NULL, *wu = NULL;
    kq_out o;
    bool ok = x != NULL && (wg = kq_product_w(gate->src[0])) != NULL && (wu = kq_product_w(up->src[0])) != NULL &&
              kq_out_begin(d, glu, &o);
    if (!ok) {
        kqcl_tensor_destroy(x), kqcl_tensor_destroy(wg), kqcl_tensor_destroy(wu);
        return GGML_STATUS_FAILED;
    }
    kqcl_glu_op op = (kqcl_glu_op)kq_glu_of(ggml_get_glu_op(glu));
    ok = kq_ok(kqcl_matmul_glu(kq_ctx, op, wg, wu, x, o.t), "MUL_MAT+MUL_MAT+GLU");
    kqcl_tensor_destroy(wg), kqcl_tensor_destroy(wu);
    return kq_out_end(&o, ok, x, NULL);
}

/* The products from node `at` on that read the same X (the norm's result) and are each
 * viewable in place, of any weight types (kqcl_norm_matmul_group takes runs of types: a Q4_K_M
 * model's V may be q6_K), up to KQ_MAX_GROUP, no result over another's. */
static int kq_norm_readers(const kq_device *d, const struct ggml_cgraph *g, int at)
{
    int n = 0;
    while (at + n < g->n_nodes && n < KQ_MAX_GROUP) {
        const struct ggml_tensor *t = g->nodes[at + n];
        if (!kq_group_member(d, t, t) || t->src[1] != g->nodes[at]->src[1] ||
            t->src[0]->ne[0] != g->nodes[at]->src[0]->ne[0])
            break;
        for (int j = 0; j < n; j++)
            if (kq_bytes_overlap(t, g->nodes[at + j]))
                return n;
        n++;
    }
    return n;
}

/* [ADD,] RMS_NORM, MUL (a block's residual add and norm, as fused above), then the products of
 * the norm's result: gate, up and GLU (kq_fits_mul_mat_glu), or 1..4 products (Q, K and V;
 * the output; kq_norm_readers): one kqcl_norm_matmul_glu or kqcl_norm_matmul_group, which in
 * decode is one launch that writes the sum and the products' results and never the norm's. Taken where the
 * products are the norm's only readers and none of their results lies over what the launch
 * still reads (x, r, the sum, the norm's weight: other work-groups read them while one writes),
 * with the sum aligned in place. */
static int kq_fits_norm_products(const struct ggml_cgraph *g, int i)
{
    const bool add = g->nodes[i]->op == GGML_OP_ADD;
    const int norm_nodes = add ? kq_fits_add_norm_mul(g, i) : kq_fits_norm_mul(g, i), at = i + norm_nodes;
    if (norm_nodes == 0 || at >= g->n_nodes || g->nodes[at]->src[1] != g->nodes[at - 1])
        return 0;
    const struct ggml_tensor *mul = g->nodes[at - 1], *sum = g->nodes[i], *norm = g->nodes[at - 2];
    kq_buffer *b = kq_buffer_of(g->nodes[at]), *bs = kq_buffer_of(sum);
    if (b == NULL || bs == NULL)
        return 0;
    const bool glu = kq_fits_mul_mat_glu(g, at) > 0;
    int products = glu ? 3 : kq_norm_readers(b->dev, g, at), readers = glu ? 2 : products;
    const int last = at + products - 1;
    /* what the launch writes in place: the sum, and a GLU's result (a group's are aligned) */
    kq_buffer *bl = kq_buffer_of(g->nodes[last]);
    const size_t align = b->dev->alignment;
    if (products == 0 || ggml_node_get_use_count(g, at - 1) != readers || (mul->flags & GGML_TENSOR_FLAG_OUTPUT) ||
        (add && kq_offset(bs, sum) % align != 0) || bl == NULL || (glu && kq_offset(bl, g->nodes[last]) % align != 0))
        return 0;
    const struct ggml_tensor *read[4] = {norm->src[0], add ? sum->src[1] : NULL, add ? sum : NULL, mul->src[1]};
    for (int t = at; t <= last; t++)
        for (int r = 0; r < 4; r++)
            if (read[r] != NULL && kq_bytes_overlap(g->nodes[t], read[r]))
                return 0;
    return norm_nodes + products;
}

static enum ggml_status kq_compute_norm_products(kq_backend *be, const struct ggml_cgraph *g, int i, int nodes)
{
    kq_device *d = be->dev;
    struct ggml_tensor *sum_node = g->nodes[i];
    const bool add = sum_node->op == GGML_OP_ADD;
    const int at = i + (add ? 3 : 2), products = nodes - (add ? 3 : 2);
    const struct ggml_tensor *norm = g->nodes[at - 2], *mul = g->nodes[at - 1];
    const bool glu = g->nodes[i + nodes - 1]->op == GGML_OP_GLU;
    kqcl_norm_prologue p = {.w = kq_rows_of(d, mul->src[1], KQ_SCRATCH_W)};
    memcpy(&p.eps, norm->op_params, sizeof p.eps);
    kqcl_tensor *x = kq_rows_of(d, add ? sum_node->src[0] : norm->src[0], KQ_SCRATCH_X);
    kqcl_tensor *w[KQ_MAX_GROUP] = {NULL}, *y[KQ_MAX_GROUP] = {NULL};
    bool ok = x != NULL && p.w != NULL;
    if (ok && add) { /* the sum in place (kq_fits_norm_products: aligned) */
        kq_buffer *bs = kq_buffer_of(sum_node);
        ok = (p.r = kq_rows_of(d, sum_node->src[1], KQ_SCRATCH_V)) != NULL &&
             kq_ok(kqcl_tensor_view(bs->mem, kq_offset(bs, sum_node), KQCL_TYPE_F32, ggml_nrows(sum_node),
                                    sum_node->ne[0], &p.sum),
                   "tensor view");
    }
    if (ok && glu) {
        const struct ggml_tensor *out = g->nodes[i + nodes - 1], *gate, *up;
        kq_glu_operands(out, &gate, &up);
        kq_buffer *bo = kq_buffer_of(out);
        ok = (w[0] = kq_product_w(gate->src[0])) != NULL && (w[1] = kq_product_w(up->src[0])) != NULL &&
             kq_ok(kqcl_tensor_view(bo->mem, kq_offset(bo, out), KQCL_TYPE_F32, ggml_nrows(out), out->ne[0], &y[0]),
                   "tensor view") &&
             kq_ok(kqcl_norm_matmul_glu(kq_ctx, &p, (kqcl_glu_op)kq_glu_of(ggml_get_glu_op(out)), w[0], w[1], x, y[0]),
                   "norm + MUL_MAT + MUL_MAT + GLU");
    } else if (ok) {
        ok = kq_group_views(g, at, products, w, y) &&
             kq_ok(kqcl_norm_matmul_group(kq_ctx, &p, products, (const kqcl_tensor *const *)w, x, y),
                   "norm + MUL_MAT group");
    }
    for (int j = 0; j < KQ_MAX_GROUP; j++)
        kqcl_tensor_destroy(w[j]), kqcl_tensor_destroy(y[j]);
    kqcl_tensor_destroy((kqcl_tensor *)p.w), kqcl_tensor_destroy((kqcl_tensor *)p.r), kqcl_tensor_destroy(p.sum);
    kqcl_tensor_destroy(x);
    if (!ok)
        kq_log("%s: norm and %d products from %s failed", d->name, products, g->nodes[i]->name);
    return ok ? GGML_STATUS_SUCCESS : GGML_STATUS_FAILED;
}

/* ROPE of a key, the view ops that reshape it into a token's row, then SET_ROWS into the KV
 * cache: one kqcl_rope_set_rows, which writes the turned rows straight into the cache. Taken
 * where nothing else reads the turned rows (the attention reads the cache), they are the
 * SET_ROWS source whole and in order (one token a row: heads * head size values), the indices
 * are one contiguous run, and the cache's rows are contiguous and take a view. */
static bool kq_view_op(enum ggml_op op)
{
    return op == GGML_OP_VIEW || op == GGML_OP_RESHAPE;
}

static int kq_fits_rope_set_rows(const struct ggml_cgraph *g, int i)
{
    const struct ggml_tensor *rope = g->nodes[i];
    kq_buffer *b = kq_buffer_of(rope);
    if (b == NULL || !kq_supports_rope(b->dev, rope))
        return 0;
    enum ggml_op ops[8];
    int outs[8], n = 0, n_out = 0;
    ops[n++] = GGML_OP_ROPE;
    const struct ggml_tensor *last = rope;
    /* The key's views; a view of something else (Gemma-3's V reshape lands here once
     * graph_optimize moved V's product up) computes nothing and may stay inside the run as one
     * of its outputs, unless it looks at the turned key, which the run never writes. */
    while (i + n < g->n_nodes && n < 7) {
        const struct ggml_tensor *t = g->nodes[i + n];
        if (kq_view_op(t->op) && t->src[0] == last)
            last = t;
        else if (kq_view_op(t->op) && t->view_src != rope && t->src[0] != rope)
            outs[n_out++] = i + n;
        else
            break;
        ops[n++] = t->op;
    }
    if (i + n >= g->n_nodes)
        return 0;
    const struct ggml_tensor *set = g->nodes[i + n], *idx = set->src[1];
    ops[n++] = GGML_OP_SET_ROWS;
    outs[n_out++] = i + n - 1;
    if (set->op != GGML_OP_SET_ROWS || set->src[0] != last || !ggml_can_fuse_subgraph(g, i, n, ops, outs, n_out))
        return 0;
    kq_buffer *bd = kq_buffer_of(set), *bi = idx ? kq_buffer_of(idx) : NULL;
    const int64_t row = rope->ne[0] * rope->ne[1]; /* a token's heads side by side */
    if (bd == NULL || bi == NULL || !kq_supports_set_rows(b->dev, set) || set->type == GGML_TYPE_Q8_0 ||
        !ggml_is_contiguous(last) ||
        last->ne[0] != row || last->ne[1] != rope->ne[2] || last->ne[2] != 1 || last->ne[3] != 1 ||
        !ggml_is_contiguous(idx) || idx->ne[0] != rope->ne[2] || ggml_nelements(idx) != idx->ne[0])
        return 0;
    const size_t isz = ggml_type_size(idx->type);
    return set->nb[1] == kqcl_row_size((kqcl_type)set->type, row) && kq_offset(bd, set) % b->dev->alignment == 0 &&
                   kq_offset(bi, idx) % isz == 0 && !kq_bytes_overlap(set, rope->src[0])
               ? n
               : 0;
}

static enum ggml_status kq_compute_rope_set_rows(kq_backend *be, const struct ggml_cgraph *g, int i, int nodes)
{
    kq_device *d = be->dev;
    const struct ggml_tensor *rope = g->nodes[i], *set = g->nodes[i + nodes - 1];
    const struct ggml_tensor *src = rope->src[0], *pos = rope->src[1], *idx = set->src[1];
    kq_buffer *bp = kq_buffer_of(pos), *bi = kq_buffer_of(idx), *bd = kq_buffer_of(set);
    kqcl_rope_params p;
    kq_rope_params_of(rope, &p);
    if (bp != NULL) {
        int held = kq_jobs_hold(be, pos, &p, src, ggml_nrows(src), src->ne[0], (int)src->ne[1], set, set->ne[1],
                                set->ne[0], idx, &kq_no_norm);
        if (held != 0)
            return held > 0 ? GGML_STATUS_SUCCESS : GGML_STATUS_FAILED;
    }
    if (!kq_jobs_flush(be))
        return GGML_STATUS_FAILED;
    kqcl_tensor *x = bp ? kq_rows_of(d, src, KQ_SCRATCH_X) : NULL, *cache = NULL;
    bool ok = x != NULL && kq_ok(kqcl_tensor_view(bd->mem, kq_offset(bd, set), (kqcl_type)set->type, set->ne[1],
                                                  set->ne[0], &cache),
                                 "tensor view") &&
              kq_ok(kqcl_rope_set_rows(kq_ctx, x, bp->mem, kq_offset(bp, pos), (int)src->ne[1], &p, bi->mem,
                                       kq_offset(bi, idx), (int)ggml_type_size(idx->type), cache),
                    "ROPE+SET_ROWS");
    kqcl_tensor_destroy(x), kqcl_tensor_destroy(cache);
    return ok ? GGML_STATUS_SUCCESS : GGML_STATUS_FAILED;
}

/* Gemma-3's query and key: RMS_NORM, MUL by a one-row weight (the head's norm), ROPE, and then
 * the query's SCALE or the key's views and SET_ROWS, as one held job with a norm and a scale
 * (kqcl_rope_job's norm_w and out_scale), so that neither the norm nor the scale takes a launch
 * and the step's jobs stay held for the attention. Only for a few tokens: on a GPU each of a
 * row's pairs sums the row's squares again (a prompt's rows take the norm's own launch). */
#define KQ_NORMED_ROPE_MAX_TOKENS 8

/* RMS_NORM, MUL and ROPE from node i, the norm's result read by the MUL alone and the MUL's by
 * the ROPE alone, on rows of a few tokens. */
static bool kq_fits_normed_rope(const struct ggml_cgraph *g, int i)
{
    static const enum ggml_op ops[] = {GGML_OP_RMS_NORM, GGML_OP_MUL, GGML_OP_ROPE};
    if (!kq_fusion_enabled() || kq_fits_norm_mul(g, i) != 2 || !ggml_can_fuse(g, i, ops, 3))
        return false;
    const struct ggml_tensor *norm = g->nodes[i], *mul = g->nodes[i + 1], *rope = g->nodes[i + 2];
    kq_buffer *b = kq_buffer_of(rope);
    return rope->src[0] == mul && b != NULL && kq_supports_rope(b->dev, rope) && kq_plain_f32(norm->src[0]) &&
           ggml_are_same_shape(norm->src[0], rope) && rope->ne[2] <= KQ_NORMED_ROPE_MAX_TOKENS && rope->ne[3] == 1;
}

static int kq_fits_norm_rope(const struct ggml_cgraph *g, int i) { return kq_fits_normed_rope(g, i) ? 3 : 0; }

static int kq_fits_norm_rope_scale(const struct ggml_cgraph *g, int i)
{
    static const enum ggml_op ops[] = {GGML_OP_RMS_NORM, GGML_OP_MUL, GGML_OP_ROPE, GGML_OP_SCALE};
    if (!kq_fits_normed_rope(g, i) || !ggml_can_fuse(g, i, ops, 4))
        return 0;
    const struct ggml_tensor *rope = g->nodes[i + 2], *scale = g->nodes[i + 3];
    float prm[2];
    memcpy(prm, scale->op_params, sizeof prm);
    return scale->src[0] == rope && kq_plain_f32(scale) && ggml_are_same_shape(scale, rope) && prm[1] == 0.0f &&
                   isfinite(prm[0])
               ? 4
               : 0;
}

static int kq_fits_norm_rope_set_rows(const struct ggml_cgraph *g, int i)
{
    int n = kq_fits_normed_rope(g, i) ? kq_fits_rope_set_rows(g, i + 2) : 0;
    return n > 0 ? 2 + n : 0;
}

static enum ggml_status kq_compute_norm_rope(kq_backend *be, const struct ggml_cgraph *g, int i, int nodes)
{
    const struct ggml_tensor *norm = g->nodes[i], *mul = g->nodes[i + 1];
    struct ggml_tensor *rope = g->nodes[i + 2], *last = g->nodes[i + nodes - 1];
    const struct ggml_tensor *src = norm->src[0], *pos = rope->src[1];
    const bool set = last->op == GGML_OP_SET_ROWS, scaled = last->op == GGML_OP_SCALE;
    kq_job_norm jn = {mul->src[1], 0.0f, 1.0f};
    memcpy(&jn.eps, norm->op_params, sizeof jn.eps);
    if (scaled)
        memcpy(&jn.scale, last->op_params, sizeof jn.scale);
    kqcl_rope_params p;
    kq_rope_params_of(rope, &p);
    int held = 0;
    if (kq_buffer_of(pos) != NULL && ggml_is_contiguous(last))
        held = kq_jobs_hold(be, pos, &p, src, ggml_nrows(src), src->ne[0], (int)src->ne[1], last,
                            set ? last->ne[1] : ggml_nrows(last), last->ne[0], set ? last->src[1] : NULL, &jn);
    if (held != 0)
        return held > 0 ? GGML_STATUS_SUCCESS : GGML_STATUS_FAILED;
    /* not held (an operand not in place, or over another): node by node, after the held jobs
     * (a job not even tried launched none) */
    if (!kq_jobs_flush(be))
        return GGML_STATUS_FAILED;
    enum ggml_status st = kq_compute_norm_mul(be, g, i, 2);
    if (st == GGML_STATUS_SUCCESS)
        st = set ? kq_compute_rope_set_rows(be, g, i + 2, nodes - 2) : kq_compute_rope(be, rope);
    if (st == GGML_STATUS_SUCCESS && scaled)
        st = kq_compute_scale(be, last);
    return st;
}

/* A fusion's test gives the nodes it would take from node i (0: it does not apply); its compute
 * takes that many. */
typedef struct kq_fusion {
    const char *name;   /* as KQCL_GGML_PROFILE=ops tells it */
    enum ggml_op first; /* the op that starts the run */
    int (*fits)(const struct ggml_cgraph *g, int i);
    enum ggml_status (*compute)(kq_backend *be, const struct ggml_cgraph *g, int i, int nodes);
    bool may_hold; /* it may join the held jobs, so they are not launched before it */
} kq_fusion;

static const kq_fusion kq_fusions[] = {
    /* before the norms alone: it takes more */
    {"add+norm+products", GGML_OP_ADD, kq_fits_norm_products, kq_compute_norm_products, false},
    {"norm+products", GGML_OP_RMS_NORM, kq_fits_norm_products, kq_compute_norm_products, false},
    {"add+norm", GGML_OP_ADD, kq_fits_add_norm_mul, kq_compute_add_norm_mul, false},
    {"norm+rope+scale", GGML_OP_RMS_NORM, kq_fits_norm_rope_scale, kq_compute_norm_rope, true},
    {"norm+rope+set_rows", GGML_OP_RMS_NORM, kq_fits_norm_rope_set_rows, kq_compute_norm_rope, true},
    {"norm+rope", GGML_OP_RMS_NORM, kq_fits_norm_rope, kq_compute_norm_rope, true},
    {"norm", GGML_OP_RMS_NORM, kq_fits_norm_mul, kq_compute_norm_mul, false},
    {"rope+set_rows", GGML_OP_ROPE, kq_fits_rope_set_rows, kq_compute_rope_set_rows, true},
    /* before the group: it takes more */
    {"products+glu", GGML_OP_MUL_MAT, kq_fits_mul_mat_glu, kq_compute_mul_mat_glu, false},
    {"products", GGML_OP_MUL_MAT, kq_fits_mul_mat_group, kq_compute_mul_mat_group, false},
};

static bool kq_fusion_enabled(void)
{
    static int enabled = -1;
    if (enabled < 0) {
        const char *e = getenv("KQCL_GGML_FUSION");
        enabled = e == NULL || strcmp(e, "0") != 0;
    }
    return enabled;
}

/* The fusion that takes the run starting at node i, and its nodes; NULL: none (or
 * KQCL_GGML_FUSION=0). */
static const kq_fusion *kq_fusion_at(const struct ggml_cgraph *g, int i, int *nodes)
{
    for (size_t f = 0; kq_fusion_enabled() && f < sizeof kq_fusions / sizeof kq_fusions[0]; f++)
        if (g->nodes[i]->op == kq_fusions[f].first && (*nodes = kq_fusions[f].fits(g, i)) > 0)
            return &kq_fusions[f];
    return NULL;
}

/* ---- graph order: products that share X side by side -----------------------------------------
 * llama.cpp builds Q, K and V (and gate and up) as products of one X, but ggml's order puts each
 * product's consumers (a reshape, a RoPE) between them. Before the graph is allocated, each
 * MUL_MAT of a weight (a leaf: nothing in the graph computes it) that shares X with an earlier
 * one within a short window is moved up beside it, so the group fusion above sees a run. This
 * only moves a node ahead of nodes it does not depend on (its inputs are X, computed before the
 * first product, and the weight), and the allocator then lays the graph out in the new order. */
#define KQ_GROUP_WINDOW 24 /* nodes looked ahead: a layer's attention products lie within ~10 */

static bool kq_product_of_weight(const struct ggml_tensor *t)
{
    return t->op == GGML_OP_MUL_MAT && t->src[0] != NULL && t->src[0]->op == GGML_OP_NONE &&
           t->src[0]->view_src == NULL && t->src[1] != NULL;
}

static void kq_backend_graph_optimize(ggml_backend_t backend, struct ggml_cgraph *g,
                                      struct ggml_backend_graph_optimize_params *params)
{
    (void)backend;
    (void)params;
    if (!kq_fusion_enabled())
        return;
    for (int i = 0; i < g->n_nodes; i++) {
        if (!kq_product_of_weight(g->nodes[i]))
            continue;
        int run = 1; /* products now at i .. i + run - 1 */
        for (int j = i + 1; j < g->n_nodes && j < i + KQ_GROUP_WINDOW && run < KQ_MAX_GROUP; j++) {
            struct ggml_tensor *t = g->nodes[j];
            if (!kq_product_of_weight(t) || t->src[1] != g->nodes[i]->src[1])
                continue;
            memmove(&g->nodes[i + run + 1], &g->nodes[i + run], (size_t)(j - i - run) * sizeof g->nodes[0]);
            g->nodes[i + run] = t;
            run++;
        }
        i += run - 1;
    }
}

/* ---- backend (stream) -------------------------------------------------------------------- */

static const char *kq_backend_get_name(ggml_backend_t backend) { return ((kq_backend *)backend->context)->dev->name; }

static void kq_profile_report(const kq_backend *be)
{
    const kq_profile *p = &be->profile;
    if (p->graphs == 0)
        return;
    fprintf(stderr, "%s: %ld graphs, %.1f nodes, enqueue %.1f us, to the device's end %.1f us (means)\n",
            be->dev->name, p->graphs, (double)p->nodes / p->graphs, p->enqueue_us / p->graphs,
            p->total_us / p->graphs);
    if (p->kinds > 0)
        fprintf(stderr, "%s: a graph's steps (timed queue): %-18s %8s %10s %10s\n", be->dev->name, "kind", "calls",
                "host us", "device us");
    for (int k = 0; k < p->kinds; k++)
        fprintf(stderr, "%s: a graph's steps (timed queue): %-18s %8.1f %10.1f %10.1f\n", be->dev->name,
                p->kind[k].name, (double)p->kind[k].calls / p->graphs, p->kind[k].host_us / p->graphs,
                p->kind[k].device_us / p->graphs);
}

/* The scratch buffers go with a device's last backend, so that nothing of the module's but the
 * context is alive when a program that freed its model and backends exits. */
static void kq_scratch_free(kq_device *d)
{
    kqcl_finish(kq_ctx);
    for (int slot = 0; slot < KQ_SCRATCH_COUNT; slot++) {
        kqcl_buffer_destroy(d->scratch[slot]);
        d->scratch[slot] = NULL;
    }
}

static void kq_backend_free(ggml_backend_t backend)
{
    const kq_backend *be = backend->context;
    kq_profile_report(be);
    pthread_mutex_lock(&kq_lock);
    if (--be->dev->backends == 0)
        kq_scratch_free(be->dev);
    pthread_mutex_unlock(&kq_lock);
    free(backend->context);
    free(backend);
}

static void kq_backend_synchronize(ggml_backend_t backend)
{
    (void)backend;
    pthread_mutex_lock(&kq_lock);
    kq_ok(kqcl_finish(kq_ctx), "synchronize");
    pthread_mutex_unlock(&kq_lock);
}

/* Whether the op table computes nothing for the op: the views. */
static bool kq_computes_nothing(enum ggml_op op)
{
    const kq_op *o = kq_op_of(op);
    return o != NULL && o->compute == kq_compute_nothing;
}

/* Nodes that leave held jobs held: views (they compute nothing), those that may join them, and
 * the attention, which takes them into its launch or launches them first itself. */
static bool kq_may_hold(const struct ggml_tensor *node)
{
    return kq_computes_nothing(node->op) || node->op == GGML_OP_ROPE || node->op == GGML_OP_SET_ROWS ||
           node->op == GGML_OP_FLASH_ATTN_EXT;
}

static enum ggml_status kq_backend_graph_compute(ggml_backend_t backend, struct ggml_cgraph *cgraph)
{
    kq_backend *be = backend->context;
    enum ggml_status status = GGML_STATUS_SUCCESS;
    pthread_mutex_lock(&kq_lock);
    const int profiling = kq_profiling();
    if (profiling == 2 && !kq_ok(kqcl_context_set_timing(kq_ctx, 1), "timing the queue for KQCL_GGML_PROFILE"))
        status = GGML_STATUS_FAILED;
    const double t0 = profiling ? kq_now_us() : 0;
    const int n_nodes = ggml_graph_n_nodes(cgraph);
    for (int i = 0; i < n_nodes && status == GGML_STATUS_SUCCESS; i++) {
        struct ggml_tensor *node = ggml_graph_node(cgraph, i);
        if ((node->flags & GGML_TENSOR_FLAG_COMPUTE) == 0 || ggml_is_empty(node))
            continue;
        int nodes = 0;
        const kq_fusion *fusion = kq_fusion_at(cgraph, i, &nodes);
        if (!(fusion != NULL ? fusion->may_hold : kq_may_hold(node)) && !kq_jobs_flush(be)) {
            status = GGML_STATUS_FAILED;
            break;
        }
        const double ts = profiling == 2 ? kq_now_us() : 0;
        const unsigned long holds = be->jobs.holds;
        if (fusion != NULL) {
            status = fusion->compute(be, cgraph, i, nodes);
            i += nodes - 1;
        } else {
            const kq_op *op = kq_op_of(node->op);
            if (op == NULL) {
                kq_log("%s: op %s (%s) is not supported", be->dev->name, ggml_op_name(node->op), node->name);
                status = GGML_STATUS_FAILED;
                break;
            }
            status = op->compute(be, node);
        }
        /* a step that held its work launches nothing yet (the flush is told apart) */
        if (profiling == 2 && (fusion != NULL || !kq_computes_nothing(node->op)) && be->jobs.holds == holds)
            kq_profile_step(be, fusion != NULL ? fusion->name : ggml_op_name(node->op), ts);
    }
    if (!kq_jobs_flush(be)) /* the graph's last held jobs (after a failure: their views freed) */
        status = GGML_STATUS_FAILED;
    if (profiling) {
        const double t1 = kq_now_us();
        kqcl_finish(kq_ctx);
        be->profile.graphs++;
        be->profile.nodes += n_nodes;
        be->profile.enqueue_us += t1 - t0;
        be->profile.total_us += kq_now_us() - t0;
    }
    pthread_mutex_unlock(&kq_lock);
    return status;
}

static const struct ggml_backend_i kq_backend_iface = {
    .get_name = kq_backend_get_name,
    .free = kq_backend_free,
    .set_tensor_async = NULL,
    .get_tensor_async = NULL,
    .set_tensor_2d_async = NULL,
    .get_tensor_2d_async = NULL,
    .cpy_tensor_async = NULL,
    .synchronize = kq_backend_synchronize,
    .graph_plan_create = NULL,
    .graph_plan_free = NULL,
    .graph_plan_update = NULL,
    .graph_plan_compute = NULL,
    .graph_compute = kq_backend_graph_compute,
    .event_record = NULL,
    .event_wait = NULL,
    .graph_optimize = kq_backend_graph_optimize,
};

static ggml_guid_t kq_guid(void)
{
    static ggml_guid guid = {0x6b, 0x71, 0x63, 0x6c, 0x2d, 0x67, 0x67, 0x6d,
                             0x6c, 0x2d, 0x62, 0x61, 0x63, 0x6b, 0x65, 0x6e}; /* "kqcl-ggml-backen" */
    return &guid;
}

/* ---- devices ----------------------------------------------------------------------------- */

static const char *kq_dev_get_name(ggml_backend_dev_t dev) { return ((kq_device *)dev->context)->name; }

static const char *kq_dev_get_description(ggml_backend_dev_t dev) { return ((kq_device *)dev->context)->description; }

static void kq_dev_get_memory(ggml_backend_dev_t dev, size_t *free_bytes, size_t *total)
{
    kq_device *d = dev->context;
    size_t all = d->info.global_mem_bytes > SIZE_MAX ? SIZE_MAX : (size_t)d->info.global_mem_bytes;
    pthread_mutex_lock(&kq_lock);
    size_t used = d->allocated;
    pthread_mutex_unlock(&kq_lock);
    *total = all;
    *free_bytes = used < all ? all - used : 0;
}

/* GPU whatever OpenCL calls the device: llama.cpp offloads layers only to GPU-type devices
 * (and its -dev refuses others). */
static enum ggml_backend_dev_type kq_dev_get_type(ggml_backend_dev_t dev)
{
    (void)dev;
    return GGML_BACKEND_DEVICE_TYPE_GPU;
}

static void kq_dev_get_props(ggml_backend_dev_t dev, struct ggml_backend_dev_props *props)
{
    memset(props, 0, sizeof *props);
    props->name = kq_dev_get_name(dev);
    props->description = kq_dev_get_description(dev);
    props->type = kq_dev_get_type(dev);
    props->device_id = NULL;
    kq_dev_get_memory(dev, &props->memory_free, &props->memory_total);
    props->caps.async = false;
    props->caps.host_buffer = false;
    props->caps.buffer_from_host_ptr = false;
    props->caps.events = false;
    props->caps.mmap_support = false;
}

static ggml_backend_t kq_dev_init_backend(ggml_backend_dev_t dev, const char *params)
{
    (void)params;
    kq_backend *be = calloc(1, sizeof *be);
    ggml_backend_t backend = calloc(1, sizeof *backend);
    if (be == NULL || backend == NULL) {
        free(be);
        free(backend);
        return NULL;
    }
    be->dev = dev->context;
    pthread_mutex_lock(&kq_lock);
    be->dev->backends++;
    pthread_mutex_unlock(&kq_lock);
    backend->guid = kq_guid();
    backend->iface = kq_backend_iface;
    backend->device = dev;
    backend->context = be;
    return backend;
}

static ggml_backend_buffer_type_t kq_dev_get_buffer_type(ggml_backend_dev_t dev)
{
    return &((kq_device *)dev->context)->buft;
}

/* A node that reads a split weight: only a MUL_MAT whose src0 it is (kq_compute_mul_mat_split). */
static bool kq_reads_split(const struct ggml_tensor *op)
{
    for (int i = 0; i < GGML_MAX_SRC; i++)
        if (op->src[i] != NULL && op->src[i]->buffer != NULL && kq_is_split_buft(op->src[i]->buffer->buft))
            return true;
    return false;
}

static bool kq_dev_supports_op(ggml_backend_dev_t dev, const struct ggml_tensor *op)
{
    if (kq_reads_split(op)) {
        const struct ggml_tensor *w = op->src[0], *x = op->src[1];
        return op->op == GGML_OP_MUL_MAT && w->buffer != NULL && kq_is_split_buft(w->buffer->buft) &&
               w->view_src == NULL && w->ne[2] == 1 && w->ne[3] == 1 &&
               !(x->buffer != NULL && kq_is_split_buft(x->buffer->buft)) && kq_supports_mul_mat(dev->context, op);
    }
    const kq_op *entry = kq_op_of(op->op);
    return entry != NULL && entry->supports(dev->context, op);
}

/* Our buffers, and the split buffers of layers on this device (their products run here). */
static bool kq_dev_supports_buft(ggml_backend_dev_t dev, ggml_backend_buffer_type_t buft)
{
    return buft == &((kq_device *)dev->context)->buft || (kq_is_split_buft(buft) && buft->device == dev);
}

static const struct ggml_backend_device_i kq_dev_iface = {
    .get_name = kq_dev_get_name,
    .get_description = kq_dev_get_description,
    .get_memory = kq_dev_get_memory,
    .get_type = kq_dev_get_type,
    .get_props = kq_dev_get_props,
    .init_backend = kq_dev_init_backend,
    .get_buffer_type = kq_dev_get_buffer_type,
    .get_host_buffer_type = NULL,
    .buffer_from_host_ptr = NULL,
    .supports_op = kq_dev_supports_op,
    .supports_buft = kq_dev_supports_buft,
    .offload_op = NULL,
    .event_new = NULL,
    .event_free = NULL,
    .event_synchronize = NULL,
};

/* ---- registry ---------------------------------------------------------------------------- */

static struct ggml_backend_reg kq_reg;

static const char *kq_reg_get_name(ggml_backend_reg_t reg)
{
    (void)reg;
    return KQ_NAME;
}

static size_t kq_reg_get_device_count(ggml_backend_reg_t reg)
{
    (void)reg;
    return (size_t)kq_n_devices;
}

static ggml_backend_dev_t kq_reg_get_device(ggml_backend_reg_t reg, size_t index)
{
    (void)reg;
    return index < (size_t)kq_n_devices ? &kq_devices[index].dev : NULL;
}

static struct ggml_backend_feature kq_features[3];

static struct ggml_backend_feature *kq_get_features(ggml_backend_reg_t reg)
{
    (void)reg;
    return kq_features;
}

static void *kq_reg_get_proc_address(ggml_backend_reg_t reg, const char *name)
{
    (void)reg;
    if (strcmp(name, "ggml_backend_get_features") == 0)
        return (void *)kq_get_features;
    if (strcmp(name, "ggml_backend_split_buffer_type") == 0)
        return (void *)kq_split_buffer_type;
    return NULL;
}

static const struct ggml_backend_reg_i kq_reg_iface = {
    .get_name = kq_reg_get_name,
    .get_device_count = kq_reg_get_device_count,
    .get_device = kq_reg_get_device,
    .get_proc_address = kq_reg_get_proc_address,
};

/* One kqcl context with the devices KQCL_DEVICES names (kqcl's default otherwise); a failure
 * leaves the backend with no device and says why. */
static void kq_init(void)
{
    kqcl_status st = kqcl_context_create(NULL, &kq_ctx);
    if (st != KQCL_OK) {
        kq_log("no device: %s (%s)", kqcl_status_string(st), kqcl_last_error(NULL));
        kq_ctx = NULL;
    }
    int n = kq_ctx ? kqcl_device_count(kq_ctx) : 0;
    kq_devices = n > 0 ? calloc((size_t)n, sizeof *kq_devices) : NULL;
    for (int i = 0; kq_devices != NULL && i < n; i++) {
        kq_device *d = &kq_devices[kq_n_devices];
        if (!kq_ok(kqcl_device_get_info(kq_ctx, i, &d->info), "device info"))
            continue;
        d->index = i;
        snprintf(d->name, sizeof d->name, KQ_NAME "%d", kq_n_devices);
        snprintf(d->description, sizeof d->description, "%s", d->info.name);
        d->alignment = kqcl_buffer_alignment(kq_ctx, i);
        if (d->alignment == 0)
            d->alignment = 128;
        d->dev.iface = kq_dev_iface;
        d->dev.reg = &kq_reg;
        d->dev.context = d;
        d->buft.iface = kq_buft_iface;
        d->buft.device = &d->dev;
        d->buft.context = d;
        kq_n_devices++;
    }
    static char version[32];
    snprintf(version, sizeof version, "%s", kqcl_version());
    kq_features[0].name = "KQCL";
    kq_features[0].value = version;
    kq_features[1].name = "PRECISION";
    kq_features[1].value = kqcl_precision_name(kqcl_context_precision(kq_ctx));
    kq_features[2].name = NULL;
    kq_features[2].value = NULL;
    kq_reg.api_version = GGML_BACKEND_API_VERSION;
    kq_reg.iface = kq_reg_iface;
    kq_reg.context = NULL;
}

ggml_backend_reg_t ggml_backend_kqcl_reg(void);

ggml_backend_reg_t ggml_backend_kqcl_reg(void)
{
    pthread_once(&kq_once, kq_init);
    return &kq_reg;
}

/* ggml asks before loading: 0 (not loaded, ggml says so) when OpenCL shows no device. */
static int kq_score(void)
{
    int count = 0;
    return kqcl_list_devices(NULL, 0, &count) == KQCL_OK && count > 0 ? 1 : 0;
}

GGML_BACKEND_DL_IMPL(ggml_backend_kqcl_reg)
GGML_BACKEND_DL_SCORE_IMPL(kq_score)
