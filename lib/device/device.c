/*
 * device.c -- discovering OpenCL platforms and devices, choosing them from a spec string, and
 * opening and closing a context's devices: an OpenCL context, a queue (queue.c) and the kernels
 * each device runs. The context itself is made and torn down by the composition root
 * (lib/root/context.c).
 */
#include "device/context.h"
#include "device/program.h"
#include "device/scratch.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV
#define CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV 0x4000
#define CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV 0x4001
#endif

/* ---- discovery ---------------------------------------------------------------------------- */

typedef struct found_device {
    cl_platform_id platform;
    cl_device_id device;
    int platform_index, index_in_platform;
    cl_device_type type;
} found_device;

/* Every device of every platform, in platform order, then the platform's own order. */
static kqcl_status discover(found_device *out, int capacity, int *count)
{
    cl_platform_id platforms[16];
    cl_uint n_platforms = 0;
    *count = 0;
    cl_int err = clGetPlatformIDs(16, platforms, &n_platforms);
    if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && n_platforms == 0))
        return kq_fail(NULL, KQCL_ERR_NO_DEVICE,
                       "no OpenCL platform found (is an ICD installed, e.g. pocl-opencl-icd?)");
    if (err != CL_SUCCESS)
        return kq_cl_fail(NULL, err, "clGetPlatformIDs");
    if (n_platforms > 16)
        n_platforms = 16;
    for (cl_uint p = 0; p < n_platforms; p++) {
        cl_device_id devices[KQ_MAX_DEVICES];
        cl_uint n = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, KQ_MAX_DEVICES, devices, &n) != CL_SUCCESS)
            continue; /* a platform without devices is not an error */
        if (n > KQ_MAX_DEVICES)
            n = KQ_MAX_DEVICES;
        for (cl_uint d = 0; d < n && *count < capacity; d++) {
            found_device *f = &out[(*count)++];
            f->platform = platforms[p];
            f->device = devices[d];
            f->platform_index = (int)p;
            f->index_in_platform = (int)d;
            clGetDeviceInfo(devices[d], CL_DEVICE_TYPE, sizeof f->type, &f->type, NULL);
        }
    }
    if (*count == 0)
        return kq_fail(NULL, KQCL_ERR_NO_DEVICE, "no OpenCL device found on %u platform(s)",
                       n_platforms);
    return KQCL_OK;
}

static void device_string(cl_device_id d, cl_device_info what, char *buf, size_t size)
{
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, size, buf, NULL) != CL_SUCCESS)
        buf[0] = '\0';
    buf[size - 1] = '\0';
}

/* As device_string, but a longer value is cut to fit instead of left empty (PoCL's
 * CL_DEVICE_VERSION runs past 100 bytes with its build options). */
static void device_string_cut(cl_device_id d, cl_device_info what, char *buf, size_t size)
{
    size_t needed = 0;
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, 0, NULL, &needed) != CL_SUCCESS || needed == 0)
        return;
    char *full = calloc(needed + 1, 1);
    if (full != NULL && clGetDeviceInfo(d, what, needed, full, NULL) == CL_SUCCESS)
        snprintf(buf, size, "%s", full);
    free(full);
}

