/*
 * attention.c -- kqcl_attention: queries' attention over a KV cache (include/kqcl.h). One launch
 * on the queries' device: attention.cl's attn_fused, the scores, their softmax (online) and the
 * weighted values of each (query, head) row in one pass; no score goes to global memory.
 * kqcl_rope_jobs_attention: a decode step's RoPE and cache writes (kqcl_rope_jobs) inside that
 * launch (attn_roped) where every row can write first what it then reads.
 */
#include "ops/ops.h"
#include "device/program.h"
#include "kernels/family.h"

#include <math.h>

static kqcl_status check_kv(kqcl_context *ctx, const kqcl_tensor *t, const kqcl_tensor *q, const char *name,
                            const char *call)
{
    kqcl_status st = kq_check_tensor(ctx, t, call, name);
    if (st != KQCL_OK)
        return st;
    if (t->type != KQCL_TYPE_F16 && t->type != KQCL_TYPE_F32 && t->type != KQCL_TYPE_Q8_0)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: %s is %s; the cache must be f16, f32 or q8_0", call, name,
                       kqcl_type_name(t->type));
    if (t->buffer == NULL || t->device != q->device)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: %s must be whole on q's device", call, name);
    return KQCL_OK;
}

/* The last row a (position, head) stride pair reaches within `rows`, for every position below
 * `count` and head below `heads`. */
static bool strides_fit(int64_t count, int64_t pos_stride, int64_t heads, int64_t head_stride, int64_t rows)
{
    if (pos_stride < 0 || head_stride < 0)
        return false;
    /* in double: the product of two int64 strides may overflow */
    double last = (double)(count - 1) * (double)pos_stride + (double)(heads - 1) * (double)head_stride;
    return last < (double)rows;
}

static kqcl_status check_params(kqcl_context *ctx, const kqcl_attention_params *p, const kqcl_tensor *q,
                                const kqcl_tensor *k, const kqcl_tensor *v, const char *call)
{
    if (p == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: params is NULL", call);
    if (p->heads <= 0 || p->kv_heads <= 0 || p->heads % p->kv_heads != 0 || p->queries <= 0 || p->kv_len <= 0)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: heads %d, kv_heads %d, queries %lld, kv_len %lld", call, p->heads,
                       p->kv_heads, (long long)p->queries, (long long)p->kv_len);
    if (!isfinite(p->scale) || !isfinite(p->softcap) || p->softcap < 0.0f)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: want a finite scale and a finite softcap >= 0", call);
    if (k->cols != q->cols)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: keys of %lld values, queries of %lld", call, (long long)k->cols,
                       (long long)q->cols);
    if (!strides_fit(p->queries, p->q_query_stride, p->heads, p->q_head_stride, q->rows) ||
        !strides_fit(p->kv_len, p->kv_pos_stride, p->kv_heads, p->kv_head_stride, k->rows) ||
        !strides_fit(p->kv_len, p->kv_pos_stride, p->kv_heads, p->kv_head_stride, v->rows))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: the strides reach past q (%lld rows), k (%lld) or v (%lld)", call,
                       (long long)q->rows, (long long)k->rows, (long long)v->rows);
    return KQCL_OK;
}

static kqcl_status check_mask(kqcl_context *ctx, const kqcl_tensor *mask, const kqcl_tensor *q,
                              const kqcl_attention_params *p, const char *call)
{
    kqcl_status st = kq_check_tensor(ctx, mask, call, "mask");
    if (st != KQCL_OK)
        return st;
    if ((mask->type != KQCL_TYPE_F32 && mask->type != KQCL_TYPE_F16) || mask->buffer == NULL ||
        mask->device != q->device)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: the mask must be f32 or f16, whole on q's device", call);
    if (mask->rows < p->queries || mask->cols != p->kv_len)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: the mask is %lld x %lld; want at least %lld rows of %lld", call,
                       (long long)mask->rows, (long long)mask->cols, (long long)p->queries, (long long)p->kv_len);
    return KQCL_OK;
}

