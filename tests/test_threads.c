/*
 * test_threads.c -- the thread promise of include/kqcl.h: different contexts are independent and
 * may be used from different threads at once; the context-less last error is per thread.
 *
 * Several threads each create their own context (at the same time), run a series of matmuls
 * of every weight type, convert and reduce, and compare every result bit for bit with the same
 * work done serially beforehand. `make check-tsan` runs this program under ThreadSanitizer.
 * KQCL_TEST_THREADS (default 4) and KQCL_TEST_ROUNDS (default 3) size it.
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct job {
    kqcl_type wtype, xtype;
    int m, k, n;
    void *w, *x;      /* host operands */
    float *serial;    /* y computed before any thread starts */
    float *row_sums;  /* kqcl_reduce(SUM) of the f32 dequantized weights, serially */
} job;

static const job shapes[] = {
    {KQCL_TYPE_Q4_K, KQCL_TYPE_F32, 67, 512, 1, 0, 0, 0, 0},  {KQCL_TYPE_Q5_K, KQCL_TYPE_F16, 33, 256, 3, 0, 0, 0, 0},
    {KQCL_TYPE_Q6_K, KQCL_TYPE_F32, 45, 768, 9, 0, 0, 0, 0},  {KQCL_TYPE_Q8_K, KQCL_TYPE_BF16, 29, 256, 2, 0, 0, 0, 0},
    {KQCL_TYPE_F16, KQCL_TYPE_F32, 31, 136, 17, 0, 0, 0, 0},  {KQCL_TYPE_BF16, KQCL_TYPE_F32, 18, 64, 5, 0, 0, 0, 0},
    {KQCL_TYPE_F32, KQCL_TYPE_F16, 21, 40, 12, 0, 0, 0, 0},
};
#define N_JOBS (int)(sizeof shapes / sizeof shapes[0])
static job jobs[N_JOBS];

/* One job on a context: y and the row sums of the device-dequantized weights. Returns the first
 * failure's status; the message stays on ctx. */
static kqcl_status run_job(kqcl_context *ctx, const job *jb, float *y, float *sums)
{
    kqcl_tensor *w = NULL, *x = NULL, *yt = NULL, *deq = NULL, *st = NULL;
    kqcl_status s = kqcl_tensor_create(ctx, jb->wtype, jb->m, jb->k, &w);
    if (s == KQCL_OK)
        s = kqcl_tensor_create(ctx, jb->xtype, jb->n, jb->k, &x);
    if (s == KQCL_OK)
        s = kqcl_tensor_create(ctx, KQCL_TYPE_F32, jb->n, jb->m, &yt);
    if (s == KQCL_OK)
        s = kqcl_tensor_create(ctx, KQCL_TYPE_F32, jb->m, jb->k, &deq);
    if (s == KQCL_OK)
        s = kqcl_tensor_create(ctx, KQCL_TYPE_F32, jb->m, 1, &st);
    if (s == KQCL_OK)
        s = kqcl_tensor_write(w, jb->w, kqcl_tensor_bytes(w));
    if (s == KQCL_OK)
        s = kqcl_tensor_write(x, jb->x, kqcl_tensor_bytes(x));
    if (s == KQCL_OK)
        s = kqcl_matmul(ctx, w, x, yt);
    if (s == KQCL_OK)
        s = kqcl_convert(ctx, w, deq);
    if (s == KQCL_OK)
        s = kqcl_reduce(ctx, KQCL_REDUCE_SUM, deq, st);
    if (s == KQCL_OK)
        s = kqcl_tensor_read(yt, y, (size_t)jb->n * jb->m * sizeof(float));
    if (s == KQCL_OK)
        s = kqcl_tensor_read(st, sums, (size_t)jb->m * sizeof(float));
    kqcl_tensor_destroy(w), kqcl_tensor_destroy(x), kqcl_tensor_destroy(yt), kqcl_tensor_destroy(deq);
    kqcl_tensor_destroy(st);
    return s;
}

static int n_threads = 4, n_rounds = 3;
static pthread_barrier_t barrier;

typedef struct thread_result {
    int index;
    char failure[512]; /* empty when everything matched */
} thread_result;