static bool has_extension(const char *extensions, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = strstr(extensions, name); p; p = strstr(p + 1, name))
        if ((p == extensions || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0'))
            return true;
    return false;
}

static void describe(const found_device *f, kqcl_device_info *info)
{
    memset(info, 0, sizeof *info);
    device_string(f->device, CL_DEVICE_NAME, info->name, sizeof info->name);
    device_string(f->device, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    device_string(f->device, CL_DRIVER_VERSION, info->driver, sizeof info->driver);
    device_string_cut(f->device, CL_DEVICE_VERSION, info->opencl_version, sizeof info->opencl_version);
    device_string_cut(f->device, CL_DEVICE_OPENCL_C_VERSION, info->opencl_c_version, sizeof info->opencl_c_version);
    info->platform_index = f->platform_index;
    info->platform_device_index = f->index_in_platform;
    clGetPlatformInfo(f->platform, CL_PLATFORM_NAME, sizeof info->platform, info->platform, NULL);
    info->platform[sizeof info->platform - 1] = '\0';
    info->is_gpu = (f->type & CL_DEVICE_TYPE_GPU) != 0;
    cl_uint cu = 0;
    cl_ulong mem = 0, alloc = 0, local = 0;
    clGetDeviceInfo(f->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    clGetDeviceInfo(f->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
    clGetDeviceInfo(f->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof alloc, &alloc, NULL);
    clGetDeviceInfo(f->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
    info->compute_units = (int)cu;
    info->global_mem_bytes = mem;
    info->max_alloc_bytes = alloc;
    info->local_mem_bytes = local;

    size_t ext_size = 0;
    clGetDeviceInfo(f->device, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_size);
    char *ext = calloc(ext_size + 1, 1);
    if (ext != NULL && clGetDeviceInfo(f->device, CL_DEVICE_EXTENSIONS, ext_size, ext, NULL) == CL_SUCCESS) {
        info->has_fp16 = has_extension(ext, "cl_khr_fp16");
        info->has_subgroups = has_extension(ext, "cl_khr_subgroups") || has_extension(ext, "cl_intel_subgroups");
        info->has_int_dot = has_extension(ext, "cl_khr_integer_dot_product");
        if (has_extension(ext, "cl_nv_device_attribute_query")) {
            cl_uint major = 0, minor = 0;
            clGetDeviceInfo(f->device, CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV, sizeof major, &major, NULL);
            clGetDeviceInfo(f->device, CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV, sizeof minor, &minor, NULL);
            info->nv_compute_capability = (int)(10 * major + minor);
        }
    }
    free(ext);
}

/* Discovery runs once per process (pthread_once): PoCL crashed inside its device queries when
 * several threads made the first contexts at once, and the platforms and devices of OpenCL do
 * not change under a running process anyway (the ICD loader reads them once too). A failed
 * discovery is kept as well: its status and message are given again to every later call. */
static struct {
    pthread_once_t once;
    kqcl_status status;
    char message[512];
    int n;
    found_device found[KQ_MAX_DEVICES];
    kqcl_device_info infos[KQ_MAX_DEVICES];
} discovery = {.once = PTHREAD_ONCE_INIT};

static void discover_once(void)
{
    discovery.status = discover(discovery.found, KQ_MAX_DEVICES, &discovery.n);
    if (discovery.status != KQCL_OK) {
        size_t capacity;
        snprintf(discovery.message, sizeof discovery.message, "%s", kq_thread_error_buffer(&capacity));
        discovery.n = 0;
        return;
    }
    for (int i = 0; i < discovery.n; i++) {
        describe(&discovery.found[i], &discovery.infos[i]);
        discovery.infos[i].list_index = i;
    }
}

/* The devices of the process, discovered on first use; read-only afterwards. */
static kqcl_status discovered(const found_device **found, const kqcl_device_info **infos, int *n)
{
    pthread_once(&discovery.once, discover_once);
    *found = discovery.found;
    *infos = discovery.infos;
    *n = discovery.n;
    if (discovery.status != KQCL_OK)
        return kq_fail(NULL, discovery.status, "%s", discovery.message);
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_list_devices(kqcl_device_info *out, int capacity, int *count)
{
    kq_clear_error(NULL);
    if (count == NULL || capacity < 0 || (out == NULL && capacity > 0))
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_list_devices: bad arguments");
    const found_device *found;
    const kqcl_device_info *infos;
    int n = 0;
    kqcl_status st = discovered(&found, &infos, &n);
    *count = n;
    if (st != KQCL_OK)
        return st;
    for (int i = 0; i < n && i < capacity; i++)
        out[i] = infos[i];
    return KQCL_OK;
}

/* ---- the device spec --------------------------------------------------------------------- */

static bool contains_ci(const char *haystack, const char *needle)
{
    size_t n = strlen(needle);
    for (; *haystack; haystack++) {
        size_t i = 0;
        while (i < n && haystack[i] && tolower((unsigned char)haystack[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return true;
    }
    return n == 0;
}

static bool parse_index(const char *s, int *out)
{
    if (*s == '\0' || strlen(s) > 6)
        return false;
    int v = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return false;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return true;
}

/* Add device `index` unless already chosen; counts the term's matches either way. */
static void pick(int *chosen, int *n_chosen, int index, int *matches)
{
    (*matches)++;
    for (int i = 0; i < *n_chosen; i++)
        if (chosen[i] == index)
            return;
    chosen[(*n_chosen)++] = index;
}

/* Add the devices that one term of the spec names. */
static kqcl_status match_term(const char *term, const found_device *found, const kqcl_device_info *infos,
                              int n, int *chosen, int *n_chosen)
{
    int matches = 0, a, b;
    const char *colon = strchr(term, ':');
    if (strcmp(term, "all") == 0) {
        for (int i = 0; i < n; i++)
            pick(chosen, n_chosen, i, &matches);
    } else if (strcmp(term, "gpu") == 0 || strcmp(term, "cpu") == 0 || strcmp(term, "accelerator") == 0) {
        cl_device_type want = term[0] == 'g' ? CL_DEVICE_TYPE_GPU
                              : term[0] == 'c' ? CL_DEVICE_TYPE_CPU : CL_DEVICE_TYPE_ACCELERATOR;
        for (int i = 0; i < n; i++)
            if (found[i].type & want)
                pick(chosen, n_chosen, i, &matches);
    } else if (parse_index(term, &a)) {
        if (a >= n)
            return kq_fail(NULL, KQCL_ERR_NO_DEVICE, "device %d requested, but only %d found", a, n);
        pick(chosen, n_chosen, a, &matches);
    } else if (colon != NULL) {
        char left[16];
        size_t len = (size_t)(colon - term);
        if (len >= sizeof left)
            return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "bad device term '%s'", term);
        memcpy(left, term, len);
        left[len] = '\0';
        if (!parse_index(left, &a) || !parse_index(colon + 1, &b))
            return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "bad device term '%s' (want P:N)", term);
        for (int i = 0; i < n; i++)
            if (found[i].platform_index == a && found[i].index_in_platform == b)
                pick(chosen, n_chosen, i, &matches);
    } else {
        for (int i = 0; i < n; i++)
            if (contains_ci(infos[i].name, term) || contains_ci(infos[i].platform, term))
                pick(chosen, n_chosen, i, &matches);
    }
    if (matches == 0)
        return kq_fail(NULL, KQCL_ERR_NO_DEVICE, "no device matches '%s'", term);
    return KQCL_OK;
}

/* Parse `spec` into indices into `found`. An empty or NULL spec: the first GPU, else device 0. */
static kqcl_status choose_devices(const char *spec, const found_device *found, const kqcl_device_info *infos,
                                  int n, int *chosen, int *n_chosen)
{
    *n_chosen = 0;
    if (spec == NULL || spec[0] == '\0') {
        for (int i = 0; i < n; i++)
            if (found[i].type & CL_DEVICE_TYPE_GPU) {
                chosen[(*n_chosen)++] = i;
                return KQCL_OK;
            }
        chosen[(*n_chosen)++] = 0;
        return KQCL_OK;
    }
    if (strlen(spec) > 1024)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "device spec longer than 1024 characters");
    char copy[1025];
    strcpy(copy, spec);
    /* split by hand: strtok would skip the empty term of "0,,1", which is an error */
    for (char *term = copy, *next; term != NULL; term = next) {
        char *comma = strchr(term, ',');
        next = comma ? comma + 1 : NULL;
        if (comma)
            *comma = '\0';
        while (isspace((unsigned char)*term))
            term++;
        char *end = term + strlen(term);
        while (end > term && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (*term == '\0')
            return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "empty term in device spec '%s'", spec);
        kqcl_status st = match_term(term, found, infos, n, chosen, n_chosen);
        if (st != KQCL_OK)
            return st;
    }
    if (*n_chosen == 0)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "empty device spec '%s'", spec);
    return KQCL_OK;
}

/* ---- the context --------------------------------------------------------------------------- */


/* Lower *value to the environment variable `name` (a positive integer) if it is smaller. */
static void apply_test_cap(const char *name, uint64_t *value)
{
    uint64_t cap;
    if (kq_env_positive(name, &cap) && cap < *value)
        *value = cap;
}

/* Which kernels the device runs. The family follows the device's kind; KQCL_KERNELS=gpu|cpu
 * forces one, a testing aid: CI runs every portable GPU kernel on PoCL with it. Inline PTX needs
 * NVIDIA's compiler; KQCL_PORTABLE=1 keeps the portable kernels, KQCL_MMA=0 the FMA ones.
 * KQCL_TEST_FORCE_PTX=1 asks for the NVIDIA variants on any device -- a test hook: elsewhere
 * they fail to build, which proves the fallback to the portable kernels. */
static kqcl_status choose_kernels(kq_device *dev, const kqcl_device_info *info)
{
    const char *family = kq_env_nonempty("KQCL_KERNELS");
    if (family != NULL && strcmp(family, "auto") != 0 && strcmp(family, "gpu") != 0 && strcmp(family, "cpu") != 0)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "KQCL_KERNELS='%s': want gpu, cpu or auto", family);
    dev->gpu_kernels = kq_env_is("KQCL_KERNELS", "gpu") || (info->is_gpu && !kq_env_is("KQCL_KERNELS", "cpu"));
    const char *portable = kq_env("KQCL_PORTABLE"); /* any value but 0, empty too */
    bool forced = kq_env_is("KQCL_TEST_FORCE_PTX", "1");
    dev->nv_ptx = (forced || info->nv_compute_capability >= 30) && !(portable && strcmp(portable, "0") != 0);
    dev->nv_mma = dev->nv_ptx && (forced || info->nv_compute_capability >= 80) && !kq_env_is("KQCL_MMA", "0");
    dev->int_dot = info->has_int_dot && !kq_env_is("KQCL_INT_DOT", "0");
    kq_describe_kernels(dev, dev->info.variant, sizeof dev->info.variant);
    return KQCL_OK;
}

/* CL_DEVICE_MEM_BASE_ADDR_ALIGN in bytes, at least 64, a power of two: where a sub-buffer (a
 * view, buffer.c) may start. Asked once here: a view is made for nearly every launch.
 * KQCL_TEST_VIEW_ALIGN raises it (a fault-finding aid: views at coarser offsets only). */
static size_t base_alignment(cl_device_id id)
{
    cl_uint bits = 0;
    if (clGetDeviceInfo(id, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits, &bits, NULL) != CL_SUCCESS)
        bits = 4096 * 8; /* unknown: the largest any driver reports (a page) */
    uint64_t want = bits / 8, raised;
    if (kq_env_positive("KQCL_TEST_VIEW_ALIGN", &raised) && raised > want)
        want = raised;
    size_t align = 64;
    while (align < want && align < ((size_t)1 << 30))
        align <<= 1;
    return align;
}

static kqcl_status open_device(kq_device *dev, const found_device *f, const kqcl_device_info *info)
{
    cl_int err;
    dev->platform = f->platform;
    dev->id = f->device;
    dev->info = *info;
    dev->base_align = base_alignment(f->device);
    /* Test knobs: KQCL_TEST_MAX_ALLOC_BYTES caps every device's largest allocation, so that the
     * tests can hold tensors in several buffers without filling memory (doc/multi-device.md);
     * KQCL_TEST_LOCAL_MEM_BYTES its local memory, so that PoCL chooses kernel variants as a
     * device with little of it does (doc/portability.md). */
    apply_test_cap("KQCL_TEST_MAX_ALLOC_BYTES", &dev->info.max_alloc_bytes);
    apply_test_cap("KQCL_TEST_LOCAL_MEM_BYTES", &dev->info.local_mem_bytes);
    device_string(f->device, CL_DEVICE_OPENCL_C_VERSION, dev->cl_c_version, sizeof dev->cl_c_version);
    clGetPlatformInfo(f->platform, CL_PLATFORM_VERSION, sizeof dev->platform_version, dev->platform_version, NULL);
    dev->platform_version[sizeof dev->platform_version - 1] = '\0';
    dev->is_pocl = strstr(info->platform, "Portable Computing Language") != NULL;
    clGetDeviceInfo(f->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof dev->max_wg, &dev->max_wg, NULL);

    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)f->platform, 0};
    dev->cl_ctx = clCreateContext(props, 1, &f->device, NULL, NULL, &err);
    if (err != CL_SUCCESS)
        return kq_cl_fail(NULL, err, "clCreateContext");
    dev->queue = kq_create_queue(dev, false, &err);
    if (err != CL_SUCCESS)
        return kq_cl_fail(NULL, err, "clCreateCommandQueue");
    return choose_kernels(dev, info);
}

void kq_device_close(kq_device *dev)
{
    /* Work the caller never waited for may still run: let it end before its kernels, programs
     * and buffers go (PoCL 3.1's workers tidied a finished launch's kernel after kqcl had released
     * it and asserted, "pocl_release_dlhandle_cache: ... ref_count > 0", under load). */
    if (dev->queue)
        clFinish(dev->queue);
    kq_programs_release(dev);
    kq_scratch_release(dev);
    if (dev->queue)
        clReleaseCommandQueue(dev->queue);
    if (dev->cl_ctx)
        clReleaseContext(dev->cl_ctx);
}

kqcl_status kq_devices_open(kqcl_context *ctx, const char *spec)
{
    const found_device *found;
    const kqcl_device_info *infos;
    int n = 0, chosen[KQ_MAX_DEVICES], n_chosen = 0;
    kqcl_status st = discovered(&found, &infos, &n);
    if (st == KQCL_OK)
        st = choose_devices(spec, found, infos, n, chosen, &n_chosen);
    for (int i = 0; i < n_chosen && st == KQCL_OK; i++) {
        st = open_device(&ctx->devices[i], &found[chosen[i]], &infos[chosen[i]]);
        ctx->n_devices = i + 1; /* opened, or part-opened: closed by kq_device_close either way */
    }
    return st;
}

KQCL_API int kqcl_device_count(const kqcl_context *ctx) { return ctx ? ctx->n_devices : 0; }

KQCL_API kqcl_status kqcl_device_get_info(const kqcl_context *ctx, int index, kqcl_device_info *out)
{
    if (ctx == NULL || out == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_device_get_info: NULL argument");
    if (index < 0 || index >= ctx->n_devices)
        return kq_fail((kqcl_context *)ctx, KQCL_ERR_INVALID_ARG, "device index %d out of range 0..%d",
                       index, ctx->n_devices - 1);
    *out = ctx->devices[index].info;
    return KQCL_OK;
}