static kqcl_status check_operands(kqcl_context *ctx, const kqcl_tensor *q, const kqcl_tensor *k, const kqcl_tensor *v,
                                  const kqcl_tensor *mask, const kqcl_attention_params *p, const kqcl_tensor *y,
                                  const char *call)
{
    kqcl_status st;
    if ((st = kq_check_tensor(ctx, q, call, "q")) != KQCL_OK || (st = kq_check_tensor(ctx, y, call, "y")) != KQCL_OK)
        return st;
    if (q->type != KQCL_TYPE_F32 || y->type != KQCL_TYPE_F32 || q->buffer == NULL || y->buffer == NULL ||
        y->device != q->device)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: q and y must be f32, whole on one device", call);
    if ((st = check_kv(ctx, k, q, "k", call)) != KQCL_OK || (st = check_kv(ctx, v, q, "v", call)) != KQCL_OK)
        return st;
    if (k->type != v->type)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED, "%s: k is %s and v %s; one type for both", call,
                       kqcl_type_name(k->type), kqcl_type_name(v->type));
    if ((st = check_params(ctx, p, q, k, v, call)) != KQCL_OK ||
        (mask && (st = check_mask(ctx, mask, q, p, call)) != KQCL_OK))
        return st;
    if (y->rows != p->queries * p->heads || y->cols != v->cols)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: y is %lld x %lld; want %lld x %lld", call, (long long)y->rows,
                       (long long)y->cols, (long long)(p->queries * p->heads), (long long)v->cols);
    if (y == q || y == k || y == v)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: y must not be an operand", call);
    return KQCL_OK;
}

/* The attention's arguments past q, k and v (attention.cl's ATTEND_REST), from argument `first`. */
static cl_int set_rest(cl_kernel kernel, int first, const kqcl_tensor *q, const kqcl_tensor *v,
                       const kqcl_tensor *mask, const kqcl_attention_params *p, const kqcl_tensor *y)
{
    cl_ulong rows = (cl_ulong)(p->queries * p->heads), heads = (cl_ulong)p->heads;
    cl_ulong group = (cl_ulong)(p->heads / p->kv_heads), kv_len = (cl_ulong)p->kv_len;
    cl_ulong d = (cl_ulong)q->cols, dv = (cl_ulong)v->cols;
    cl_ulong qqs = (cl_ulong)p->q_query_stride, qhs = (cl_ulong)p->q_head_stride;
    cl_ulong kps = (cl_ulong)p->kv_pos_stride, khs = (cl_ulong)p->kv_head_stride;
    int mask_type = mask == NULL ? 0 : mask->type == KQCL_TYPE_F32 ? 1 : 2;
    cl_ulong mask_cols = mask ? (cl_ulong)mask->cols : 0;
    cl_mem mbuf = mask ? mask->buffer : q->buffer; /* read only with a mask */
    return kq_set_args_from(kernel, first, 16, sizeof(cl_mem), &mbuf, sizeof(cl_mem), &y->buffer, sizeof rows, &rows,
                            sizeof heads, &heads, sizeof group, &group, sizeof kv_len, &kv_len, sizeof d, &d,
                            sizeof dv, &dv, sizeof qqs, &qqs, sizeof qhs, &qhs, sizeof kps, &kps, sizeof khs, &khs,
                            sizeof p->scale, &p->scale, sizeof p->softcap, &p->softcap, sizeof mask_type, &mask_type,
                            sizeof mask_cols, &mask_cols);
}

/* Enqueue attention.cl's `name` (its arguments set: err), a work-group (GPUs) or a work-item
 * (CPUs) a row. */
static kqcl_status launch_rows(kqcl_context *ctx, kq_device *dev, cl_kernel kernel, const kq_variant *var,
                               cl_int err, const kqcl_attention_params *p, const char *call)
{
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, call);
    size_t local = var->wg_items, global = (size_t)(p->queries * p->heads) * (var->cpu ? 1 : local);
    return kq_enqueue(ctx, dev, kernel, 1, &global, &local, call);
}

/* attention.cl's kernel `name` for a cache of k's type and value rows of v's width. */
static kqcl_status attention_kernel(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *k, const kqcl_tensor *v,
                                    const char *name, kq_variant *var, cl_kernel *kernel)
{
    kq_shape shape = {.wtype = k->type, .k = v->cols};
    return kq_family_kernel(ctx, dev, &kq_attention_family, &shape, name, var, kernel);
}

/* ---- where a launch finds a cache ----------------------------------------------------------- */

/* A whole tensor's bytes: the memory object they lie in, and where. */
typedef struct span {
    cl_mem root;
    size_t at, bytes;
} span;

static span span_of(const kqcl_tensor *t)
{
    span s;
    s.root = kq_tensor_root(t, &s.at);
    s.bytes = t->bytes;
    return s;
}

static bool spans_meet(span a, span b)
{
    return a.root == b.root && a.at < b.at + b.bytes && b.at < a.at + a.bytes;
}

