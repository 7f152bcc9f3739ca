/*
 * queue.c -- what every file that talks to OpenCL shares: error names and failures, the compute
 * queues (timed or not), and the events of the last compute call behind kqcl_last_device_time.
 */
#include "device/context.h"

#include <stdlib.h>

/* ---- OpenCL error names --------------------------------------------------------------------- */

const char *kq_cl_error_name(cl_int err)
{
    switch (err) {
#define NAME(x) case x: return #x
        NAME(CL_SUCCESS); NAME(CL_DEVICE_NOT_FOUND); NAME(CL_DEVICE_NOT_AVAILABLE);
        NAME(CL_COMPILER_NOT_AVAILABLE); NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE);
        NAME(CL_OUT_OF_RESOURCES); NAME(CL_OUT_OF_HOST_MEMORY); NAME(CL_BUILD_PROGRAM_FAILURE);
        NAME(CL_INVALID_VALUE); NAME(CL_INVALID_DEVICE); NAME(CL_INVALID_CONTEXT);
        NAME(CL_INVALID_COMMAND_QUEUE); NAME(CL_INVALID_MEM_OBJECT); NAME(CL_INVALID_BINARY);
        NAME(CL_INVALID_BUILD_OPTIONS); NAME(CL_INVALID_PROGRAM);
        NAME(CL_INVALID_KERNEL_NAME); NAME(CL_INVALID_KERNEL); NAME(CL_INVALID_ARG_INDEX);
        NAME(CL_INVALID_ARG_VALUE); NAME(CL_INVALID_ARG_SIZE); NAME(CL_INVALID_KERNEL_ARGS);
        NAME(CL_INVALID_WORK_DIMENSION); NAME(CL_INVALID_WORK_GROUP_SIZE);
        NAME(CL_INVALID_WORK_ITEM_SIZE); NAME(CL_INVALID_GLOBAL_OFFSET);
        NAME(CL_INVALID_EVENT); NAME(CL_INVALID_OPERATION); NAME(CL_INVALID_BUFFER_SIZE);
        NAME(CL_INVALID_GLOBAL_WORK_SIZE); NAME(CL_PLATFORM_NOT_FOUND_KHR);
        NAME(CL_PROFILING_INFO_NOT_AVAILABLE); NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET);
        NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
#undef NAME
    }
    return "CL_UNKNOWN_ERROR";
}

kqcl_status kq_cl_fail(kqcl_context *ctx, cl_int err, const char *what)
{
    kqcl_status status = (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
                          err == CL_INVALID_BUFFER_SIZE)
                             ? KQCL_ERR_OUT_OF_MEMORY
                             : KQCL_ERR_DEVICE;
    return kq_fail(ctx, status, "%s: %s (%d)", what, kq_cl_error_name(err), (int)err);
}

/* The buffer a sub-buffer lies in and where (else the buffer itself, offset 0). */
static cl_mem rect_root(cl_mem m, size_t *offset)
{
    cl_mem parent = NULL;
    *offset = 0;
    if (clGetMemObjectInfo(m, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent, NULL) != CL_SUCCESS ||
        parent == NULL || clGetMemObjectInfo(m, CL_MEM_OFFSET, sizeof *offset, offset, NULL) != CL_SUCCESS) {
        *offset = 0;
        return m;
    }
    return parent;
}

cl_int kq_copy_rect(cl_command_queue q, cl_mem src, cl_mem dst, const size_t src_origin[3],
                    const size_t dst_origin[3], const size_t region[3], size_t src_row_pitch, size_t dst_row_pitch)
{
    size_t src_at, dst_at;
    cl_mem s = rect_root(src, &src_at), d = rect_root(dst, &dst_at);
    /* the byte a rect starts at is origin[0] + origin[1] * row pitch (+ the slice's): the offset
     * joins origin[0], which OpenCL does not bound by the pitch */
    const size_t so[3] = {src_origin[0] + src_at, src_origin[1], src_origin[2]};
    const size_t dof[3] = {dst_origin[0] + dst_at, dst_origin[1], dst_origin[2]};
    return clEnqueueCopyBufferRect(q, s, d, so, dof, region, src_row_pitch, 0, dst_row_pitch, 0, 0, NULL, NULL);
}

cl_command_queue kq_create_queue(const kq_device *dev, bool timing, cl_int *err)
{
    /* clCreateCommandQueue is deprecated in 2.0 but is what every 1.2 driver has. */
#ifdef __GNUC__
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    return clCreateCommandQueue(dev->cl_ctx, dev->id, timing ? CL_QUEUE_PROFILING_ENABLE : 0, err);
#ifdef __GNUC__
#pragma GCC diagnostic pop
#endif
}

