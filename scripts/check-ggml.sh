#!/bin/bash
# check-ggml.sh [TARBALL] [WORK] -- the ggml module judged by ggml's own tests, from scratch
# (what CI runs): unpack and build the pinned llama.cpp (TARBALL, default
# ../shared/peers/llama.cpp-0c1e570.tar.gz beside this checkout, built by the llama-build.sh
# beside it: CPU backend, shared libraries, test-backend-ops and the tools), configure kqcl out
# of tree --with-ggml on that source, build libggml-kqcl.so, and run `make check-ggml`:
# test-backend-ops -o MUL_MAT on KQCL0 (PoCL on a machine without a GPU) against ggml's CPU
# backend, then a real model through it (scripts/check-ggml-model.sh; KQCL_GGML_MODEL=0 skips
# it). Fails on any failed case. WORK (default /tmp/kqcl-check-ggml) keeps the builds, so a
# second run only rebuilds what changed. JOBS (default 2) sets make's parallelism.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
tarball=${1:-$src/../shared/peers/llama.cpp-0c1e570.tar.gz}
work=${2:-${TMPDIR:-/tmp}/kqcl-check-ggml}
jobs=${JOBS:-2}
start=$(date +%s)

if [ ! -f "$tarball" ]; then
  echo "check-ggml: no $tarball (llama.cpp 0c1e570; pip download --no-deps --no-binary :all:"
  echo "llama-cpp-python==0.3.36 has the same tree under vendor/llama.cpp)"
  exit 1
fi
tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")
builder=$(dirname "$tarball")/llama-build.sh
[ -f "$builder" ] || { echo "check-ggml: no llama-build.sh beside $tarball"; exit 1; }

# What building llama.cpp takes beyond kqcl's own quickstart packages.
missing=""
for p in cmake ninja-build g++; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

mkdir -p "$work"
echo "== llama.cpp 0c1e570 (CPU backend, shared libraries) in $work/llama-build"
LLAMA_SRC="$work/llama-src" bash "$builder" "$tarball" "$work/llama-build"
llama_done=$(date +%s)

# An out-of-tree build needs a source tree that was not configured in place; a checkout that
# was (./quickstart) is copied first: its tracked files and the untracked ones git does not
# ignore.
kqsrc=$src
if [ -f "$src/config.status" ]; then
  kqsrc=$work/kqcl-src
  rm -rf "$kqsrc" && mkdir -p "$kqsrc"
  (cd "$src" && git ls-files -z --cached --others --exclude-standard | tar --null --no-recursion -T - -cf -) |
    tar -xf - -C "$kqsrc"
fi
if [ ! -x "$kqsrc/configure" ]; then
  (cd "$kqsrc" && autoreconf -fi) > "$work/autoreconf.log" 2>&1 || { tail -20 "$work/autoreconf.log"; exit 1; }
fi

echo "== kqcl --with-ggml=$work/llama-src/llama.cpp in $work/kqcl-build"
mkdir -p "$work/kqcl-build"
cd "$work/kqcl-build"
if [ ! -f Makefile ] || [ "$(sed -n 's/^GGML_DIR = //p' Makefile)" != "$work/llama-src/llama.cpp/ggml" ] ||
   [ "$(sed -n 's/^srcdir = //p' Makefile)" != "$kqsrc" ]; then
  [ -f Makefile ] && make distclean > /dev/null 2>&1 || true
  "$kqsrc/configure" --with-ggml="$work/llama-src/llama.cpp" > configure.log 2>&1 || { tail -20 configure.log; exit 1; }
fi
make -j"$jobs" ggml/libggml-kqcl.la > make.log 2>&1 || { tail -30 make.log; exit 1; }

echo "== test-backend-ops (make check-ggml) on KQCL0"
make check-ggml LLAMA_BUILD="$work/llama-build"
ops_done=$(date +%s)

[ "${KQCL_GGML_MODEL:-1}" = 0 ] || bash "$kqsrc/scripts/check-ggml-model.sh" "$work" "$PWD/ggml/.libs/libggml-kqcl.so"
end=$(date +%s)
echo "check-ggml: passed in $(( end - start )) s (llama.cpp $(( llama_done - start )) s, module and ops $(( ops_done - llama_done )) s, model $(( end - ops_done )) s)"
