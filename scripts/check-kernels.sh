#!/bin/bash
# check-kernels.sh VARIANTS CLDIR OUTDIR [JOBS] -- `make check-kernels`: every kernel variant kqcl
# can select (VARIANTS: tests/kernel_variants, which asks lib/kernels/family.c), compiled offline as the
# other vendors' drivers would compile it:
#   amdgcn   clang-19 + libclc for AMD's gfx90a, gfx942 (CDNA), gfx1030, gfx1100 (RDNA): object
#            code, its undefined symbols and the local memory (group segment) the compiler gives,
#            with private arrays kept out of local memory (-disable-promote-alloca-to-lds: the
#            backend otherwise moves them into what local memory is left over, within the limit)
#            so that the figure is the kernel's own and can be held against kqcl's
#   spir64   clang-19 to SPIR LLVM, optimized and with -cl-opt-disable (the SPIR-V route of
#            Intel's and Mesa's drivers; bare `inline` helpers are left undefined there)
#   spirv    clang-15 + llvm-spirv-15 to SPIR-V, checked with spirv-val (no Import linkage)
#   nvptx64  clang-19 + libclc to PTX, for the NVIDIA-only variants (inline PTX, -fgnu-keywords)
#   x86_64   clang-19 for an x86-64 CPU without AVX-512 (haswell), as PoCL compiles a program for
#            such a CPU, with every warning an error: PoCL prints the compiler's warnings to the
#            user's terminal, so a kernel that warns there fails here (the CPU and GPU families
#            both run on PoCL)
# and, for every variant but the NVIDIA-only ones, its preprocessed source is searched for what
# is not OpenCL C (__builtin_*, asm). A variant fails on a compile error, an undefined function,
# a non-OpenCL-C construct, or local memory beyond the target's limit or beyond kqcl's own
# figure (which the library checks against the device before building). An offline-toolchain
# limit is kept out of the verdict: Debian 12's llvm-spirv-15 cannot translate clang-15's
# optimized LLVM (the `freeze` instruction; loops' blocks written before their dominators;
# allocas outside the entry block -- spirv-val rejects those orders, not the code), so SPIR-V is
# made from unoptimized LLVM, as drivers optimize SPIR-V themselves.
# Writes OUTDIR/variants.tsv (variant x target) and OUTDIR/summary.md; prints the summary.
set -u
if [ "${1:-}" = "--one" ]; then mode=one; shift; else mode=all; fi

CLANG=${CLANG:-clang-19}
CLANG_SPIRV=${CLANG_SPIRV:-clang-15}
LLVM_SPIRV=${LLVM_SPIRV:-llvm-spirv-15}
NM=${NM:-llvm-nm-19}
READOBJ=${READOBJ:-llvm-readobj-19}
CLC=${CLC:-/usr/lib/clc}
AMD_LIMIT=65536
NV_LIMIT=49152

