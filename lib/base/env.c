/* env.c -- the one way kqcl reads its environment variables (internal.h). Who reads what, and
 * when: the composition root at context creation (KQCL_DEVICES, KQCL_PRECISION, the parameters),
 * device.c when it opens a device (the kernel switches and the tests' caps), program.c when it
 * builds (the cache and build options): doc/design.md, "Configuration". */
#include "base/internal.h"

#include <stdlib.h>
#include <string.h>

const char *kq_env(const char *name) { return getenv(name); }

const char *kq_env_nonempty(const char *name)
{
    const char *s = getenv(name);
    return s != NULL && *s != '\0' ? s : NULL;
}

bool kq_env_is(const char *name, const char *value)
{
    const char *s = getenv(name);
    return s != NULL && strcmp(s, value) == 0;
}

bool kq_env_positive(const char *name, uint64_t *out)
{
    const char *s = kq_env_nonempty(name);
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == NULL || *end != '\0' || v == 0)
        return false;
    *out = (uint64_t)v;
    return true;
}
