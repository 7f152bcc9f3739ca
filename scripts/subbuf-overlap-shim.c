/*
 * subbuf-overlap-shim.c -- an LD_PRELOAD shim that reports every kernel launch given two
 * sub-buffers of one buffer that overlap in part (the use NVIDIA's driver 580 dies of:
 * doc/reliability.md, issue 20 rows 2 and 4). It records each sub-buffer's parent and range at
 * clCreateSubBuffer (a handle reused by clCreateBuffer is forgotten) and each kernel's cl_mem
 * arguments at clSetKernelArg, and checks them pairwise at clEnqueueNDRangeKernel; the first 40
 * reports go to stderr as "ovl: KERNEL args I [origin,+size) and J [origin,+size)".
 *   cc -O1 -shared -fPIC -o subbuf-overlap-shim.so scripts/subbuf-overlap-shim.c -ldl
 *   LD_PRELOAD="$PWD/subbuf-overlap-shim.so $(ldconfig -p | awk '/libOpenCL\.so\.1 / {print $NF; exit}')" CMD
 */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
typedef struct { cl_mem m, parent; size_t org, size; } sub;
static sub subs[1 << 16]; static int nsubs;
typedef struct { cl_kernel k; cl_mem a[32]; } kargs;
static kargs ks[4096]; static int nks;
static sub *find(cl_mem m) { for (int i = nsubs - 1; i >= 0; i--) if (subs[i].m == m) return &subs[i]; return NULL; }
cl_mem clCreateSubBuffer(cl_mem b, cl_mem_flags f, cl_buffer_create_type t, const void *info, cl_int *e)
{
    static cl_mem (*real)(cl_mem, cl_mem_flags, cl_buffer_create_type, const void *, cl_int *);
    if (!real) real = dlsym(RTLD_NEXT, "clCreateSubBuffer");
    cl_mem m = real(b, f, t, info, e);
    const cl_buffer_region *r = info;
    sub *s = find(m);
    if (!s && nsubs < (1 << 16)) s = &subs[nsubs++];
    if (s) { s->m = m; s->parent = b; s->org = r->origin; s->size = r->size; }
    return m;
}
cl_mem clCreateBuffer(cl_context c, cl_mem_flags f, size_t size, void *host, cl_int *e)
{
    static cl_mem (*real)(cl_context, cl_mem_flags, size_t, void *, cl_int *);
    if (!real) real = dlsym(RTLD_NEXT, "clCreateBuffer");
    cl_mem m = real(c, f, size, host, e);
    sub *s = find(m);
    if (s) s->m = NULL; /* a whole buffer now: not the sub-buffer this handle was */
    return m;
}
cl_int clSetKernelArg(cl_kernel k, cl_uint i, size_t sz, const void *v)
{
    static cl_int (*real)(cl_kernel, cl_uint, size_t, const void *);
    if (!real) real = dlsym(RTLD_NEXT, "clSetKernelArg");
    kargs *a = NULL;
    for (int j = 0; j < nks; j++) if (ks[j].k == k) a = &ks[j];
    if (!a && nks < 4096) { a = &ks[nks++]; memset(a, 0, sizeof *a); a->k = k; }
    if (a && i < 32) a->a[i] = (sz == sizeof(cl_mem) && v) ? *(const cl_mem *)v : NULL;
    return real(k, i, sz, v);
}
static long reports;
cl_int clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint d, const size_t *o, const size_t *g, const size_t *l, cl_uint n, const cl_event *w, cl_event *e)
{
    static cl_int (*real)(cl_command_queue, cl_kernel, cl_uint, const size_t *, const size_t *, const size_t *, cl_uint, const cl_event *, cl_event *);
    if (!real) real = dlsym(RTLD_NEXT, "clEnqueueNDRangeKernel");
    for (int j = 0; j < nks; j++) if (ks[j].k == k) {
        for (int x = 0; x < 32; x++) for (int y = x + 1; y < 32; y++) {
            sub *a = ks[j].a[x] ? find(ks[j].a[x]) : NULL, *b = ks[j].a[y] ? find(ks[j].a[y]) : NULL;
            if (!a || !b || a->parent != b->parent || a->m == b->m) continue;
            int overlap = a->org < b->org + b->size && b->org < a->org + a->size;
            int same = a->org == b->org && a->size == b->size;
            if (overlap && !same && reports++ < 40) {
                char name[128] = "?"; clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
                fprintf(stderr, "ovl: %s args %d [%zu,+%zu) and %d [%zu,+%zu)\n", name, x, a->org, a->size, y, b->org, b->size);
            }
        }
    }
    return real(q, k, d, o, g, l, n, w, e);
}
