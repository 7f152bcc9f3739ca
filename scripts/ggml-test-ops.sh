#!/bin/bash
# ggml-test-ops.sh TEST_BACKEND_OPS MODULE [OPS] -- ggml's own test-backend-ops (from a build of
# the pinned llama.cpp) judges the kqcl module: every case of OPS (default MUL_MAT, a -o list)
# on device $GGML_BACKEND (default KQCL0) against ggml's CPU backend. Prints the counts per
# op and weight type (run / passed / not supported) and fails on any failed case, or when nothing ran
# (the module did not load, or no device). The full log is kept in $GGML_TEST_LOG (default
# ggml-test-ops.log in the current directory). `make check-ggml` runs it.
set -u
tbo=${1:?usage: ggml-test-ops.sh TEST_BACKEND_OPS MODULE [OPS]}
module=${2:?usage: ggml-test-ops.sh TEST_BACKEND_OPS MODULE [OPS]}
ops=${3:-MUL_MAT}
backend=${GGML_BACKEND:-KQCL0}
log=${GGML_TEST_LOG:-ggml-test-ops.log}

if [ ! -x "$tbo" ]; then
  echo "ggml-test-ops: no $tbo; build the pinned llama.cpp first:"
  echo "  bash ../shared/peers/llama-build.sh ../shared/peers/llama.cpp-0c1e570.tar.gz /tmp/llama-build"
  echo "and give its build directory (make check-ggml LLAMA_BUILD=/tmp/llama-build)"
  exit 1
fi
if [ ! -f "$module" ]; then
  echo "ggml-test-ops: no module $module"
  exit 1
fi

start=$(date +%s)
# GGML_TEST_PARAMS: a regex the cases' parameters must match (test-backend-ops -p), to keep a long
# op's run to some of its cases.
filter=()
[ -n "${GGML_TEST_PARAMS:-}" ] && filter=(-p "$GGML_TEST_PARAMS")
GGML_BACKEND_PATH=$module "$tbo" test -b "$backend" -o "$ops" "${filter[@]}" > "$log" 2>&1
rc=$?
secs=$(( $(date +%s) - start ))

# The console printer's lines: "  OP(type_a=q4_0,type_b=f32,...): OK" (colour codes around the
# verdict), "...: not supported [KQCL0]" (or [CPU]: the reference lacks it), "...: compare
# failed ... FAIL"; a failed comparison's "[OP] ERR = ... > ..." may come first on the line.
sed 's/\x1b\[[0-9;]*m//g' "$log" | awk -v backend="$backend" -v ops="$ops" -v rc="$rc" -v secs="$secs" '
  /[A-Z][A-Z_0-9]*\([a-z_0-9]+=[^)]*\): / {
    t = "-"
    if (match($0, /type_a=[^,)]+/)) t = substr($0, RSTART + 7, RLENGTH - 7)
    else if (match($0, /type_dst=[^,)]+/)) t = substr($0, RSTART + 9, RLENGTH - 9)
    else if (match($0, /type=[^,)]+/)) t = substr($0, RSTART + 5, RLENGTH - 5)
    match($0, /[A-Z][A-Z_0-9]*\([a-z_0-9]+=/)
    op = substr($0, RSTART, RLENGTH); sub(/\(.*/, "", op)
    t = sprintf("%-10s %s", op, t)
    if (!(t in seen)) { seen[t] = 1; order[++ntypes] = t }
    if ($0 ~ /not supported \[/) {
      if ($0 ~ ("not supported \\[[^]]*" backend)) { ns[t]++; NS++ } else { nc[t]++; NC++ }
    } else if ($0 ~ /FAIL[ \t]*$/) { run[t]++; RUN++; failed[++nfailed] = $0 }
    else if ($0 ~ /OK[ \t]*$/) { run[t]++; ok[t]++; RUN++; OK++ }
    next
  }
  END {
    printf "test-backend-ops %s on %s (%d s): cases run, passed, not supported by %s, and\n", ops, backend, secs, backend
    printf "supported by %s but not by the CPU backend that is the reference (not run):\n", backend
    printf "  %-18s %6s %7s %14s %12s\n", "op       type", "run", "passed", "not supported", "CPU lacks"
    for (i = 1; i <= ntypes; i++) {
      t = order[i]
      printf "  %-18s %6d %7d %14d %12d\n", t, run[t], ok[t], ns[t], nc[t]
    }
    printf "  %-18s %6d %7d %14d %12d\n", "all", RUN, OK, NS, NC
    for (i = 1; i <= nfailed; i++) print "FAILED: " failed[i]
    if (nfailed > 0 || RUN == 0 || rc != 0) {
      if (RUN == 0) print "ggml-test-ops: no case ran on " backend " (did the module load? is there a device?)"
      if (rc != 0) print "ggml-test-ops: test-backend-ops exited with status " rc
      exit 1
    }
  }'
status=$?
if [ $status -ne 0 ]; then
  echo "ggml-test-ops: FAILED; the log is $log; its last lines:"
  tail -n 15 "$log" | sed 's/\x1b\[[0-9;]*m//g'
fi
exit $status