# ---- one variant: KEY <TAB> TARGETS <TAB> LOCAL <TAB> FAMILY <TAB> OPTIONS -> a result line ----
check_one() {
  local line=$1 cl=$2 work=$3
  local targets local_bytes family options
  IFS=$'\t' read -r _ targets local_bytes family options <<< "$line"
  local dir; dir=$(mktemp -d "$work/v.XXXXXX")
  # as lib/device/program.c builds it: the layout header (embed-cl.sh prepends it to common.cl), common, family
  cat "$cl/kquant_layout.h" "$cl/common.cl" "$cl/$family.cl" > "$dir/k.cl"
  local base="-x cl -cl-std=CL1.2 -Werror=implicit-function-declaration $options"
  # The Q8 kernels' cl_khr_integer_dot_product form (-DKQ_INT_DOT): compiled for SPIR as for a
  # device that offers the extension (its builtin stays a call the runtime provides). libclc
  # (amdgcn) and llvm-spirv-15 lack the builtin, so those routes compile the char form the same
  # options give a device without it.
  local int_dot=""
  [[ " $options " == *" -DKQ_INT_DOT "* ]] && int_dot="-Dcl_khr_integer_dot_product -D__opencl_c_integer_dot_product_input_4x8bit_packed"
  local out="" t verdict
  if [[ " $options " != *" -DKQ_NV_PTX "* ]]; then
    # shellcheck disable=SC2086
    if ! $CLANG -x c -E -P -undef -nostdinc $options "$dir/k.cl" -o "$dir/pp.c" 2> "$dir/pp.log"; then
      verdict="FAIL(preprocess)"
    elif grep -qE '__builtin_|\basm\b|__asm' "$dir/pp.c"; then
      verdict="FAIL(not OpenCL C: $(grep -oE '__builtin_[a-z_]+|\basm\b|__asm[a-z_]*' "$dir/pp.c" | sort -u | tr '\n' ' '))"
    else
      verdict=ok
    fi
    out="$out opencl-c=$verdict"
  fi
  for t in $targets; do
    verdict=ok
    case $t in
      gfx*)
        # shellcheck disable=SC2086
        if ! $CLANG $base -target amdgcn-amd-amdhsa -mcpu="$t" -nogpulib -Wno-linker-warnings -mllvm -disable-promote-alloca-to-lds -Xclang -mlink-builtin-bitcode \
             -Xclang "$CLC/amdgcn--amdhsa.bc" -O2 -c "$dir/k.cl" -o "$dir/$t.o" 2> "$dir/$t.log"; then
          verdict="FAIL(compile)"
        else
          local undef; undef=$($NM -u "$dir/$t.o" | awk '{print $2}' | tr '\n' ' ')
          local lds; lds=$($READOBJ --notes "$dir/$t.o" | awk '/group_segment_fixed_size/ {if ($2 > m) m = $2} END {print m + 0}')
          if [ -n "$undef" ]; then verdict="FAIL(undefined: $undef)"
          elif [ "$lds" -gt "$AMD_LIMIT" ]; then verdict="FAIL(local $lds > $AMD_LIMIT)"
          elif [ "$lds" -gt "$local_bytes" ]; then verdict="FAIL(local $lds > kqcl's $local_bytes)"
          fi
        fi ;;
      spir64|spir64-O0)
        local opt=-O2; [ "$t" = spir64-O0 ] && opt=-cl-opt-disable
        # shellcheck disable=SC2086
        if ! $CLANG $base $int_dot -target spir64 $opt -emit-llvm -c "$dir/k.cl" -o "$dir/$t.bc" 2> "$dir/$t.log"; then
          verdict="FAIL(compile)"
        else # OpenCL builtins are mangled (_Z...); kqcl's own helpers are plain C names
          local undef; undef=$($NM -u "$dir/$t.bc" | awk '{print $2}' | grep -v '^_Z' | grep -v '^llvm\.' | tr '\n' ' ')
          [ -n "$undef" ] && verdict="FAIL(undefined: $undef)"
        fi ;;
      spirv)
        # shellcheck disable=SC2086
        if ! $CLANG_SPIRV $base -Xclang -finclude-default-header -target spir64 -O0 -emit-llvm -c "$dir/k.cl" \
             -o "$dir/s.bc" 2> "$dir/$t.log" || ! $LLVM_SPIRV "$dir/s.bc" -o "$dir/k.spv" 2>> "$dir/$t.log"; then
          verdict="FAIL(translate)"
        elif ! spirv-val "$dir/k.spv" >> "$dir/$t.log" 2>&1; then
          verdict="FAIL(spirv-val)"
        else # functions left to a linker; the work-item built-ins (__spirv_BuiltIn*) are imported by design
          local imports; imports=$(spirv-dis "$dir/k.spv" 2>/dev/null | grep -o 'LinkageAttributes "[^"]*" Import' |
                                   cut -d'"' -f2 | grep -v '^__spirv_BuiltIn' | tr '\n' ' ')
          [ -n "$imports" ] && verdict="FAIL(imports: $imports)"
        fi ;;
      x86_64)
        # shellcheck disable=SC2086
        if ! $CLANG $base -Werror -target x86_64-pc-linux-gnu -Xclang -target-cpu -Xclang haswell -O2 -c "$dir/k.cl" \
             -o "$dir/x86.o" 2> "$dir/$t.log"; then
          verdict="FAIL(compile or warning)"
        fi ;;
      nvptx64)
        # shellcheck disable=SC2086
        if ! $CLANG $base -fgnu-keywords -target nvptx64-unknown-nvidiacl -Wno-linker-warnings -Xclang -mlink-builtin-bitcode \
             -Xclang "$CLC/nvptx64--nvidiacl.bc" -O2 -S "$dir/k.cl" -o "$dir/k.ptx" 2> "$dir/$t.log"; then
          verdict="FAIL(compile)"
        elif grep -qE '^\.extern \.func' "$dir/k.ptx"; then
          verdict="FAIL(undefined: $(grep -E '^\.extern \.func' "$dir/k.ptx" | grep -oE '[A-Za-z_][A-Za-z0-9_]*\(' | tr -d '(' | tr '\n' ' '))"
        else # a kernel's shared arrays are named KERNEL_$_NAME
          local smem; smem=$(awk '/\.shared .*_\$_/ {split($0, a, "_\\$_"); n = $0; sub(/.*\[/, "", n); sub(/\].*/, "", n);
                               k = a[1]; sub(/.* /, "", k); s[k] += n} END {for (k in s) if (s[k] > m) m = s[k]; print m + 0}' "$dir/k.ptx")
          if [ "$smem" -gt "$NV_LIMIT" ]; then verdict="FAIL(local $smem > $NV_LIMIT)"
          elif [ "$smem" -gt "$local_bytes" ]; then verdict="FAIL(local $smem > kqcl's $local_bytes)"
          fi
        fi ;;
    esac
    out="$out $t=$verdict"
    case $verdict in FAIL*) { echo "$family $options: $t: $verdict"; sed "s|^|    |" "$dir/$t.log" | head -20; } >&2 ;; esac
  done
  printf '%s\t%s\t%s\n' "$family" "$options" "${out# }"
  rm -rf "$dir"
}

