/* params.h -- the launch parameters a context holds (params.c): set by kqcl_context_set_param or
 * read from the environment once, at creation. Their names, bounds, variables and defaults are
 * the kernel families' descriptors' (family.h). */
#ifndef KQCL_PARAMS_H
#define KQCL_PARAMS_H

#include "device/context.h"

/* Every parameter from the environment (KQCL_MATVEC, ...), strictly: a malformed variable is
 * KQCL_ERR_INVALID_ARG, recorded with no context. For kqcl_context_create. */
kqcl_status kq_params_from_env(kq_params *out);

/* The environment's parameters (kq_params_from_env) given to a new context: the devices' to
 * every device, the context-wide ones to the context. */
void kq_params_apply(kqcl_context *ctx, const kq_params *from_env);

#endif
