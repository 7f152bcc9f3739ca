#!/bin/bash
# gpu-lease-verify.sh first|second -- reliability.md bug 7 checked on a lent GPU in two calls on
# one warm machine, from the repository root:
#   first  (carry build-gpu, build-peers, build-model/part00): test_layer and test_faults on both
#          kernel paths, while llama-perplexity (CPU-only llama.cpp) builds in the background;
#   second (carry build-model/part01, part02): SmolLM2 joined, llama-perplexity through the
#          module with an f16 cache in four streams (-fa on and off, -kvu) and a q8_0 one.
# The model is split in 40 MB parts (split -b 40000000 -d MODEL build-model/part).
set -u
. build-peers/device/opencl-env.sh
export KQCL_TEST_DATA=$PWD/tests/data LD_LIBRARY_PATH=$PWD/build-gpu/lib-extra:$LD_LIBRARY_PATH KQCL_DEVICES=gpu
case ${1:?first or second} in
first)
  cp build-model/part00 /tmp/smol.part00
  mkdir -p /tmp/ls && tar -xzf build-peers/llama.cpp-0c1e570.tar.gz -C /tmp/ls
  ( cmake -S /tmp/ls/llama.cpp -B /tmp/lb -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF \
      -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF > /tmp/lb.log 2>&1 &&
      ninja -C /tmp/lb llama-perplexity >> /tmp/lb.log 2>&1
    echo "llama rc=$?" > /tmp/lb.done ) &
  for t in test_layer test_faults; do for p in auto portable; do
    ( [ $p = portable ] && export KQCL_PORTABLE=1
      KQCL_CACHE_DIR=/tmp/kc-$p-$t CK_DEFAULT_TIMEOUT=120 timeout 170 build-gpu/tests/$t > /tmp/$t-$p.txt 2>&1
      echo "$t $p rc=$? $(grep -E '^[0-9]+%' /tmp/$t-$p.txt)"; grep ":[EF]:" /tmp/$t-$p.txt | head -3 | cut -c1-250 ) &
  done; done
  wait; cat /tmp/lb.done; tail -2 /tmp/lb.log
  ;;
second)
  M=/tmp/smol.gguf T=/tmp/ls/llama.cpp/README.md
  cat /tmp/smol.part00 build-model/part01 build-model/part02 > $M
  echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $M" | sha256sum -c - || exit 1
  export GGML_BACKEND_PATH=$PWD/build-gpu/ggml/libggml-kqcl.so KQCL_CACHE_DIR=/tmp/kc-ggml
  ppl() { local name=$1; shift
    timeout 60 /tmp/lb/bin/llama-perplexity -m $M -f $T -c 512 --chunks 5 -ngl 99 -dev KQCL0 "$@" > /tmp/ppl-$name.log 2>&1
    echo "ppl $name rc=$? $(grep -o 'Final estimate.*' /tmp/ppl-$name.log)"; }
  ppl f16-fa -fa on
  ppl f16 -fa off
  ppl f16-kvu -fa on -kvu
  KQCL_PORTABLE=1 KQCL_CACHE_DIR=/tmp/kc-ggml-p ppl f16-fa-portable -fa on
  ppl q8-fa -fa on -ctk q8_0 -ctv q8_0
  ;;
esac
