/* params.h -- the launch parameters a context holds (params.c) and their defaults (tune.c). */
#ifndef KQCL_PARAMS_H
#define KQCL_PARAMS_H

#include "context.h"

/* Where a parameter's value came from: none (kqcl's default), the environment at creation, or
 * kqcl_context_set_param. */
typedef enum kq_param_source { KQ_FROM_DEFAULT = 0, KQ_FROM_ENV = 1, KQ_FROM_CALL = 2 } kq_param_source;

/* Every parameter from the environment (KQCL_MATVEC, ...), strictly: a malformed variable is
 * KQCL_ERR_INVALID_ARG, recorded with no context. For kqcl_context_create. */
kqcl_status kq_params_from_env(kq_params *out);

void kq_params_set(kq_params *ps, kqcl_param p, int value, kq_param_source source);
/* The value set for p, if any. */
bool kq_param_get(const kq_params *ps, kqcl_param p, int *value);
/* What to name in a message about the set first .. first+count-1: its variable when any
 * member came from the environment, else "kqcl_context_set_param". */
const char *kq_param_origin(const kq_params *ps, kqcl_param first, int count);
bool kq_param_context_wide(kqcl_param p);

/* tune.c: the tuning-table entry for a device (by kernel family, vendor and architecture), and
 * the default it gives p (KQCL_PARAM_AUTO where kqcl chooses per call). */
const kq_tuning *kq_tuning_for(const kq_device *dev);
int kq_tuning_default(const kq_device *dev, kqcl_param p);

#endif
