/* toolutil.c -- the kqcl tool run as a user runs it, for test_cli and test_hostile (toolutil.h). */
#define _POSIX_C_SOURCE 200809L
#include "toolutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

char tool_tmp_dir[256];
char tool_out[1 << 20], tool_err[1 << 16];
size_t tool_out_length;

bool tool_make_tmp_dir(const char *name)
{
    const char *base = getenv("TMPDIR");
    snprintf(tool_tmp_dir, sizeof tool_tmp_dir, "%s/kqcl-%s-XXXXXX", base && *base ? base : "/tmp", name);
    return mkdtemp(tool_tmp_dir) != NULL;
}

void tool_remove_tmp_dir(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tool_tmp_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tool_tmp_dir);
}

const char *tool_tmp_path(const char *name)
{
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", tool_tmp_dir, name);
    return path;
}

/* Not through tool_tmp_path: a caller's paths from it stay valid across tool_run. */
static size_t slurp(const char *name, char *buf, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tool_tmp_dir, name);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
    return n;
}

int tool_runv(const char *prefix, const char *fmt, va_list ap)
{
    char args[2048], cmd[4096];
    vsnprintf(args, sizeof args, fmt, ap);
    const char *builddir = getenv("KQCL_BUILDDIR");
    snprintf(cmd, sizeof cmd, "%s %s/tools/kqcl %s >%s/out.txt 2>%s/err.txt", prefix, builddir ? builddir : ".",
             args, tool_tmp_dir, tool_tmp_dir);
    int status = system(cmd);
    ck_assert_int_ne(status, -1);
    tool_out_length = slurp("out.txt", tool_out, sizeof tool_out);
    slurp("err.txt", tool_err, sizeof tool_err);
    /* a signal the shell saw comes back as its exit status 128 + N */
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int tool_run(const char *prefix, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tool_runv(prefix, fmt, ap);
    va_end(ap);
    return rc;
}
