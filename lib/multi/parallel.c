/*
 * parallel.c -- several devices as one: kqcl_matmul over placed operands (tensor and data
 * parallelism), below the public calls (dispatch.c) and above the one-device launches
 * (matmul.c). The per-context state it and the collectives keep (ctx->multi) is collective.c's;
 * the shares of a split are tensor.c's, the calls that run other public calls pipeline.c's.
 *
 * A matmul over placed operands is a list of jobs, one per device that holds a part of W (or,
 * with W replicated, a range of X's rows). Each job finds the X region it needs on its device
 * -- a part that is exactly that region, else a device-side copy out of a whole copy, else a
 * host-staged upload -- and writes its Y region straight into Y's part when one matches, else
 * into a scratch buffer gathered through the host afterwards. Column splits of W produce
 * partial sums, all-reduced by the collective engine in device order (deterministic).
 */
#include "ops/ops.h"
#include "multi/multi.h"

#include <stdlib.h>
#include <string.h>

/* ---- matmul over placed operands ---------------------------------------------------------------- */

typedef struct region {
    int64_t row0, rows, col0, cols;
} region;

typedef struct job {
    int device;
    kqcl_tensor wv;            /* W's part (a view) */
    region xr, yr;             /* what it reads of X and writes of Y */
    cl_mem xbuf, ybuf;         /* on the device */
    bool x_temp, y_temp;       /* scratch buffers (released after) */
    bool y_home;               /* its Y region is in Y's parts on its device (in place or copied) */
    kq_kernel_choice choice;   /* the call's, or KQ_KERNEL_TILED_PIECE for a piece of a larger n */
} job;

typedef struct mm {
    kqcl_context *ctx;
    const kqcl_tensor *w, *x;
    kqcl_tensor *y;
    kq_kernel_choice choice;
    job *jobs;
    int n_jobs, cap_jobs;
    void *x_host;              /* X gathered to the host, when some job needs it staged */
} mm;

static region part_region(const kq_part *p) { return (region){p->row0, p->rows, p->col0, p->cols}; }

static bool same_region(region a, region b)
{
    return a.row0 == b.row0 && a.rows == b.rows && a.col0 == b.col0 && a.cols == b.cols;
}

/* A part of t on device d that holds exactly region r, or NULL. */
static const kq_part *exact_part(const kqcl_tensor *t, int d, region r)
{
    for (int i = 0; i < t->n_parts; i++)
        if (t->parts[i].device == d && same_region(part_region(&t->parts[i]), r))
            return &t->parts[i];
    return NULL;
}

/* Rows of region r that part p holds, all of r's columns: [*a, *b); false where none. */
static bool rows_within(const kq_part *p, region r, int64_t *a, int64_t *b)
{
    *a = p->row0 > r.row0 ? p->row0 : r.row0;
    *b = p->row0 + p->rows < r.row0 + r.rows ? p->row0 + p->rows : r.row0 + r.rows;
    return *a < *b && p->col0 <= r.col0 && r.col0 + r.cols <= p->col0 + p->cols;
}

