# gpu-lease-lib.sh -- what the two-call GPU lease scripts share, sourced from the repository root
# on the lent machine: the first call starts llama.cpp's build (with CUDA, llama-quantize and
# greedy-logits) in the background and keeps the model's first part; the second joins the parts
# and sets the module up (lease_second_call).

# First call: llama.cpp into /tmp/llama-build, "llama rc=N" in /tmp/lbuild.done when it ends;
# build-model/part00 kept in /tmp for the second call.
lease_start_llama_build() {
  cp build-model/part00 /tmp/smol.part00 2>/dev/null
  ( LLAMA_CUDA=1 bash build-peers/llama-build.sh $PWD/build-peers/llama.cpp-0c1e570.tar.gz /tmp/llama-build > /tmp/lbuild.log 2>&1 &&
    ninja -C /tmp/llama-build llama-quantize >> /tmp/lbuild.log 2>&1 &&
    bash scripts/ggml-greedy.sh build /tmp/llama-src/llama.cpp /tmp/llama-build >> /tmp/lbuild.log 2>&1
    echo "llama rc=$?" > /tmp/lbuild.done ) > /dev/null 2>&1 &
}

# Second call: SmolLM2-135M Q4_1 joined into $1 from the kept part and build-model/part01, and
# checked (non-zero when it is not the file README names).
lease_join_model() {
  cat /tmp/lbuild.done
  cat /tmp/smol.part00 build-model/part01 > "$1"
  echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $1" | sha256sum -c -
}

# Second call's setting: OpenCL's environment, the model joined into M, B (llama.cpp's
# binaries), MOD (the kqcl module, GGML_BACKEND_PATH), T (a text for perplexity), and the
# module on the GPU with its own kernel cache.
lease_second_call() {
  . build-peers/device/opencl-env.sh
  M=/tmp/smol.gguf
  lease_join_model $M || return 1
  B=/tmp/llama-build/bin; MOD=$PWD/build-gpu/ggml/libggml-kqcl.so; T=/tmp/llama-src/llama.cpp/README.md
  export GGML_BACKEND_PATH=$MOD KQCL_CACHE_DIR=/tmp/kc-ggml KQCL_DEVICES=gpu
}
