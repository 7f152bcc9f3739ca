/*
 * program.c -- building kernel families per device, and the on-disk cache of their binaries.
 *
 * A program is common.cl + one family's .cl, built with -D options that select the types and
 * tunables. Built programs are kept per device for the context's life. Their binaries are also
 * kept on disk (KQCL_CACHE_DIR, else $XDG_CACHE_HOME/kqcl, else ~/.cache/kqcl), keyed by
 * device, driver, kqcl version, source and options, so a second start does not compile again.
 * PoCL keeps its own kernel cache and recompiles when asked for a binary, so kqcl's cache is
 * skipped there (KQCL_CACHE=force uses it anyway, KQCL_CACHE=off skips it everywhere).
 *
 * What the cache trusts (a binary it loads is run as kqcl's kernel, so another local user must
 * never be able to plant one):
 *   - the directory: used only when it is owned by the effective user and not group- or
 *     world-writable (sticky or not), and every directory above it is trusted too, checked from
 *     the root down as OpenSSH's StrictModes checks a path: each owned by root or the effective
 *     user and writable by nobody else. Whoever may write a parent could swap what is below for
 *     a link to a private directory of ours, whose next run would write there. A sticky parent
 *     (/tmp, root's) may be writable by others: there nobody else can rename or remove a name
 *     of ours, and every name the walk takes, links included, must be ours or root's. Links
 *     are followed (their targets checked the same way), but never into /proc, /dev or /sys,
 *     the kernel's views, not storage. Missing directories are made 0700 as the walk reaches
 *     them, so nothing is made below a parent that failed. Otherwise kernels are built from
 *     source without the cache, silently (a library does not print; doc/reliability.md says
 *     so), and nothing is written there;
 *   - an entry: opened with O_NOFOLLOW | O_NONBLOCK (no link is followed, a FIFO cannot hang
 *     us) and read only when fstat says it is a regular file owned by the effective user and
 *     not group- or world-writable;
 *   - its content: "KQCLBIN2", the full key, the binary's length, the SHA-256 of key + binary
 *     and the binary, all written by kqcl; a key or digest that does not match is a miss.
 *     The header is read and checked first (the key, a length that is exactly the rest of the
 *     file and at most CACHE_MAX_BINARY, 256 MiB), and only then is the binary allocated and
 *     read, so a corrupt entry of any size costs a few small reads. Entries are named by the
 *     SHA-256 of their key;
 *   - anything that fails -- to read, to load, to build, or a built program that lacks a kernel
 *     asked of it (CL_INVALID_KERNEL_NAME) -- is rebuilt from source and its entry replaced
 *     (written to a private mkstemp file and renamed over it), never an error that persists.
 */
#include "device/program.h"
#include "device/cl_sources.h"
#include "base/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const family_files[KQ_FAMILY_COUNT] = {"matvec", "matmul", "convert",     "reduce",   "bench",
                                                           "mma",    "q8",     "elementwise", "attention"};

const char *kq_family_file(kq_family family) { return family_files[family]; }

static const char *source_text(const char *name)
{
    for (const kq_cl_source *s = kq_cl_sources; s->name; s++)
        if (strcmp(s->name, name) == 0)
            return s->text;
    return NULL;
}

/* FNV-1a, 64 bits: a cache key's file name and a binary's checksum (not a security hash: the
 * full key is stored and compared too). */
