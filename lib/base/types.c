/* types.c -- the table of tensor types: names, block sizes, row sizes. */
#include "base/internal.h"


#include <string.h>
#include <strings.h>

typedef struct type_traits {
    kqcl_type type;
    const char *name;
    int64_t block_values; /* values per block */
    size_t block_bytes;   /* bytes per block */
} type_traits;

/* Block sizes are cl/kquant_layout.h's, the one place kqcl states a block's layout (the kernels
 * are built with it too). */
#define SAME(a, b) _Static_assert((a) == (b), #a " == " #b)
/* The kernels' type ids are kqcl.h's. */
SAME(TYPE_F32, KQCL_TYPE_F32); SAME(TYPE_F16, KQCL_TYPE_F16); SAME(TYPE_BF16, KQCL_TYPE_BF16);
SAME(TYPE_Q4_0, KQCL_TYPE_Q4_0); SAME(TYPE_Q4_1, KQCL_TYPE_Q4_1); SAME(TYPE_Q5_0, KQCL_TYPE_Q5_0);
SAME(TYPE_Q5_1, KQCL_TYPE_Q5_1); SAME(TYPE_Q8_0, KQCL_TYPE_Q8_0); SAME(TYPE_Q4_K, KQCL_TYPE_Q4_K);
SAME(TYPE_Q5_K, KQCL_TYPE_Q5_K); SAME(TYPE_Q6_K, KQCL_TYPE_Q6_K); SAME(TYPE_Q8_K, KQCL_TYPE_Q8_K);
/* Each block's fields follow one another and fill it, their sizes derived from the values they
 * hold (bits x values / 8), as ggml asserts sizeof(block_q4_K) and the rest. */
SAME(Q40_QS + QK4_0 / 2, Q40_BYTES);                                      /* 4 bits */
SAME(Q41_M + 2, Q41_QS); SAME(Q41_QS + QK4_1 / 2, Q41_BYTES);              /* 4 bits */
SAME(Q50_QH + QK5_0 / 8, Q50_QS); SAME(Q50_QS + QK5_0 / 2, Q50_BYTES);     /* 4 + 1 bits */
SAME(Q51_QH + QK5_1 / 8, Q51_QS); SAME(Q51_QS + QK5_1 / 2, Q51_BYTES);     /* 4 + 1 bits */
SAME(Q80_QS + QK8_0, Q80_BYTES);                                          /* 8 bits */
SAME(Q4K_SCALES + Q4K_SCALES_BYTES, Q4K_QS); SAME(Q4K_QS + QK_K / 2, Q4K_BYTES);
SAME(Q5K_SCALES + Q5K_SCALES_BYTES, Q5K_QH); SAME(Q5K_QH + QK_K / 8, Q5K_QS);
SAME(Q5K_QS + QK_K / 2, Q5K_BYTES);
SAME(Q6K_QL + QK_K / 2, Q6K_QH); SAME(Q6K_QH + QK_K / 4, Q6K_SCALES); SAME(Q6K_SCALES + QK_K / 16, Q6K_D);
SAME(Q6K_D + 2, Q6K_BYTES);
SAME(Q8K_QS + QK_K, Q8K_BSUMS); SAME(Q8K_BSUMS + QK_K / 16 * 2, Q8K_BYTES); /* f32 d, int16 sums a 16 */
#undef SAME

static const type_traits type_table[] = {
    {KQCL_TYPE_F32, "f32", 1, 4},
    {KQCL_TYPE_F16, "f16", 1, 2},
    {KQCL_TYPE_Q4_0, "q4_0", QK4_0, Q40_BYTES},
    {KQCL_TYPE_Q4_1, "q4_1", QK4_1, Q41_BYTES},
    {KQCL_TYPE_Q5_0, "q5_0", QK5_0, Q50_BYTES},
    {KQCL_TYPE_Q5_1, "q5_1", QK5_1, Q51_BYTES},
    {KQCL_TYPE_Q8_0, "q8_0", QK8_0, Q80_BYTES},
    {KQCL_TYPE_Q4_K, "q4_K", QK_K, Q4K_BYTES},
    {KQCL_TYPE_Q5_K, "q5_K", QK_K, Q5K_BYTES},
    {KQCL_TYPE_Q6_K, "q6_K", QK_K, Q6K_BYTES},
    {KQCL_TYPE_Q8_K, "q8_K", QK_K, Q8K_BYTES},
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

bool kq_type_is_quant(kqcl_type type)
{
    const type_traits *t = traits_of(type);
    return t != NULL && t->block_values > 1;
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
        if (strcasecmp(type_table[i].name, name) == 0) { /* names differ by more than case */
            *out = type_table[i].type;
            return KQCL_OK;
        }
    }
    return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "unknown type name '%s'", name);
}