static kqcl_status new_buffer(kqcl_context *ctx, int d, size_t bytes, cl_mem *out)
{
    cl_int err;
    *out = clCreateBuffer(ctx->devices[d].cl_ctx, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(ctx, err, "kqcl_matmul: scratch buffer");
}

/* Host copy of the whole of X, read once. */
static kqcl_status x_on_host(mm *c)
{
    if (c->x_host != NULL)
        return KQCL_OK;
    c->x_host = malloc(c->x->bytes);
    if (c->x_host == NULL)
        return kq_fail(c->ctx, KQCL_ERR_OUT_OF_MEMORY, "kqcl_matmul: no host memory to stage x");
    return kqcl_tensor_read((kqcl_tensor *)c->x, c->x_host, c->x->bytes);
}

/* Put X's region r on job j's device: a matching part, device-side copies out of the parts on
 * the device that hold all of it between them (a whole copy, row chunks), or an upload from the
 * host. */
static kqcl_status place_x(mm *c, job *j)
{
    const kqcl_tensor *x = c->x;
    region r = j->xr;
    const kq_part *p = exact_part(x, j->device, r);
    if (p != NULL) {
        j->xbuf = p->buffer;
        return KQCL_OK;
    }
    size_t row_bytes = kqcl_row_size(x->type, r.cols), bytes = (size_t)r.rows * row_bytes;
    kqcl_status st = new_buffer(c->ctx, j->device, bytes, &j->xbuf);
    if (st != KQCL_OK)
        return st;
    j->x_temp = true;
    cl_command_queue q = c->ctx->devices[j->device].queue;
    int64_t covered = 0, a, b;
    for (int i = 0; i < x->n_parts; i++) /* parts never overlap but a replica's, one a device */
        if (x->parts[i].device == j->device && rows_within(&x->parts[i], r, &a, &b))
            covered += b - a;
    if (covered == r.rows) {
        cl_int err = CL_SUCCESS;
        for (int i = 0; i < x->n_parts && err == CL_SUCCESS; i++) {
            p = &x->parts[i];
            if (p->device != j->device || !rows_within(p, r, &a, &b))
                continue;
            if (p->cols == r.cols) {
                err = clEnqueueCopyBuffer(q, p->buffer, j->xbuf, (size_t)(a - p->row0) * p->row_bytes,
                                          (size_t)(a - r.row0) * row_bytes, (size_t)(b - a) * row_bytes, 0, NULL, NULL);
            } else { /* r's columns out of p's rows */
                size_t col_off = r.col0 > p->col0 ? kqcl_row_size(x->type, r.col0 - p->col0) : 0;
                size_t src_origin[3] = {col_off, (size_t)(a - p->row0), 0}, dst_origin[3] = {0, (size_t)(a - r.row0), 0};
                size_t reg[3] = {row_bytes, (size_t)(b - a), 1};
                err = kq_copy_rect(q, p->buffer, j->xbuf, src_origin, dst_origin, reg, p->row_bytes, row_bytes);
            }
        }
        return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(c->ctx, err, "kqcl_matmul: copying x rows");
    }
    if ((st = x_on_host(c)) != KQCL_OK)
        return st;
    size_t col_off = r.col0 ? kqcl_row_size(x->type, r.col0) : 0;
    size_t origin[3] = {0, 0, 0}, host_origin[3] = {col_off, (size_t)r.row0, 0}, region3[3] = {row_bytes, (size_t)r.rows, 1};
    cl_int err = clEnqueueWriteBufferRect(q, j->xbuf, CL_TRUE, origin, host_origin, region3, row_bytes, 0, x->row_bytes, 0,
                                          c->x_host, 0, NULL, NULL);
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(c->ctx, err, "kqcl_matmul: staging x");
}

/* Y's region goes straight into a matching part (never into one replica alone), else scratch. */
static kqcl_status place_y(mm *c, job *j)
{
    const kq_part *p = c->y->split == KQCL_SPLIT_REPLICATE ? NULL : exact_part(c->y, j->device, j->yr);
    if (p != NULL) {
        j->ybuf = p->buffer;
        j->y_home = true;
        return KQCL_OK;
    }
    j->y_temp = true;
    return new_buffer(c->ctx, j->device, (size_t)j->yr.rows * (size_t)j->yr.cols * sizeof(float), &j->ybuf);
}

/* A job's scratch Y region copied on its device into Y's parts there, when they hold all of it
 * (row chunks of a big Y, a part holding more than the region); else it is gathered later. */
static kqcl_status deliver_y(mm *c, job *j)
{
    const kqcl_tensor *y = c->y;
    region r = j->yr;
    if (y->split == KQCL_SPLIT_REPLICATE || c->w->split == KQCL_SPLIT_COLS)
        return KQCL_OK;
    int64_t area = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < y->n_parts; i++) {
            const kq_part *p = &y->parts[i];
            int64_t a = p->row0 > r.row0 ? p->row0 : r.row0, b = p->row0 + p->rows < r.row0 + r.rows ? p->row0 + p->rows : r.row0 + r.rows;
            int64_t ca = p->col0 > r.col0 ? p->col0 : r.col0, cb = p->col0 + p->cols < r.col0 + r.cols ? p->col0 + p->cols : r.col0 + r.cols;
            if (p->device != j->device || a >= b || ca >= cb)
                continue;
            if (pass == 0) {
                area += (b - a) * (cb - ca);
                continue;
            }
            size_t src_origin[3] = {(size_t)(ca - r.col0) * sizeof(float), (size_t)(a - r.row0), 0};
            size_t dst_origin[3] = {(size_t)(ca - p->col0) * sizeof(float), (size_t)(a - p->row0), 0};
            size_t reg[3] = {(size_t)(cb - ca) * sizeof(float), (size_t)(b - a), 1};
            cl_int err = kq_copy_rect(c->ctx->devices[j->device].queue, j->ybuf, p->buffer, src_origin, dst_origin, reg,
                                      (size_t)r.cols * sizeof(float), p->row_bytes);
            if (err != CL_SUCCESS)
                return kq_cl_fail(c->ctx, err, "kqcl_matmul: copying y into place");
        }
        if (pass == 0 && area != r.rows * r.cols)
            return KQCL_OK; /* not all here: gathered through the host */
    }
    j->y_home = true;
    return KQCL_OK;
}