static uint64_t fnv1a(const void *data, size_t len, uint64_t h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_START 0xcbf29ce484222325ull

/* ---- the on-disk cache ----------------------------------------------------------------------- */

#define CACHE_MAGIC "KQCLBIN2"
/* The largest binary an entry may hold. A family's binary is a few hundred KB to a few MB (PoCL's
 * ELF for matvec: 125 KB; PTX text on NVIDIA, some MB); 256 MiB is far above any of them and
 * bounds what a corrupt or planted entry can make kqcl allocate and hash (a 1 GiB entry was read
 * whole: 1.28 GB peak, 4.3 s). */
#define CACHE_MAX_BINARY (256ull << 20)

static bool cache_dir(char *buf, size_t size)
{
    if (kq_env_is("KQCL_CACHE", "off") || kq_env_is("KQCL_CACHE", "0"))
        return false;
    const char *dir = kq_env_nonempty("KQCL_CACHE_DIR"), *xdg = kq_env_nonempty("XDG_CACHE_HOME");
    const char *home = kq_env_nonempty("HOME");
    int n;
    if (dir)
        n = snprintf(buf, size, "%s", dir);
    else if (xdg)
        n = snprintf(buf, size, "%s/kqcl", xdg);
    else if (home)
        n = snprintf(buf, size, "%s/.cache/kqcl", home);
    else
        return false;
    return n > 0 && (size_t)n < size;
}

/* Owned by root or by us: nobody else can rename, replace or chmod it. */
static bool owner_trusted(const struct stat *st) { return st->st_uid == 0 || st->st_uid == geteuid(); }

/* Ours alone: owned by the effective user, writable by nobody else. */
static bool owned_and_private(const struct stat *st)
{
    return st->st_uid == geteuid() && (st->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/* A directory on the way to the cache: of a trusted owner and writable by nobody else, or
 * sticky (/tmp), where others may add names but not rename or remove ours -- and every name
 * the walk takes is checked to be ours or root's. */
static bool safe_ancestor(const struct stat *st)
{
    return S_ISDIR(st->st_mode) && owner_trusted(st) &&
           ((st->st_mode & (S_IWGRP | S_IWOTH)) == 0 || (st->st_mode & S_ISVTX) != 0);
}

/* The kernel's views of processes, devices and itself: no place for a cache, whatever their
 * modes say (/proc/self/fd/N leads wherever descriptor N points, /dev/shm is memory). */
static bool kernel_view(const char *dir)
{
    return strcmp(dir, "/proc") == 0 || strcmp(dir, "/dev") == 0 || strcmp(dir, "/sys") == 0;
}

#define MAX_LINKS 40 /* links followed in one path, as Linux's MAXSYMLINKS */

/* A walk down the cache directory's path from the root, one name at a time. */
typedef struct dir_walk {
    char at[900];     /* the directory reached, with no link in it; "" is the root */
    char rest[4096];  /* the names still to take, separated by '/' */
    int links;        /* links followed */
} dir_walk;

/* Take the next name of the rest into `name` ("" when none is left); false if it is too long. */
static bool next_name(dir_walk *w, char *name, size_t size)
{
    const char *p = w->rest + strspn(w->rest, "/");
    size_t len = strcspn(p, "/");
    if (len >= size)
        return false;
    memcpy(name, p, len);
    name[len] = '\0';
    memmove(w->rest, p + len, strlen(p + len) + 1);
    return true;
}

/* A link found in a directory only we or root can write (so it is what one of us put there):
 * its target, then the rest of the path, from the root if the target is absolute. */
static bool follow_link(dir_walk *w, const char *link)
{
    char target[sizeof w->rest], rest[sizeof w->rest];
    ssize_t len = readlink(link, target, sizeof target - 1);
    if (len <= 0 || ++w->links > MAX_LINKS)
        return false;
    target[len] = '\0';
    int n = snprintf(rest, sizeof rest, "%s/%s", target, w->rest);
    if (n < 0 || (size_t)n >= sizeof rest)
        return false;
    memcpy(w->rest, rest, (size_t)n + 1);
    if (target[0] == '/')
        w->at[0] = '\0';
    return true;
}

/* Take one name from w->at: "." stays, ".." goes up (w->at has no link in it, so its parent
 * is its text up to the last '/'), a missing directory is made 0700, a link is followed, a
 * directory must be safe_ancestor; a kernel view is not entered. False where the walk must
 * stop: the cache is then not used. Nothing is made anywhere before every directory above it
 * passed. */
static bool step_into(dir_walk *w, const char *name)
{
    if (strcmp(name, ".") == 0)
        return true;
    if (strcmp(name, "..") == 0) {
        char *slash = strrchr(w->at, '/');
        if (slash != NULL)
            *slash = '\0';
        return true;
    }
    char next[sizeof w->at];
    int n = snprintf(next, sizeof next, "%s/%s", w->at, name);
    if (n < 0 || (size_t)n >= sizeof next || kernel_view(next))
        return false;
    struct stat st;
    if (lstat(next, &st) != 0 &&
        !(errno == ENOENT && (mkdir(next, 0700) == 0 || errno == EEXIST) && lstat(next, &st) == 0))
        return false;
    if (!owner_trusted(&st))
        return false;
    if (S_ISLNK(st.st_mode))
        return follow_link(w, next);
    if (!safe_ancestor(&st))
        return false;
    memcpy(w->at, next, (size_t)n + 1);
    return true;
}

/* The cache directory `path` with every link followed (missing directories made 0700) into
 * `out`, when it can be trusted: every directory from the root down passes step_into, and the
 * last is ours alone (see the top of the file). A relative path starts at the working
 * directory, whose own parents are checked the same way. */
static bool trusted_cache_dir(const char *path, char *out, size_t size)
{
    dir_walk w = {.at = "", .links = 0};
    char cwd[sizeof w.rest];
    if (path[0] != '/' && getcwd(cwd, sizeof cwd) == NULL)
        return false;
    int n = snprintf(w.rest, sizeof w.rest, "%s/%s", path[0] == '/' ? "" : cwd, path);
    if (n < 0 || (size_t)n >= sizeof w.rest)
        return false;
    struct stat st;
    if (lstat("/", &st) != 0 || !safe_ancestor(&st))
        return false;
    char name[256]; /* NAME_MAX + 1 */
    for (;;) {
        if (!next_name(&w, name, sizeof name))
            return false;
        if (name[0] == '\0')
            break; /* the whole path taken */
        if (!step_into(&w, name))
            return false;
    }
    const char *dir = w.at[0] != '\0' ? w.at : "/";
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || !owned_and_private(&st))
        return false;
    n = snprintf(out, size, "%s", dir);
    return n > 0 && (size_t)n < size;
}

static bool cache_path(const kq_device *dev, const char *key, char *buf, size_t size)
{
    char wanted[900], dir[900];
    if (dev->is_pocl && !kq_env_is("KQCL_CACHE", "force"))
        return false;
    if (!cache_dir(wanted, sizeof wanted) || !trusted_cache_dir(wanted, dir, sizeof dir))
        return false;
    uint8_t digest[KQ_SHA256_BYTES];
    kq_sha256(key, strlen(key), digest);
    char name[33];
    for (int i = 0; i < 16; i++)
        snprintf(name + 2 * i, 3, "%02x", digest[i]);
    int n = snprintf(buf, size, "%s/%s.bin", dir, name);
    return n > 0 && (size_t)n < size;
}

/* SHA-256 of key + binary: what an entry's digest must be. */
static void entry_digest(const char *key, const unsigned char *bin, size_t size, uint8_t digest[KQ_SHA256_BYTES])
{
    kq_sha256_ctx s;
    kq_sha256_init(&s);
    kq_sha256_update(&s, key, strlen(key));
    kq_sha256_update(&s, bin, size);
    kq_sha256_final(&s, digest);
}

/* The entry at `path` opened for reading, and its size, if it is a regular file of ours (no
 * link followed, a FIFO or device not waited on); -1 otherwise. */
static int open_entry(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !owned_and_private(&st) || st.st_size <= 0) {
        close(fd);
        return -1;
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

/* Exactly `len` bytes; false on an error or an early end. */
static bool read_exactly(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (unsigned char *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

/* The next `len` bytes equal `want`; read in small pieces, so nothing is allocated for them. */
static bool read_matches(int fd, const char *want, size_t len)
{
    char piece[512];
    for (size_t at = 0; at < len; at += sizeof piece) {
        size_t n = len - at < sizeof piece ? len - at : sizeof piece;
        if (!read_exactly(fd, piece, n) || memcmp(piece, want + at, n) != 0)
            return false;
    }
    return true;
}

/* Nothing follows: the file did not grow after fstat. */
static bool at_end(int fd)
{
    char extra;
    ssize_t n;
    while ((n = read(fd, &extra, 1)) < 0 && errno == EINTR)
        ;
    return n == 0;
}

/* Read the header (magic | u64 key length | key | u64 binary length | SHA-256 of key + binary)
 * of an entry of `file_size` bytes, and accept it only when it is for `key` and its binary
 * length is the rest of the file and within CACHE_MAX_BINARY: the binary's length and stored
 * digest then in *bin_len and digest. Only the header is read, whatever the file's size. */
static bool read_entry_header(int fd, uint64_t file_size, const char *key, uint64_t *bin_len,
                              uint8_t digest[KQ_SHA256_BYTES])
{
    size_t key_len = strlen(key);
    uint64_t stored_key_len = 0, header = 8 + 8 + (uint64_t)key_len + 8 + KQ_SHA256_BYTES;
    if (file_size <= header || !read_matches(fd, CACHE_MAGIC, 8) ||
        !read_exactly(fd, &stored_key_len, sizeof stored_key_len) || stored_key_len != key_len ||
        !read_matches(fd, key, key_len) || !read_exactly(fd, bin_len, sizeof *bin_len) ||
        !read_exactly(fd, digest, KQ_SHA256_BYTES))
        return false;
    return *bin_len == file_size - header && *bin_len <= CACHE_MAX_BINARY;
}

/* The binary that follows an accepted header, in a new buffer; NULL when it cannot be read
 * whole, or more follows it. */
static unsigned char *read_entry_binary(int fd, uint64_t bin_len)
{
    unsigned char *bin = malloc((size_t)bin_len);
    if (bin != NULL && (!read_exactly(fd, bin, (size_t)bin_len) || !at_end(fd))) {
        free(bin);
        bin = NULL;
    }
    return bin;
}

/* A cached binary whose stored key equals `key` and whose digest matches; NULL when absent,
 * untrusted, stale or corrupt. The header is checked against the key and the file's size
 * before anything is allocated for the binary, so a corrupt entry costs a few reads whatever
 * its size. */
static unsigned char *cache_load(const char *path, const char *key, size_t *size)
{
    uint64_t file_size = 0, bin_len = 0;
    uint8_t stored[KQ_SHA256_BYTES], digest[KQ_SHA256_BYTES];
    int fd = open_entry(path, &file_size);
    if (fd < 0)
        return NULL;
    unsigned char *bin = read_entry_header(fd, file_size, key, &bin_len, stored) ? read_entry_binary(fd, bin_len)
                                                                                   : NULL;
    close(fd);
    if (bin == NULL)
        return NULL;
    entry_digest(key, bin, (size_t)bin_len, digest);
    if (memcmp(digest, stored, sizeof digest) != 0) {
        free(bin);
        return NULL;
    }
    *size = (size_t)bin_len;
    return bin;
}

/* Write atomically (a private temporary file renamed over the entry); failures only lose the
 * cache. */
static void cache_store(const char *path, const char *key, const unsigned char *bin, size_t size)
{
    if ((uint64_t)size > CACHE_MAX_BINARY) /* it would never be loaded */
        return;
    /* a name of its own (mkstemp, 0600): two contexts of one process may store the same entry at once */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return;
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        close(fd);
        remove(tmp);
        return;
    }
    uint64_t key_len = strlen(key), bin_len = size;
    uint8_t digest[KQ_SHA256_BYTES];
    entry_digest(key, bin, size, digest);
    bool ok = fwrite(CACHE_MAGIC, 1, 8, f) == 8 && fwrite(&key_len, sizeof key_len, 1, f) == 1 &&
              fwrite(key, 1, key_len, f) == key_len && fwrite(&bin_len, sizeof bin_len, 1, f) == 1 &&
              fwrite(digest, 1, sizeof digest, f) == sizeof digest && fwrite(bin, 1, size, f) == size;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0)
        remove(tmp);
}

/* ---- building -------------------------------------------------------------------------------- */

static kqcl_status build_failed(kqcl_context *ctx, kq_device *dev, cl_program prog, cl_int err,
                                const char *family, const char *options)
{
    size_t log_size = 0;
    clGetProgramBuildInfo(prog, dev->id, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_size);
    char *log = malloc(log_size + 1);
    if (log) {
        log[0] = '\0';
        clGetProgramBuildInfo(prog, dev->id, CL_PROGRAM_BUILD_LOG, log_size, log, NULL);
        log[log_size] = '\0';
    }
    /* A compile error is KQCL_ERR_BUILD; a driver that runs out of memory or loses the device
     * while building reports what it is (KQCL_ERR_OUT_OF_MEMORY / KQCL_ERR_DEVICE), log kept. */
    kqcl_status status = err == CL_BUILD_PROGRAM_FAILURE || err == CL_INVALID_BUILD_OPTIONS ||
                                 err == CL_COMPILER_NOT_AVAILABLE || err == CL_INVALID_BINARY
                             ? KQCL_ERR_BUILD
                         : err == CL_OUT_OF_HOST_MEMORY || err == CL_MEM_OBJECT_ALLOCATION_FAILURE
                             ? KQCL_ERR_OUT_OF_MEMORY
                             : KQCL_ERR_DEVICE;
    kq_fail(ctx, status, "building %s.cl for %s with '%s': %s (%d)\n--- build log ---\n%s",
            family, dev->info.name, options, kq_cl_error_name(err), (int)err, log ? log : "(no log)");
    free(log);
    return status;
}

/* KQCL_BUILD_LOG (any value but 0): a build that succeeded with something to say (a warning)
 * tells it on stderr, with the family and options -- kernels should compile without warnings, and
 * some drivers (NVIDIA's) print only "1 warning generated." of their own accord. */
static void report_build_log(const kq_device *dev, cl_program prog, const char *family, const char *options)
{
    const char *want = kq_env("KQCL_BUILD_LOG");
    if (want == NULL || strcmp(want, "0") == 0)
        return;
    size_t size = 0;
    if (clGetProgramBuildInfo(prog, dev->id, CL_PROGRAM_BUILD_LOG, 0, NULL, &size) != CL_SUCCESS || size < 2)
        return;
    char *log = malloc(size + 1);
    if (log == NULL)
        return;
    if (clGetProgramBuildInfo(prog, dev->id, CL_PROGRAM_BUILD_LOG, size, log, NULL) == CL_SUCCESS) {
        log[size] = '\0';
        size_t end = strlen(log);
        while (end > 0 && (log[end - 1] == '\n' || log[end - 1] == ' '))
            log[--end] = '\0';
        if (end > 0)
            fprintf(stderr, "kqcl: build log of %s.cl for %s with '%s':\n%s\n", family, dev->info.name, options, log);
    }
    free(log);
}

/* PoCL 3.1 is not safe against a compile on the caller's thread (clBuildProgram, or the binary
 * clGetProgramInfo makes) while its worker threads run and tidy earlier launches -- their
 * work-group functions are compiled and cached there too. Under load, when those launches were
 * still running, processes aborted in PoCL ("Failed to create kernel compiler pass
 * inline-kernels"; "pocl_release_dlhandle_cache: Assertion `found->ref_count > 0'"). So on PoCL
 * the device's queue is drained first; a build is rare (once per variant and context), the wait
 * short. Other contexts of the process are not drained: doc/reliability.md says so. */
static void quiesce_before_build(kq_device *dev)
{
    if (dev->is_pocl && dev->queue)
        clFinish(dev->queue);
}

static unsigned char *program_binary(kq_device *dev, cl_program prog, size_t *size)
{
    (void)dev;
    *size = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof *size, size, NULL) != CL_SUCCESS || *size == 0)
        return NULL;
    unsigned char *bin = malloc(*size);
    if (bin && clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) != CL_SUCCESS) {
        free(bin);
        bin = NULL;
    }
    return bin;
}

