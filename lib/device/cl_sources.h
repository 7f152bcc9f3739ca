/* cl_sources.h -- the OpenCL C sources of cl/, embedded at build time (lib/cl_sources.c). */
#ifndef KQCL_CL_SOURCES_H
#define KQCL_CL_SOURCES_H

typedef struct kq_cl_source {
    const char *name; /* file name without .cl */
    const char *text;
} kq_cl_source;

/* Terminated by an entry whose name is NULL. */
extern const kq_cl_source kq_cl_sources[];

#endif
