/* probe-time.h -- the measuring aids' clock and ordering (scripts/cl-probe.c,
 * scripts/host-cost-probe.c): microseconds on the monotonic clock, and samples sorted in place
 * so that t[n / 2] is the median and t[n / 10], t[n * 9 / 10] the 10th and 90th percentiles. */
#ifndef KQ_PROBE_TIME_H
#define KQ_PROBE_TIME_H

#include <stdlib.h>
#include <time.h>

static inline double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline void sort_samples(double *t, int n) { qsort(t, (size_t)n, sizeof *t, cmp_double); }

static inline double median(double *t, int n)
{
    sort_samples(t, n);
    return t[n / 2];
}

#endif