static bool span_within(span in, span out)
{
    return in.root == out.root && in.at >= out.at && in.at + in.bytes <= out.at + out.bytes;
}

/* The memory object a launch is given for a cache (the job's dst, whose bytes hold the view,
 * else the view itself), and where in it the rows a scatter writes and the attention's view
 * start (attention.cl says why not always the view's own). */
typedef struct cache_arg {
    cl_mem mem;
    size_t job_at, view_at;
} cache_arg;

/* A cache's object: the job's dst where it holds all of the view -- the object the job's rows
 * went through in the two launches too, so that no runtime sees a buffer and a sub-buffer of it
 * used in turn (PoCL copied whole caches between them: twice the time) -- else the view alone. */
static bool cache_arg_of(const kqcl_rope_job *j, const kqcl_tensor *view, cache_arg *out)
{
    span vs = span_of(view);
    if (j == NULL) {
        *out = (cache_arg){view->buffer, 0, 0};
        return true;
    }
    span dst = span_of(j->dst);
    *out = (cache_arg){j->dst->buffer, 0, vs.at - dst.at};
    return span_within(vs, dst);
}

/* One launch: attention.cl's attn_fused, the caches read from kc and vc. */
static kqcl_status launch_fused(kqcl_context *ctx, kq_device *dev, const kqcl_tensor *q, const kqcl_tensor *k,
                                const cache_arg *kc, const kqcl_tensor *v, const cache_arg *vc,
                                const kqcl_tensor *mask, const kqcl_attention_params *p, kqcl_tensor *y)
{
    kq_variant var;
    cl_kernel kernel;
    kqcl_status st = attention_kernel(ctx, dev, k, v, "attn_fused", &var, &kernel);
    if (st != KQCL_OK)
        return st;
    cl_ulong k_at = (cl_ulong)kc->view_at, v_at = (cl_ulong)vc->view_at;
    cl_int err = kq_set_args(kernel, 5, sizeof(cl_mem), &q->buffer, sizeof(cl_mem), &kc->mem, sizeof k_at, &k_at,
                             sizeof(cl_mem), &vc->mem, sizeof v_at, &v_at);
    if (err == CL_SUCCESS)
        err = set_rest(kernel, 5, q, v, mask, p, y);
    return launch_rows(ctx, dev, kernel, &var, err, p, "kqcl_attention");
}

KQCL_API kqcl_status kqcl_attention(kqcl_context *ctx, const kqcl_tensor *q, const kqcl_tensor *k,
                                    const kqcl_tensor *v, const kqcl_tensor *mask, const kqcl_attention_params *params,
                                    kqcl_tensor *y)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_attention: ctx is NULL");
    kq_clear_error(ctx);
    kqcl_status st = check_operands(ctx, q, k, v, mask, params, y, "kqcl_attention");
    if (st != KQCL_OK)
        return st;
    kq_events_reset(ctx);
    cache_arg kc, vc;
    cache_arg_of(NULL, k, &kc), cache_arg_of(NULL, v, &vc); /* the views' own */
    return launch_fused(ctx, kq_tensor_device(q), q, k, &kc, v, &vc, mask, params, y);
}

/* ---- kqcl_rope_jobs_attention ----------------------------------------------------------------
 * attn_roped has each row's work-group write the jobs' rows it then reads (attention.cl's
 * step_share): query head h writes q's row h and KV head h / group's part of the new cache row.
 * That is all it reads of them only when the shapes below hold, which plan_step checks; elsewhere
 * the jobs and the attention take their two launches. */

/* What attn_roped takes beyond the attention's arguments: the job that writes q's rows and those
 * that write the K and the V cache (NULL: none), the bytes those write and the views hold, and
 * the caches' objects. */
typedef struct step_plan {
    const kqcl_rope_job *q_job, *k_job, *v_job;
    span kc, vc, k, v;
    cache_arg k_arg, v_arg;
} step_plan;

/* The two launches' cache object for the view kv: the buffer of the job whose scatter wrote the
 * rows it views, where one holds all of them, so that the rows written through one sub-buffer are
 * not read through another overlapping it in part (attention.cl); else the view's own. */
static cache_arg cache_written(int count, const kqcl_rope_job *jobs, const kqcl_tensor *kv)
{
    cache_arg c;
    for (int i = 0; i < count; i++)
        if (jobs[i].indices != NULL && cache_arg_of(&jobs[i], kv, &c))
            return c;
    cache_arg_of(NULL, kv, &c);
    return c;
}

