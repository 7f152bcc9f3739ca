/* precision.c -- the precision modes of kqcl_matmul (include/kqcl.h): their names, the
 * context's setting, and which mode a call gets on a device once AUTO and the fallbacks are
 * resolved. The kernels each mode runs are matmul.c's concern. */
#include "ops/precision.h"

#include <stdlib.h>
#include <strings.h>

static const char *const names[] = {"f32", "q8", "f16", "bf16", "auto"};

static bool is_precision(int p) { return p >= KQCL_PRECISION_F32 && p <= KQCL_PRECISION_AUTO; }

KQCL_API const char *kqcl_precision_name(kqcl_precision precision)
{
    return is_precision((int)precision) ? names[precision] : "?";
}

KQCL_API kqcl_status kqcl_precision_from_name(const char *name, kqcl_precision *out)
{
    kq_clear_error(NULL);
    if (name == NULL || out == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_precision_from_name: NULL argument");
    for (int p = KQCL_PRECISION_F32; p <= KQCL_PRECISION_AUTO; p++)
        if (strcasecmp(name, names[p]) == 0) {
            *out = (kqcl_precision)p;
            return KQCL_OK;
        }
    return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "precision '%s': want f32, q8, f16, bf16 or auto", name);
}

kqcl_status kq_precision_from_env(kqcl_precision *out)
{
    const char *s = kq_env_nonempty("KQCL_PRECISION");
    *out = KQCL_PRECISION_F32;
    if (s == NULL)
        return KQCL_OK;
    kqcl_status st = kqcl_precision_from_name(s, out);
    if (st != KQCL_OK)
        return kq_fail(NULL, st, "KQCL_PRECISION='%s': want f32, q8, f16, bf16 or auto", s);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_context_set_precision(kqcl_context *ctx, kqcl_precision precision)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_context_set_precision: ctx is NULL");
    kq_clear_error(ctx);
    if (!is_precision((int)precision))
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_context_set_precision: %d is not a kqcl_precision",
                       (int)precision);
    ctx->precision = precision;
    return KQCL_OK;
}

KQCL_API kqcl_precision kqcl_context_precision(const kqcl_context *ctx)
{
    return ctx ? ctx->precision : KQCL_PRECISION_F32;
}

/* AUTO: the fastest mode whose error stays within ggml's, as measured on an H200 (doc/perf.md
 * run 16; other GPUs take the same choices, untuned). GPUs, quantized weights: decode Q8 (the
 * activations shrink 4x; q4_K 24.7 vs 25.7 us, q8_0 36.6 vs 50.0) except q6_K, where F32 is as
 * fast (33.3 vs 34.4) and exact; prefill BF16 where the tensor cores serve the type (one product
 * instead of three: q4_K 903 vs 1132 us), else F32 (rounding X first only costs). Float weights:
 * their own type's mode for f16 and bf16 (f16 43 vs 55 us at n = 1, 138 vs 327 at n = 8), F32
 * for f32. CPUs: F32, the kernels tuned there. q4_1, q5_0 and q5_1 take q4_0's and q8_0's
 * choices (decode Q8, prefill F32), not measured on their own. */
static kqcl_precision auto_mode(const kq_device *dev, kqcl_type wtype, bool decode)
{
    if (!dev->info.is_gpu)
        return KQCL_PRECISION_F32;
    if (kq_type_is_quant(wtype)) {
        if (decode)
            return wtype == KQCL_TYPE_Q6_K ? KQCL_PRECISION_F32 : KQCL_PRECISION_Q8;
        return dev->nv_mma && kq_type_is_kquant(wtype) ? KQCL_PRECISION_BF16 : KQCL_PRECISION_F32;
    }
    return wtype == KQCL_TYPE_F16    ? KQCL_PRECISION_F16
           : wtype == KQCL_TYPE_BF16 ? KQCL_PRECISION_BF16
                                     : KQCL_PRECISION_F32;
}

/* BF16 is the mode next more exact than Q8 (a relative error of 2^-9 a value, where Q8's is up
 * to 1/254 of the block's largest). */
kqcl_precision kq_precision_instead_of_q8(void) { return KQCL_PRECISION_BF16; }

kqcl_precision kq_precision_resolve(kqcl_precision asked, const kq_device *dev, kqcl_type wtype, bool decode)
{
    if (asked == KQCL_PRECISION_AUTO)
        asked = auto_mode(dev, wtype, decode);
    /* The integer path serves quantized weights in decode only. */
    if (asked == KQCL_PRECISION_Q8 && !(kq_type_is_quant(wtype) && decode))
        return kq_precision_instead_of_q8();
    return asked;
}

KQCL_API kqcl_status kqcl_precision_chosen(const kqcl_context *ctx, int device, kqcl_type wtype, int64_t n,
                                           kqcl_precision *out)
{
    if (ctx == NULL || out == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_precision_chosen: NULL argument");
    kqcl_context *c = (kqcl_context *)ctx; /* errors are recorded on it */
    kq_clear_error(c);
    if (device < 0 || device >= ctx->n_devices)
        return kq_fail(c, KQCL_ERR_INVALID_ARG, "kqcl_precision_chosen: device %d out of range 0..%d", device,
                       ctx->n_devices - 1);
    if (!kq_type_is_known(wtype) || n < 1)
        return kq_fail(c, KQCL_ERR_INVALID_ARG, "kqcl_precision_chosen: want a known weight type and n >= 1");
    *out = kq_precision_resolve(ctx->precision, &ctx->devices[device], wtype, n <= KQ_MATVEC_MAX_N);
    return KQCL_OK;
}
