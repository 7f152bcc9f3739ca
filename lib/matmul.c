/*
 * matmul.c -- kqcl_matmul: checking the operands and dispatching to the fused kernels
 * (matvec.cl for decode, matmul.cl for prefill), and the unfused reference path.
 */
#include "ops.h"
#include "parallel.h"
#include "program.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifdef HAVE_CLBLAST
#include <clblast_c.h>
#endif

static kqcl_status check_operands(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x,
                                  const kqcl_tensor *y)
{
    kqcl_status st;
    if ((st = kq_check_tensor(ctx, w, "kqcl_matmul", "w")) != KQCL_OK ||
        (st = kq_check_tensor(ctx, x, "kqcl_matmul", "x")) != KQCL_OK ||
        (st = kq_check_tensor(ctx, y, "kqcl_matmul", "y")) != KQCL_OK)
        return st;
    if (!kq_type_is_float(x->type))
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "kqcl_matmul: x is %s; activations must be f32, f16 or bf16",
                       kqcl_type_name(x->type));
    if (y->type != KQCL_TYPE_F32)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "kqcl_matmul: y is %s; the output must be f32",
                       kqcl_type_name(y->type));
    if (w->cols != x->cols || y->rows != x->rows || y->cols != w->rows)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG,
                       "kqcl_matmul: shapes do not fit: w %lld x %lld, x %lld x %lld, y %lld x %lld "
                       "(want y = x.rows x w.rows and x.cols = w.cols)",
                       (long long)w->rows, (long long)w->cols, (long long)x->rows, (long long)x->cols,
                       (long long)y->rows, (long long)y->cols);
    if (w == y || x == y)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_matmul: y must not alias w or x");
    return KQCL_OK;
}

static kqcl_status ensure_buffer(kqcl_context *ctx, kq_device *dev, cl_mem *buf, size_t *have, size_t bytes,
                                 const char *what);

/* Rows of k values, k a multiple of 32, start 32-byte aligned and end on a whole unit:
 * activations load 16 bytes at a time with no bounds check. (With k a multiple of 8 only, the
 * last unit of a float-weight row would read past the row, and past X's end.) */
static void append_alignment(char *options, size_t size, int k)
{
    if (k % 32 == 0)
        strncat(options, " -DX_ALIGNED", size - strlen(options) - 1);
}

static size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

/* The arguments every matmul kernel takes: w, w's row bytes, x, y, m, k, n. */
static kqcl_status set_matmul_args(kqcl_context *ctx, cl_kernel kernel, const kqcl_tensor *w, const kqcl_tensor *x,
                                   kqcl_tensor *y, const char *what)
{
    cl_ulong row_bytes = w->row_bytes;
    int m = (int)w->rows, k = (int)w->cols, n = (int)x->rows;
    cl_int err = kq_set_args(kernel, 7, sizeof(cl_mem), &w->buffer, sizeof row_bytes, &row_bytes, sizeof(cl_mem),
                             &x->buffer, sizeof(cl_mem), &y->buffer, sizeof m, &m, sizeof k, &k, sizeof n, &n);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(ctx, err, what);
}

/* A tensor-core kernel (mma.cl). A driver that cannot build it gets the portable kernels from
 * then on: KQCL_ERR_UNSUPPORTED, so the caller falls back (a test's deliberately broken build
 * is reported as it is). */
static kqcl_status mma_kernel(kqcl_context *ctx, kq_device *dev, const char *options, const char *name,
                              cl_kernel *out)
{
    kqcl_status st = kq_get_kernel(ctx, dev, KQ_FAMILY_MMA, options, name, out);
    if (st == KQCL_ERR_BUILD && getenv("KQCL_EXTRA_BUILD_OPTIONS") == NULL) {
        dev->nv_mma = false;
        kq_describe_variant(dev, dev->info.variant, sizeof dev->info.variant);
        kq_clear_error(ctx);
        return KQCL_ERR_UNSUPPORTED;
    }
    return st;
}

static kqcl_status launch_matvec(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *w, const kqcl_tensor *x,
                                 kqcl_tensor *y)
{
    kq_matvec_tune t = kq_matvec_tune_for(dev);
    int m = (int)w->rows, k = (int)w->cols, n = (int)x->rows;
    char options[256];
    snprintf(options, sizeof options,
             "-DWTYPE=%d -DXTYPE=%d -DTHREADS_PER_ROW=%d -DROW_GROUPS=%d -DROWS_PER_THREAD=%d -DNCOLS=%d", (int)w->type,
             (int)x->type, t.threads_per_row, t.row_groups, t.rows_per_thread, n);
    append_alignment(options, sizeof options, k);
    if (!dev->info.is_gpu && t.threads_per_row == 1 && kq_type_is_kquant(w->type))
        strncat(options, " -DKQ_CPU", sizeof options - strlen(options) - 1); /* matvec.cl's CPU kernel */
    cl_kernel kernel;
    kqcl_status st = kq_get_kernel_variant(ctx, dev, KQ_FAMILY_MATVEC, options, "matvec", &kernel);
    if (st != KQCL_OK)
        return st;
    if ((st = set_matmul_args(ctx, kernel, w, x, y, "kqcl_matmul: setting matvec arguments")) != KQCL_OK)
        return st;
    size_t local = (size_t)t.threads_per_row * t.row_groups, rows_per_wg = (size_t)t.row_groups * t.rows_per_thread;
    size_t global = round_up((size_t)m, rows_per_wg) / rows_per_wg * local;
    return kq_enqueue(ctx, dev, kernel, 1, &global, &local, "kqcl_matmul: enqueue matvec");
}

