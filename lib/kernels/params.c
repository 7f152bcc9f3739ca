/* params.c -- the launch parameters as API (include/kqcl.h, "Parameters"): the values a context
 * holds per device (and for the collectives, per context), read from the environment once, at
 * context creation, or set by kqcl_context_set_param. Their names, bounds, variables and
 * defaults are the families' descriptors' (family.c). */
#include "kernels/params.h"
#include "kernels/family.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The descriptor's entry for p; NULL for an unknown id. */
static const kq_tunable *tunable(int p, const kq_family_desc **family)
{
    int index;
    const kq_family_desc *f = p >= 0 && p < KQCL_PARAM_COUNT ? kq_param_family((kqcl_param)p, &index) : NULL;
    if (family)
        *family = f;
    return f ? &f->tunables[index] : NULL;
}

KQCL_API const char *kqcl_param_name(kqcl_param param)
{
    const kq_tunable *t = tunable((int)param, NULL);
    return t ? t->name : "?";
}

KQCL_API kqcl_status kqcl_param_bounds(kqcl_param param, int *min, int *max)
{
    kq_clear_error(NULL);
    const kq_tunable *t = tunable((int)param, NULL);
    if (t == NULL || min == NULL || max == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_param_bounds: unknown parameter %d or NULL argument",
                       (int)param);
    *min = t->min;
    *max = t->max;
    return KQCL_OK;
}

static void set_value(kq_params *ps, kqcl_param p, int value, kq_param_source source)
{
    ps->value[p] = value;
    ps->source[p] = (unsigned char)source;
    ps->changes++;
}

/* ---- the environment, once a context --------------------------------------------------------- */

/* Members of the tuple `env` sets: the params, in order. */
static int tuple_of(const char *env, const kq_tunable **members)
{
    int count = 0;
    for (int f = 0; f < kq_n_param_families; f++)
        for (int i = 0; i < kq_param_families[f]->n_tunables; i++) {
            const kq_tunable *t = &kq_param_families[f]->tunables[i];
            if (strcmp(t->env, env) == 0)
                members[t->member] = t, count++;
        }
    return count;
}

static kqcl_status malformed(const char *env, const char *s, const kq_tunable *const *members, int count)
{
    char want[512] = "";
    size_t len = 0;
    for (int i = 0; i < count && len < sizeof want; i++)
        len += (size_t)snprintf(want + len, sizeof want - len, "%s%s %d..%d", i ? ", " : "", members[i]->name,
                                members[i]->min, members[i]->max);
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
    const char *s = kq_env(env); /* set but empty is malformed */
    if (s == NULL)
        return KQCL_OK;
    const kq_tunable *members[KQ_MAX_TUNABLES];
    int count = tuple_of(env, members);
    if (strcmp(env, "KQCL_COLL_SUMS") == 0) { /* a word, not a number */
        if (strcmp(s, "host") != 0 && strcmp(s, "device") != 0)
            return malformed(env, s, members, count);
        set_value(out, KQCL_PARAM_COLL_SUMS, strcmp(s, "device") == 0, KQ_FROM_ENV);
        return KQCL_OK;
    }
    int v[KQ_MAX_TUNABLES];
    const char *p = s;
    for (int i = 0; i < count; i++) {
        const kq_tunable *pi = members[i];
        char after = i == count - 1 ? '\0' : ','; /* commas between the members, nothing after */
        if (!digits_at_most(&p, pi->max, &v[i]) || v[i] < pi->min || *p != after)
            return malformed(env, s, members, count);
        p++;
    }
    for (int i = 0; i < count; i++)
        set_value(out, members[i]->param, v[i], KQ_FROM_ENV);
    return KQCL_OK;
}

kqcl_status kq_params_from_env(kq_params *out)
{
    memset(out, 0, sizeof *out);
    for (int p = 0; p < KQCL_PARAM_COUNT; p++) {
        const kq_tunable *t = tunable(p, NULL);
        if (t == NULL || t->member != 0) /* each variable once, at its first member */
            continue;
        kqcl_status st = tuple_from_env(t->env, out);
        if (st != KQCL_OK)
            return st;
    }
    return KQCL_OK;
}

/* ---- values ------------------------------------------------------------------------------- */

static bool context_wide(kqcl_param p)
{
    const kq_family_desc *f;
    return tunable((int)p, &f) != NULL && f->context_wide;
}

void kq_params_apply(kqcl_context *ctx, const kq_params *from_env)
{
    for (int p = 0; p < KQCL_PARAM_COUNT; p++) {
        kq_param_source source = (kq_param_source)from_env->source[p];
        if (context_wide((kqcl_param)p))
            set_value(&ctx->coll_params, (kqcl_param)p, from_env->value[p], source);
        for (int d = 0; !context_wide((kqcl_param)p) && d < ctx->n_devices; d++)
            set_value(&ctx->devices[d].params, (kqcl_param)p, from_env->value[p], source);
    }
}

KQCL_API kqcl_status kqcl_context_set_param(kqcl_context *ctx, int device, kqcl_param param, int value)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_context_set_param: ctx is NULL");
    kq_clear_error(ctx);
    const kq_family_desc *f;
    const kq_tunable *pi = tunable((int)param, &f);
    if (pi == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_context_set_param: unknown parameter %d", (int)param);
    if (device < -1 || device >= ctx->n_devices || (f->context_wide && device != -1))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_context_set_param: %s: device %d (%s)", pi->name, device,
                       f->context_wide ? "a context-wide parameter takes -1" : "want -1 or a device of the context");
    if (value != KQCL_PARAM_AUTO && (value < pi->min || value > pi->max))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_context_set_param: %s = %d is outside %d..%d", pi->name, value,
                       pi->min, pi->max);
    kq_param_source source = value == KQCL_PARAM_AUTO ? KQ_FROM_DEFAULT : KQ_FROM_CALL;
    if (f->context_wide)
        set_value(&ctx->coll_params, param, value, source);
    for (int d = 0; !f->context_wide && d < ctx->n_devices; d++)
        if (device == -1 || device == d)
            set_value(&ctx->devices[d].params, param, value, source);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_context_get_param(const kqcl_context *ctx, int device, kqcl_param param, int *value)
{
    if (ctx == NULL || value == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_context_get_param: NULL argument");
    kqcl_context *c = (kqcl_context *)ctx; /* errors are recorded on it */
    kq_clear_error(c);
    if (tunable((int)param, NULL) == NULL || device < -1 || device >= ctx->n_devices)
        return kq_fail(c, KQCL_ERR_INVALID_ARG, "kqcl_context_get_param: unknown parameter %d or device %d", (int)param,
                       device);
    if (context_wide(param)) {
        if (!kq_param_get(&ctx->coll_params, param, value))
            *value = KQCL_PARAM_AUTO; /* chosen per collective */
        return KQCL_OK;
    }
    const kq_device *dev = &ctx->devices[device < 0 ? 0 : device];
    if (!kq_param_get(&dev->params, param, value))
        *value = kq_param_default(dev, param);
    return KQCL_OK;
}
