/*
 * subbuf-overlap-shim.c -- an LD_PRELOAD shim that reports every kernel launch given two
 * sub-buffers of one buffer that overlap in part (the use NVIDIA's driver 580 dies of:
 * doc/reliability.md, issue 20 rows 2 and 4), or a memory object the program had released
 * already (its references counted from clCreateBuffer/clCreateSubBuffer, clRetainMemObject and
 * clReleaseMemObject). It records each sub-buffer's parent and range at clCreateSubBuffer and
 * each kernel's cl_mem arguments at clSetKernelArg, and checks them at clEnqueueNDRangeKernel;
 * the first 40 reports go to stderr as "ovl: KERNEL args I [origin,+size) and J [origin,+size)"
 * or "ovl: KERNEL arg I released". With OVL_TRACE=1 every launch is told on stderr before it is
 * handed on ("ovl-launch N: KERNEL global/local, each memory argument's [origin,+size) and
 * parent, the program's options"), and every release of a sub-buffer ("ovl-release"), so that
 * the last line before a crash in the driver names it.
 *   cc -O1 -shared -fPIC -o subbuf-overlap-shim.so scripts/subbuf-overlap-shim.c -ldl
 *   LD_PRELOAD="$PWD/subbuf-overlap-shim.so $(ldconfig -p | awk '/libOpenCL\.so\.1 / {print $NF; exit}')" CMD
 */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct { cl_mem m, parent; size_t org, size; long refs; } sub; /* parent NULL: a buffer */
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
    if (s && m) { s->m = m; s->parent = b; s->org = r->origin; s->size = r->size; s->refs = 1; }
    return m;
}
cl_mem clCreateBuffer(cl_context c, cl_mem_flags f, size_t size, void *host, cl_int *e)
{
    static cl_mem (*real)(cl_context, cl_mem_flags, size_t, void *, cl_int *);
    if (!real) real = dlsym(RTLD_NEXT, "clCreateBuffer");
    cl_mem m = real(c, f, size, host, e);
    sub *s = find(m);
    if (!s && m && nsubs < (1 << 16)) s = &subs[nsubs++];
    if (s && m) { s->m = m; s->parent = NULL; s->org = 0; s->size = size; s->refs = 1; } /* a handle reused */
    return m;
}
cl_int clRetainMemObject(cl_mem m)
{
    static cl_int (*real)(cl_mem);
    if (!real) real = dlsym(RTLD_NEXT, "clRetainMemObject");
    sub *s = find(m);
    if (s) s->refs++;
    return real(m);
}
cl_int clReleaseMemObject(cl_mem m)
{
    static cl_int (*real)(cl_mem);
    if (!real) real = dlsym(RTLD_NEXT, "clReleaseMemObject");
    sub *s = find(m);
    if (s) s->refs--;
    if (s && s->parent && getenv("OVL_TRACE") && strcmp(getenv("OVL_TRACE"), "1") == 0) /* before a crash in it */
        fprintf(stderr, "ovl-release [%zu,+%zu)@%p r%ld\n", s->org, s->size, (void *)s->parent, s->refs), fflush(stderr);
    return real(m);
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
static long reports, launches;
static void trace(cl_kernel k, const kargs *a, cl_uint d, const size_t *g, const size_t *l)
{
    char name[128] = "?", opts[1024] = "";
    cl_program p = NULL;
    cl_device_id dev = NULL;
    clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
    clGetKernelInfo(k, CL_KERNEL_PROGRAM, sizeof p, &p, NULL);
    if (p && clGetProgramInfo(p, CL_PROGRAM_DEVICES, sizeof dev, &dev, NULL) == CL_SUCCESS)
        clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_OPTIONS, sizeof opts, opts, NULL);
    fprintf(stderr, "ovl-launch %ld: %s g %zu l %zu (%u dims)", launches, name, g ? g[0] : 0, l ? l[0] : 0, d);
    for (int x = 0; a && x < 32; x++) {
        sub *s = a->a[x] ? find(a->a[x]) : NULL;
        if (s)
            fprintf(stderr, " a%d=[%zu,+%zu)%s%p r%ld", x, s->org, s->size, s->parent ? "@" : "#",
                    s->parent ? (void *)s->parent : (void *)s->m, s->refs);
    }
    fprintf(stderr, " | %s\n", opts);
}
cl_int clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint d, const size_t *o, const size_t *g, const size_t *l, cl_uint n, const cl_event *w, cl_event *e)
{
    static cl_int (*real)(cl_command_queue, cl_kernel, cl_uint, const size_t *, const size_t *, const size_t *, cl_uint, const cl_event *, cl_event *);
    static int tracing = -1;
    if (!real) real = dlsym(RTLD_NEXT, "clEnqueueNDRangeKernel");
    if (tracing < 0) tracing = getenv("OVL_TRACE") && strcmp(getenv("OVL_TRACE"), "1") == 0;
    kargs *args = NULL;
    for (int j = 0; j < nks; j++) if (ks[j].k == k) args = &ks[j];
    char name[128] = "?";
    if (args) clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
    for (int x = 0; args && x < 32; x++) {
        sub *a = args->a[x] ? find(args->a[x]) : NULL;
        if (a && a->refs <= 0 && reports++ < 40)
            fprintf(stderr, "ovl: %s arg %d released (%ld references)\n", name, x, a->refs);
        for (int y = x + 1; a && y < 32; y++) {
            sub *b = args->a[y] ? find(args->a[y]) : NULL;
            if (!b || !a->parent || a->parent != b->parent || a->m == b->m) continue;
            int overlap = a->org < b->org + b->size && b->org < a->org + a->size;
            int same = a->org == b->org && a->size == b->size;
            if (overlap && !same && reports++ < 40)
                fprintf(stderr, "ovl: %s args %d [%zu,+%zu) and %d [%zu,+%zu)\n", name, x, a->org, a->size, y, b->org, b->size);
        }
    }
    launches++;
    if (tracing) trace(k, args, d, g, l);
    return real(q, k, d, o, g, l, n, w, e);
}
