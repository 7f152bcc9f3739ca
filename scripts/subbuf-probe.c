/*
 * subbuf-probe.c -- which use of long-lived OpenCL sub-buffers the driver survives, on the first
 * GPU (else the first device): each way runs in a child process of its own and is reported as
 * "ok" or the signal it died of. Not part of kqcl; a fault-finding aid for doc/reliability.md
 * (views kept for reuse crashed NVIDIA's clReleaseMemObject when their buffer went, 2026-12-07).
 *
 *   cc -O2 -o subbuf-probe scripts/subbuf-probe.c -lOpenCL && ./subbuf-probe
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOTS_MAX 8192
#define OPS 3000
#define KERNELS 4

#define CHECK(x)                                                                                                    \
    do {                                                                                                            \
        cl_int e_ = (x);                                                                                            \
        if (e_ != CL_SUCCESS) {                                                                                     \
            fprintf(stderr, "%s:%d: %s -> %d\n", __FILE__, __LINE__, #x, e_);                                        \
            exit(3);                                                                                                \
        }                                                                                                           \
    } while (0)

static const char *source =
    "__kernel void k0(__global float *a, __global const float *b) { size_t i = get_global_id(0); a[i] = a[i] * 0.5f + b[i]; }\n"
    "__kernel void k1(__global float *a, __global const float *b) { size_t i = get_global_id(0); a[i] += b[i]; }\n"
    "__kernel void k2(__global float *a, __global const float *b) { size_t i = get_global_id(0); a[i] = b[i] - a[i]; }\n"
    "__kernel void k3(__global float *a, __global const float *b) { size_t i = get_global_id(0); a[i] = b[i]; }\n";

static cl_device_id device;
static cl_context ctx;
static cl_command_queue queue;
static cl_kernel kernels[KERNELS];
static size_t align_bytes;

static void open_device(void)
{
    cl_platform_id platforms[8];
    cl_uint n = 0;
    CHECK(clGetPlatformIDs(8, platforms, &n));
    device = NULL;
    for (cl_uint p = 0; p < n && device == NULL; p++)
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_GPU, 1, &device, NULL) != CL_SUCCESS)
            device = NULL;
    if (device == NULL)
        CHECK(clGetDeviceIDs(platforms[0], CL_DEVICE_TYPE_ALL, 1, &device, NULL));
    cl_uint bits;
    CHECK(clGetDeviceInfo(device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits, &bits, NULL));
    align_bytes = bits / 8;
    cl_int err;
    ctx = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    CHECK(err);
    queue = clCreateCommandQueue(ctx, device, 0, &err);
    CHECK(err);
    cl_program prog = clCreateProgramWithSource(ctx, 1, &source, NULL, &err);
    CHECK(err);
    CHECK(clBuildProgram(prog, 1, &device, "", NULL, NULL));
    for (int i = 0; i < KERNELS; i++) {
        char name[8];
        snprintf(name, sizeof name, "k%d", i);
        kernels[i] = clCreateKernel(prog, name, &err);
        CHECK(err);
    }
}

typedef struct way {
    const char *name;
    int kept;          /* sub-buffers made once and reused (else made and released per op) */
    int alias;         /* an op may take one sub-buffer as both arguments */
    int overlap;       /* the kept ranges overlap */
    int parent_first;  /* the parent released before the kept sub-buffers */
    int no_finish;     /* released without waiting for the queue */
    int copies;        /* reads and copies through the sub-buffers as well */
    int unbind;        /* the kernels' arguments pointed elsewhere before the release */
    int kernel_count;  /* kernels used */
    int slots;         /* ranges (at most SLOTS_MAX) */
    int growing;       /* range s is s + 1 units from 0, as a KV cache's views a token */
    int replace;       /* kept: op i views [0, i % slots + 1 units), replacing the range before
                        * (released), beside one kept range apart: kqcl's table since 0001db8's
                        * successor */
} way;