static kqcl_status launch_job(mm *c, job *j)
{
    kqcl_tensor xv = {.ctx = c->ctx, .type = c->x->type, .rows = j->xr.rows, .cols = j->xr.cols,
                      .row_bytes = kqcl_row_size(c->x->type, j->xr.cols), .device = j->device, .buffer = j->xbuf};
    kqcl_tensor yv = {.ctx = c->ctx, .type = KQCL_TYPE_F32, .rows = j->yr.rows, .cols = j->yr.cols,
                      .row_bytes = (size_t)j->yr.cols * sizeof(float), .device = j->device, .buffer = j->ybuf};
    return kq_matmul_launch(c->ctx, &c->ctx->devices[j->device], &j->wv, &xv, &yv, j->choice);
}

static kqcl_status run_job(mm *c, job *j)
{
    kqcl_status st = place_x(c, j);
    if (st == KQCL_OK)
        st = place_y(c, j);
    if (st == KQCL_OK)
        st = launch_job(c, j);
    if (st == KQCL_OK && j->y_temp)
        st = deliver_y(c, j);
    return st;
}

/* Add job `base`, cut into ranges of X's rows where its X or Y region would not fit one
 * allocation of its device (a big X or Y). Everything is checked before any work. */
static kqcl_status add_job(mm *c, const job *base)
{
    uint64_t limit = c->ctx->devices[base->device].info.max_alloc_bytes;
    size_t x_row = kqcl_row_size(c->x->type, base->xr.cols), y_row = (size_t)base->yr.cols * sizeof(float);
    int64_t n = base->xr.rows, per = n;
    if ((uint64_t)n * x_row > limit || (uint64_t)n * y_row > limit) {
        if (c->w->split == KQCL_SPLIT_COLS)
            return kq_fail(c->ctx, KQCL_ERR_UNSUPPORTED,
                           "kqcl_matmul: w is split by columns and device %d's partial y or x (%lld rows) exceeds its "
                           "largest allocation (%llu); split w by rows",
                           base->device, (long long)n, (unsigned long long)limit);
        int64_t px = kq_chunk_rows(x_row, limit), py = kq_chunk_rows(y_row, limit);
        per = px < py ? px : py;
        if (per == 0)
            return kq_fail(c->ctx, KQCL_ERR_UNSUPPORTED,
                           "kqcl_matmul: one row of x (%zu bytes) or y (%zu bytes) exceeds device %d's largest "
                           "allocation (%llu)",
                           x_row, y_row, base->device, (unsigned long long)limit);
    }
    int64_t slices = (n + per - 1) / per;
    if (slices > INT32_MAX / 4 - c->n_jobs)
        return kq_fail(c->ctx, KQCL_ERR_UNSUPPORTED, "kqcl_matmul: too many pieces");
    if (c->n_jobs + slices > c->cap_jobs) {
        int cap = c->cap_jobs * 2 > c->n_jobs + (int)slices ? c->cap_jobs * 2 : c->n_jobs + (int)slices;
        job *jobs = realloc(c->jobs, (size_t)cap * sizeof *jobs);
        if (jobs == NULL)
            return kq_fail(c->ctx, KQCL_ERR_OUT_OF_MEMORY, "kqcl_matmul: no host memory");
        c->jobs = jobs, c->cap_jobs = cap;
    }
    /* Pieces keep the whole call's kernel and so its precision mode: a job that holds part of
     * X's rows (data parallel, or cut to fit an allocation) of a call whose n is past decode's
     * runs the tiled kernel (the tensor cores allowed), as one device would for the call --
     * kqcl_precision_chosen answers for the call's n, not a slice's. */
    int64_t call_n = c->x->rows;
    kq_kernel_choice choice =
        c->choice == KQ_KERNEL_BY_N && per < call_n && call_n > KQ_MATVEC_MAX_N ? KQ_KERNEL_TILED_PIECE : c->choice;
    for (int64_t s = 0; s < n; s += per) {
        job *j = &c->jobs[c->n_jobs++];
        *j = *base;
        j->choice = choice;
        j->xr.row0 = j->yr.row0 = base->xr.row0 + s;
        j->xr.rows = j->yr.rows = n - s < per ? n - s : per;
    }
    return KQCL_OK;
}

