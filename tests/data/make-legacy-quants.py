#!/usr/bin/env python3
"""Reference vectors for q4_0, q4_1, q5_0, q5_1 and q8_0, made by an implementation independent of kqcl's: the
`gguf` Python package (the numpy code of llama.cpp's converters, gguf.quants), version 0.19.0.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install gguf==0.19.0
    /tmp/v/bin/python tests/data/make-legacy-quants.py tests/data

From w.f32 (96 x 1024) and x.f32 (5 x 1024), as for the k-quants (README.md), it writes for T in
q4_0, q4_1, q5_0, q5_1 and q8_0: T.blocks (gguf's quantize), T.deq.f32 (gguf's dequantize of
those blocks) and T.y.f64 (x . deq^T in float64); legacy.gguf: a GGUF file as the converters
write one, with a q8_0, a q4_0 and an f32 tensor (32 x 256 each, the top-left corner of w.f32)
and metadata; and legacy-q4_1-q5.gguf: the same with a q4_1, a q5_0 and a q5_1 tensor.
"""
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

R, K, N = 96, 1024, 5


def main(d):
    w = np.fromfile(f"{d}/w.f32", dtype=np.float32).reshape(R, K)
    x = np.fromfile(f"{d}/x.f32", dtype=np.float32).reshape(N, K)
    types = (("q4_0", T.Q4_0), ("q4_1", T.Q4_1), ("q5_0", T.Q5_0), ("q5_1", T.Q5_1), ("q8_0", T.Q8_0))
    for name, qtype in types:
        blocks = quantize(w, qtype)
        blocks.tofile(f"{d}/{name}.blocks")
        deq = dequantize(blocks, qtype).astype(np.float32)
        deq.tofile(f"{d}/{name}.deq.f32")
        (x.astype(np.float64) @ deq.astype(np.float64).T).tofile(f"{d}/{name}.y.f64")

    corner = np.ascontiguousarray(w[:32, :256])
    writer = gguf.GGUFWriter(f"{d}/legacy.gguf", "llama")
    writer.add_name("kqcl q4_0 and q8_0 reference")
    writer.add_file_type(7)  # llama.cpp's MOSTLY_Q8_0
    writer.add_tensor("blk.0.attn_q.weight", quantize(corner, T.Q8_0), raw_dtype=T.Q8_0)
    writer.add_tensor("blk.0.attn_k.weight", quantize(corner, T.Q4_0), raw_dtype=T.Q4_0)
    writer.add_tensor("blk.0.attn_v.weight", corner)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    writer = gguf.GGUFWriter(f"{d}/legacy-q4_1-q5.gguf", "llama")
    writer.add_name("kqcl q4_1, q5_0 and q5_1 reference")
    writer.add_file_type(9)  # llama.cpp's MOSTLY_Q5_1
    writer.add_tensor("blk.0.attn_q.weight", quantize(corner, T.Q4_1), raw_dtype=T.Q4_1)
    writer.add_tensor("blk.0.attn_k.weight", quantize(corner, T.Q5_0), raw_dtype=T.Q5_0)
    writer.add_tensor("blk.0.attn_v.weight", quantize(corner, T.Q5_1), raw_dtype=T.Q5_1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data")