/* Does a job's scatter write the cache that `kv` views (their bytes meet), as attn_roped writes
 * it: f16 or f32 rows of a position's kv_heads heads side by side, the view starting on such a
 * row? A turned job's rows must be the heads; a copied one's values need only be a position's
 * (ggml's V rows come as one row of kv_heads * dv values). */
static bool writes_cache(const kqcl_rope_job *j, const kqcl_tensor *kv, const kqcl_attention_params *p)
{
    span dst = span_of(j->dst), view = span_of(kv);
    size_t apart = dst.at > view.at ? dst.at - view.at : view.at - dst.at;
    bool heads = j->copy ? j->dst->cols == p->kv_heads * kv->cols : j->heads == p->kv_heads && j->x->cols == kv->cols;
    return j->indices != NULL && spans_meet(dst, view) && j->dst->type == kv->type &&
           (kv->type == KQCL_TYPE_F16 || kv->type == KQCL_TYPE_F32) && heads && p->kv_pos_stride == p->kv_heads &&
           (p->kv_heads == 1 || p->kv_head_stride == 1) && apart % j->dst->row_bytes == 0;
}

/* Does a job (no scatter) write q's rows in place: its row h q's row h? */
static bool writes_query(const kqcl_rope_job *j, const kqcl_tensor *q, const kqcl_attention_params *p)
{
    span dst = span_of(j->dst), qs = span_of(q);
    return j->indices == NULL && dst.root == qs.root && dst.at == qs.at && j->heads == p->heads &&
           j->x->cols == q->cols && (p->heads == 1 || p->q_head_stride == 1);
}

/* Each job's role (every job one, each role at most once), or false. */
static bool assign_roles(int count, const kqcl_rope_job *jobs, const kqcl_tensor *q, const kqcl_tensor *k,
                         const kqcl_tensor *v, const kqcl_attention_params *p, step_plan *plan)
{
    for (int i = 0; i < count; i++) {
        const kqcl_rope_job *j = &jobs[i];
        bool to_q = writes_query(j, q, p), to_k = writes_cache(j, k, p), to_v = writes_cache(j, v, p);
        if (to_q + to_k + to_v != 1 || j->x->rows != j->heads) /* one role; one position */
            return false;
        const kqcl_rope_job **role = to_q ? &plan->q_job : to_k ? &plan->k_job : &plan->v_job;
        if (*role != NULL)
            return false;
        *role = j;
    }
    return true;
}

/* The bytes the launch reads and never writes: the positions and cells (one each: one position),
 * the jobs' rows and norm weights, and the mask; into out, their count returned. */
static int read_only_spans(const kqcl_buffer *positions, size_t pos_offset, int count, const kqcl_rope_job *jobs,
                           const kqcl_tensor *mask, span *out)
{
    int n = 0, dev;
    out[n++] = (span){kq_buffer_mem(positions, &dev), pos_offset, sizeof(int32_t)};
    for (int i = 0; i < count; i++) {
        out[n++] = span_of(jobs[i].x);
        if (jobs[i].norm_w != NULL)
            out[n++] = span_of(jobs[i].norm_w);
        if (jobs[i].indices != NULL)
            out[n++] = (span){kq_buffer_mem(jobs[i].indices, &dev), jobs[i].idx_offset, (size_t)jobs[i].index_bytes};
    }
    if (mask != NULL)
        out[n++] = span_of(mask);
    return n;
}

/* Whether y lies exactly over the query job's rows, row h over row h (ggml's allocator puts it
 * there: the rows are dead once turned): work-group h reads its query row, and only it does,
 * before it writes its y row, so that is safe. */
static bool y_over_own_rows(span ys, span read, span q_rows, const kqcl_tensor *y, const kqcl_rope_job *q_job)
{
    return q_job != NULL && read.root == q_rows.root && read.at == q_rows.at && read.bytes == q_rows.bytes &&
           ys.root == q_rows.root && ys.at == q_rows.at && y->cols == q_job->x->cols && y->rows == q_job->x->rows;
}