/* Jobs of a W placed by rows or columns (a whole W is one row part, a big one several): one per
 * part. */
static kqcl_status jobs_from_w(mm *c)
{
    const kqcl_tensor *w = c->w;
    int64_t n = c->x->rows;
    kqcl_status st = KQCL_OK;
    for (int i = 0; i < w->n_parts && st == KQCL_OK; i++) {
        const kq_part *p = &w->parts[i];
        job j = {.device = p->device, .wv = kq_part_view(w, p)};
        j.xr = (region){0, n, p->col0, p->cols};
        j.yr = (region){0, n, p->row0, p->rows}; /* a column part yields a partial Y, all of it */
        if (w->split == KQCL_SPLIT_COLS)
            j.yr = (region){0, n, 0, w->rows};
        st = add_job(c, &j);
    }
    return st;
}

/* Data parallel: W replicated, X's rows spread -- as X's row parts say, else where X (or Y)
 * lives whole, else by the automatic shares. */
static kqcl_status jobs_data_parallel(mm *c)
{
    const kqcl_tensor *w = c->w, *x = c->x;
    int64_t counts[KQ_MAX_DEVICES] = {0}, starts[KQ_MAX_DEVICES] = {0};
    if (x->split == KQCL_SPLIT_ROWS) {
        for (int i = x->n_parts - 1; i >= 0; i--) /* a device's row chunks: from its first */
            counts[x->parts[i].device] += x->parts[i].rows, starts[x->parts[i].device] = x->parts[i].row0;
    } else if (x->split == KQCL_SPLIT_NONE || c->y->split == KQCL_SPLIT_NONE) {
        counts[x->split == KQCL_SPLIT_NONE ? x->device : c->y->device] = x->rows;
    } else {
        double weights[KQ_MAX_DEVICES];
        kq_auto_weights(c->ctx, weights);
        kq_shares(x->rows, c->ctx->n_devices, weights, counts);
        for (int d = 1; d < c->ctx->n_devices; d++)
            starts[d] = starts[d - 1] + counts[d - 1];
    }
    kqcl_status st = KQCL_OK;
    for (int d = 0; d < c->ctx->n_devices && st == KQCL_OK; d++) {
        if (counts[d] == 0)
            continue;
        job j = {.device = d, .wv = kq_part_view(w, kq_tensor_part_on(w, d))};
        j.xr = (region){starts[d], counts[d], 0, x->cols};
        j.yr = (region){starts[d], counts[d], 0, w->rows};
        st = add_job(c, &j);
    }
    return st;
}

/* Every job's Y region read into a host image of Y, which is then written to Y's placement. */
static kqcl_status gather_y(mm *c)
{
    kqcl_tensor *y = c->y;
    float *host = malloc(y->bytes);
    if (host == NULL)
        return kq_fail(c->ctx, KQCL_ERR_OUT_OF_MEMORY, "kqcl_matmul: no host memory to gather y");
    cl_int err = CL_SUCCESS;
    for (int i = 0; i < c->n_jobs && err == CL_SUCCESS; i++) {
        job *j = &c->jobs[i];
        size_t rb = (size_t)j->yr.cols * sizeof(float);
        size_t origin[3] = {0, 0, 0}, host_origin[3] = {(size_t)j->yr.col0 * sizeof(float), (size_t)j->yr.row0, 0};
        size_t reg[3] = {rb, (size_t)j->yr.rows, 1};
        err = clEnqueueReadBufferRect(c->ctx->devices[j->device].queue, j->ybuf, CL_TRUE, origin, host_origin, reg, rb,
                                      0, y->row_bytes, 0, host, 0, NULL, NULL);
        if (c->w->split == KQCL_SPLIT_COLS)
            break; /* after the all-reduce every job holds the same sums */
    }
    kqcl_status st = err == CL_SUCCESS ? kqcl_tensor_write(y, host, y->bytes) : kq_cl_fail(c->ctx, err, "kqcl_matmul: gathering y");
    free(host);
    return st;
}

/* Column parts' partial sums: all-reduced among the jobs' devices (never across ranks). A
 * replicated Y takes the sums in place: its copies on devices without a job start at zero. */