/* The tensor-core decode kernel (mma.cl): k-quant weights, f32 activations, n <= 8, on NVIDIA
 * sm_80+. Returns KQCL_ERR_UNSUPPORTED when it does not apply, so the caller falls back. */
static kqcl_status launch_mma(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *w, const kqcl_tensor *x,
                              kqcl_tensor *y)
{
    if (!dev->nv_mma || !kq_type_is_kquant(w->type) || x->type != KQCL_TYPE_F32 || x->rows < kq_mma_min_n(dev))
        return KQCL_ERR_UNSUPPORTED;
    kq_mma_tune t = kq_mma_tune_for(dev);
    size_t m = (size_t)w->rows;
    char options[160];
    snprintf(options, sizeof options, "-DWTYPE=%d -DXTYPE=0 -DWARPS=%d -DMT=%d -DKQ_NV_PTX", (int)w->type, t.warps,
             t.m_tiles);
    cl_kernel kernel;
    kqcl_status st = mma_kernel(ctx, dev, options, "matvec_mma", &kernel);
    if (st != KQCL_OK)
        return st;
    if ((st = set_matmul_args(ctx, kernel, w, x, y, "kqcl_matmul: setting mma arguments")) != KQCL_OK)
        return st;
    size_t rows_per_wg = (size_t)16 * t.m_tiles, local = (size_t)32 * t.warps;
    size_t global = (m + rows_per_wg - 1) / rows_per_wg * local;
    return kq_enqueue(ctx, dev, kernel, 1, &global, &local, "kqcl_matmul: enqueue mma");
}

/* y += the sums of k-splits 1..parts, which matmul_mma left in dev->mma_part. */
static kqcl_status launch_sum_splits(kqcl_context *ctx, kq_device *dev, cl_kernel sum, kqcl_tensor *y, size_t count,
                                     int parts)
{
    cl_ulong n = count;
    cl_int err = kq_set_args(sum, 4, sizeof(cl_mem), &y->buffer, sizeof(cl_mem), &dev->mma_part, sizeof n, &n,
                             sizeof parts, &parts);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "kqcl_matmul: setting k-split sum arguments");
    size_t local = 256, global = round_up(count < (size_t)1 << 20 ? count : (size_t)1 << 20, local);
    return kq_enqueue(ctx, dev, sum, 1, &global, &local, "kqcl_matmul: enqueue k-split sum");
}

/* Prefill on the tensor cores (mma.cl): split the activations once, then the tiled mma kernel.
 * KQCL_ERR_UNSUPPORTED when it does not apply, so the caller falls back to matmul.cl. */
