/* segv-trace.c -- LD_PRELOAD helper for the GPU leases: on SIGSEGV, SIGBUS or SIGABRT print
 * the stack (glibc's backtrace, the frames' libraries and offsets) to stderr, then die of the
 * same signal. Debian 12's glibc no longer ships libSegFault, and the lent machine has no gdb.
 *   cc -O1 -g -shared -fPIC -o build-gpu/segv-trace.so scripts/segv-trace.c
 *   LD_PRELOAD=$PWD/build-gpu/segv-trace.so llama-perplexity ...
 * Resolve an offset with `addr2line -f -e LIBRARY 0xOFFSET` here, on the same build. */
#define _GNU_SOURCE
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void on_fatal(int sig)
{
    static const char head[] = "segv-trace: fatal signal, stack:\n";
    void *frames[64];
    int n = backtrace(frames, 64);
    (void)!write(STDERR_FILENO, head, sizeof head - 1);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    signal(sig, SIG_DFL);
    raise(sig);
}

__attribute__((constructor)) static void install(void)
{
    void *warm[1];
    backtrace(warm, 1); /* loads libgcc_s now, not inside the handler */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGABRT, &sa, NULL);
}
