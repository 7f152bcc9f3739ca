/*
 * commands.h -- the subcommands of the kqcl tool. Each takes the subcommand's own argv (argv[0]
 * is the subcommand name) and returns the process exit status: 0 success, 1 failure (bad
 * file, device error, failed check), 2 bad usage.
 */
#ifndef KQCL_TOOLS_COMMANDS_H
#define KQCL_TOOLS_COMMANDS_H

#include "kqcl.h"

/* The tool's files include this first: POSIX (clock_gettime, strtok_r, isatty) under -std=c11. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "util.h" /* the clock, medians, checked parsing, escaping: shared by every subcommand */

/* bench.c */
int kq_cmd_bench(int argc, char **argv);

/* A tensor over every device of ctx in equal shares (`split`), or on device 0 for
 * KQCL_SPLIT_NONE; and where X and Y go for a W split so (rows: X replicated, Y by columns;
 * columns: X by columns, Y replicated), so every device finds its operands in place. */
kqcl_status kq_tool_create_placed(kqcl_context *ctx, kqcl_type type, int64_t rows, int64_t cols, kqcl_split split,
                                  kqcl_tensor **out);
void kq_tool_operand_splits(kqcl_split w_split, kqcl_split *x_split, kqcl_split *y_split);
    /* kqcl bench [...] */

int kq_cmd_gguf(int argc, char **argv);     /* cmd_gguf.c: kqcl gguf FILE [--json] */
int kq_cmd_run(int argc, char **argv);      /* cmd_run.c: kqcl run FILE [--devices SPEC] [--n N] ... */
int kq_cmd_quantize(int argc, char **argv); /* cmd_quantize.c: kqcl quantize IN.gguf OUT.gguf TYPE */

/* cmd_plan.c */
int kq_cmd_plan(int argc, char **argv);     /* kqcl plan [FILE.gguf] [--devices SPEC] [--mode M] ... */

/* bench_multi.c: the collectives' table, for kqcl bench --collectives (1 on failure). */
#include <stdbool.h>
typedef struct kqcl_context kqcl_context;
int kq_bench_collectives(kqcl_context *ctx, bool json);

#endif
