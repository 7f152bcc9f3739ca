/*
 * clshim.c -- an LD_PRELOAD shim over the OpenCL API for the fault tests (tests/test_faults.c).
 *
 * It wraps the entry points kqcl uses and forwards them to the real ones (dlsym(RTLD_NEXT)),
 * with two additions:
 *
 *  - Fault injection. KQCL_SHIM_FAIL (read at load) or clshim_configure() takes a list of rules
 *    separated by ';', each FUNC:AFTER:ERROR[:COUNT]: the first AFTER calls of FUNC (counted
 *    from the configuration) go through, the next COUNT calls (0 or absent: all of them) fail
 *    with ERROR, a CL error name (CL_DEVICE_NOT_AVAILABLE, CL_OUT_OF_RESOURCES, ...) or a
 *    number, without reaching the driver. FUNC "*" stands for every wrapped call that can
 *    fail: a device that disappears.
 *    Example: KQCL_SHIM_FAIL='clEnqueueNDRangeKernel:2:CL_DEVICE_NOT_AVAILABLE;clFinish:0:-5:1'
 *
 *  - Object accounting. Every context, queue, buffer, program, kernel and event created through
 *    the API is tracked with its reference count (retains and releases included), so a test
 *    can assert that a create/use/destroy cycle leaves no OpenCL object behind
 *    (clshim_live). KQCL_SHIM_REPORT=1 prints what is still alive at exit.
 *
 *  - Other devices' figures. KQCL_SHIM_MAX_ALLOC_BYTES and KQCL_SHIM_GLOBAL_MEM_BYTES, when
 *    set, are what clGetDeviceInfo reports for CL_DEVICE_MAX_MEM_ALLOC_SIZE and
 *    CL_DEVICE_GLOBAL_MEM_SIZE of every device, so that a test written against the device's
 *    figures can be run as if on a device with others (an 8 GiB largest allocation, 512 GiB of
 *    memory) without one. The driver itself still has its own limits: only checks that refuse
 *    before any allocation can be exercised this way. kqcl reads the figures once a process, so
 *    they are set before it starts (tests/test_faults runs itself again with them).
 *
 *  - Launch counting. KQCL_SHIM_LAUNCHES=1 counts the kernels enqueued, by kernel name, and
 *    prints the counts at exit ("clshim: launches N", then "clshim: launches of NAME N"), and
 *    the calls of the other per-op entry points (sub-buffers, copies, reads, waits: "clshim:
 *    calls of FUNC N"): how many launches a decode step costs (scripts/ggml-launches.sh).
 *
 * Built as a libtool module (tests/.libs/clshim.so), not with the sanitizers: it is loaded
 * before everything else and must not pull in a sanitizer runtime of its own.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define CL_TARGET_OPENCL_VERSION 300
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHIM_API __attribute__((visibility("default")))

/* ---- the rules ------------------------------------------------------------------------------- */

typedef struct rule {
    char func[64];
    long after, count;
    long calls, failed;
    cl_int err;
} rule;

#define MAX_RULES 16
static rule rules[MAX_RULES];
static int n_rules;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Calls per wrapped function since the last configuration (failed ones included). */
#define MAX_FUNCS 64
static struct {
    const char *name;
    long calls;
} funcs[MAX_FUNCS];
static int n_funcs;

static const struct {
    const char *name;
    cl_int value;
} error_names[] = {
    {"CL_DEVICE_NOT_FOUND", CL_DEVICE_NOT_FOUND},
    {"CL_DEVICE_NOT_AVAILABLE", CL_DEVICE_NOT_AVAILABLE},
    {"CL_COMPILER_NOT_AVAILABLE", CL_COMPILER_NOT_AVAILABLE},
    {"CL_MEM_OBJECT_ALLOCATION_FAILURE", CL_MEM_OBJECT_ALLOCATION_FAILURE},
    {"CL_OUT_OF_RESOURCES", CL_OUT_OF_RESOURCES},
    {"CL_OUT_OF_HOST_MEMORY", CL_OUT_OF_HOST_MEMORY},
    {"CL_BUILD_PROGRAM_FAILURE", CL_BUILD_PROGRAM_FAILURE},
    {"CL_INVALID_COMMAND_QUEUE", CL_INVALID_COMMAND_QUEUE},
    {"CL_INVALID_CONTEXT", CL_INVALID_CONTEXT},
    {"CL_INVALID_BINARY", CL_INVALID_BINARY},
    {"CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST", CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST},
};