KQCL_API kqcl_status kqcl_finish(kqcl_context *ctx)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_finish: ctx is NULL");
    kq_clear_error(ctx);
    for (int i = 0; i < ctx->n_devices; i++) {
        cl_int err = clFinish(ctx->devices[i].queue);
        if (err != CL_SUCCESS)
            return kq_cl_fail(ctx, err, "clFinish");
    }
    return KQCL_OK;
}

/* ---- events of the last compute call --------------------------------------------------------- */

void kq_events_reset(kqcl_context *ctx)
{
    for (int i = 0; i < ctx->n_events; i++)
        clReleaseEvent(ctx->events[i]);
    ctx->n_events = 0;
    ctx->events_lost = false;
}

/* Every event is kept (a split call over many devices and buffer chunks makes hundreds; up to
 * 64 were, and the rest dropped from the sum): the array grows by doubling. With no host
 * memory for it the event is released and kqcl_last_device_time reports that it cannot count. */
void kq_events_add(kqcl_context *ctx, cl_event ev)
{
    if (ev == NULL)
        return;
    if (ctx->n_events == ctx->events_cap) {
        int cap = ctx->events_cap ? 2 * ctx->events_cap : 64;
        cl_event *grown = realloc(ctx->events, (size_t)cap * sizeof *grown);
        if (grown == NULL) {
            ctx->events_lost = true;
            clReleaseEvent(ev);
            return;
        }
        ctx->events = grown;
        ctx->events_cap = cap;
    }
    ctx->events[ctx->n_events++] = ev;
}

void kq_events_free(kqcl_context *ctx)
{
    kq_events_reset(ctx);
    free(ctx->events);
    ctx->events = NULL;
    ctx->events_cap = 0;
}

KQCL_API kqcl_status kqcl_context_set_timing(kqcl_context *ctx, int on)
{
    if (ctx == NULL)
        return kq_fail(NULL, KQCL_ERR_INVALID_ARG, "kqcl_context_set_timing: ctx is NULL");
    kq_clear_error(ctx);
    if ((on != 0) == ctx->timing)
        return KQCL_OK;
    kqcl_status st = kqcl_finish(ctx);
    if (st != KQCL_OK)
        return st;
    /* All new queues first, so that a failure leaves the context as it was. */
    cl_command_queue fresh[KQ_MAX_DEVICES] = {0};
    cl_int err = CL_SUCCESS;
    for (int d = 0; d < ctx->n_devices && err == CL_SUCCESS; d++)
        fresh[d] = kq_create_queue(&ctx->devices[d], on != 0, &err);
    if (err != CL_SUCCESS) {
        for (int d = 0; d < ctx->n_devices; d++)
            if (fresh[d] != NULL)
                clReleaseCommandQueue(fresh[d]);
        return kq_cl_fail(ctx, err, "kqcl_context_set_timing: clCreateCommandQueue");
    }
    kq_events_reset(ctx);
    for (int d = 0; d < ctx->n_devices; d++) {
        clReleaseCommandQueue(ctx->devices[d].queue);
        ctx->devices[d].queue = fresh[d];
    }
    ctx->timing = on != 0;
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_last_device_time(kqcl_context *ctx, uint64_t *nanoseconds)
{
    if (ctx == NULL || nanoseconds == NULL)
        return kq_fail(ctx, KQCL_ERR_INVALID_ARG, "kqcl_last_device_time: NULL argument");
    kq_clear_error(ctx);
    if (!ctx->timing)
        return kq_fail(ctx, KQCL_ERR_UNSUPPORTED,
                       "kqcl_last_device_time: device timing is off; turn it on with kqcl_context_set_timing");
    if (ctx->events_lost)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY,
                       "kqcl_last_device_time: no host memory to keep every kernel's event of the last call");
    uint64_t total = 0;
    for (int i = 0; i < ctx->n_events; i++) {
        cl_ulong start = 0, end = 0;
        cl_int err = clWaitForEvents(1, &ctx->events[i]);
        if (err == CL_SUCCESS)
            err = clGetEventProfilingInfo(ctx->events[i], CL_PROFILING_COMMAND_START, sizeof start, &start, NULL);
        if (err == CL_SUCCESS)
            err = clGetEventProfilingInfo(ctx->events[i], CL_PROFILING_COMMAND_END, sizeof end, &end, NULL);
        if (err != CL_SUCCESS)
            return kq_cl_fail(ctx, err, "reading kernel profiling events");
        total += end > start ? end - start : 0;
    }
    *nanoseconds = total;
    return KQCL_OK;
}