static void *worker(void *arg)
{
    thread_result *r = arg;
    char spec[64], want[64];
    /* a context-less failure of our own: the message must still be ours after every thread
     * made its own */
    snprintf(spec, sizeof spec, "no-such-device-%d", r->index);
    snprintf(want, sizeof want, "'no-such-device-%d'", r->index);
    kqcl_context *bad = NULL;
    pthread_barrier_wait(&barrier);
    kqcl_status s = kqcl_context_create(spec, &bad);
    pthread_barrier_wait(&barrier);
    if (s != KQCL_ERR_NO_DEVICE || bad != NULL || strstr(kqcl_last_error(NULL), want) == NULL) {
        snprintf(r->failure, sizeof r->failure, "thread %d: context-less error '%s' (status %d), want %s", r->index,
                 kqcl_last_error(NULL), (int)s, want);
        return NULL;
    }
    kqcl_context *ctx = NULL;
    s = kqcl_context_create(NULL, &ctx); /* all threads at once */
    if (s != KQCL_OK) {
        snprintf(r->failure, sizeof r->failure, "thread %d: no context: %s", r->index, kqcl_last_error(NULL));
        return NULL;
    }
    for (int round = 0; round < n_rounds && r->failure[0] == '\0'; round++)
        for (int i = 0; i < N_JOBS && r->failure[0] == '\0'; i++) {
            int jbi = (i + r->index + round) % N_JOBS; /* threads on different jobs at the same time */
            const job *jb = &jobs[jbi];
            float *y = malloc((size_t)jb->n * jb->m * sizeof(float)), *sums = malloc((size_t)jb->m * sizeof(float));
            if (y == NULL || sums == NULL)
                snprintf(r->failure, sizeof r->failure, "thread %d: out of memory", r->index);
            else if ((s = run_job(ctx, jb, y, sums)) != KQCL_OK)
                snprintf(r->failure, sizeof r->failure, "thread %d job %d: %s: %s", r->index, jbi,
                         kqcl_status_string(s), kqcl_last_error(ctx));
            else if (memcmp(y, jb->serial, (size_t)jb->n * jb->m * sizeof(float)) != 0 ||
                     memcmp(sums, jb->row_sums, (size_t)jb->m * sizeof(float)) != 0)
                snprintf(r->failure, sizeof r->failure, "thread %d job %d (%s x %s, n=%d): differs from the serial "
                         "result", r->index, jbi, kqcl_type_name(jb->wtype), kqcl_type_name(jb->xtype), jb->n);
            /* a failure on this context leaves its message here, not on other contexts */
            if (r->failure[0] == '\0') {
                kqcl_tensor *t = NULL;
                if (kqcl_tensor_create(ctx, KQCL_TYPE_Q4_K, 1, 100 + r->index, &t) != KQCL_ERR_INVALID_ARG) {
                    snprintf(r->failure, sizeof r->failure, "thread %d: a bad shape was accepted", r->index);
                } else {
                    char shape[32];
                    snprintf(shape, sizeof shape, "1 x %d", 100 + r->index);
                    if (strstr(kqcl_last_error(ctx), shape) == NULL)
                        snprintf(r->failure, sizeof r->failure, "thread %d: context message '%s' is not ours",
                                 r->index, kqcl_last_error(ctx));
                }
            }
            free(y), free(sums);
        }
    kqcl_context_destroy(ctx);
    return NULL;
}

