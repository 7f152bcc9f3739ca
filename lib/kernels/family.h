/* family.h -- one descriptor per kernel family (family.c): what a family's kernels take as
 * tunables (names, bounds, the variable that sets them, the -D option each becomes), their
 * defaults per kind of device with the smaller sets a device steps down to, the kernels'
 * constraints, local-memory and private-memory formulas and launch geometry. One generic
 * function (kq_pick_variant) turns a descriptor, a device and a call's shape into a variant --
 * a family built with -D options -- checked against the device before anything is built. The
 * parameter calls (params.c), `kqcl devices` and the offline compile list
 * (tests/kernel_variants.c) read the same descriptors. */
#ifndef KQCL_FAMILY_H
#define KQCL_FAMILY_H

#include "device/program.h"

#define KQ_MAX_TUNABLES 5
/* The largest n the matrix-vector kernels serve; larger n go to the tiled kernels. */
#define KQ_MATVEC_MAX_N 8

/* One launch parameter: its public id and name, bounds, the variable that sets it (as member
 * `member` of its comma-separated tuple) and the -D name the kernel reads it as (NULL: read on
 * the host, e.g. a threshold or a split count). */
typedef struct kq_tunable {
    kqcl_param param;
    const char *name;
    int min, max;
    const char *env;
    int member;
    const char *define;
} kq_tunable;

/* A set of tunables' values, in the descriptor's order, and whether the kernel takes its
 * KQ_CPU form (one work-item a work-group, whole rows: PoCL runs a work-group as a loop). */
typedef struct kq_candidate {
    int v[KQ_MAX_TUNABLES];
    bool cpu_form;
} kq_candidate;

typedef struct kq_candidates {
    const kq_candidate *list; /* the default first, then smaller ones, largest first */
    int count;
} kq_candidates;

/* What a call asks of a family: the operand types and sizes (m x k weights, n activation rows),
 * the weights launched together (matmul.c's decode groups) and the precision mode. Every field
 * is part of the key a device remembers its picks by (family.c's same_shape and memo_slot). */
typedef struct kq_shape {
    kqcl_type wtype, xtype;
    int64_t m, n, k;
    int group;
    int glu; /* matvec.cl's GLU form: 0 none, 1 SwiGLU, 2 GeGLU (kqcl_matmul_glu) */
    int norm; /* matvec.cl's NORM form: X normalised in the launch (kqcl_norm_matmul_group) */
    kqcl_precision mode;
    int op; /* reduce.cl's operation */
} kq_shape;

struct kq_variant;
typedef struct kq_family_desc kq_family_desc;

/* A family built with one set of options: what kq_pick_variant returns. */
typedef struct kq_variant {
    const kq_family_desc *desc;
    kq_family family;
    char options[256];    /* the -D options (program.c adds -cl-std and KQCL_EXTRA_BUILD_OPTIONS) */
    int t[KQ_MAX_TUNABLES]; /* the tunables' values, in the descriptor's order */
    size_t local_bytes;   /* __local bytes of the largest kernel of its program, by the file's formula */
    size_t wg_items;      /* work-group items its kernel requires (reqd_work_group_size); 0: any */
    size_t private_bytes; /* private memory a work-item, estimated from the kernel's arrays; 0: not */
    bool cpu;             /* the KQ_CPU form */
    bool ptx_variant;     /* on NVIDIA also built with -DKQ_NV_PTX, falling back without it */
} kq_variant;

/* Which operand types a family's options name (-DWTYPE, -DXTYPE), before its tunables. */
enum { KQ_OPT_WTYPE = 1, KQ_OPT_XTYPE = 2 };

struct kq_family_desc {
    const char *name; /* in messages and the offline compile list */
    kq_family program;
    unsigned type_options;
    int n_tunables;
    const kq_tunable *tunables;
    /* The candidates on dev for the shape, the default first; NULL: one empty set. */
    kq_candidates (*candidates)(const kq_device *dev, const kq_shape *s);
    /* Whether the family serves the call at all, with the host-side tunables resolved (v);
     * NULL: always. A family that does not is KQCL_ERR_UNSUPPORTED, with no message. */
    bool (*applies)(const kq_device *dev, const kq_shape *s, const int *v);
    /* Defaults that depend on the shape, laid over the first candidate after the user's
     * host-side tunables (v[i] == 0: not set); NULL: none. */
    void (*shape_defaults)(const kq_device *dev, const kq_shape *s, int *v);
    /* The kernels' constraints on a set (their #error guards); NULL when met, else why. */
    const char *(*broken)(const int *v, bool cpu_form);
    /* The options beyond the types and the tunables, and the work-group size, local and
     * private memory of the set. */
    void (*layout)(const kq_device *dev, const kq_shape *s, kq_variant *v);
    /* The launch of the family's main kernel for an m-row output: global and local sizes in up
     * to three dimensions (returns the dimensions); NULL for families launched by their callers. */
    unsigned (*geometry)(const kq_variant *v, const kq_shape *s, size_t *global, size_t *local);
    bool ptx_variant;
    bool steps_down;           /* a built kernel that does not fit hands over to the next candidate */
    bool default_misfit_quiet; /* defaults that fit nowhere: UNSUPPORTED with no message (mma) */
    bool context_wide;         /* parameters held once a context, not a device (the collectives) */
};

