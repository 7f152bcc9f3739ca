#!/bin/sh
# run-mpi.sh -- the MPI suite: two ranks on this machine (loopback), each with two PoCL devices.
builddir=${KQCL_BUILDDIR:-.}
MPIRUN=${MPIRUN:-mpirun}
# Root in containers; oversubscribe on a 2-core box; loopback and shared memory only.
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none \
OMPI_MCA_plm_rsh_agent= POCL_DEVICES="pthread pthread" KQCL_DEVICES=all \
    exec "$MPIRUN" --oversubscribe -np 2 "$builddir/tests/test_mpi"