static cl_mem make_sub(cl_mem parent, size_t offset, size_t bytes)
{
    cl_buffer_region r = {offset, bytes};
    cl_int err;
    cl_mem s = clCreateSubBuffer(parent, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r, &err);
    CHECK(err);
    return s;
}

static size_t slot_offset(const way *w, int s) { return w->growing ? 0 : (size_t)s * align_bytes; }

static size_t slot_bytes(const way *w, int s)
{
    return (w->growing ? (size_t)s + 1 : w->overlap ? 1 + (size_t)s % 7 : 1) * align_bytes;
}

static void run(const way *w)
{
    open_device();
    const int SLOTS = w->slots;
    const size_t total = (SLOTS + 8) * align_bytes;
    cl_int err;
    cl_mem parent = clCreateBuffer(ctx, CL_MEM_READ_WRITE, total, NULL, &err);
    CHECK(err);
    float zero = 0;
    CHECK(clEnqueueFillBuffer(queue, parent, &zero, sizeof zero, 0, total, 0, NULL, NULL));
    static cl_mem subs[SLOTS_MAX];
    if (w->kept)
        for (int s = 0; s < SLOTS; s++)
            subs[s] = make_sub(parent, slot_offset(w, s), slot_bytes(w, s));
    srand(7);
    float host[4096];
    if (w->replace) {
        cl_mem apart = make_sub(parent, (size_t)(SLOTS + 4) * align_bytes, align_bytes), now = NULL;
        for (int op = 0; op < OPS; op++) {
            if (op % 3 == 0) { /* a new length: the kept one replaced */
                if (now != NULL)
                    CHECK(clReleaseMemObject(now));
                now = make_sub(parent, 0, (size_t)(op / 3 % SLOTS + 1) * align_bytes);
            }
            cl_kernel k = kernels[op % w->kernel_count];
            CHECK(clSetKernelArg(k, 0, sizeof apart, &apart));
            CHECK(clSetKernelArg(k, 1, sizeof now, &now));
            size_t global = align_bytes / sizeof(float);
            CHECK(clEnqueueNDRangeKernel(queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
        }
        CHECK(clFinish(queue));
        CHECK(clReleaseMemObject(now));
        CHECK(clReleaseMemObject(apart));
        CHECK(clReleaseMemObject(parent));
        CHECK(clFinish(queue));
        exit(0);
    }
    for (int op = 0; op < OPS; op++) {
        int a = rand() % SLOTS, b = rand() % SLOTS;
        if (!w->alias && a == b)
            b = (a + 1) % SLOTS;
        cl_mem ma = w->kept ? subs[a] : make_sub(parent, slot_offset(w, a), slot_bytes(w, a));
        cl_mem mb = w->kept ? subs[b] : (a == b ? (clRetainMemObject(ma), ma)
                                                : make_sub(parent, slot_offset(w, b), slot_bytes(w, b)));
        cl_kernel k = kernels[op % w->kernel_count];
        CHECK(clSetKernelArg(k, 0, sizeof ma, &ma));
        CHECK(clSetKernelArg(k, 1, sizeof mb, &mb));
        size_t global = align_bytes / sizeof(float);
        CHECK(clEnqueueNDRangeKernel(queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
        if (w->copies && op % 16 == 0) {
            CHECK(clEnqueueReadBuffer(queue, mb, CL_TRUE, 0, align_bytes, host, 0, NULL, NULL));
            CHECK(clEnqueueCopyBuffer(queue, parent, parent, (size_t)a * align_bytes, (size_t)SLOTS * align_bytes,
                                      align_bytes, 0, NULL, NULL));
            CHECK(clEnqueueFillBuffer(queue, parent, &zero, sizeof zero, (size_t)(SLOTS + 1) * align_bytes,
                                      align_bytes, 0, NULL, NULL));
            CHECK(clEnqueueWriteBuffer(queue, parent, CL_TRUE, (size_t)(SLOTS + 2) * align_bytes, align_bytes, host, 0,
                                       NULL, NULL));
            if (!w->growing && abs(a - b) >= 8) /* ranges apart (a kept range spans at most 7 slots) */
                CHECK(clEnqueueCopyBuffer(queue, mb, ma, 0, 0, align_bytes / 2, 0, NULL, NULL));
        }
        if (!w->kept) {
            CHECK(clReleaseMemObject(ma));
            CHECK(clReleaseMemObject(mb));
        }
    }
    if (!w->no_finish)
        CHECK(clFinish(queue));
    if (w->unbind) {
        cl_mem dummy = clCreateBuffer(ctx, CL_MEM_READ_WRITE, align_bytes, NULL, &err);
        CHECK(err);
        for (int i = 0; i < KERNELS; i++) {
            CHECK(clSetKernelArg(kernels[i], 0, sizeof dummy, &dummy));
            CHECK(clSetKernelArg(kernels[i], 1, sizeof dummy, &dummy));
        }
    }
    if (w->parent_first)
        CHECK(clReleaseMemObject(parent));
    if (w->kept)
        for (int s = 0; s < SLOTS; s++)
            CHECK(clReleaseMemObject(subs[s]));
    if (!w->parent_first)
        CHECK(clReleaseMemObject(parent));
    CHECK(clFinish(queue));
    exit(0);
}

int main(void)
{
    static const way ways[] = {
        {"fresh sub-buffers per op", 0, 0, 0, 0, 0, 0, 0, 1, 64, 0, 0},
        {"fresh, aliased, overlapping, copies, 4 kernels", 0, 1, 1, 0, 0, 1, 0, 4, 64, 0, 0},
        {"kept", 1, 0, 0, 0, 0, 0, 0, 1, 64, 0, 0},
        {"kept, 4 kernels", 1, 0, 0, 0, 0, 0, 0, 4, 64, 0, 0},
        {"kept, aliased", 1, 1, 0, 0, 0, 0, 0, 1, 64, 0, 0},
        {"kept, overlapping", 1, 0, 1, 0, 0, 0, 0, 1, 64, 0, 0},
        {"kept, copies", 1, 0, 0, 0, 0, 1, 0, 1, 64, 0, 0},
        {"kept, parent first", 1, 0, 0, 1, 0, 0, 0, 1, 64, 0, 0},
        {"kept, no finish", 1, 0, 0, 0, 1, 0, 0, 1, 64, 0, 0},
        {"kept, aliased, overlapping, copies, 4 kernels", 1, 1, 1, 0, 0, 1, 0, 4, 64, 0, 0},
        {"kept, all of it, kernels unbound first", 1, 1, 1, 0, 0, 1, 1, 4, 64, 0, 0},
        {"kept, 8000 ranges", 1, 0, 0, 0, 0, 0, 0, 1, 8000, 0, 0},
        {"kept, 8000 ranges, copies, 4 kernels", 1, 1, 0, 0, 0, 1, 0, 4, 8000, 0, 0},
        {"kept, 200 growing from 0 (a KV cache)", 1, 1, 0, 0, 0, 1, 0, 4, 200, 1, 0},
        {"fresh, 200 growing from 0", 0, 1, 0, 0, 0, 1, 0, 4, 200, 1, 0},
        {"kept, growing from 0, each length replacing the last", 1, 0, 0, 0, 0, 0, 0, 4, 200, 0, 1},
    };
    for (size_t i = 0; i < sizeof ways / sizeof ways[0]; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(20); /* a stalled driver (it happened) ends the way, not the probe */
            run(&ways[i]);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status))
            printf("%-48s died: %s\n", ways[i].name, strsignal(WTERMSIG(status)));
        else
            printf("%-48s %s\n", ways[i].name, WEXITSTATUS(status) == 0 ? "ok" : "failed (rc 3: a CL error)");
    }
    return 0;
}
