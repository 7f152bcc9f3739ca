/*
 * host-cost-probe.c -- what the host pays per call of the OpenCL API a kqcl op makes, on the
 * first GPU (median of 2000 calls, microseconds): a sub-buffer created and released (each
 * kqcl_tensor_view), a retain/release pair, one clSetKernelArg, one enqueue of an empty kernel
 * (in a run of 400), and, built with the library, kqcl_tensor_view + kqcl_tensor_destroy. Not
 * part of kqcl; a measuring aid for doc/perf.md (run 26: a decode step's enqueue time).
 *
 *   cc -O2 -Iinclude -o host-cost-probe scripts/host-cost-probe.c BUILD/lib/.libs/libkqcl.a \
 *      -lOpenCL -lclblast -lm -lpthread
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <kqcl.h>
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
    if (dev == NULL) {
        fprintf(stderr, "no GPU\n");
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
    kqcl_context *kc = NULL;
    if (kqcl_context_create("gpu", &kc) == KQCL_OK) {
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