/* For kernel work: KQCL_DUMP_BINARIES=DIR writes each freshly built program's binary (PTX text
 * on NVIDIA) to DIR/FAMILY-HASH.bin, with its options in the first line of DIR/FAMILY-HASH.txt. */
static void dump_binary(const char *dir, const char *family, const char *options, const unsigned char *bin,
                        size_t size)
{
    char path[1024];
    unsigned long long h = (unsigned long long)fnv1a(options, strlen(options), FNV_START);
    snprintf(path, sizeof path, "%s/%s-%016llx.txt", dir, family, h);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%s\n", options);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/%s-%016llx.bin", dir, family, h);
    f = fopen(path, "wb");
    if (f) {
        fwrite(bin, 1, size, f);
        fclose(f);
    }
}

static cl_program build_from_cache(kq_device *dev, const char *path, const char *key, const char *options)
{
    size_t size = 0;
    unsigned char *bin = cache_load(path, key, &size);
    if (bin == NULL)
        return NULL;
    cl_int err, bin_status;
    const unsigned char *bins[1] = {bin};
    cl_program prog = clCreateProgramWithBinary(dev->cl_ctx, 1, &dev->id, &size, bins, &bin_status, &err);
    free(bin);
    if (err != CL_SUCCESS || bin_status != CL_SUCCESS) {
        if (prog != NULL)
            clReleaseProgram(prog);
        return NULL;
    }
    if (clBuildProgram(prog, 1, &dev->id, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(prog);
        return NULL;
    }
    return prog;
}

/* use_cached false: build from source even when a cached binary exists (and replace it). */
static kqcl_status build_program(kqcl_context *ctx, kq_device *dev, kq_family family, const char *options,
                                 bool use_cached, cl_program *out, bool *from_cache)
{
    const char *fname = family_files[family];
    const char *parts[2] = {source_text("common"), source_text(fname)};
    if (parts[0] == NULL || parts[1] == NULL)
        return kq_fail(ctx, KQCL_ERR_BUILD, "kernel source %s.cl is not embedded", fname);

    /* The key names everything the binary depends on. */
    size_t key_size = strlen(options) + 1024;
    char *key = malloc(key_size);
    if (key == NULL)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "no memory for a cache key");
    uint64_t src_hash = fnv1a(parts[1], strlen(parts[1]), fnv1a(parts[0], strlen(parts[0]), FNV_START));
    snprintf(key, key_size, "%s|%s|%s|%s|kqcl %s|%s|%016llx|%s", dev->info.name, dev->info.vendor,
             dev->info.driver, dev->platform_version, KQCL_VERSION_STRING, fname,
             (unsigned long long)src_hash, options);

    char path[1024];
    bool cached = cache_path(dev, key, path, sizeof path);
    cl_program prog = cached && use_cached ? build_from_cache(dev, path, key, options) : NULL;
    *from_cache = prog != NULL;
    if (prog == NULL) {
        cl_int err;
        quiesce_before_build(dev);
        prog = clCreateProgramWithSource(dev->cl_ctx, 2, parts, NULL, &err);
        if (err != CL_SUCCESS) {
            free(key);
            return kq_cl_fail(ctx, err, "clCreateProgramWithSource");
        }
        err = clBuildProgram(prog, 1, &dev->id, options, NULL, NULL);
        if (err != CL_SUCCESS) {
            kqcl_status st = build_failed(ctx, dev, prog, err, fname, options);
            clReleaseProgram(prog);
            free(key);
            return st;
        }
        report_build_log(dev, prog, fname, options);
        size_t size;
        const char *dump_dir = kq_env("KQCL_DUMP_BINARIES");
        unsigned char *bin = (cached || dump_dir) ? program_binary(dev, prog, &size) : NULL;
        if (bin && cached)
            cache_store(path, key, bin, size);
        if (bin && dump_dir)
            dump_binary(dump_dir, fname, options, bin, size);
        free(bin);
    }
    free(key);
    *out = prog;
    return KQCL_OK;
}

