#!/bin/bash
# ggml-greedy.sh build LLAMA_SRC LLAMA_BUILD  -- builds ggml/greedy-logits.c against the pinned
#                                                llama.cpp (LLAMA_BUILD/bin/greedy-logits)
# ggml-greedy.sh compare A B                   -- two greedy-logits outputs side by side: the
#                                                tokens they share, and where they part, each
#                                                run's gap between its first and second choice
# Greedy tokens of two backends agree until a step where the top two logits lie closer than the
# backends' rounding differences; the gap at the parting step says whether it was such a near-tie.
set -euo pipefail
case ${1:-} in
build)
  src=${2:?usage: ggml-greedy.sh build LLAMA_SRC LLAMA_BUILD}
  build=${3:?usage: ggml-greedy.sh build LLAMA_SRC LLAMA_BUILD}
  here=$(cd "$(dirname "$0")/.." && pwd)
  cc -std=c11 -O2 -Wall -Wextra -o "$build/bin/greedy-logits" "$here/ggml/greedy-logits.c" \
    -I"$src/include" -I"$src/ggml/include" -L"$build/bin" -lllama -lggml -lggml-base \
    -Wl,-rpath,"$build/bin"
  ;;
compare)
  a=${2:?usage: ggml-greedy.sh compare A B}
  b=${3:?usage: ggml-greedy.sh compare A B}
  paste "$a" "$b" | awk -F'\t' -v a="$a" -v b="$b" '
    NF < 14 { next }
    $2 == $9 { same++; next }
    { printf "%s and %s give the same %d tokens, then part at step %d:\n", a, b, same, $1
      printf "  %s: token %d (logit %s) over %d (%s), gap %s\n", a, $2, $3, $4, $5, $6
      printf "  %s: token %d (logit %s) over %d (%s), gap %s\n", b, $9, $10, $11, $12, $13
      parted = 1; exit }
    END { if (!parted) printf "%s and %s give the same %d tokens\n", a, b, same }'
  ;;
*)
  sed -n '2,8p' "$0"
  exit 2
  ;;
esac