/* Whether attn_roped may take the step, and how (see above). Besides the roles: a device that
 * runs the GPU kernels (a CPU's form repeats the KV heads' RoPE for each query head at more
 * cost than the launch it saves: PoCL, 2 cores, a SmolLM2 step's 84 us became 111, doc/perf.md
 * run 33), one query, an f16 or f32 cache; nothing the launch writes (y, and each job's rows) lies over what it only
 * reads (some group may still read it: a KV head's rows, the positions, the mask) or over
 * another operand than its own -- ggml's allocator lays an attention's result over the rows of
 * the RoPE and cache writes before it, whose tensors it counts as dead: only y exactly over the
 * query's rows is safe (y_over_own_rows); each cache's view within its job's rows (cache_arg_of);
 * and neither the positions nor an index buffer, which the launch is given whole, the buffer a
 * cache lies in (OpenCL leaves a buffer and its sub-buffer in one launch undefined). */
static bool plan_step(const kqcl_buffer *positions, size_t pos_offset, int count, const kqcl_rope_job *jobs,
                      const kqcl_tensor *q, const kqcl_tensor *k, const kqcl_tensor *v, const kqcl_tensor *mask,
                      const kqcl_attention_params *p, const kqcl_tensor *y, step_plan *plan)
{
    *plan = (step_plan){.k = span_of(k), .v = span_of(v)};
    if (!kq_gpu_kernels(kq_tensor_device(q)) || p->queries != 1 ||
        (k->type != KQCL_TYPE_F16 && k->type != KQCL_TYPE_F32) || !assign_roles(count, jobs, q, k, v, p, plan))
        return false;
    plan->kc = plan->k_job ? span_of(plan->k_job->dst) : plan->k;
    plan->vc = plan->v_job ? span_of(plan->v_job->dst) : plan->v;
    if (!cache_arg_of(plan->k_job, k, &plan->k_arg) || !cache_arg_of(plan->v_job, v, &plan->v_arg))
        return false;
    span reads[2 + 3 * KQCL_ROPE_MAX_JOBS];
    const int n = read_only_spans(positions, pos_offset, count, jobs, mask, reads);
    const span qs = span_of(q), ys = span_of(y);
    const span written[4] = {ys, plan->q_job ? span_of(plan->q_job->dst) : qs, plan->kc, plan->vc};
    const span operands[4] = {ys, qs, plan->k, plan->v}; /* each written span's own */
    const span q_rows = plan->q_job ? span_of(plan->q_job->x) : (span){0};
    for (int w = 0; w < 4; w++) {
        for (int r = 0; r < n; r++)
            if (spans_meet(written[w], reads[r]) && !(w == 0 && y_over_own_rows(ys, reads[r], q_rows, y, plan->q_job)))
                return false;
        for (int o = 0; o < 4; o++)
            if (o != w && spans_meet(written[w], operands[o]))
                return false;
    }
    /* the positions and indices go whole: not a cache's parent */
    int dev;
    for (int i = -1; i < count; i++) {
        const kqcl_buffer *whole = i < 0 ? positions : jobs[i].indices;
        cl_mem mem = whole ? kq_buffer_mem(whole, &dev) : NULL;
        if (mem != NULL && (mem == plan->k.root || mem == plan->v.root))
            return false;
    }
    return true;
}

/* A job's scatter arguments of attn_roped (turn, x, the cache's object and where its rows start,
 * the indices, the cache's rows): `turn` -1 and unread buffers where the step has no such job. */
static cl_int set_cache_job(cl_kernel kernel, int first, const kqcl_rope_job *j, int n_dims, const cache_arg *cache,
                            cl_mem x_none)
{
    int dev, turn = j == NULL ? -1 : j->copy ? 0 : n_dims, idx64 = j && j->index_bytes == 8;
    cl_mem x = j ? j->x->buffer : x_none, idx = j ? kq_buffer_mem(j->indices, &dev) : x_none;
    cl_ulong at = (cl_ulong)cache->job_at, idx_offset = j ? j->idx_offset / (size_t)j->index_bytes : 0;
    cl_ulong cells = j ? (cl_ulong)j->dst->rows : 0;
    return kq_set_args_from(kernel, first, 8, sizeof(cl_mem), &x, sizeof turn, &turn, sizeof(cl_mem), &cache->mem,
                            sizeof at, &at, sizeof(cl_mem), &idx, sizeof idx_offset, &idx_offset, sizeof idx64, &idx64,
                            sizeof cells, &cells);
}

/* attention.cl's STEP_ARGS from argument 0 (42 of them): the rope setting, the jobs, q, k_at and
 * v_at, and the jobs' norms and scales. */