static kqcl_status reduce_partials(mm *c)
{
    cl_mem bufs[KQ_MAX_DEVICES] = {0};
    kqcl_tensor *y = c->y;
    for (int i = 0; i < c->n_jobs; i++)
        bufs[c->jobs[i].device] = c->jobs[i].ybuf;
    kqcl_request *req = NULL;
    kqcl_status st = kq_collective(c->ctx, bufs, y->bytes, KQ_COLL_SUM | KQ_COLL_LOCAL, -1, 0, false, &req);
    return st == KQCL_OK ? kqcl_request_wait(req) : st;
}

/* A replicated Y with W split by columns: every copy is computed into directly (zeros where a
 * device has no part of W) and all-reduced in place. */
static bool partials_into_replica(mm *c)
{
    if (c->w->split != KQCL_SPLIT_COLS || c->y->split != KQCL_SPLIT_REPLICATE)
        return false;
    for (int i = 0; i < c->n_jobs; i++) {
        const kq_part *p = kq_tensor_part_on(c->y, c->jobs[i].device);
        if (p == NULL)
            return false;
        c->jobs[i].ybuf = p->buffer;
    }
    return true;
}

static kqcl_status run_jobs(mm *c)
{
    kqcl_status st = KQCL_OK;
    bool in_replica = partials_into_replica(c);
    for (int i = 0; i < c->n_jobs && st == KQCL_OK; i++) {
        job *j = &c->jobs[i];
        if (in_replica) {
            st = place_x(c, j);
            if (st == KQCL_OK)
                st = launch_job(c, j);
        } else {
            st = run_job(c, j);
        }
    }
    if (st != KQCL_OK)
        return st;
    if (in_replica) {
        cl_mem bufs[KQ_MAX_DEVICES] = {0};
        float zero = 0;
        for (int i = 0; i < c->y->n_parts && st == KQCL_OK; i++) {
            const kq_part *p = &c->y->parts[i];
            bufs[p->device] = p->buffer;
            bool has_job = false;
            for (int k = 0; k < c->n_jobs; k++)
                has_job |= c->jobs[k].device == p->device;
            if (!has_job && clEnqueueFillBuffer(c->ctx->devices[p->device].queue, p->buffer, &zero, sizeof zero, 0,
                                                p->bytes, 0, NULL, NULL) != CL_SUCCESS)
                st = kq_fail(c->ctx, KQCL_ERR_DEVICE, "kqcl_matmul: clearing a replica");
        }
        kqcl_request *req = NULL;
        if (st == KQCL_OK)
            st = kq_collective(c->ctx, bufs, c->y->bytes, KQ_COLL_SUM | KQ_COLL_LOCAL, -1, 0, false, &req);
        return st == KQCL_OK ? kqcl_request_wait(req) : st;
    }
    /* The jobs' Y regions cover Y: it is done when each reached Y's parts on its device. */
    bool delivered = true, any_direct = false;
    for (int i = 0; i < c->n_jobs; i++) {
        delivered &= c->jobs[i].y_home;
        any_direct |= !c->jobs[i].y_temp;
    }
    if (c->w->split == KQCL_SPLIT_COLS) {
        st = reduce_partials(c); /* a whole Y written in place then holds the sums */
        delivered = c->y->split == KQCL_SPLIT_NONE && any_direct;
    }
    if (st == KQCL_OK && !delivered)
        st = gather_y(c);
    return st;
}

kqcl_status kq_matmul_multi(kqcl_context *ctx, const kqcl_tensor *w, const kqcl_tensor *x, kqcl_tensor *y,
                            kq_kernel_choice choice)
{
    mm *c = calloc(1, sizeof *c);
    if (c == NULL)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "kqcl_matmul: no host memory");
    *c = (mm){.ctx = ctx, .w = w, .x = x, .y = y, .choice = choice};
    kqcl_status st = w->split == KQCL_SPLIT_REPLICATE ? jobs_data_parallel(c) : jobs_from_w(c);
    if (st == KQCL_OK)
        st = run_jobs(c);
    for (int i = 0; i < c->n_jobs; i++) { /* queued kernels keep released buffers alive */
        if (c->jobs[i].x_temp && c->jobs[i].xbuf)
            clReleaseMemObject(c->jobs[i].xbuf);
        if (c->jobs[i].y_temp && c->jobs[i].ybuf)
            clReleaseMemObject(c->jobs[i].ybuf);
    }
    free(c->jobs);
    free(c->x_host);
    free(c);
    return st;
}