static int parse_rules(const char *spec)
{
    rule parsed[MAX_RULES];
    int n = 0;
    char copy[1024];
    if (spec == NULL)
        spec = "";
    if (strlen(spec) >= sizeof copy)
        return -1;
    strcpy(copy, spec);
    for (char *save = NULL, *item = strtok_r(copy, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        if (n == MAX_RULES)
            return -1;
        rule *r = &parsed[n];
        memset(r, 0, sizeof *r);
        char *save2 = NULL;
        char *f = strtok_r(item, ":", &save2), *after = strtok_r(NULL, ":", &save2);
        char *err = strtok_r(NULL, ":", &save2), *count = strtok_r(NULL, ":", &save2);
        if (f == NULL || after == NULL || err == NULL || strlen(f) >= sizeof r->func)
            return -1;
        strcpy(r->func, f);
        r->after = strtol(after, NULL, 10);
        r->count = count ? strtol(count, NULL, 10) : 0;
        r->err = 0;
        for (size_t i = 0; i < sizeof error_names / sizeof error_names[0]; i++)
            if (strcmp(err, error_names[i].name) == 0)
                r->err = error_names[i].value;
        if (r->err == 0)
            r->err = (cl_int)strtol(err, NULL, 10);
        if (r->err >= 0)
            return -1;
        n++;
    }
    pthread_mutex_lock(&lock);
    memcpy(rules, parsed, sizeof parsed[0] * (size_t)n);
    n_rules = n;
    for (int i = 0; i < n_funcs; i++)
        funcs[i].calls = 0;
    pthread_mutex_unlock(&lock);
    return 0;
}

/* Should this call of `func` fail? Returns the error, or CL_SUCCESS to go through. */
static cl_int injected(const char *func)
{
    cl_int err = CL_SUCCESS;
    pthread_mutex_lock(&lock);
    int f = 0;
    while (f < n_funcs && funcs[f].name != func)
        f++;
    if (f == n_funcs && n_funcs < MAX_FUNCS)
        funcs[n_funcs++].name = func;
    if (f < MAX_FUNCS)
        funcs[f].calls++;
    for (int i = 0; i < n_rules && err == CL_SUCCESS; i++) {
        rule *r = &rules[i];
        if (strcmp(r->func, func) != 0 && strcmp(r->func, "*") != 0)
            continue;
        if (r->calls++ >= r->after && (r->count == 0 || r->failed < r->count)) {
            r->failed++;
            err = r->err;
        }
    }
    pthread_mutex_unlock(&lock);
    return err;
}

/* ---- object accounting ---------------------------------------------------------------------- */

enum kind { K_CONTEXT, K_QUEUE, K_MEM, K_PROGRAM, K_KERNEL, K_EVENT, K_COUNT };
static const char *const kind_names[K_COUNT] = {"context", "queue", "mem", "program", "kernel", "event"};

typedef struct object {
    const void *handle;
    int kind;
    long refs;
} object;

static object *objects;
static size_t n_objects, cap_objects;

static void track_create(const void *handle, int kind)
{
    if (handle == NULL)
        return;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_objects; i++)
        if (objects[i].handle == handle) { /* a handle reused after our count reached 0 */
            objects[i].kind = kind;
            objects[i].refs = 1;
            pthread_mutex_unlock(&lock);
            return;
        }
    if (n_objects == cap_objects) {
        size_t cap = cap_objects ? 2 * cap_objects : 256;
        object *grown = realloc(objects, cap * sizeof *grown);
        if (grown == NULL) {
            pthread_mutex_unlock(&lock);
            return;
        }
        objects = grown;
        cap_objects = cap;
    }
    objects[n_objects++] = (object){handle, kind, 1};
    pthread_mutex_unlock(&lock);
}

/* delta +1 for a retain, -1 for a release; handles the shim did not see created are ignored. */
static void track_ref(const void *handle, long delta)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_objects; i++)
        if (objects[i].handle == handle) {
            objects[i].refs += delta;
            if (objects[i].refs <= 0)
                objects[i] = objects[--n_objects];
            break;
        }
    pthread_mutex_unlock(&lock);
}