/* Options every program gets: the user's or a test's extra options last, so they win. */
static char *full_options(const char *options)
{
    const char *extra = kq_env("KQCL_EXTRA_BUILD_OPTIONS");
    size_t size = strlen(options) + (extra ? strlen(extra) : 0) + 32;
    char *s = malloc(size);
    if (s)
        snprintf(s, size, "-cl-std=CL1.2 %s %s", options, extra ? extra : "");
    return s;
}

static kq_program *find_program(kq_device *dev, kq_family family, const char *options)
{
    for (int i = 0; i < dev->n_programs; i++)
        if (dev->programs[i].family == (int)family && strcmp(dev->programs[i].options, options) == 0)
            return &dev->programs[i];
    return NULL;
}

/* A program loaded from the cache lacks a kernel asked of it: a binary that is not what its key
 * says. Build it from source, which also replaces the entry; kernels already made from the old
 * program keep it alive until they are released. */
static kqcl_status rebuild_from_source(kqcl_context *ctx, kq_device *dev, kq_program *p)
{
    cl_program prog;
    bool from_cache;
    kqcl_status st = build_program(ctx, dev, (kq_family)p->family, p->options, false, &prog, &from_cache);
    if (st != KQCL_OK)
        return st;
    clReleaseProgram(p->program);
    p->program = prog;
    p->from_cache = false;
    return KQCL_OK;
}

