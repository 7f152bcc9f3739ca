/* precision.c -- the precision modes of kqcl_matmul (include/kqcl.h): their names, the
 * context's setting, and which mode a call gets on a device once AUTO and the fallbacks are
 * resolved. The kernels each mode runs are matmul.c's concern. */
#include "precision.h"

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
    const char *s = getenv("KQCL_PRECISION");
    *out = KQCL_PRECISION_F32;
    if (s == NULL || *s == '\0')
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

/* AUTO: the fastest mode whose error stays within ggml's. GPUs: integer dot products for
 * quantized weights in decode (bandwidth bound, and the activations shrink 4x), one bf16
 * product a weight in prefill (ggml's CUDA prefill rounds activations to 8 bits or to f16/bf16
 * as well); f16 weights keep f16 activations. CPUs: F32 (PoCL's F32 kernels are the ones tuned
 * there, doc/perf.md). */
static kqcl_precision auto_mode(const kq_device *dev, kqcl_type wtype, bool decode)
{
    if (!dev->info.is_gpu)
        return KQCL_PRECISION_F32;
    if (kq_type_is_quant(wtype) && decode)
        return KQCL_PRECISION_Q8;
    return wtype == KQCL_TYPE_F16 ? KQCL_PRECISION_F16 : KQCL_PRECISION_BF16;
}

kqcl_precision kq_precision_resolve(kqcl_precision asked, const kq_device *dev, kqcl_type wtype, bool decode)
{
    if (asked == KQCL_PRECISION_AUTO)
        asked = auto_mode(dev, wtype, decode);
    /* The integer path serves quantized weights in decode; elsewhere BF16 is the next more
     * exact mode (a relative error of 2^-9 a value, where Q8's is up to 1/254 of the block's
     * largest). */
    if (asked == KQCL_PRECISION_Q8 && !(kq_type_is_quant(wtype) && decode))
        return KQCL_PRECISION_BF16;
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
