/* params.c -- the launch parameters as API (include/kqcl.h, "Parameters"): their names, bounds
 * and environment variables, the values a context holds per device (and for the collectives,
 * per context), read from the environment once, at context creation. The defaults themselves
 * are tune.c's tuning table. */
#include "params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct param_info {
    const char *name;
    int min, max;
    bool context_wide; /* the collectives': one value a context */
    const char *env;   /* the variable that sets it, as member `member` of its tuple */
    int member;
} param_info;

static const param_info params[KQCL_PARAM_COUNT] = {
    [KQCL_PARAM_MATVEC_THREADS_PER_ROW] = {"matvec_threads_per_row", 1, 1024, false, "KQCL_MATVEC", 0},
    [KQCL_PARAM_MATVEC_ROW_GROUPS] = {"matvec_row_groups", 1, 1024, false, "KQCL_MATVEC", 1},
    [KQCL_PARAM_MATVEC_ROWS_PER_THREAD] = {"matvec_rows_per_thread", 1, 16, false, "KQCL_MATVEC", 2},
    [KQCL_PARAM_MATVEC_Q8_THREADS_PER_ROW] = {"matvec_q8_threads_per_row", 1, 1024, false, "KQCL_MATVEC_Q8", 0},
    [KQCL_PARAM_MATVEC_Q8_ROW_GROUPS] = {"matvec_q8_row_groups", 1, 1024, false, "KQCL_MATVEC_Q8", 1},
    [KQCL_PARAM_MATVEC_Q8_ROWS_PER_THREAD] = {"matvec_q8_rows_per_thread", 1, 16, false, "KQCL_MATVEC_Q8", 2},
    [KQCL_PARAM_MATMUL_TILE_M] = {"matmul_tile_m", 1, 4096, false, "KQCL_MATMUL", 0},
    [KQCL_PARAM_MATMUL_TILE_N] = {"matmul_tile_n", 1, 4096, false, "KQCL_MATMUL", 1},
    [KQCL_PARAM_MATMUL_WPT_M] = {"matmul_wpt_m", 1, 256, false, "KQCL_MATMUL", 2},
    [KQCL_PARAM_MATMUL_WPT_N] = {"matmul_wpt_n", 1, 256, false, "KQCL_MATMUL", 3},
    [KQCL_PARAM_MATMUL_KUNITS] = {"matmul_kunits", 1, 64, false, "KQCL_MATMUL", 4},
    [KQCL_PARAM_MMA_WARPS] = {"mma_warps", 1, 32, false, "KQCL_MMA_TUNE", 0},
    [KQCL_PARAM_MMA_M_TILES] = {"mma_m_tiles", 1, 16, false, "KQCL_MMA_TUNE", 1},
    [KQCL_PARAM_MMA_MIN_N] = {"mma_min_n", 1, 4096, false, "KQCL_MMA_MIN_N", 0},
    [KQCL_PARAM_MMA_PREFILL_WARPS] = {"mma_prefill_warps", 1, 32, false, "KQCL_MMA_PREFILL", 0},
    [KQCL_PARAM_MMA_PREFILL_M_TILES] = {"mma_prefill_m_tiles", 1, 16, false, "KQCL_MMA_PREFILL", 1},
    [KQCL_PARAM_MMA_PREFILL_N_TILES] = {"mma_prefill_n_tiles", 1, 16, false, "KQCL_MMA_PREFILL", 2},
    [KQCL_PARAM_MMA_KSPLIT] = {"mma_ksplit", 1, 64, false, "KQCL_MMA_KSPLIT", 0},
    [KQCL_PARAM_COLL_CHUNK_KIB] = {"coll_chunk_kib", 1, (1 << 20) - 1, true, "KQCL_COLL_CHUNK_KIB", 0},
    [KQCL_PARAM_COLL_THREADS] = {"coll_threads", 1, 64, true, "KQCL_COLL_THREADS", 0},
    [KQCL_PARAM_COLL_SPIN_US] = {"coll_spin_us", 0, 1000000, true, "KQCL_COLL_SPIN_US", 0},
    [KQCL_PARAM_COLL_SUMS] = {"coll_sums", 0, 1, true, "KQCL_COLL_SUMS", 0},
};

static bool is_param(int p) { return p >= 0 && p < KQCL_PARAM_COUNT; }

KQCL_API const char *kqcl_param_name(kqcl_param param) { return is_param((int)param) ? params[param].name : "?"; }

KQCL_API kqcl_status kqcl_param_bounds(kqcl_param param, int *min, int *max)
{
    kq_clear_error(NULL);
    if (!is_param((int)param) || min == NULL || max == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_param_bounds: unknown parameter %d or NULL argument",
                       (int)param);
    *min = params[param].min;
    *max = params[param].max;
    return KQCL_OK;
}

/* ---- the environment, once a context --------------------------------------------------------- */

/* Members of the tuple `env` sets: the params, in order. */
static int tuple_of(const char *env, kqcl_param *members)
{
    int count = 0;
    for (int p = 0; p < KQCL_PARAM_COUNT; p++)
        if (strcmp(params[p].env, env) == 0)
            members[params[p].member] = (kqcl_param)p, count++;
    return count;
}