kqcl_status kq_get_kernel(kqcl_context *ctx, kq_device *dev, kq_family family, const char *options,
                          const char *name, cl_kernel *out)
{
    char *opts = full_options(options);
    if (opts == NULL)
        return kq_fail(ctx, KQCL_ERR_OUT_OF_MEMORY, "no memory for build options");
    kq_program *p = find_program(dev, family, opts);
    if (p == NULL) {
        if (dev->n_programs == KQ_MAX_PROGRAMS) { /* rare: many variants in one context; rebuild as needed */
            clFinish(dev->queue); /* nothing queued may still use the kernels released here */
            kq_programs_release(dev);
        }
        cl_program prog;
        bool from_cache;
        kqcl_status st = build_program(ctx, dev, family, opts, true, &prog, &from_cache);
        if (st != KQCL_OK) {
            free(opts);
            return st;
        }
        p = &dev->programs[dev->n_programs++];
        memset(p, 0, sizeof *p);
        p->family = (int)family;
        p->options = opts;
        p->program = prog;
        p->from_cache = from_cache;
    } else {
        free(opts);
    }
    int slot = 0;
    for (; slot < KQ_KERNELS_PER_PROGRAM && p->kernel_names[slot]; slot++)
        if (strcmp(p->kernel_names[slot], name) == 0) {
            *out = p->kernels[slot];
            return KQCL_OK;
        }
    if (slot == KQ_KERNELS_PER_PROGRAM)
        return kq_fail(ctx, KQCL_ERR_DEVICE, "too many kernels asked of one program");
    cl_int err;
    cl_kernel k = clCreateKernel(p->program, name, &err);
    if (err == CL_INVALID_KERNEL_NAME && p->from_cache && rebuild_from_source(ctx, dev, p) == KQCL_OK)
        k = clCreateKernel(p->program, name, &err);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, "clCreateKernel");
    p->kernel_names[slot] = name; /* names are string literals of the callers */
    p->kernels[slot] = k;
    *out = k;
    return KQCL_OK;
}

