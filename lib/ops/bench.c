/* bench.c -- the device memory-bandwidth probe behind `kqcl bench` (bench.cl). */
#include "ops/ops.h"
#include "device/program.h"
#include "kernels/family.h"

#include <stdlib.h>

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static kqcl_status stream_read(kqcl_context *ctx, int device, size_t bytes, int reps, double *gbps);

kqcl_status kq_bench_stream_read(kqcl_context *ctx, int device, size_t bytes, int reps, double *gbps)
{
    if (ctx == NULL || gbps == NULL || device < 0 || device >= ctx->n_devices || reps < 1 || bytes < 16)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "stream read: bad arguments");
    bool was_timing = ctx->timing; /* the probe reads its kernels' profiling events */
    kqcl_status st = kqcl_context_set_timing(ctx, 1);
    if (st == KQCL_OK)
        st = stream_read(ctx, device, bytes, reps, gbps);
    kqcl_status restored = kqcl_context_set_timing(ctx, was_timing);
    return st != KQCL_OK ? st : restored;
}

static kqcl_status stream_read(kqcl_context *ctx, int device, size_t bytes, int reps, double *gbps)
{
    kq_device *dev = &ctx->devices[device];
    if (bytes > dev->info.max_alloc_bytes)
        bytes = dev->info.max_alloc_bytes / 16 * 16;
    cl_kernel kernel;
    kq_variant v;
    kq_shape s = {0};
    kq_pick_variant(ctx, dev, &kq_bench_family, &s, 0, &v);
    kqcl_status st = kq_get_kernel(ctx, dev, v.family, v.options, "stream_read", &kernel);
    if (st != KQCL_OK)
        return st;
    cl_int err;
    cl_mem src = clCreateBuffer(dev->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "stream read: buffer");
    cl_mem sink = clCreateBuffer(dev->cl_ctx, CL_MEM_READ_WRITE, 1024 * sizeof(float), NULL, &err);
    double *times = calloc((size_t)reps, sizeof *times);
    float zero = 0.0f;
    cl_ulong count = bytes / 16;
    if (err == CL_SUCCESS)
        err = clEnqueueFillBuffer(dev->queue, src, &zero, sizeof zero, 0, count * 16, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = kq_set_args(kernel, 3, sizeof src, &src, sizeof count, &count, sizeof sink, &sink);
    size_t local = 256 <= dev->max_wg ? 256 : dev->max_wg;
    size_t global = (size_t)(dev->info.compute_units > 0 ? dev->info.compute_units : 1) * local * 8;
    if (v.cpu) { /* one-item groups, each a contiguous chunk; 8 a core for balance */
        local = 1;
        global = (size_t)(dev->info.compute_units > 0 ? dev->info.compute_units : 1) * 8;
    }
    for (int i = -1; i < reps && err == CL_SUCCESS && times; i++) { /* i = -1: warm-up */
        cl_event ev;
        cl_ulong t0 = 0, t1 = 0;
        err = clEnqueueNDRangeKernel(dev->queue, kernel, 1, NULL, &global, &local, 0, NULL, &ev);
        if (err != CL_SUCCESS)
            break;
        err = clWaitForEvents(1, &ev);
        if (err == CL_SUCCESS)
            err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
        if (err == CL_SUCCESS)
            err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
        clReleaseEvent(ev);
        if (i >= 0)
            times[i] = (double)(t1 - t0);
    }
    if (err == CL_SUCCESS && times) {
        qsort(times, (size_t)reps, sizeof *times, compare_doubles);
        *gbps = (double)(count * 16) / times[reps / 2];
    }
    free(times);
    if (sink)
        clReleaseMemObject(sink);
    clReleaseMemObject(src);
    if (times == NULL)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "stream read: no host memory");
    return err == CL_SUCCESS ? KQCL_OK : kq_cl_fail(ctx, err, "stream read");
}