/* ---- the public control interface (found by the tests with dlsym) ---------------------------- */

SHIM_API int clshim_configure(const char *spec) { return parse_rules(spec); }

/* References held on live objects of `kind` ("mem", "event", ...; NULL or "all": every kind). */
SHIM_API long clshim_live(const char *kind)
{
    long total = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_objects; i++)
        if (kind == NULL || strcmp(kind, "all") == 0 || strcmp(kind, kind_names[objects[i].kind]) == 0)
            total += objects[i].refs;
    pthread_mutex_unlock(&lock);
    return total;
}

/* Calls of `func` since the last clshim_configure, failed ones included. */
SHIM_API long clshim_calls(const char *func)
{
    long calls = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_funcs; i++)
        if (strcmp(funcs[i].name, func) == 0)
            calls = funcs[i].calls;
    pthread_mutex_unlock(&lock);
    return calls;
}

__attribute__((constructor)) static void shim_init(void)
{
    const char *spec = getenv("KQCL_SHIM_FAIL");
    if (spec && parse_rules(spec) != 0)
        fprintf(stderr, "clshim: cannot parse KQCL_SHIM_FAIL='%s'\n", spec);
}

/* ---- launch counting (KQCL_SHIM_LAUNCHES=1) ------------------------------------------------ */

#define MAX_KERNEL_NAMES 64
static struct {
    char name[64];
    long count;
} launch_names[MAX_KERNEL_NAMES];
static long launches;

static void count_launch(cl_kernel kernel)
{
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("KQCL_SHIM_LAUNCHES");
        on = e != NULL && strcmp(e, "1") == 0;
    }
    if (!on)
        return;
    char name[64] = "?";
    clGetKernelInfo(kernel, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
    name[sizeof name - 1] = '\0';
    pthread_mutex_lock(&lock);
    launches++;
    for (int i = 0; i < MAX_KERNEL_NAMES; i++)
        if (launch_names[i].count == 0 || strcmp(launch_names[i].name, name) == 0) {
            if (launch_names[i].count == 0)
                memcpy(launch_names[i].name, name, sizeof name);
            launch_names[i].count++;
            break;
        }
    pthread_mutex_unlock(&lock);
}

__attribute__((destructor)) static void shim_report_launches(void)
{
    const char *e = getenv("KQCL_SHIM_LAUNCHES");
    if (e == NULL || strcmp(e, "1") != 0)
        return;
    fprintf(stderr, "clshim: launches %ld\n", launches);
    for (int i = 0; i < MAX_KERNEL_NAMES && launch_names[i].count > 0; i++)
        fprintf(stderr, "clshim: launches of %s %ld\n", launch_names[i].name, launch_names[i].count);
    /* the other calls that cost the host per op: sub-buffers (views), copies, waits */
    for (int i = 0; i < n_funcs; i++)
        if (strncmp(funcs[i].name, "clEnqueueNDRange", 16) != 0 && strncmp(funcs[i].name, "clSetKernelArg", 14) != 0 &&
            (strncmp(funcs[i].name, "clEnqueue", 9) == 0 || strcmp(funcs[i].name, "clCreateSubBuffer") == 0 ||
             strcmp(funcs[i].name, "clFinish") == 0))
            fprintf(stderr, "clshim: calls of %s %ld\n", funcs[i].name, funcs[i].calls);
}

__attribute__((destructor)) static void shim_report(void)
{
    const char *report = getenv("KQCL_SHIM_REPORT");
    if (report == NULL || strcmp(report, "1") != 0)
        return;
    for (int k = 0; k < K_COUNT; k++) {
        long refs = 0;
        for (size_t i = 0; i < n_objects; i++)
            if (objects[i].kind == k)
                refs += objects[i].refs;
        fprintf(stderr, "clshim: %ld %s reference(s) alive at exit\n", refs, kind_names[k]);
    }
}

/* ---- the wrappers ------------------------------------------------------------------------------ */

static void *real(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (p == NULL) {
        fprintf(stderr, "clshim: %s not found in the next object\n", name);
        abort();
    }
    return p;
}