void kq_ptx_options(const char *options, char *buf, size_t size) { snprintf(buf, size, "%s -DKQ_NV_PTX", options); }

kqcl_status kq_get_kernel_ptx_first(kqcl_context *ctx, kq_device *dev, kq_family family, const char *options,
                                  const char *name, cl_kernel *out)
{
    if (!dev->nv_ptx)
        return kq_get_kernel(ctx, dev, family, options, name, out);
    char with_ptx[512];
    kq_ptx_options(options, with_ptx, sizeof with_ptx);
    kqcl_status st = kq_get_kernel(ctx, dev, family, with_ptx, name, out);
    if (st != KQCL_ERR_BUILD)
        return st;
    /* The variant does not build on this driver: the portable kernel serves. Only once that
     * builds is the variant switched off for the device; when it fails too (a broken build of
     * every kernel) that failure, with its log, is the call's. */
    st = kq_get_kernel(ctx, dev, family, options, name, out);
    if (st == KQCL_OK)
        kq_turn_off_ptx(ctx, dev, false);
    return st;
}

void kq_turn_off_ptx(kqcl_context *ctx, kq_device *dev, bool tensor_cores_only)
{
    dev->memo_epoch++; /* the picks remembered with those variants on no longer hold (family.c) */
    dev->nv_mma = false;
    if (!tensor_cores_only)
        dev->nv_ptx = false;
    kq_describe_kernels(dev, dev->info.variant, sizeof dev->info.variant);
    kq_clear_error(ctx); /* the call succeeded on the portable kernel: the failed build's log is not its error */
}