static cl_int set_step(cl_kernel kernel, const kqcl_buffer *positions, size_t pos_offset, const kqcl_rope_params *r,
                       const step_plan *plan, const kqcl_tensor *q)
{
    int dev, q_turn = plan->q_job == NULL ? -1 : plan->q_job->copy ? 0 : r->n_dims;
    cl_mem pos = kq_buffer_mem(positions, &dev), qx = plan->q_job ? plan->q_job->x->buffer : q->buffer;
    cl_ulong pos_at = pos_offset / sizeof(int32_t), k_at = plan->k_arg.view_at, v_at = plan->v_arg.view_at;
    float theta_scale = kq_rope_theta_scale(r);
    cl_int err = kq_set_args(kernel, 11, sizeof(cl_mem), &pos, sizeof pos_at, &pos_at, sizeof r->neox, &r->neox,
                             sizeof theta_scale, &theta_scale, sizeof r->freq_scale, &r->freq_scale,
                             sizeof r->ext_factor, &r->ext_factor, sizeof r->attn_factor, &r->attn_factor,
                             sizeof r->corr_low, &r->corr_low, sizeof r->corr_high, &r->corr_high, sizeof(cl_mem), &qx,
                             sizeof q_turn, &q_turn);
    if (err == CL_SUCCESS)
        err = set_cache_job(kernel, 11, plan->k_job, r->n_dims, &plan->k_arg, q->buffer);
    if (err == CL_SUCCESS)
        err = set_cache_job(kernel, 19, plan->v_job, r->n_dims, &plan->v_arg, q->buffer);
    if (err == CL_SUCCESS)
        err = kq_set_args_from(kernel, 27, 3, sizeof(cl_mem), &q->buffer, sizeof k_at, &k_at, sizeof v_at, &v_at);
    const kqcl_rope_job *role[3] = {plan->q_job, plan->k_job, plan->v_job};
    for (int i = 0; i < 3 && err == CL_SUCCESS; i++) /* a job it has not: q's buffer, unread */
        err = kq_rope_job_norm_args(kernel, 30 + 4 * i, role[i], q->buffer);
    return err;
}

/* One launch: attention.cl's attn_roped over a planned step. */
static kqcl_status launch_roped(kqcl_context *ctx, kq_device *dev, const kqcl_buffer *positions, size_t pos_offset,
                                const kqcl_rope_params *r, const step_plan *plan, const kqcl_tensor *q,
                                const kqcl_tensor *k, const kqcl_tensor *v, const kqcl_tensor *mask,
                                const kqcl_attention_params *p, kqcl_tensor *y)
{
    kq_variant var;
    cl_kernel kernel;
    kqcl_status st = attention_kernel(ctx, dev, k, v, "attn_roped", &var, &kernel);
    if (st != KQCL_OK)
        return st;
    cl_int err = set_step(kernel, positions, pos_offset, r, plan, q);
    if (err == CL_SUCCESS)
        err = set_rest(kernel, 42, q, v, mask, p, y);
    return launch_rows(ctx, dev, kernel, &var, err, p, "kqcl_rope_jobs_attention");
}

KQCL_API kqcl_status kqcl_rope_jobs_attention(kqcl_context *ctx, const kqcl_buffer *positions, size_t pos_offset,
                                              const kqcl_rope_params *rope, int count, const kqcl_rope_job *jobs,
                                              const kqcl_tensor *q, const kqcl_tensor *k, const kqcl_tensor *v,
                                              const kqcl_tensor *mask, const kqcl_attention_params *params,
                                              kqcl_tensor *y)
{
    const char *call = "kqcl_rope_jobs_attention";
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s: ctx is NULL", call);
    kq_clear_error(ctx);
    kqcl_status st = kq_rope_jobs_check(ctx, positions, pos_offset, rope, count, jobs, call);
    if (st != KQCL_OK || (st = check_operands(ctx, q, k, v, mask, params, y, call)) != KQCL_OK)
        return st;
    if (jobs[0].x->device != q->device)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "%s: the jobs are on device %d, q on %d", call, jobs[0].x->device,
                       q->device);
    kq_events_reset(ctx);
    kq_device *dev = kq_tensor_device(q);
    step_plan plan;
    if (plan_step(positions, pos_offset, count, jobs, q, k, v, mask, params, y, &plan))
        return launch_roped(ctx, dev, positions, pos_offset, rope, &plan, q, k, v, mask, params, y);
    st = kq_rope_jobs_launch(ctx, positions, pos_offset, rope, count, jobs, call);
    const cache_arg kc = cache_written(count, jobs, k), vc = cache_written(count, jobs, v);
    return st != KQCL_OK ? st : launch_fused(ctx, dev, q, k, &kc, v, &vc, mask, params, y);
}
