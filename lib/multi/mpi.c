/*
 * mpi.c -- several machines: with ./configure --with-mpi each rank owns its local devices and
 * the host stage of every collective becomes an MPI collective across ranks (on the pinned
 * staging buffers). Global device index = rank x local devices + local index. Without MPI the
 * calls answer as a single rank.
 */
#include "multi/multi.h"

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#ifdef HAVE_MPI
#include <mpi.h>

static bool joined;       /* kqcl_mpi_init succeeded */
static bool we_initialised;
static int rank, size = 1;
/* One MPI call at a time: collectives of different contexts may run on different threads. */
static pthread_mutex_t mpi_lock = PTHREAD_MUTEX_INITIALIZER;

KQCL_API kqcl_status kqcl_mpi_init(int *argc, char ***argv)
{
    kq_clear_error(NULL);
    int initialised = 0, provided = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
        /* SERIALIZED: a non-blocking collective's stage may run on a thread of its own. */
        if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
            return kq_fail(NULL, KQCL_ERR_DEVICE, "kqcl_mpi_init: MPI_Init_thread failed");
        we_initialised = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    joined = true;
    return KQCL_OK;
}

KQCL_API kqcl_status kqcl_mpi_finalize(void)
{
    if (joined && we_initialised) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized)
            MPI_Finalize();
    }
    joined = we_initialised = false;
    rank = 0, size = 1;
    return KQCL_OK;
}

KQCL_API int kqcl_mpi_rank(void) { return joined ? rank : 0; }
KQCL_API int kqcl_mpi_size(void) { return joined ? size : 1; }
bool kq_mpi_active(void) { return joined && size > 1; }

static MPI_Op mpi_op(int op) { return op == KQ_COLL_MAX ? MPI_MAX : op == KQ_COLL_MIN ? MPI_MIN : MPI_SUM; }

kqcl_status kq_mpi_allreduce_f32(float *data, size_t n, int op)
{
    int rc = MPI_SUCCESS;
    pthread_mutex_lock(&mpi_lock);
    /* Counts are ints: a chunk is far below 2^31 elements, but cut anyway. */
    for (size_t at = 0; at < n && rc == MPI_SUCCESS; at += (size_t)1 << 30) {
        size_t len = n - at < ((size_t)1 << 30) ? n - at : ((size_t)1 << 30);
        rc = MPI_Allreduce(MPI_IN_PLACE, data + at, (int)len, MPI_FLOAT, mpi_op(op), MPI_COMM_WORLD);
    }
    pthread_mutex_unlock(&mpi_lock);
    return rc == MPI_SUCCESS ? KQCL_OK : KQCL_ERR_DEVICE;
}

kqcl_status kq_mpi_bcast(void *data, size_t bytes, int root)
{
    int rc = MPI_SUCCESS;
    pthread_mutex_lock(&mpi_lock);
    for (size_t at = 0; at < bytes && rc == MPI_SUCCESS; at += (size_t)1 << 30) {
        size_t len = bytes - at < ((size_t)1 << 30) ? bytes - at : ((size_t)1 << 30);
        rc = MPI_Bcast((char *)data + at, (int)len, MPI_BYTE, root, MPI_COMM_WORLD);
    }
    pthread_mutex_unlock(&mpi_lock);
    return rc == MPI_SUCCESS ? KQCL_OK : KQCL_ERR_DEVICE;
}

#else /* !HAVE_MPI */

KQCL_API kqcl_status kqcl_mpi_init(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return kq_fail(NULL, KQCL_ERR_UNSUPPORTED, "kqcl_mpi_init: kqcl was built without MPI (./configure --with-mpi)");
}
KQCL_API kqcl_status kqcl_mpi_finalize(void) { return KQCL_OK; }
KQCL_API int kqcl_mpi_rank(void) { return 0; }
KQCL_API int kqcl_mpi_size(void) { return 1; }
bool kq_mpi_active(void) { return false; }
kqcl_status kq_mpi_allreduce_f32(float *data, size_t n, int op)
{
    (void)data, (void)n, (void)op;
    return KQCL_OK;
}
kqcl_status kq_mpi_bcast(void *data, size_t bytes, int root)
{
    (void)data, (void)bytes, (void)root;
    return KQCL_OK;
}

#endif

KQCL_API int kqcl_global_device(const kqcl_context *ctx, int device)
{
    if (ctx == NULL || device < 0 || device >= ctx->n_devices)
        return -1;
    return kqcl_mpi_rank() * ctx->n_devices + device;
}

KQCL_API int kqcl_global_device_count(const kqcl_context *ctx)
{
    return ctx ? kqcl_mpi_size() * ctx->n_devices : 0;
}