if [ $mode = one ]; then check_one "$1" "$2" "$3"; exit 0; fi

variants=$1 cl=$2 out=$3 jobs=${4:-2}
missing=""
for tool in "$CLANG" "$CLANG_SPIRV" "$LLVM_SPIRV" "$NM" "$READOBJ" spirv-val spirv-dis; do
  command -v "$tool" > /dev/null || missing="$missing $tool"
done
for f in "$CLC/amdgcn--amdhsa.bc" "$CLC/nvptx64--nvidiacl.bc"; do [ -e "$f" ] || missing="$missing $f"; done
if [ -n "$missing" ]; then
  echo "check-kernels: missing:$missing"
  echo "check-kernels: apt-get install clang-19 llvm-19 libclc-19 clang-15 llvm-spirv-15 spirv-tools"
  exit 1
fi
rm -rf "$out" && mkdir -p "$out/work"
"$variants" > "$out/list.tsv" || { echo "check-kernels: $variants failed"; exit 1; }
# One job a distinct (family, options), with the targets of every profile that lists it: GPU
# variants for SPIR, SPIR-V, x86-64 (PoCL runs them in the tests) and the four AMD targets; CPU
# variants for SPIR, SPIR-V (Intel's CPU runtime takes SPIR-V) and x86-64 (PoCL); the NVIDIA
# profile's variants, inline PTX or not, for nvptx64. The
# smaller candidates a device steps down to (rank > 0) are compiled for SPIR only -- where an
# undefined helper or a non-OpenCL-C construct shows -- unless KQCL_VARIANTS_ALL=1, which also
# compiles every n of decode for every type pair: about 25 minutes on 2 cores, against 5.
awk -F'\t' -v all="${KQCL_VARIANTS_ALL:-0}" '{
  prof = $1; fam = $3; rank = $4; loc = $5; opt = $6; key = fam " " opt; first = rank == 0 || all == 1
  t = ""
  if (opt ~ / -DKQ_NV_PTX( |$)/ || prof == "nvidia") t = (first ? "nvptx64" : "")
  else if (prof == "gpu") t = "spir64 spir64-O0" (first ? " spirv x86_64 gfx90a gfx942 gfx1030 gfx1100" : "")
  else t = "spir64 spir64-O0" (first ? " spirv x86_64" : "")
  if (!(key in seen)) { seen[key] = 1; order[++n] = key; fams[key] = fam; opts[key] = opt; locs[key] = loc }
  split(t, ts, " "); for (i in ts) if (ts[i] != "" && index(" " tg[key] " ", " " ts[i] " ") == 0) tg[key] = tg[key] " " ts[i]
} END { for (i = 1; i <= n; i++) { k = order[i]; if (tg[k] != "") printf "%d\t%s\t%s\t%s\t%s\n", i, substr(tg[k], 2), locs[k], fams[k], opts[k] } }' \
  "$out/list.tsv" > "$out/jobs.tsv"
echo "check-kernels: $(wc -l < "$out/list.tsv") variants of 4 device profiles, $(wc -l < "$out/jobs.tsv") distinct; compiling with $jobs jobs"
tr '\n' '\0' < "$out/jobs.tsv" | xargs -0 -P "$jobs" -I{} bash "$0" --one {} "$cl" "$out/work" > "$out/variants.tsv" 2> "$out/failures.log"
# The table: per family and target, how many variants passed.
awk -F'\t' -v targets="opencl-c gfx90a gfx942 gfx1030 gfx1100 spir64 spir64-O0 spirv x86_64 nvptx64" \
    -v families="matvec matmul mma q8 convert reduce bench elementwise attention" '
  { n = split($3, r, " "); for (i = 1; i <= n; i++) { t = r[i]; sub(/=.*/, "", t); v = substr(r[i], length(t) + 2)
      key = $1 " " t; all[key]++
      if (v != "ok") { bad[key]++; fails++ } } }
  END {
    nt = split(targets, ts, " "); nf = split(families, fs, " ")
    printf "| family |"; for (i = 1; i <= nt; i++) printf " %s |", ts[i]; printf "\n| --- |"
    for (i = 1; i <= nt; i++) printf " --- |"; printf "\n"
    for (j = 1; j <= nf; j++) { printf "| %s |", fs[j]
      for (i = 1; i <= nt; i++) { key = fs[j] " " ts[i]; c = all[key] + 0
        if (c == 0) { printf " - |"; continue }
        printf " %d/%d ok", c - bad[key], c
        if (bad[key]) printf ", **%d FAIL**", bad[key]
        printf " |" }
      printf "\n" }
    exit fails > 0 }' "$out/variants.tsv" > "$out/summary.md"
status=$?
cat "$out/summary.md"
if [ $status -ne 0 ] || [ ! -s "$out/variants.tsv" ]; then
  echo "check-kernels: FAILED; the failing variants:"
  grep FAIL "$out/variants.tsv" | head -20
  head -40 "$out/failures.log"
  exit 1
fi
echo "check-kernels: $(wc -l < "$out/variants.tsv") variants compiled for every target they can meet; none failed"
rm -rf "$out/work"