static kqcl_status malformed(const char *env, const char *s, const kqcl_param *members, int count)
{
    char want[512] = "";
    size_t len = 0;
    for (int i = 0; i < count && len < sizeof want; i++)
        len += (size_t)snprintf(want + len, sizeof want - len, "%s%s %d..%d", i ? ", " : "", params[members[i]].name,
                                params[members[i]].min, params[members[i]].max);
    if (strcmp(env, "KQCL_COLL_SUMS") == 0)
        snprintf(want, sizeof want, "host or device");
    return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "%s='%s': want %s%s", env, s, count > 1 ? "comma-separated " : "", want);
}

/* The number written at *s in decimal digits alone, moving *s past it, when it is at most
 * `max`; false for anything else. No sign and no blank are taken: the header promises exactly
 * the tuple's integers, and none of the bounds is negative, so a '-' is never part of a value
 * (strtol, used before, skipped leading blanks and took '+' and "-0"). Stopping at `max` (an
 * int) also keeps a long run of digits from overflowing. */
static bool digits_at_most(const char **s, int max, int *value)
{
    const char *p = *s;
    long long v = 0;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v > max)
            return false;
    }
    *value = (int)v;
    *s = p;
    return true;
}

/* One variable: unset is nothing, else exactly its tuple's integers, each within bounds. */
static kqcl_status tuple_from_env(const char *env, kq_params *out)
{
    const char *s = getenv(env);
    if (s == NULL)
        return KQCL_OK;
    kqcl_param members[8];
    int count = tuple_of(env, members);
    if (strcmp(env, "KQCL_COLL_SUMS") == 0) { /* a word, not a number */
        if (strcmp(s, "host") != 0 && strcmp(s, "device") != 0)
            return malformed(env, s, members, count);
        kq_params_set(out, KQCL_PARAM_COLL_SUMS, strcmp(s, "device") == 0, KQ_FROM_ENV);
        return KQCL_OK;
    }
    int v[8];
    const char *p = s;
    for (int i = 0; i < count; i++) {
        const param_info *pi = &params[members[i]];
        char after = i == count - 1 ? '\0' : ','; /* commas between the members, nothing after */
        if (!digits_at_most(&p, pi->max, &v[i]) || v[i] < pi->min || *p != after)
            return malformed(env, s, members, count);
        p++;
    }
    for (int i = 0; i < count; i++)
        kq_params_set(out, members[i], v[i], KQ_FROM_ENV);
    return KQCL_OK;
}

kqcl_status kq_params_from_env(kq_params *out)
{
    memset(out, 0, sizeof *out);
    for (int p = 0; p < KQCL_PARAM_COUNT; p++) {
        if (params[p].member != 0) /* each variable once, at its first member */
            continue;
        kqcl_status st = tuple_from_env(params[p].env, out);
        if (st != KQCL_OK)
            return st;
    }
    return KQCL_OK;
}

/* ---- values ------------------------------------------------------------------------------- */

void kq_params_set(kq_params *ps, kqcl_param p, int value, kq_param_source source)
{
    ps->value[p] = value;
    ps->source[p] = (unsigned char)source;
}

bool kq_param_get(const kq_params *ps, kqcl_param p, int *value)
{
    if (ps->source[p] == KQ_FROM_DEFAULT)
        return false;
    *value = ps->value[p];
    return true;
}

const char *kq_param_origin(const kq_params *ps, kqcl_param first, int count)
{
    for (int i = 0; i < count; i++)
        if (ps->source[first + i] == KQ_FROM_ENV)
            return params[first].env;
    return "kqcl_context_set_param";
}

bool kq_param_context_wide(kqcl_param p) { return params[p].context_wide; }

KQCL_API kqcl_status kqcl_context_set_param(kqcl_context *ctx, int device, kqcl_param param, int value)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_context_set_param: ctx is NULL");
    kq_clear_error(ctx);
    if (!is_param((int)param))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_context_set_param: unknown parameter %d", (int)param);
    const param_info *pi = &params[param];
    if (device < -1 || device >= ctx->n_devices || (pi->context_wide && device != -1))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_context_set_param: %s: device %d (%s)", pi->name, device,
                       pi->context_wide ? "a context-wide parameter takes -1" : "want -1 or a device of the context");
    if (value != KQCL_PARAM_AUTO && (value < pi->min || value > pi->max))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_context_set_param: %s = %d is outside %d..%d", pi->name, value,
                       pi->min, pi->max);
    kq_param_source source = value == KQCL_PARAM_AUTO ? KQ_FROM_DEFAULT : KQ_FROM_CALL;
    if (pi->context_wide)
        kq_params_set(&ctx->coll_params, param, value, source);
    for (int d = 0; !pi->context_wide && d < ctx->n_devices; d++)
        if (device == -1 || device == d)
            kq_params_set(&ctx->devices[d].params, param, value, source);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_context_get_param(const kqcl_context *ctx, int device, kqcl_param param, int *value)
{
    if (ctx == NULL || value == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_context_get_param: NULL argument");
    kqcl_context *c = (kqcl_context *)ctx; /* errors are recorded on it */
    kq_clear_error(c);
    if (!is_param((int)param) || device < -1 || device >= ctx->n_devices)
        return kq_fail(c, KQCL_ERR_INVALID_ARG, "kqcl_context_get_param: unknown parameter %d or device %d", (int)param,
                       device);
    if (params[param].context_wide) {
        if (!kq_param_get(&ctx->coll_params, param, value))
            *value = KQCL_PARAM_AUTO; /* chosen per collective */
        return KQCL_OK;
    }
    const kq_device *dev = &ctx->devices[device < 0 ? 0 : device];
    if (!kq_param_get(&dev->params, param, value))
        *value = kq_tuning_default(dev, param);
    return KQCL_OK;
}
