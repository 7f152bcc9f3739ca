/* toolutil.h -- what the suites that run the kqcl tool as a user runs it share (test_cli,
 * test_hostile): a scratch directory, and the tool run through the shell with its output caught. */
#ifndef KQCL_TOOLUTIL_H
#define KQCL_TOOLUTIL_H

#include <check.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* The scratch directory: $TMPDIR (else /tmp)/kqcl-NAME-XXXXXX, made by tool_make_tmp_dir (false
 * when mkdtemp fails, errno set) and removed with all it holds by tool_remove_tmp_dir. */
extern char tool_tmp_dir[256];
bool tool_make_tmp_dir(const char *name);
void tool_remove_tmp_dir(void);

/* tool_tmp_dir/name; the last four paths it gave stay valid (tool_run takes none of them). */
const char *tool_tmp_path(const char *name);

/* What the last tool_run wrote: stdout (tool_out_length bytes, at most 1 MiB) and stderr (at
 * most 64 KiB), NUL-terminated. */
extern char tool_out[1 << 20], tool_err[1 << 16];
extern size_t tool_out_length;

/* Run the shell words `prefix` ("timeout 10", "COLUMNS=60", ...), then $KQCL_BUILDDIR/tools/kqcl
 * (else ./tools/kqcl) with the formatted arguments, stdout and stderr to files of tool_tmp_dir,
 * read back into tool_out and tool_err. Returns its exit status, or 128 + the signal that
 * killed it. */
int tool_run(const char *prefix, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tool_runv(const char *prefix, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define ck_assert_has(text, what) ck_assert_msg(strstr((text), (what)) != NULL, "'%s' lacks '%s'", (text), (what))

#endif