void kq_programs_release(kq_device *dev)
{
    for (int i = 0; i < dev->n_programs; i++) {
        kq_program *p = &dev->programs[i];
        for (int j = 0; j < KQ_KERNELS_PER_PROGRAM && p->kernel_names[j]; j++)
            clReleaseKernel(p->kernels[j]);
        clReleaseProgram(p->program);
        free(p->options);
    }
    dev->n_programs = 0;
    dev->memo_epoch++; /* the kernels remembered with the picks are gone (family.c) */
}

void kq_describe_kernels(const kq_device *dev, char *buf, size_t size)
{
    snprintf(buf, size, "%s, portable%s%s%s", dev->gpu_kernels ? "GPU family" : "CPU family",
             dev->nv_ptx ? " + NVIDIA inline PTX" : "", dev->nv_mma ? ", tensor cores" : "",
             dev->is_pocl ? " (PoCL: kqcl binary cache off)" : "");
}

static cl_int set_args(cl_kernel kernel, int first, int count, va_list ap)
{
    cl_int err = CL_SUCCESS;
    for (int i = 0; i < count && err == CL_SUCCESS; i++) {
        size_t size = va_arg(ap, size_t);
        const void *value = va_arg(ap, const void *);
        err = clSetKernelArg(kernel, (cl_uint)(first + i), size, value);
    }
    return err;
}

cl_int kq_set_args(cl_kernel kernel, int count, ...)
{
    va_list ap;
    va_start(ap, count);
    cl_int err = set_args(kernel, 0, count, ap);
    va_end(ap);
    return err;
}

cl_int kq_set_args_from(cl_kernel kernel, int first, int count, ...)
{
    va_list ap;
    va_start(ap, count);
    cl_int err = set_args(kernel, first, count, ap);
    va_end(ap);
    return err;
}

kqcl_status kq_enqueue(kqcl_context *ctx, kq_device *dev, cl_kernel kernel, cl_uint dims,
                       const size_t *global, const size_t *local, const char *what)
{
    cl_event ev = NULL; /* only timed queues give events a use: each costs the driver time */
    cl_int err = clEnqueueNDRangeKernel(dev->queue, kernel, dims, NULL, global, local, 0, NULL, ctx->timing ? &ev : NULL);
    if (err != CL_SUCCESS)
        return kq_cl_fail(ctx, err, what);
    kq_events_add(ctx, ev);
    return KQCL_OK;
}