static kqcl_status launch_mma_prefill(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *w, const kqcl_tensor *x,
                                      kqcl_tensor *y)
{
    if (!dev->nv_mma || !kq_type_is_kquant(w->type) || x->type != KQCL_TYPE_F32)
        return KQCL_ERR_UNSUPPORTED;
    int m = (int)w->rows, k = (int)w->cols, n = (int)x->rows;
    kq_mma_tune t = kq_mma_prefill_tune_for(dev, m, n, k);
    char options[160];
    snprintf(options, sizeof options, "-DWTYPE=%d -DXTYPE=0 -DWARPS=%d -DMT=%d -DNT=%d -DKQ_NV_PTX", (int)w->type,
             t.warps, t.m_tiles, t.n_tiles);
    cl_kernel split, kernel, sum = NULL;
    kqcl_status st = mma_kernel(ctx, dev, options, "split_activations", &split);
    if (st == KQCL_OK)
        st = mma_kernel(ctx, dev, options, "matmul_mma", &kernel);
    if (st == KQCL_OK && t.k_splits > 1)
        st = mma_kernel(ctx, dev, options, "sum_splits", &sum);
    if (st == KQCL_OK && t.k_splits > 1) /* the sums of splits 1.. (split 0 writes y) */
        st = ensure_buffer(ctx, dev, &dev->mma_part, &dev->mma_part_bytes,
                           (size_t)(t.k_splits - 1) * m * n * sizeof(float), "kqcl_matmul: k-split sums");
    if (st == KQCL_OK) /* 6 words a 4 activations; a float a 32 */
        st = ensure_buffer(ctx, dev, &dev->mma_xs, &dev->mma_xs_bytes, (size_t)n * k / 4 * 6 * sizeof(cl_uint),
                           "kqcl_matmul: split activations");
    if (st == KQCL_OK)
        st = ensure_buffer(ctx, dev, &dev->mma_xsum, &dev->mma_xsum_bytes, (size_t)n * k / 32 * sizeof(float),
                           "kqcl_matmul: activation sums");
    if (st != KQCL_OK)
        return st;
    cl_int err = kq_set_args(split, 5, sizeof(cl_mem), &x->buffer, sizeof(cl_mem), &dev->mma_xs, sizeof(cl_mem),
                             &dev->mma_xsum, sizeof n, &n, sizeof k, &k);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "kqcl_matmul: setting split arguments");
    size_t local = 256, items = (size_t)n * (k / 4); /* a work-item a 4 activations, looping past 2^22 */
    size_t global = round_up(items < ((size_t)1 << 22) ? items : (size_t)1 << 22, local);
    st = kq_enqueue(ctx, dev, split, 1, &global, &local, "kqcl_matmul: enqueue split");
    if (st != KQCL_OK)
        return st;
    cl_ulong row_bytes = w->row_bytes;
    cl_mem part = t.k_splits > 1 ? dev->mma_part : y->buffer; /* unused with one split */
    err = kq_set_args(kernel, 9, sizeof(cl_mem), &w->buffer, sizeof row_bytes, &row_bytes, sizeof(cl_mem),
                      &dev->mma_xs, sizeof(cl_mem), &dev->mma_xsum, sizeof(cl_mem), &y->buffer, sizeof(cl_mem), &part,
                      sizeof m, &m, sizeof k, &k, sizeof n, &n);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "kqcl_matmul: setting mma arguments");
    size_t rows_per_wg = (size_t)16 * t.m_tiles * t.warps, cols_per_wg = (size_t)8 * t.n_tiles;
    size_t local3[3] = {(size_t)32 * t.warps, 1, 1};
    size_t global3[3] = {((size_t)m + rows_per_wg - 1) / rows_per_wg * local3[0],
                         ((size_t)n + cols_per_wg - 1) / cols_per_wg, (size_t)t.k_splits};
    st = kq_enqueue(ctx, dev, kernel, 3, global3, local3, "kqcl_matmul: enqueue mma prefill");
    return st == KQCL_OK && sum != NULL ? launch_sum_splits(ctx, dev, sum, y, (size_t)m * n, t.k_splits - 1) : st;
}

static kqcl_status launch_tiled(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *w, const kqcl_tensor *x,
                                kqcl_tensor *y)
{
    kq_matmul_tune t = kq_matmul_tune_for(dev, w->type);
    bool cpu = !dev->info.is_gpu && kq_type_is_kquant(w->type); /* matmul.cl's CPU kernel */
    int m = (int)w->rows, k = (int)w->cols, n = (int)x->rows;
    char options[256];
    snprintf(options, sizeof options, "-DWTYPE=%d -DXTYPE=%d -DTILE_M=%d -DTILE_N=%d -DWPT_M=%d -DWPT_N=%d -DKUNITS=%d",
             (int)w->type, (int)x->type, t.tile_m, t.tile_n, t.wpt_m, t.wpt_n, t.kunits);
    append_alignment(options, sizeof options, k);
    if (cpu)
        strncat(options, " -DKQ_CPU", sizeof options - strlen(options) - 1);
    cl_kernel kernel;
    kqcl_status st = kq_get_kernel_variant(ctx, dev, KQ_FAMILY_MATMUL, options, "matmul_tiled", &kernel);
    if (st != KQCL_OK)
        return st;
    if ((st = set_matmul_args(ctx, kernel, w, x, y, "kqcl_matmul: setting matmul arguments")) != KQCL_OK)
        return st;
    size_t local[2] = {(size_t)(t.tile_m / t.wpt_m) * (t.tile_n / t.wpt_n), 1};
    /* in size_t: m + tile_m - 1 overflows an int for m near INT32_MAX */
    size_t m_tiles = ((size_t)m + (size_t)t.tile_m - 1) / (size_t)t.tile_m;
    size_t global[2] = {m_tiles * local[0], ((size_t)n + (size_t)t.tile_n - 1) / (size_t)t.tile_n};
    if (cpu) { /* one work-item a work-group, each a tile_m x tile_n block of outputs */
        local[0] = 1;
        global[0] = m_tiles;
    }
    return kq_enqueue(ctx, dev, kernel, 2, global, local, "kqcl_matmul: enqueue tiled matmul");
}