/* ---- every type ggml defines ---------------------------------------------------------------- */

/* ggml's type ids with their block sizes, from ggml's type traits and block layouts
 * (ggml-common.h): what a GGUF reader needs to bound any tensor's data, whether or not kqcl
 * computes with the type (those it computes with take their sizes from kquant_layout.h). Ids
 * 4, 5, 31-33 and 36-38 were removed from ggml and stay unknown. */
typedef struct ggml_traits {
    uint32_t id;
    const char *name;
    uint32_t block_values;
    uint32_t block_bytes;
} ggml_traits;

static const ggml_traits ggml_table[] = {
    {0, "f32", 1, 4},          {1, "f16", 1, 2},          {2, "q4_0", QK4_0, Q40_BYTES},
    {3, "q4_1", QK4_1, Q41_BYTES},       {6, "q5_0", QK5_0, Q50_BYTES},
    {7, "q5_1", QK5_1, Q51_BYTES},       {8, "q8_0", QK8_0, Q80_BYTES},
    {9, "q8_1", 32, 36},       {10, "q2_K", QK_K, 84},    {11, "q3_K", QK_K, 110},
    {12, "q4_K", QK_K, Q4K_BYTES},       {13, "q5_K", QK_K, Q5K_BYTES},
    {14, "q6_K", QK_K, Q6K_BYTES},       {15, "q8_K", QK_K, Q8K_BYTES},
    {16, "iq2_xxs", QK_K, 66},
    {17, "iq2_xs", QK_K, 74},  {18, "iq3_xxs", QK_K, 98}, {19, "iq1_s", QK_K, 50},
    {20, "iq4_nl", 32, 18},    {21, "iq3_s", QK_K, 110},  {22, "iq2_s", QK_K, 82},
    {23, "iq4_xs", QK_K, 136}, {24, "i8", 1, 1},          {25, "i16", 1, 2},
    {26, "i32", 1, 4},         {27, "i64", 1, 8},         {28, "f64", 1, 8},
    {29, "iq1_m", QK_K, 56},   {30, "bf16", 1, 2},        {34, "tq1_0", QK_K, 54},
    {35, "tq2_0", QK_K, 66},   {39, "mxfp4", 32, 17},     {40, "nvfp4", 64, 36},
    {41, "q1_0", 128, 18},     {42, "q2_0", 64, 18},
};

static const ggml_traits *ggml_traits_of(uint32_t id)
{
    for (size_t i = 0; i < sizeof ggml_table / sizeof ggml_table[0]; i++)
        if (ggml_table[i].id == id)
            return &ggml_table[i];
    return NULL;
}

bool kq_ggml_type_size(uint32_t type, int64_t *block_values, size_t *block_bytes)
{
    const ggml_traits *t = ggml_traits_of(type);
    if (t == NULL)
        return false;
    *block_values = t->block_values;
    *block_bytes = t->block_bytes;
    return true;
}

KQCL_API kqcl_status kqcl_ggml_type_info(uint32_t type, const char **name, int64_t *block_values,
                                         size_t *block_bytes)
{
    const ggml_traits *t = ggml_traits_of(type);
    if (t == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "ggml defines no type %u", (unsigned)type);
    if (name != NULL)
        *name = t->name;
    if (block_values != NULL)
        *block_values = t->block_values;
    if (block_bytes != NULL)
        *block_bytes = t->block_bytes;
    return KQCL_OK;
}
