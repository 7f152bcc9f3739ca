/*
 * host-cost-probe.c -- what the host pays per call of the OpenCL API a kqcl op makes, on the
 * first GPU (median of 2000 calls, microseconds): a sub-buffer created and released (each
 * kqcl_tensor_view), a retain/release pair, one clSetKernelArg, one enqueue of an empty kernel
 * (in a run of 400) and of one with six sub-buffers and sixteen scalars set before each, and,
 * built with the library, kqcl_tensor_view + kqcl_tensor_destroy and a whole small kqcl_matmul. Not
 * part of kqcl; a measuring aid for doc/perf.md (run 26: a decode step's enqueue time).
 *
 *   cc -O2 -Iinclude -o host-cost-probe scripts/host-cost-probe.c BUILD/lib/.libs/libkqcl.a \
 *      -lOpenCL -lclblast -lm -lpthread
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <kqcl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "probe-time.h"

#define REPS 2000

int main(void)
{
    cl_platform_id plats[8];
    cl_uint np = 0;
    cl_device_id dev = NULL;
    clGetPlatformIDs(8, plats, &np);
    for (cl_uint i = 0; i < np && dev == NULL; i++)
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_GPU, 1, &dev, NULL) != CL_SUCCESS)
            dev = NULL;
    bool gpu = dev != NULL; /* else the first device of any kind (PoCL: to try the probe out) */
    for (cl_uint i = 0; i < np && dev == NULL; i++)
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, 1, &dev, NULL) != CL_SUCCESS)
            dev = NULL;
    if (dev == NULL) {
        fprintf(stderr, "no OpenCL device\n");
        return 1;
    }
    cl_int err;
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    cl_command_queue q = clCreateCommandQueue(ctx, dev, 0, &err);
    cl_mem big = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 64 << 20, NULL, &err);
    static double t[REPS];
    for (int i = 0; i < REPS; i++) {
        cl_buffer_region r = {(size_t)(i % 64) * 4096, 4096};
        double t0 = now_us();
        cl_mem s = clCreateSubBuffer(big, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r, &err);
        clReleaseMemObject(s);
        t[i] = now_us() - t0;
    }
    printf("clCreateSubBuffer + clReleaseMemObject: %.2f us\n", median(t, REPS));
    for (int i = 0; i < REPS; i++) {
        double t0 = now_us();
        clRetainMemObject(big);
        clReleaseMemObject(big);
        t[i] = now_us() - t0;
    }
    printf("clRetainMemObject + clReleaseMemObject: %.2f us\n", median(t, REPS));
    const char *src = "__kernel void e(__global float *a, ulong n, int k) { if (n == 7 && k == 3) a[0] = 1.0f; }";
    cl_program p = clCreateProgramWithSource(ctx, 1, &src, NULL, &err);
    clBuildProgram(p, 1, &dev, "", NULL, NULL);
    cl_kernel k = clCreateKernel(p, "e", &err);
    cl_ulong n = 1;
    int kk = 0;
    for (int i = 0; i < REPS; i++) {
        double t0 = now_us();
        clSetKernelArg(k, 1, sizeof n, &n);
        t[i] = now_us() - t0;
    }
    printf("clSetKernelArg (a ulong): %.3f us\n", median(t, REPS));
    clSetKernelArg(k, 0, sizeof big, &big);
    clSetKernelArg(k, 2, sizeof kk, &kk);
    size_t g = 64, l = 64;
    for (int rep = 0; rep < 5; rep++) {
        clFinish(q);
        double t0 = now_us();
        for (int i = 0; i < 400; i++)
            clEnqueueNDRangeKernel(q, k, 1, NULL, &g, &l, 0, NULL, NULL);
        double t1 = now_us();
        clFinish(q);
        printf("400 empty kernels: enqueue %.2f us each, to the end %.2f us each\n", (t1 - t0) / 400,
               (now_us() - t0) / 400);
    }
    for (int rep = 0; rep < 3; rep++) { /* a sub-buffer argument set before each launch, as kqcl does */
        clFinish(q);
        double t0 = now_us();
        for (int i = 0; i < 400; i++) {
            cl_buffer_region r = {(size_t)(i % 64) * 4096, 4096};
            cl_mem s = clCreateSubBuffer(big, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r, &err);
            clSetKernelArg(k, 0, sizeof s, &s);
            clEnqueueNDRangeKernel(q, k, 1, NULL, &g, &l, 0, NULL, NULL);
            clReleaseMemObject(s);
        }
        double t1 = now_us();
        clFinish(q);
        printf("400 kernels on fresh sub-buffers: enqueue %.2f us each, to the end %.2f us each\n", (t1 - t0) / 400,
               (now_us() - t0) / 400);
    }
    /* a launch as kqcl's matvec makes one: six buffers (kept sub-buffers) and sixteen scalars,
     * every argument set before each launch */
    const char *wide =
        "__kernel void w(__global float *a, __global const float *b, __global const float *c,"
        " __global const float *d, __global float *e, __global float *f, int s0, int s1, int s2, int s3, int s4,"
        " int s5, int s6, int s7, int s8, int s9, int s10, int s11, int s12, int s13, int s14, int s15)"
        " { if (s0 == 7 && s15 == 3) a[0] = b[0] + c[0] + d[0] + e[0] + f[0]; }";
    cl_program pw = clCreateProgramWithSource(ctx, 1, &wide, NULL, &err);
    clBuildProgram(pw, 1, &dev, "", NULL, NULL);
    cl_kernel kw = clCreateKernel(pw, "w", &err);
    cl_mem subs[6];
    for (int i = 0; i < 6; i++) {
        cl_buffer_region r = {(size_t)i * 4096, 4096};
        subs[i] = clCreateSubBuffer(big, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r, &err);
    }
    for (int rep = 0; rep < 3; rep++) {
        clFinish(q);
        double t0 = now_us();
        for (int i = 0; i < 400; i++) {
            for (int a = 0; a < 6; a++)
                clSetKernelArg(kw, (cl_uint)a, sizeof subs[a], &subs[(a + i) % 6]);
            for (int a = 0; a < 16; a++)
                clSetKernelArg(kw, (cl_uint)(6 + a), sizeof kk, &kk);
            clEnqueueNDRangeKernel(q, kw, 1, NULL, &g, &l, 0, NULL, NULL);
        }
        double t1 = now_us();
        clFinish(q);
        printf("400 kernels of 6 sub-buffers and 16 ints, all set: enqueue %.2f us each, to the end %.2f us each\n",
               (t1 - t0) / 400, (now_us() - t0) / 400);
    }
    kqcl_context *kc = NULL;
    if (kqcl_context_create(gpu ? "gpu" : NULL, &kc) == KQCL_OK) {
        /* kqcl's own host time a launch: a small decode product, queued 400 times */
        kqcl_tensor *w = NULL, *x = NULL, *y = NULL;
        float *wv = calloc(576 * 576, sizeof *wv);
        if (wv != NULL && kqcl_tensor_create(kc, KQCL_TYPE_F32, 576, 576, &w) == KQCL_OK &&
            kqcl_tensor_create(kc, KQCL_TYPE_F32, 1, 576, &x) == KQCL_OK &&
            kqcl_tensor_create(kc, KQCL_TYPE_F32, 1, 576, &y) == KQCL_OK &&
            kqcl_tensor_write(w, wv, 576 * 576 * sizeof *wv) == KQCL_OK &&
            kqcl_tensor_write(x, wv, 576 * sizeof *wv) == KQCL_OK && kqcl_matmul(kc, w, x, y) == KQCL_OK) {
            for (int rep = 0; rep < 3; rep++) {
                kqcl_finish(kc);
                double t0 = now_us();
                for (int i = 0; i < 400; i++)
                    kqcl_matmul(kc, w, x, y);
                double t1 = now_us();
                kqcl_finish(kc);
                printf("400 kqcl_matmul f32 576 x 576, n 1: %.2f us each queued, to the end %.2f us each\n",
                       (t1 - t0) / 400, (now_us() - t0) / 400);
            }
        }
        free(wv);
        kqcl_tensor_destroy(w);
        kqcl_tensor_destroy(x);
        kqcl_tensor_destroy(y);
        kqcl_buffer *b = NULL;
        kqcl_buffer_create(kc, 0, 1 << 20, &b);
        for (int i = 0; i < REPS; i++) {
            kqcl_tensor *v = NULL;
            double t0 = now_us();
            kqcl_tensor_view(b, (size_t)(i % 64) * 4096, KQCL_TYPE_F32, 1, 1024, &v);
            kqcl_tensor_destroy(v);
            t[i] = now_us() - t0;
        }
        printf("kqcl_tensor_view + kqcl_tensor_destroy: %.2f us\n", median(t, REPS));
        kqcl_buffer_destroy(b);
        kqcl_context_destroy(kc);
    }
    return 0;
}
