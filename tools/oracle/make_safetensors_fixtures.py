#!/usr/bin/env python3
"""Fixtures for tests/unit/test_safetensors.c, written with the `safetensors` package (the reference
implementation) and torch (reference f32 <-> f16/bf16 conversion).

Writes tests/fixtures/safetensors/:
  basic.safetensors       f32, f16, bf16, i64, i32, u8, bool, a 0-d tensor, an empty tensor, __metadata__
  basic.expected.txt      per tensor: "tensor NAME DTYPE NDIM D0 D1 ..." then "values V..." where float
                          tensors give the bits (hex) of their float32 value (torch .float()), ints decimal
  convert.safetensors     src (F32, random + special values), bf16 = src.to(bfloat16), f16 = src.to(float16),
                          bf16_f32 = bf16.float(), f16_f32 = f16.float()  (torch's rounding, the oracle)
  sharded/model.safetensors.index.json + model-0000{1,2}-of-00002.safetensors   (HF index layout)
  VERSIONS                the tool versions and the SHA-256 of every file above
Deterministic (seed 1234); rerun: python3 tools/oracle/make_safetensors_fixtures.py (stack: requirements.txt)
"""
import json
import os
import struct

import numpy as np
import torch
from safetensors.torch import save_file

from oracle_versions import write_versions

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "safetensors")

ST_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
            torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", float(x)))[0]


def expected_lines(tensors):
    lines = []
    for name in sorted(tensors):
        t = tensors[name]
        lines.append("tensor %s %s %d %s" % (name, ST_NAMES[t.dtype], t.dim(), " ".join(str(d) for d in t.shape)))
        flat = t.reshape(-1)
        if t.dtype.is_floating_point:
            vals = ["%08x" % f32_bits(v) for v in flat.float().tolist()]
        else:
            vals = [str(int(v)) for v in flat.tolist()]
        lines.append("values " + " ".join(vals))
    return lines


def main():
    os.makedirs(os.path.join(OUT, "sharded"), exist_ok=True)
    g = torch.Generator().manual_seed(1234)

    basic = {
        "layers.0.w_f32": torch.randn(2, 3, generator=g),
        "layers.0.w_f16": (torch.randn(4, 5, generator=g) * 3).to(torch.float16),
        "layers.0.w_bf16": (torch.randn(3, 2, generator=g) * 100).to(torch.bfloat16),
        "ids_i64": torch.tensor([-(2**62), -1, 0, 7, 2**53 + 1], dtype=torch.int64),
        "ids_i32": torch.tensor([[-2**31, 2**31 - 1], [5, -5]], dtype=torch.int32),
        "bytes_u8": torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8),
        "mask_bool": torch.tensor([True, False, True], dtype=torch.bool),
        "scalar": torch.tensor(3.5, dtype=torch.float32),
        "empty": torch.zeros(0, 4, dtype=torch.float32),
    }
    meta = {"format": "pt", "note": "orpo-hpc fixture \u2713"}
    save_file(basic, os.path.join(OUT, "basic.safetensors"), metadata=meta)
    with open(os.path.join(OUT, "basic.expected.txt"), "w") as fp:
        fp.write("metadata format pt\n")
        fp.write("\n".join(expected_lines(basic)) + "\n")

    special = [0.0, -0.0, 1.0, -2.0, float("inf"), float("-inf"), float("nan"),
               3.4028234663852886e38, 65504.0, 65519.99609375, 65520.0, 70000.0,
               2.0**-24, 2.0**-25, 3 * 2.0**-25, 2.0**-14, 1023.5 * 2.0**-24, 1e-45, 1e-40, 6e-8]
    ties = [struct.unpack("<f", struct.pack("<I", b))[0]
            for b in (0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0xBF808000, 0x3F801000, 0x3F803000,
                      0x7F7F8000, 0x477FF000, 0x477FEFFF)]
    rnd = torch.cat([torch.randn(2000, generator=g) * 10.0 ** torch.randint(-8, 6, (2000,), generator=g),
                     torch.rand(500, generator=g) * 1e-4])
    src = torch.cat([torch.tensor(special + ties, dtype=torch.float32), rnd.float()])
    bf = src.to(torch.bfloat16)
    hf = src.to(torch.float16)
    conv = {"src": src, "bf16": bf, "f16": hf, "bf16_f32": bf.float(), "f16_f32": hf.float()}
    save_file(conv, os.path.join(OUT, "convert.safetensors"))

    shard1 = {"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
              "b.bias": torch.tensor([0.5, -0.5], dtype=torch.float16)}
    shard2 = {"c.weight": torch.arange(4, dtype=torch.int64)}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save_file(shard1, os.path.join(OUT, "sharded", names[0]), metadata={"format": "pt"})
    save_file(shard2, os.path.join(OUT, "sharded", names[1]), metadata={"format": "pt"})
    total = sum(t.numel() * t.element_size() for t in list(shard1.values()) + list(shard2.values()))
    wm = {k: names[0] for k in shard1}
    wm.update({k: names[1] for k in shard2})
    with open(os.path.join(OUT, "sharded", "model.safetensors.index.json"), "w") as fp:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))}, fp, indent=2)
        fp.write("\n")
    files = ["basic.safetensors", "basic.expected.txt", "convert.safetensors", "sharded/model.safetensors.index.json"]
    write_versions(OUT, "make_safetensors_fixtures.py", ["safetensors", "torch", "numpy"], files + ["sharded/" + n for n in names])
    print("wrote", OUT)


if __name__ == "__main__":
    main()
