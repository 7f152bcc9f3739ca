/* precision.h -- the precision modes, resolved per device and call (precision.c). */
#ifndef KQCL_PRECISION_H
#define KQCL_PRECISION_H

#include "ops/ops.h"

/* KQCL_PRECISION, the default of new contexts: F32 when unset; KQCL_ERR_INVALID_ARG (recorded
 * with no context) when malformed. */
kqcl_status kq_precision_from_env(kqcl_precision *out);

/* The mode a matmul of `wtype` weights gets on dev when `asked` is set: AUTO resolved, and Q8
 * outside its kernels (prefill, float weights) moved to BF16. Never AUTO. */
/* What a call asked to run in Q8 runs in where Q8 has no kernel (prefill, float weights) or
 * none fits the device: the next more exact mode. The one place that choice is made. */
kqcl_precision kq_precision_instead_of_q8(void);

kqcl_precision kq_precision_resolve(kqcl_precision asked, const kq_device *dev, kqcl_type wtype, bool decode);

#endif
