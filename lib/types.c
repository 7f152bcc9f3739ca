/* types.c -- the table of tensor types: names, block sizes, row sizes. */
#include "internal.h"

#include <string.h>

typedef struct type_traits {
    kqcl_type type;
    const char *name;
    int64_t block_values; /* values per block */
    size_t block_bytes;   /* bytes per block */
} type_traits;

/* Block sizes from ggml's layouts: q4_K 2+2+12+128, q5_K 2+2+12+32+128, q6_K 128+64+16+2,
 * q8_K 4+256+32. */
static const type_traits type_table[] = {
    {KQCL_TYPE_F32, "f32", 1, 4},        {KQCL_TYPE_F16, "f16", 1, 2},
    {KQCL_TYPE_Q4_K, "q4_K", QK_K, 144}, {KQCL_TYPE_Q5_K, "q5_K", QK_K, 176},
    {KQCL_TYPE_Q6_K, "q6_K", QK_K, 210}, {KQCL_TYPE_Q8_K, "q8_K", QK_K, 292},
    {KQCL_TYPE_BF16, "bf16", 1, 2},
};

static const type_traits *traits_of(kqcl_type type)
{
    for (size_t i = 0; i < sizeof type_table / sizeof type_table[0]; i++)
        if (type_table[i].type == type)
            return &type_table[i];
    return NULL;
}

bool kq_type_is_known(kqcl_type type) { return traits_of(type) != NULL; }

bool kq_type_is_kquant(kqcl_type type)
{
    const type_traits *t = traits_of(type);
    return t != NULL && t->block_values == QK_K;
}

size_t kq_block_bytes(kqcl_type type)
{
    const type_traits *t = traits_of(type);
    return t ? t->block_bytes : 0;
}

KQCL_API int64_t kqcl_block_size(kqcl_type type)
{
    const type_traits *t = traits_of(type);
    return t ? t->block_values : 0;
}

KQCL_API size_t kqcl_row_size(kqcl_type type, int64_t cols)
{
    const type_traits *t = traits_of(type);
    if (t == NULL || cols <= 0 || cols % t->block_values != 0)
        return 0;
    /* Guard the multiplication: a row never needs more than SIZE_MAX / 2 bytes. */
    uint64_t blocks = (uint64_t)(cols / t->block_values);
    if (blocks > (SIZE_MAX / 2) / t->block_bytes)
        return 0;
    return (size_t)blocks * t->block_bytes;
}

KQCL_API const char *kqcl_type_name(kqcl_type type)
{
    const type_traits *t = traits_of(type);
    return t ? t->name : NULL;
}

KQCL_API kqcl_status kqcl_type_from_name(const char *name, kqcl_type *out)
{
    if (name == NULL || out == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_type_from_name: NULL argument");
    for (size_t i = 0; i < sizeof type_table / sizeof type_table[0]; i++) {
        if (strcmp(type_table[i].name, name) == 0) {
            *out = type_table[i].type;
            return KQCL_OK;
        }
    }
    return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "unknown type name '%s'", name);
}