START_TEST(contexts_in_threads_match_serial_results)
{
    /* the serial results, on a context of the main thread */
    tu_seed(500);
    for (int i = 0; i < N_JOBS; i++) {
        job *jb = &jobs[i];
        *jb = shapes[i];
        float *wf = tu_malloc((size_t)jb->m * jb->k * sizeof(float)), *xf = tu_malloc((size_t)jb->n * jb->k * sizeof(float));
        for (int j = 0; j < jb->m * jb->k; j++)
            wf[j] = tu_uniform();
        for (int j = 0; j < jb->n * jb->k; j++)
            xf[j] = tu_uniform();
        jb->w = tu_malloc((size_t)jb->m * kqcl_row_size(jb->wtype, jb->k));
        jb->x = tu_malloc((size_t)jb->n * kqcl_row_size(jb->xtype, jb->k));
        ck_assert_int_eq(kqcl_quantize(jb->wtype, wf, jb->w, jb->m, jb->k), KQCL_OK);
        ck_assert_int_eq(kqcl_quantize(jb->xtype, xf, jb->x, jb->n, jb->k), KQCL_OK);
        jb->serial = tu_malloc((size_t)jb->n * jb->m * sizeof(float));
        jb->row_sums = tu_malloc((size_t)jb->m * sizeof(float));
        TU_OK(run_job(tu_ctx, jb, jb->serial, jb->row_sums));
        free(wf), free(xf);
    }
    tu_context_teardown();

    const char *env = getenv("KQCL_TEST_THREADS");
    if (env && atoi(env) > 0)
        n_threads = atoi(env);
    env = getenv("KQCL_TEST_ROUNDS");
    if (env && atoi(env) > 0)
        n_rounds = atoi(env);
    pthread_t *threads = tu_malloc((size_t)n_threads * sizeof *threads);
    thread_result *results = tu_malloc((size_t)n_threads * sizeof *results);
    ck_assert_int_eq(pthread_barrier_init(&barrier, NULL, (unsigned)n_threads), 0);
    for (int i = 0; i < n_threads; i++) {
        results[i].index = i;
        results[i].failure[0] = '\0';
        ck_assert_int_eq(pthread_create(&threads[i], NULL, worker, &results[i]), 0);
    }
    for (int i = 0; i < n_threads; i++)
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < n_threads; i++)
        ck_assert_msg(results[i].failure[0] == '\0', "%s", results[i].failure);
    for (int i = 0; i < N_JOBS; i++)
        free(jobs[i].w), free(jobs[i].x), free(jobs[i].serial), free(jobs[i].row_sums);
    free(threads), free(results);
    tu_context_setup(); /* for the fixture's teardown */
}
END_TEST

/* Context-less calls from many threads at once: host codecs and device listing. */
static void *codec_worker(void *arg)
{
    int *ok = arg;
    float f[512], back[512];
    unsigned char q[2 * 210];
    for (int i = 0; i < 512; i++)
        f[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    *ok = 1;
    for (int round = 0; round < 50; round++) {
        int count = 0;
        if (kqcl_quantize(KQCL_TYPE_Q6_K, f, q, 2, 256) != KQCL_OK || kqcl_dequantize(KQCL_TYPE_Q6_K, q, back, 2, 256) != KQCL_OK ||
            kqcl_list_devices(NULL, 0, &count) != KQCL_OK || count < 1)
            *ok = 0;
        for (int i = 0; i < 512; i++)
            if (back[i] < -1.1f || back[i] > 1.1f)
                *ok = 0;
    }
    return NULL;
}

START_TEST(context_less_calls_in_threads)
{
    enum { T = 4 };
    pthread_t threads[T];
    int ok[T];
    for (int i = 0; i < T; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, codec_worker, &ok[i]), 0);
    for (int i = 0; i < T; i++) {
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
        ck_assert_msg(ok[i], "thread %d failed", i);
    }
}
END_TEST

/* ---- issue 12: scenarios that need a process of their own ------------------------------------ */

/* Run this program again with KQCL_THREADS_CHILD=mode (and `env`, "NAME=VALUE" or NULL), so
 * that the scenario starts in a process where kqcl has done nothing yet (Check may not fork:
 * make check-tsan runs with CK_FORK=no). Under a sanitizer the child is instrumented too and
 * any report fails it. Returns the child's exit status, or 128 + its signal. */