/* The families. */
extern const kq_family_desc kq_matvec_family;     /* matvec.cl: decode, n <= 8 */
extern const kq_family_desc kq_tiled_family;      /* matmul.cl: prefill */
extern const kq_family_desc kq_mma_decode_family; /* mma.cl: NVIDIA tensor cores, decode */
extern const kq_family_desc kq_mma_prefill_family; /* mma.cl: NVIDIA tensor cores, prefill */
extern const kq_family_desc kq_q8_matvec_family;  /* q8.cl: integer decode in Q8 */
extern const kq_family_desc kq_q8_quantize_family; /* q8.cl: the activations' quantizer */
extern const kq_family_desc kq_convert_family;    /* convert.cl */
extern const kq_family_desc kq_reduce_family;     /* reduce.cl */
extern const kq_family_desc kq_bench_family;      /* bench.cl */
extern const kq_family_desc kq_elementwise_family; /* elementwise.cl: a layer's element-wise and row-wise ops */
extern const kq_family_desc kq_attention_family;   /* attention.cl: attention over a KV cache */
/* The collectives' parameters: a set of tunables with no kernel (collective.c reads them). */
extern const kq_family_desc kq_collective_params;

/* Local memory of matvec.cl's NORM form for X's normalised n x k values (its padded layout). */
size_t kq_norm_x_bytes(int64_t n, int64_t k);

/* Every descriptor with tunables, for the parameter calls. */
extern const kq_family_desc *const kq_param_families[];
extern const int kq_n_param_families;

/* The variant of family f for the call's shape on dev. The user's tunables (kqcl_context_set_param,
 * the environment) are taken as given or refused (KQCL_ERR_INVALID_ARG, naming where they came
 * from); the defaults step down the candidates until one fits the device, `skip` fitting ones
 * passed over (the caller asks again with skip + 1 when a built kernel turns out not to fit,
 * kq_kernel_fits). KQCL_ERR_UNSUPPORTED when nothing fits or the family does not apply. */
kqcl_status kq_pick_variant(kqcl_context *ctx, const kq_device *dev, const kq_family_desc *f, const kq_shape *s,
                            int skip, kq_variant *v);

/* The value of tunable p in v (KQCL_PARAM_AUTO when the family has no such tunable). */
int kq_variant_value(const kq_variant *v, kqcl_param p);

/* The default p takes on dev: the head of its family's candidates where that is the same for
 * every weight type and shape, else KQCL_PARAM_AUTO (chosen per call). */
int kq_param_default(const kq_device *dev, kqcl_param p);

/* The descriptor and position of p; NULL for an unknown id. */
const kq_family_desc *kq_param_family(kqcl_param p, int *index);

/* Whether a built kernel fits the device as the variant assumed: its CL_KERNEL_WORK_GROUP_SIZE
 * (registers can lower it), CL_KERNEL_LOCAL_MEM_SIZE and, on a CPU device, a work-group's
 * private memory (CL_KERNEL_PRIVATE_MEM_SIZE or the variant's estimate, whichever is larger)
 * against the stack it runs on; KQCL_ERR_UNSUPPORTED with a message when not. */
kqcl_status kq_kernel_fits(kqcl_context *ctx, const kq_device *dev, cl_kernel kernel, const kq_variant *v,
                           const char *name);

/* The variant's kernel `name`, built (or found) through program.c -- on NVIDIA the inline-PTX
 * form first where the variant has one -- and checked with kq_kernel_fits. */
kqcl_status kq_variant_kernel(kqcl_context *ctx, kq_device *dev, const kq_variant *v, const char *name,
                              cl_kernel *out);

/* Pick, build and fit: the first candidate whose built kernel `name` fits the device. */
kqcl_status kq_family_kernel(kqcl_context *ctx, kq_device *dev, const kq_family_desc *f, const kq_shape *s,
                             const char *name, kq_variant *v, cl_kernel *out);

/* The device's remembered picks (kq_pick_variant's and kq_family_kernel's answers) freed: the
 * context's destroy, before the device closes. */
void kq_memo_free(kq_device *dev);

/* The kind of device the defaults are chosen for ("NVIDIA sm_80+ (measured on H100 and H200)"). */
int kq_device_kind(const kq_device *dev);
const char *kq_device_kind_name(const kq_device *dev);

/* mma.cl's bf16 parts an activation is multiplied in, by mode (F32 3, F16 2, BF16 1). */
int kq_mma_parts(kqcl_precision mode);

#endif
