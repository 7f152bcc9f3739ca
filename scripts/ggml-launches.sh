#!/bin/bash
# ggml-launches.sh GREEDY_LOGITS SHIM MODULE MODEL [fa]  -- kernel launches a decoded token costs
# on KQCL0: greedy-logits (ggml/greedy-logits.c, built by ggml-greedy.sh) decodes 8 and then 40
# tokens with the OpenCL shim counting launches (tests/clshim.c, KQCL_SHIM_LAUNCHES=1); the
# difference over the extra steps (its output lines) is a decode step's count, with each kernel's
# share and the other OpenCL calls an op may make (clCreateSubBuffer: views not kept). "fa": the KV cache and flash attention on the device too (llama.cpp's -fa on).
set -euo pipefail
greedy=${1:?usage: ggml-launches.sh GREEDY_LOGITS SHIM MODULE MODEL [fa]}
shim=${2:?} module=${3:?} model=${4:?} mode=${5:-}
ocl=$(ldconfig -p | awk '/libOpenCL\.so\.1 / { print $NF; exit }')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { # "steps N", then the shim's counts, one "name count" a line ("all" for the total)
  KQCL_SHIM_LAUNCHES=1 LD_PRELOAD="$shim $ocl" GGML_BACKEND_PATH="$module" "$greedy" "$model" KQCL0 "$1" \
    "The capital of France is Paris. Here is a short history of the city:" $mode > "$tmp/out" 2> "$tmp/err"
  echo "steps $(wc -l < "$tmp/out")"
  awk '/^clshim: launches [0-9]/ { print "all", $3 } /^clshim: (launches|calls) of / { print $4, $5 }' "$tmp/err"
}
count 8 > "$tmp/a"
count 40 > "$tmp/b"
awk 'NR == FNR { a[$1] = $2; next }
     $1 == "steps" { steps = $2 - a["steps"]; printf "%-16s %7d\n", "decode steps", steps; next }
     { d = ($2 - a[$1]) / steps; if (d > 0) printf "%-16s %7.1f\n", $1, d }' "$tmp/a" "$tmp/b"