static int run_child(const char *mode, const char *env)
{
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert_int_gt(len, 0);
    exe[len] = '\0';
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("KQCL_THREADS_CHILD", mode, 1);
        if (env != NULL) {
            char copy[256];
            snprintf(copy, sizeof copy, "%s", env);
            char *eq = strchr(copy, '=');
            *eq = '\0';
            setenv(copy, eq + 1, 1);
        }
        execl(exe, exe, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Item 1: four threads whose kqcl_context_create calls are the process's first kqcl calls, all
 * at once: PoCL crashed in its device queries during discovery in every run.
 *
 * The threads do not exit: the one that initialises PoCL gets an alternate signal stack from
 * PoCL's LLVM, which AddressSanitizer then fails to unmap when that thread ends ("failed to
 * deallocate ... unable to unmap", a sanitizer CHECK, not a kqcl fault). They report through a
 * barrier and wait; the process ends with them. */
static pthread_barrier_t cold_done;

static void *cold_worker(void *arg)
{
    int *ok = arg;
    kqcl_context *ctx = NULL;
    pthread_barrier_wait(&barrier);
    kqcl_status st = kqcl_context_create(NULL, &ctx);
    kqcl_device_info info;
    *ok = st == KQCL_OK && kqcl_device_count(ctx) >= 1 && kqcl_device_get_info(ctx, 0, &info) == KQCL_OK &&
          info.name[0] != '\0';
    if (!*ok)
        fprintf(stderr, "cold thread: %s: %s\n", kqcl_status_string(st), kqcl_last_error(NULL));
    kqcl_context_destroy(ctx);
    pthread_barrier_wait(&cold_done);
    for (;;)
        pause();
    return NULL;
}

static int child_cold_contexts(void)
{
    enum { T = 4 };
    pthread_t threads[T];
    int ok[T], all = 1;
    pthread_barrier_init(&barrier, NULL, T);
    pthread_barrier_init(&cold_done, NULL, T + 1);
    for (int i = 0; i < T; i++)
        if (pthread_create(&threads[i], NULL, cold_worker, &ok[i]) != 0)
            return 2;
    pthread_barrier_wait(&cold_done); /* every thread has written ok[] */
    for (int i = 0; i < T; i++)
        all &= ok[i];
    return all ? 0 : 1;
}

START_TEST(cold_concurrent_first_contexts)
{
    for (int run = 0; run < 3; run++) {
        int rc = run_child("cold", NULL);
        ck_assert_msg(rc == 0, "run %d: the cold start failed (exit %d%s)", run, rc, rc > 128 ? ", a signal" : "");
    }
}
END_TEST

/* Item 4: kqcl_context_destroy while a kqcl_allreduce_start is in flight: the collective's
 * thread used the context's staging state after it was freed. Destroy waits for it; the
 * request stays valid for kqcl_request_wait; the tensor left behind is detached. On two PoCL
 * devices (POCL_DEVICES in the child's environment). */
static int child_destroy_in_flight(void)
{
    enum { N = 1 << 20 }; /* 4 MiB: the chunked, threaded path */
    kqcl_context *ctx = NULL;
    if (kqcl_context_create("all", &ctx) != KQCL_OK || kqcl_device_count(ctx) < 2) {
        fprintf(stderr, "destroy in flight: skipped, fewer than two devices (%s)\n", kqcl_last_error(NULL));
        kqcl_context_destroy(ctx);
        return 0;
    }
    float *x = malloc(N * sizeof *x);
    if (x == NULL)
        return 2;
    for (int i = 0; i < N; i++)
        x[i] = (float)(i % 1000);
    int failures = 0;
    for (int round = 0; round < 4; round++) {
        kqcl_tensor *t = NULL;
        kqcl_request *req = NULL;
        if (kqcl_tensor_create_split(ctx, KQCL_TYPE_F32, 1, N, KQCL_SPLIT_REPLICATE, &t) != KQCL_OK ||
            kqcl_tensor_write(t, x, N * sizeof *x) != KQCL_OK ||
            kqcl_allreduce_start(ctx, t, KQCL_REDUCE_SUM, &req) != KQCL_OK) {
            fprintf(stderr, "destroy in flight: setup: %s\n", kqcl_last_error(ctx));
            return 1;
        }
        kqcl_context_destroy(ctx); /* the collective still running */
        ctx = NULL;
        kqcl_status st = kqcl_request_wait(req);
        if (st != KQCL_OK) {
            fprintf(stderr, "destroy in flight: the request: %s: %s\n", kqcl_status_string(st), kqcl_last_error(NULL));
            failures++;
        }
        if (kqcl_tensor_write(t, x, N * sizeof *x) != KQCL_ERR_INVALID_ARG) /* detached: refused */
            failures++;
        kqcl_tensor_destroy(t);
        if (kqcl_context_create("all", &ctx) != KQCL_OK)
            return 1;
    }
    kqcl_context_destroy(ctx);
    free(x);
    return failures ? 1 : 0;
}

START_TEST(destroy_with_an_allreduce_in_flight)
{
    int rc = run_child("allreduce", "POCL_DEVICES=pthread pthread");
    ck_assert_msg(rc == 0, "destroy with a collective in flight: exit %d%s", rc, rc > 128 ? " (a signal)" : "");
}
END_TEST

/* The context destroyed before its tensors (a use after free): the tensors are released with
 * it and left detached; every call on them but kqcl_tensor_destroy and the getters is refused. */
START_TEST(context_destroyed_before_its_tensors)
{
    kqcl_context *ctx = NULL;
    TU_OK(kqcl_context_create(NULL, &ctx));
    float x[2 * 256];
    for (int i = 0; i < 2 * 256; i++)
        x[i] = (float)i;
    kqcl_tensor *a = NULL, *b = NULL, *c = NULL;
    TU_OK(kqcl_tensor_create(ctx, KQCL_TYPE_F32, 2, 256, &a));
    TU_OK(kqcl_tensor_create(ctx, KQCL_TYPE_Q4_K, 3, 256, &b));
    TU_OK(kqcl_tensor_create_split(ctx, KQCL_TYPE_F32, 2, 256, KQCL_SPLIT_ROWS, &c));
    TU_OK(kqcl_tensor_write(a, x, sizeof x));
    kqcl_tensor_destroy(b); /* one destroyed in time: off the context's list */
    kqcl_context_destroy(ctx);
    ck_assert_int_eq(kqcl_tensor_write(a, x, sizeof x), KQCL_ERR_INVALID_ARG);
    ck_assert_msg(strstr(kqcl_last_error(NULL), "context was destroyed") != NULL, "message: %s",
                  kqcl_last_error(NULL));
    ck_assert_int_eq(kqcl_tensor_read(a, x, sizeof x), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_read_part(c, 0, x, 256 * sizeof(float)), KQCL_ERR_INVALID_ARG);
    int64_t first, count;
    ck_assert_int_eq(kqcl_tensor_part(c, 0, &first, &count), KQCL_ERR_INVALID_ARG);
    ck_assert_int_eq(kqcl_tensor_rows(a), 2);
    ck_assert_int_eq(kqcl_tensor_cols(a), 256);
    ck_assert_uint_eq(kqcl_tensor_bytes(a), sizeof x);
    /* a new context does not take them */
    TU_OK(kqcl_context_create(NULL, &ctx));
    kqcl_tensor *y = NULL;
    TU_OK(kqcl_tensor_create(ctx, KQCL_TYPE_F32, 2, 1, &y));
    ck_assert_int_eq(kqcl_reduce(ctx, KQCL_REDUCE_SUM, a, y), KQCL_ERR_INVALID_ARG);
    kqcl_tensor_destroy(a);
    kqcl_tensor_destroy(c);
    kqcl_tensor_destroy(y);
    kqcl_context_destroy(ctx);
}
END_TEST

int main(void)
{
    const char *child = getenv("KQCL_THREADS_CHILD");
    if (child != NULL && strcmp(child, "cold") == 0)
        return child_cold_contexts();
    if (child != NULL && strcmp(child, "allreduce") == 0)
        return child_destroy_in_flight();
    Suite *s = suite_create("threads");
    TCase *fresh = tcase_create("issue 12: fresh processes and lifetimes");
    tcase_set_timeout(fresh, 600);
    tcase_add_test(fresh, cold_concurrent_first_contexts);
    tcase_add_test(fresh, destroy_with_an_allreduce_in_flight);
    tcase_add_test(fresh, context_destroyed_before_its_tensors);
    suite_add_tcase(s, fresh);
    TCase *tc = tcase_create("threads");
    tcase_add_checked_fixture(tc, tu_context_setup, tu_context_teardown);
    tcase_add_test(tc, contexts_in_threads_match_serial_results);
    tcase_add_test(tc, context_less_calls_in_threads);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