/* Enqueue on one device; the operands are single-device tensors or views of parts. force_tiled
 * 2: tiled as a large n chooses it (the tensor cores allowed), for a piece of a larger call. */
kqcl_status kq_matmul_launch(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *w, const kqcl_tensor *x,
                             kqcl_tensor *y, int force_tiled)
{
    bool tiled = force_tiled > 0 || (force_tiled == 0 && x->rows > KQ_MATVEC_MAX_N);
    if (tiled) {
        bool mma = force_tiled == 0 || force_tiled == 2;
        kqcl_status st_mma = mma ? launch_mma_prefill(ctx, dev, w, x, y) : KQCL_ERR_UNSUPPORTED;
        return st_mma != KQCL_ERR_UNSUPPORTED ? st_mma : launch_tiled(ctx, dev, w, x, y);
    }
    kqcl_status st_mma = force_tiled == 0 ? launch_mma(ctx, dev, w, x, y) : KQCL_ERR_UNSUPPORTED;
    return st_mma != KQCL_ERR_UNSUPPORTED ? st_mma : launch_matvec(ctx, dev, w, x, y);
}

/* The single-device case every existing caller has: all three whole, each in one buffer (not
 * split, replicated or held in several), and together. */
static bool on_one_device(const kqcl_tensor *w, const kqcl_tensor *x, const kqcl_tensor *y)
{
    return w->buffer != NULL && x->buffer != NULL && y->buffer != NULL && w->device == x->device &&
           w->device == y->device;
}

kqcl_status kq_matmul_with(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x, kqcl_tensor *y,
                           int force_tiled)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_matmul: ctx is NULL");
    kq_clear_error(ctx);
    kqcl_status st = check_operands(ctx, w, x, y);
    if (st != KQCL_OK)
        return st;
    if (force_tiled < 0 && x->rows > KQ_MATVEC_MAX_N)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "matvec serves n <= %d", KQ_MATVEC_MAX_N);
    kq_events_reset(ctx);
    if (!on_one_device(w, x, y))
        return kq_matmul_multi(ctx, w, x, y, force_tiled);
    return kq_matmul_launch(ctx, kq_tensor_device(w), w, x, y, force_tiled);
}

KQCL_API kqcl_status kqcl_matmul(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x, kqcl_tensor *y)
{
    return kq_matmul_with(ctx, w, x, y, 0);
}

/* ---- the unfused reference path ---------------------------------------------------------------- */

/* A device buffer of at least `bytes`, kept and grown on demand. */
static kqcl_status ensure_buffer(kqcl_context *ctx, kq_device *dev, cl_mem *buf, size_t *have, size_t bytes,
                                 const char *what)
{
    if (*have >= bytes)
        return KQCL_OK;
    if (*buf)
        clReleaseMemObject(*buf);
    *buf = NULL;
    *have = 0;
    cl_int err;
    *buf = clCreateBuffer(dev->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, what);
    *have = bytes;
    return KQCL_OK;
}

kqcl_status kq_matmul_unfused(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x, kqcl_tensor *y)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "unfused matmul: ctx is NULL");
    kq_clear_error(ctx);
    kqcl_status st = check_operands(ctx, w, x, y);
    if (st != KQCL_OK)
        return st;
    if (!on_one_device(w, x, y))
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "unfused matmul: operands must be whole and on one device");
#ifdef HAVE_CLBLAST
    if (x->type != KQCL_TYPE_F32)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "unfused matmul: x must be f32");
    kq_device *dev = kq_tensor_device(w);
    kq_events_reset(ctx);
    cl_mem wf = w->buffer;
    if (w->type != KQCL_TYPE_F32) {
        st = ensure_buffer(ctx, dev, &dev->scratch, &dev->scratch_bytes,
                           (size_t)w->rows * (size_t)w->cols * sizeof(float), "unfused matmul: scratch buffer");
        if (st == KQCL_OK)
            st = kq_convert_into(ctx, w, dev->scratch, KQCL_TYPE_F32);
        if (st != KQCL_OK)
            return st;
        wf = dev->scratch;
    }
    size_t m = (size_t)w->rows, k = (size_t)w->cols, n = (size_t)x->rows;
    cl_event ev = NULL;
    CLBlastStatusCode code = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, n, m, k,
                                          1.0f, x->buffer, 0, k, wf, 0, k, 0.0f, y->buffer, 0, m, &dev->queue,
                                          ctx->timing ? &ev : NULL);
    if (code != CLBlastSuccess)
        return kq_fail(ctx, KQCL_ERR_DEVICE, "unfused matmul: CLBlastSgemm failed (%d)", (int)code);
    if (ev)
        kq_events_add(ctx, ev);
    return KQCL_OK;
#else
    (void)ensure_buffer;
    return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "unfused matmul: kqcl was built without CLBlast");
#endif
}
