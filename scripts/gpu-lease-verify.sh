. build-peers/device/opencl-env.sh; export KQCL_TEST_DATA=$PWD/tests/data LD_LIBRARY_PATH=$PWD/build-gpu/lib-extra:$LD_LIBRARY_PATH KQCL_DEVICES=gpu
cp build-model/part00 /tmp/smol.part00; mkdir -p /tmp/ls && tar -xzf build-peers/llama.cpp-0c1e570.tar.gz -C /tmp/ls
( cmake -S /tmp/ls/llama.cpp -B /tmp/lb -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF > /tmp/lb.log 2>&1 && ninja -C /tmp/lb llama-perplexity >> /tmp/lb.log 2>&1; echo "llama rc=$?" > /tmp/lb.done ) &
for t in test_layer test_faults; do for p in auto portable; do ( [ $p = portable ] && export KQCL_PORTABLE=1; KQCL_CACHE_DIR=/tmp/kc-$p-$t CK_DEFAULT_TIMEOUT=120 timeout 170 build-gpu/tests/$t > /tmp/$t-$p.txt 2>&1; echo "$t $p rc=$? $(grep -E '^[0-9]+%' /tmp/$t-$p.txt)"; grep ":[EF]:" /tmp/$t-$p.txt | head -3 | cut -c1-250 ) & done; done
wait; cat /tmp/lb.done; tail -2 /tmp/lb.log
