/* precision.h -- the precision modes, resolved per device and call (precision.c). */
#ifndef KQCL_PRECISION_H
#define KQCL_PRECISION_H

#include "ops/ops.h"

/* KQCL_PRECISION, the default of new contexts: F32 when unset; KQCL_ERR_INVALID_ARG (recorded
 * with no context) when malformed. */
kqcl_status kq_precision_from_env(kqcl_precision *out);

/* The mode a matmul of `wtype` weights gets on dev when `asked` is set: AUTO resolved, and Q8
 * outside its kernels (prefill, float weights) moved to BF16. Never AUTO. */
kqcl_precision kq_precision_resolve(kqcl_precision asked, const kq_device *dev, kqcl_type wtype, bool decode);

#endif