/* The real entry point, looked up once. */
#define REAL(fn)                                                                                        \
    static __typeof__(&fn) real_fn;                                                                     \
    if (real_fn == NULL)                                                                                \
        real_fn = (__typeof__(&fn))real(#fn)

/* Fail a call returning cl_int. */
#define FAIL_INT(fn)                                                                                    \
    do {                                                                                                \
        cl_int e_ = injected(#fn);                                                                      \
        if (e_ != CL_SUCCESS)                                                                           \
            return e_;                                                                                  \
    } while (0)

/* Fail a call returning an object through errcode_ret. */
#define FAIL_OBJ(fn)                                                                                    \
    do {                                                                                                \
        cl_int e_ = injected(#fn);                                                                      \
        if (e_ != CL_SUCCESS) {                                                                         \
            if (errcode_ret)                                                                            \
                *errcode_ret = e_;                                                                      \
            return NULL;                                                                                \
        }                                                                                               \
    } while (0)

static void track_event(cl_int err, cl_event *event)
{
    if (err == CL_SUCCESS && event != NULL)
        track_create(*event, K_EVENT);
}

SHIM_API cl_int clGetDeviceIDs(cl_platform_id platform, cl_device_type type, cl_uint num_entries,
                               cl_device_id *devices, cl_uint *num_devices)
{
    REAL(clGetDeviceIDs);
    FAIL_INT(clGetDeviceIDs);
    return real_fn(platform, type, num_entries, devices, num_devices);
}

/* The figure environment variable `env` asks for, if it is set to a number. */
static bool figure_from_env(const char *env, cl_ulong *value)
{
    const char *s = getenv(env);
    if (s == NULL || *s == '\0')
        return false;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0')
        return false;
    *value = (cl_ulong)v;
    return true;
}

/* A device query answered with a simulated figure where one is set (see the top of the file). */
static bool simulated_figure(cl_device_info what, size_t size, void *value, size_t *size_ret)
{
    cl_ulong figure;
    bool simulated = (what == CL_DEVICE_MAX_MEM_ALLOC_SIZE && figure_from_env("KQCL_SHIM_MAX_ALLOC_BYTES", &figure)) ||
                     (what == CL_DEVICE_GLOBAL_MEM_SIZE && figure_from_env("KQCL_SHIM_GLOBAL_MEM_BYTES", &figure));
    if (!simulated || (value != NULL && size < sizeof figure))
        return false; /* a query the driver answers (or refuses) itself */
    if (value != NULL)
        memcpy(value, &figure, sizeof figure);
    if (size_ret != NULL)
        *size_ret = sizeof figure;
    return true;
}

SHIM_API cl_int clGetDeviceInfo(cl_device_id device, cl_device_info param_name, size_t param_value_size,
                                void *param_value, size_t *param_value_size_ret)
{
    REAL(clGetDeviceInfo);
    if (simulated_figure(param_name, param_value_size, param_value, param_value_size_ret))
        return CL_SUCCESS;
    return real_fn(device, param_name, param_value_size, param_value, param_value_size_ret);
}

SHIM_API cl_context clCreateContext(const cl_context_properties *properties, cl_uint num_devices,
                                    const cl_device_id *devices,
                                    void(CL_CALLBACK *pfn_notify)(const char *, const void *, size_t, void *),
                                    void *user_data, cl_int *errcode_ret)
{
    REAL(clCreateContext);
    FAIL_OBJ(clCreateContext);
    cl_context c = real_fn(properties, num_devices, devices, pfn_notify, user_data, errcode_ret);
    track_create(c, K_CONTEXT);
    return c;
}

SHIM_API cl_int clRetainContext(cl_context c)
{
    REAL(clRetainContext);
    cl_int err = real_fn(c);
    if (err == CL_SUCCESS)
        track_ref(c, +1);
    return err;
}

SHIM_API cl_int clReleaseContext(cl_context c)
{
    REAL(clReleaseContext);
    track_ref(c, -1);
    return real_fn(c);
}

#ifdef __GNUC__
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
SHIM_API cl_command_queue clCreateCommandQueue(cl_context context, cl_device_id device,
                                               cl_command_queue_properties properties, cl_int *errcode_ret)
{
    REAL(clCreateCommandQueue);
    FAIL_OBJ(clCreateCommandQueue);
    cl_command_queue q = real_fn(context, device, properties, errcode_ret);
    track_create(q, K_QUEUE);
    return q;
}
#ifdef __GNUC__
#pragma GCC diagnostic pop
#endif

SHIM_API cl_command_queue clCreateCommandQueueWithProperties(cl_context context, cl_device_id device,
                                                             const cl_queue_properties *properties,
                                                             cl_int *errcode_ret)
{
    REAL(clCreateCommandQueueWithProperties);
    FAIL_OBJ(clCreateCommandQueueWithProperties);
    cl_command_queue q = real_fn(context, device, properties, errcode_ret);
    track_create(q, K_QUEUE);
    return q;
}

SHIM_API cl_int clRetainCommandQueue(cl_command_queue q)
{
    REAL(clRetainCommandQueue);
    cl_int err = real_fn(q);
    if (err == CL_SUCCESS)
        track_ref(q, +1);
    return err;
}

SHIM_API cl_int clReleaseCommandQueue(cl_command_queue q)
{
    REAL(clReleaseCommandQueue);
    track_ref(q, -1);
    return real_fn(q);
}

SHIM_API cl_mem clCreateBuffer(cl_context context, cl_mem_flags flags, size_t size, void *host_ptr,
                               cl_int *errcode_ret)
{
    REAL(clCreateBuffer);
    FAIL_OBJ(clCreateBuffer);
    cl_mem m = real_fn(context, flags, size, host_ptr, errcode_ret);
    track_create(m, K_MEM);
    return m;
}

SHIM_API cl_mem clCreateSubBuffer(cl_mem buffer, cl_mem_flags flags, cl_buffer_create_type type,
                                  const void *info, cl_int *errcode_ret)
{
    REAL(clCreateSubBuffer);
    FAIL_OBJ(clCreateSubBuffer);
    cl_mem m = real_fn(buffer, flags, type, info, errcode_ret);
    track_create(m, K_MEM);
    return m;
}

SHIM_API cl_int clRetainMemObject(cl_mem m)
{
    REAL(clRetainMemObject);
    cl_int err = real_fn(m);
    if (err == CL_SUCCESS)
        track_ref(m, +1);
    return err;
}

SHIM_API cl_int clReleaseMemObject(cl_mem m)
{
    REAL(clReleaseMemObject);
    track_ref(m, -1);
    return real_fn(m);
}

SHIM_API cl_program clCreateProgramWithSource(cl_context context, cl_uint count, const char **strings,
                                              const size_t *lengths, cl_int *errcode_ret)
{
    REAL(clCreateProgramWithSource);
    FAIL_OBJ(clCreateProgramWithSource);
    cl_program p = real_fn(context, count, strings, lengths, errcode_ret);
    track_create(p, K_PROGRAM);
    return p;
}

SHIM_API cl_program clCreateProgramWithBinary(cl_context context, cl_uint num_devices,
                                              const cl_device_id *device_list, const size_t *lengths,
                                              const unsigned char **binaries, cl_int *binary_status,
                                              cl_int *errcode_ret)
{
    REAL(clCreateProgramWithBinary);
    FAIL_OBJ(clCreateProgramWithBinary);
    cl_program p = real_fn(context, num_devices, device_list, lengths, binaries, binary_status, errcode_ret);
    track_create(p, K_PROGRAM);
    return p;
}

SHIM_API cl_int clBuildProgram(cl_program program, cl_uint num_devices, const cl_device_id *device_list,
                               const char *options, void(CL_CALLBACK *pfn_notify)(cl_program, void *),
                               void *user_data)
{
    REAL(clBuildProgram);
    FAIL_INT(clBuildProgram);
    return real_fn(program, num_devices, device_list, options, pfn_notify, user_data);
}

SHIM_API cl_int clRetainProgram(cl_program p)
{
    REAL(clRetainProgram);
    cl_int err = real_fn(p);
    if (err == CL_SUCCESS)
        track_ref(p, +1);
    return err;
}

SHIM_API cl_int clReleaseProgram(cl_program p)
{
    REAL(clReleaseProgram);
    track_ref(p, -1);
    return real_fn(p);
}

SHIM_API cl_kernel clCreateKernel(cl_program program, const char *name, cl_int *errcode_ret)
{
    REAL(clCreateKernel);
    FAIL_OBJ(clCreateKernel);
    cl_kernel k = real_fn(program, name, errcode_ret);
    track_create(k, K_KERNEL);
    return k;
}

SHIM_API cl_int clRetainKernel(cl_kernel k)
{
    REAL(clRetainKernel);
    cl_int err = real_fn(k);
    if (err == CL_SUCCESS)
        track_ref(k, +1);
    return err;
}

SHIM_API cl_int clReleaseKernel(cl_kernel k)
{
    REAL(clReleaseKernel);
    track_ref(k, -1);
    return real_fn(k);
}

SHIM_API cl_int clSetKernelArg(cl_kernel kernel, cl_uint index, size_t size, const void *value)
{
    REAL(clSetKernelArg);
    FAIL_INT(clSetKernelArg);
    return real_fn(kernel, index, size, value);
}

SHIM_API cl_event clCreateUserEvent(cl_context context, cl_int *errcode_ret)
{
    REAL(clCreateUserEvent);
    FAIL_OBJ(clCreateUserEvent);
    cl_event e = real_fn(context, errcode_ret);
    track_create(e, K_EVENT);
    return e;
}

SHIM_API cl_int clRetainEvent(cl_event e)
{
    REAL(clRetainEvent);
    cl_int err = real_fn(e);
    if (err == CL_SUCCESS)
        track_ref(e, +1);
    return err;
}

SHIM_API cl_int clReleaseEvent(cl_event e)
{
    REAL(clReleaseEvent);
    track_ref(e, -1);
    return real_fn(e);
}

SHIM_API cl_int clWaitForEvents(cl_uint num_events, const cl_event *events)
{
    REAL(clWaitForEvents);
    FAIL_INT(clWaitForEvents);
    return real_fn(num_events, events);
}

SHIM_API cl_int clFinish(cl_command_queue queue)
{
    REAL(clFinish);
    FAIL_INT(clFinish);
    return real_fn(queue);
}

SHIM_API cl_int clFlush(cl_command_queue queue)
{
    REAL(clFlush);
    FAIL_INT(clFlush);
    return real_fn(queue);
}

SHIM_API cl_int clEnqueueNDRangeKernel(cl_command_queue queue, cl_kernel kernel, cl_uint work_dim,
                                       const size_t *global_work_offset, const size_t *global_work_size,
                                       const size_t *local_work_size, cl_uint num_events_in_wait_list,
                                       const cl_event *event_wait_list, cl_event *event)
{
    REAL(clEnqueueNDRangeKernel);
    FAIL_INT(clEnqueueNDRangeKernel);
    count_launch(kernel);
    cl_int err = real_fn(queue, kernel, work_dim, global_work_offset, global_work_size, local_work_size,
                         num_events_in_wait_list, event_wait_list, event);
    track_event(err, event);
    return err;
}

SHIM_API cl_int clEnqueueReadBuffer(cl_command_queue queue, cl_mem buffer, cl_bool blocking, size_t offset,
                                    size_t size, void *ptr, cl_uint num_events_in_wait_list,
                                    const cl_event *event_wait_list, cl_event *event)
{
    REAL(clEnqueueReadBuffer);
    FAIL_INT(clEnqueueReadBuffer);
    cl_int err = real_fn(queue, buffer, blocking, offset, size, ptr, num_events_in_wait_list, event_wait_list, event);
    track_event(err, event);
    return err;
}

SHIM_API cl_int clEnqueueWriteBuffer(cl_command_queue queue, cl_mem buffer, cl_bool blocking, size_t offset,
                                     size_t size, const void *ptr, cl_uint num_events_in_wait_list,
                                     const cl_event *event_wait_list, cl_event *event)
{
    REAL(clEnqueueWriteBuffer);
    FAIL_INT(clEnqueueWriteBuffer);
    cl_int err = real_fn(queue, buffer, blocking, offset, size, ptr, num_events_in_wait_list, event_wait_list, event);
    track_event(err, event);
    return err;
}

SHIM_API cl_int clEnqueueReadBufferRect(cl_command_queue queue, cl_mem buffer, cl_bool blocking,
                                        const size_t *buffer_origin, const size_t *host_origin,
                                        const size_t *region, size_t buffer_row_pitch, size_t buffer_slice_pitch,
                                        size_t host_row_pitch, size_t host_slice_pitch, void *ptr,
                                        cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                                        cl_event *event)
{
    REAL(clEnqueueReadBufferRect);
    FAIL_INT(clEnqueueReadBufferRect);
    cl_int err = real_fn(queue, buffer, blocking, buffer_origin, host_origin, region, buffer_row_pitch,
                         buffer_slice_pitch, host_row_pitch, host_slice_pitch, ptr, num_events_in_wait_list,
                         event_wait_list, event);
    track_event(err, event);
    return err;
}

SHIM_API cl_int clEnqueueWriteBufferRect(cl_command_queue queue, cl_mem buffer, cl_bool blocking,
                                         const size_t *buffer_origin, const size_t *host_origin,
                                         const size_t *region, size_t buffer_row_pitch,
                                         size_t buffer_slice_pitch, size_t host_row_pitch,
                                         size_t host_slice_pitch, const void *ptr,
                                         cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                                         cl_event *event)
{
    REAL(clEnqueueWriteBufferRect);
    FAIL_INT(clEnqueueWriteBufferRect);
    cl_int err = real_fn(queue, buffer, blocking, buffer_origin, host_origin, region, buffer_row_pitch,
                         buffer_slice_pitch, host_row_pitch, host_slice_pitch, ptr, num_events_in_wait_list,
                         event_wait_list, event);
    track_event(err, event);
    return err;
}

SHIM_API cl_int clEnqueueCopyBuffer(cl_command_queue queue, cl_mem src, cl_mem dst, size_t src_offset,
                                    size_t dst_offset, size_t size, cl_uint num_events_in_wait_list,
                                    const cl_event *event_wait_list, cl_event *event)
{
    REAL(clEnqueueCopyBuffer);
    FAIL_INT(clEnqueueCopyBuffer);
    cl_int err = real_fn(queue, src, dst, src_offset, dst_offset, size, num_events_in_wait_list, event_wait_list,
                         event);
    track_event(err, event);
    return err;
}

SHIM_API cl_int clEnqueueFillBuffer(cl_command_queue queue, cl_mem buffer, const void *pattern,
                                    size_t pattern_size, size_t offset, size_t size,
                                    cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                                    cl_event *event)
{
    REAL(clEnqueueFillBuffer);
    FAIL_INT(clEnqueueFillBuffer);
    cl_int err = real_fn(queue, buffer, pattern, pattern_size, offset, size, num_events_in_wait_list,
                         event_wait_list, event);
    track_event(err, event);
    return err;
}

SHIM_API void *clEnqueueMapBuffer(cl_command_queue queue, cl_mem buffer, cl_bool blocking, cl_map_flags flags,
                                  size_t offset, size_t size, cl_uint num_events_in_wait_list,
                                  const cl_event *event_wait_list, cl_event *event, cl_int *errcode_ret)
{
    REAL(clEnqueueMapBuffer);
    FAIL_OBJ(clEnqueueMapBuffer);
    cl_int err = CL_SUCCESS;
    void *p = real_fn(queue, buffer, blocking, flags, offset, size, num_events_in_wait_list, event_wait_list,
                      event, &err);
    if (errcode_ret)
        *errcode_ret = err;
    track_event(err, event);
    return p;
}

SHIM_API cl_int clEnqueueUnmapMemObject(cl_command_queue queue, cl_mem memobj, void *mapped_ptr,
                                        cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                                        cl_event *event)
{
    REAL(clEnqueueUnmapMemObject);
    FAIL_INT(clEnqueueUnmapMemObject);
    cl_int err = real_fn(queue, memobj, mapped_ptr, num_events_in_wait_list, event_wait_list, event);
    track_event(err, event);
    return err;
}

SHIM_API cl_int clEnqueueMarkerWithWaitList(cl_command_queue queue, cl_uint num_events_in_wait_list,
                                            const cl_event *event_wait_list, cl_event *event)
{
    REAL(clEnqueueMarkerWithWaitList);
    FAIL_INT(clEnqueueMarkerWithWaitList);
    cl_int err = real_fn(queue, num_events_in_wait_list, event_wait_list, event);
    track_event(err, event);
    return err;
}

SHIM_API cl_int clEnqueueBarrierWithWaitList(cl_command_queue queue, cl_uint num_events_in_wait_list,
                                             const cl_event *event_wait_list, cl_event *event)
{
    REAL(clEnqueueBarrierWithWaitList);
    FAIL_INT(clEnqueueBarrierWithWaitList);
    cl_int err = real_fn(queue, num_events_in_wait_list, event_wait_list, event);
    track_event(err, event);
    return err;
}
