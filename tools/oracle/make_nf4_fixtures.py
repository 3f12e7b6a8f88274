#!/usr/bin/env python3
"""Fixtures for src/model/nf4.c: bitsandbytes NF4 + double quantisation on the CPU back end.

Writes tests/fixtures/nf4/*.bin (format below), deterministic (fixed seeds), rerunnable:

    python3 tools/oracle/make_nf4_fixtures.py [--out tests/fixtures/nf4]   (stack: tools/oracle/requirements.txt)

The tool versions that ran (bitsandbytes, torch, numpy) are in tests/fixtures/nf4/VERSIONS, with the SHA-256 of
every .bin file.

Every case file, little-endian:
    char[8]  "NF4FIX01"
    int64    n, rows, cols          (rows*cols == n; a 1-D tensor has rows = 1)
    int32    blocksize (64), blocksize2 (256), src_dtype (0 fp32, 1 bf16), reserved
    int64    nblocks, nblocks2
    src              n * (4 | 2)     the weights (fp32 or raw bf16 bits)
    bnb_packed       (n+1)/2 u8      bitsandbytes quantize_4bit(nf4, compress_statistics=True) bytes
    bnb_absmax1      nblocks f32     first-level absmax (torch.ops.bitsandbytes.quantize_4bit), before DQ
    bnb_qabsmax      nblocks u8      quant_state.absmax (nested 8-bit codes)
    bnb_absmax2      nblocks2 f32    quant_state.state2.absmax
    bnb_offset       f32             quant_state.offset (torch mean of absmax1)
    bnb_absmax_deq   nblocks f32     dequantize_blockwise(qabsmax, state2) + offset (what dequantize_4bit uses)
    bnb_deq_f32      n f32           dequantize_4bit output in fp32
    bnb_deq_bf16     n u16           (bf16 sources only) dequantize_4bit output in the state dtype bf16
    cuda_packed      (n+1)/2 u8      EMULATION (this script, numpy) of csrc kQuantizeBlockwise<NF4>
    cuda_absmax1     nblocks f32     EMULATION, first level
    cuda_qabsmax     nblocks u8      EMULATION of kQuantizeBlockwise<General8bit> with offset cuda_offset
    cuda_absmax2     nblocks2 f32    EMULATION
    cuda_offset      f32             torch (CPU) mean of cuda_absmax1

Also: code_nf4.bin (16 f32), dynamic_map.bin (256 f32), cpu_lut.bin (65536 u8: the code bnb's CPU
8-bit quantizer picks for the cell-centre value of each of its 65536 cells, measured through bnb).

The cuda_* arrays are NOT bitsandbytes output (no GPU here): they are this script's reading of the
CUDA kernel source, kept so that the C CUDA flavor is checked against an independent re-implementation.
"""
import argparse
import os
import struct
import sys

import numpy as np
import torch

from oracle_versions import write_versions

import bitsandbytes as bnb  # noqa: F401  (registers the ops)
import bitsandbytes.functional as F

f32 = np.float32
BS, BS2 = 64, 256


# ---------------------------------------------------------------- CUDA-kernel emulation (numpy)
def nf4_thresholds():
    code = F.get_4bit_type("nf4", device="cpu").numpy()
    return ((code[:-1] + code[1:]) / f32(2)).astype(f32)  # == the f-suffixed literals of dQuantizeNF4


THR = None


def nf4_codes(x):
    """Number of thresholds strictly below x; NaN -> 0 (all comparisons false)."""
    x = np.asarray(x, f32)
    return (x[..., None] > THR).sum(-1).astype(np.uint8)


def emu_cuda_4bit(w):
    w = np.asarray(w, f32).reshape(-1)
    n = w.size
    nb = -(-n // BS)
    absmax = np.zeros(nb, f32)
    codes = np.zeros(n + (n & 1), np.uint8)
    with np.errstate(all="ignore"):
        for b in range(nb):
            blk = w[b * BS:(b + 1) * BS]
            am = f32(np.max(np.abs(blk)))
            absmax[b] = am
            r = f32(f32(1.0) / am)
            codes[b * BS:b * BS + blk.size] = nf4_codes((blk * r).astype(f32))
        if n & 1:  # pad value 0 loaded by cub BlockLoad, scaled like the rest of the last block
            codes[n] = nf4_codes(f32(f32(0.0) * r))
    packed = (codes[0::2] << 4) | codes[1::2]
    return packed.astype(np.uint8), absmax


def dquant_cuda(code, x):
    pivot, up, lo = 127, 255, 0
    lower, upper = f32(-1.0), f32(1.0)
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lo, lower, pivot = pivot, val, pivot + i
        else:
            up, upper, pivot = pivot, val, pivot - i
        val = code[pivot]
        i >>= 1
    if up == 255:
        upper = code[255]
    if lo == 0:
        lower = code[0]
    if x > val:
        mid = f32((upper + val) * f32(0.5))
        return up if x > mid else pivot
    mid = f32((lower + val) * f32(0.5))
    return lo if x < mid else pivot


def emu_cuda_8bit(a, code):
    a = np.asarray(a, f32)
    nb2 = -(-a.size // BS2)
    q = np.zeros(a.size, np.uint8)
    am2 = np.zeros(nb2, f32)
    with np.errstate(all="ignore"):
        for k in range(nb2):
            blk = a[k * BS2:(k + 1) * BS2]
            am = f32(np.max(np.abs(blk)))
            am2[k] = am
            r = f32(f32(1.0) / am)
            for j, v in enumerate(blk):
                q[k * BS2 + j] = dquant_cuda(code, f32(v * r))
    return q, am2


# ---------------------------------------------------------------- bitsandbytes (CPU back end)
def run_bnb(A):
    """A: torch tensor (fp32 or bf16) on CPU."""
    packed, state = F.quantize_4bit(A, blocksize=BS, compress_statistics=True, quant_type="nf4")
    packed1, absmax1 = torch.ops.bitsandbytes.quantize_4bit.default(A, BS, "nf4", torch.uint8)
    assert torch.equal(packed1, packed), "quantize_4bit op and functional disagree"
    assert state.nested and state.state2.blocksize == BS2
    absmax_deq = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
    deq_state = F.dequantize_4bit(packed, state)
    deq_f32 = torch.ops.bitsandbytes.dequantize_4bit.default(packed, absmax_deq.float(), BS, "nf4", A.shape,
                                                            torch.float32)
    if A.dtype == torch.float32:
        assert torch.equal(deq_state.view(torch.int32), deq_f32.view(torch.int32))
    return dict(packed=packed.numpy().reshape(-1), absmax1=absmax1.numpy(), qabsmax=state.absmax.numpy(),
                absmax2=state.state2.absmax.numpy(), offset=np.float32(state.offset.item()),
                absmax_deq=absmax_deq.float().numpy(), deq_f32=deq_f32.numpy().reshape(-1),
                deq_state=deq_state, state=state)


def write_case(out, name, A, rows, cols):
    A = A.contiguous()
    n = A.numel()
    r = run_bnb(A)
    wf = A.float().numpy().reshape(-1)
    cpk, cam = emu_cuda_4bit(wf)
    coff = np.float32(torch.from_numpy(cam).mean().item())
    code = F.create_dynamic_map().numpy()
    cq, cam2 = emu_cuda_8bit((cam - coff).astype(f32), code)
    nb, nb2 = -(-n // BS), -(-(-(-n // BS)) // BS2)
    src_dtype = 1 if A.dtype == torch.bfloat16 else 0
    with open(os.path.join(out, name + ".bin"), "wb") as f:
        f.write(b"NF4FIX01")
        f.write(struct.pack("<qqqiiiiqq", n, rows, cols, BS, BS2, src_dtype, 0, nb, nb2))
        if src_dtype:
            f.write(A.view(torch.int16).numpy().astype("<i2").tobytes())
        else:
            f.write(A.numpy().astype("<f4").tobytes())
        f.write(r["packed"].astype(np.uint8).tobytes())
        f.write(r["absmax1"].astype("<f4").tobytes())
        f.write(r["qabsmax"].astype(np.uint8).tobytes())
        f.write(r["absmax2"].astype("<f4").tobytes())
        f.write(np.float32(r["offset"]).astype("<f4").tobytes())
        f.write(r["absmax_deq"].astype("<f4").tobytes())
        f.write(r["deq_f32"].astype("<f4").tobytes())
        if src_dtype:
            f.write(r["deq_state"].view(torch.int16).numpy().reshape(-1).astype("<i2").tobytes())
        f.write(cpk.tobytes())
        f.write(cam.astype("<f4").tobytes())
        f.write(cq.tobytes())
        f.write(cam2.astype("<f4").tobytes())
        f.write(np.float32(coff).astype("<f4").tobytes())
    same_pk = np.array_equal(cpk, r["packed"])
    same_q = np.array_equal(cq, r["qabsmax"])
    print(f"{name}: n={n} blocks={nb}/{nb2} src={'bf16' if src_dtype else 'fp32'} "
          f"cuda-emu==bnb-cpu packed:{same_pk} qabsmax:{same_q} ({int((cq != r['qabsmax']).sum())} differ)")


def write_dq_case(out, name, a, offset):
    """Nested stage alone: bnb quantize_blockwise(a - offset, blocksize=256), as quantize_4bit calls it."""
    a = np.asarray(a, f32)
    ap = torch.from_numpy((a - f32(offset)).astype(f32))
    q, st = F.quantize_blockwise(ap, blocksize=BS2)
    deq = (F.dequantize_blockwise(q, st) + torch.tensor(offset, dtype=torch.float32)).numpy()
    cq, cam2 = emu_cuda_8bit(ap.numpy(), F.create_dynamic_map().numpy())
    nb = a.size
    with open(os.path.join(out, name + ".bin"), "wb") as f:
        f.write(b"NF4DQ001")
        f.write(struct.pack("<qii", nb, BS2, 0))
        f.write(a.astype("<f4").tobytes())
        f.write(np.float32(offset).astype("<f4").tobytes())
        f.write(q.numpy().astype(np.uint8).tobytes())
        f.write(st.absmax.numpy().astype("<f4").tobytes())
        f.write(deq.astype("<f4").tobytes())
        f.write(cq.tobytes())
        f.write(cam2.astype("<f4").tobytes())
    print(f"{name}: nblocks={nb} cpu-vs-cuda qabsmax differ in {int((cq != q.numpy()).sum())}")


def discriminating_values(am, rng, count):
    """Values w in a block of absmax am where w*(1/am) and w/am fall on different sides of a threshold."""
    inv = f32(f32(1) / am)
    found = []
    for t in THR:
        base = f32(t * am)
        for k in range(-64, 65):
            w = np.nextafter(base, f32(np.inf if k > 0 else -np.inf), dtype=f32) if k else base
            for _ in range(abs(k) - 1 if k else 0):
                w = np.nextafter(w, f32(np.inf if k > 0 else -np.inf), dtype=f32)
            if nf4_codes(f32(w * inv)) != nf4_codes(f32(w / am)):
                found.append(w)
                break
        if len(found) >= count:
            break
    return found


def main():
    global THR
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "nf4"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    THR = nf4_thresholds()
    print("bitsandbytes", bnb.__version__, "torch", torch.__version__, file=sys.stderr)

    # constants
    code4 = F.get_4bit_type("nf4", device="cpu").numpy().astype("<f4")
    dyn = F.create_dynamic_map().numpy().astype("<f4")
    code4.tofile(os.path.join(out, "code_nf4.bin"))
    dyn.tofile(os.path.join(out, "dynamic_map.bin"))
    # bnb's CPU 8-bit LUT, measured: the value 2k/65535-1 lands in cell k (checked), block absmax 1.0
    k = np.arange(65536)
    x = (f32(2) * k.astype(f32) / f32(65535) - f32(1)).astype(f32)
    cell = np.trunc((((x + f32(1)) * f32(0.5)) * f32(65535) + f32(0.5)).astype(f32)).astype(np.int64)
    assert np.array_equal(cell, k)
    q, st = F.quantize_blockwise(torch.from_numpy(np.concatenate([[f32(1)], x]).astype(f32)), blocksize=131072)
    q = q.numpy()[1:]
    assert st.absmax.numel() == 1 and st.absmax.item() == 1.0  # one block: every cell scaled by exactly 1
    q.astype(np.uint8).tofile(os.path.join(out, "cpu_lut.bin"))

    rng = np.random.default_rng(1234)

    # 1. random normal with outliers, [64, 192]: 192 blocks, one partial 256-block
    w = (rng.standard_normal((64, 192)) * 0.02).astype(f32)
    idx = rng.choice(w.size, 12, replace=False)
    w.reshape(-1)[idx] = (rng.uniform(8, 30, 12) * 0.02 * rng.choice([-1, 1], 12)).astype(f32)
    write_case(out, "normal_outliers", torch.from_numpy(w), 64, 192)

    # 2. n = 256*64 + 64*5 + 13 (odd, not a multiple of 64, 262 blocks -> partial last 256-block of 6)
    n = 256 * 64 + 64 * 5 + 13
    w = (rng.standard_normal(n) * rng.uniform(0.005, 0.05)).astype(f32)
    w[::97] *= 6
    write_case(out, "nested_partial_odd", torch.from_numpy(w), 1, n)

    # 3. all-zero 64-blocks in the middle, [12, 128]
    w = (rng.standard_normal((12, 128)) * 0.03).astype(f32)
    w.reshape(-1)[3 * 64:4 * 64] = 0
    w.reshape(-1)[7 * 64:8 * 64] = 0
    write_case(out, "zero_blocks", torch.from_numpy(w), 12, 128)

    # 4. an all-zero last partial block (10 elements) and an all-zero full block
    w = (rng.standard_normal(64 * 3 + 10) * 0.1).astype(f32)
    w[64:128] = 0
    w[192:] = 0
    write_case(out, "zero_tail", torch.from_numpy(w), 1, w.size)

    # 5. bf16 source [48, 128]
    wb = torch.from_numpy((rng.standard_normal((48, 128)) * 0.05).astype(f32)).to(torch.bfloat16)
    wb.view(-1)[::301] *= 9
    write_case(out, "bf16_src", wb, 48, 128)

    # 6. ties at NF4 thresholds and division-vs-reciprocal values (last block partial, odd)
    tie = [f32(1.0)]
    for t in THR:
        tie += [t, np.nextafter(t, f32(np.inf), dtype=f32), np.nextafter(t, f32(-np.inf), dtype=f32)]
    tie += [f32(-1.0), f32(0.0)]
    blkA = np.array((tie + [f32(0.5)] * 64)[:64], f32)
    blkB = (blkA * f32(2)).astype(f32)  # absmax 2 -> reciprocal 0.5 exact, same ties
    am = f32(0.0371)
    disc = discriminating_values(am, rng, 15)
    blkC = np.array(([am] + disc + [f32(0.01)] * 64)[:64], f32)
    blkD = np.array([am] + disc + [f32(-0.02)] * (46 - len(disc)), f32)[:47]
    w = np.concatenate([blkA, blkB, blkC, blkD]).astype(f32)
    print("division-vs-reciprocal values found:", len(disc), file=sys.stderr)
    write_case(out, "ties", torch.from_numpy(w), 1, w.size)

    # 7. n = 1 and n = 3
    write_case(out, "n1", torch.tensor([-0.7], dtype=torch.float32), 1, 1)
    write_case(out, "n3", torch.tensor([0.25, -0.5, 0.125], dtype=torch.float32), 1, 3)

    # 8. nested stage alone: 6000 absmax-like values (CPU LUT and exact nearest differ here), and
    #    exact 8-bit midpoints with offset 0 (CUDA tie rule; the CPU LUT ignores ties)
    a = np.abs(rng.standard_normal(6000) * 0.02).astype(f32) + f32(0.01)
    write_dq_case(out, "dq_random", a, np.float32(torch.from_numpy(a).mean().item()))
    dm = F.create_dynamic_map().numpy()
    mids = ((dm[128:255] + dm[129:256]) * f32(0.5)).astype(f32)
    a = np.concatenate([[f32(1.0)], mids, np.nextafter(mids, f32(2), dtype=f32), np.nextafter(mids, f32(0), dtype=f32)])
    write_dq_case(out, "dq_ties", a.astype(f32), np.float32(0.0))

    # ---- facts printed for docs/nf4.md (not fixtures)
    # Linear4bit / Params4bit quantises a bf16 weight as is (state dtype bf16, same bytes as quantize_4bit)
    lin = bnb.nn.Linear4bit(128, 48, bias=False, compute_dtype=torch.bfloat16, compress_statistics=True,
                            quant_type="nf4")
    lin.weight = bnb.nn.Params4bit(wb.clone(), requires_grad=False, compress_statistics=True, quant_type="nf4")
    lin = lin.to("cpu")
    pk, stt = F.quantize_4bit(wb, blocksize=64, compress_statistics=True, quant_type="nf4")
    print("Linear4bit(bf16) quantised:", lin.weight.bnb_quantized, "state dtype", lin.weight.quant_state.dtype,
          "bytes equal quantize_4bit(bf16):", torch.equal(lin.weight.data.view(-1), pk.view(-1)),
          "equal quantize_4bit(bf16->fp32):",
          torch.equal(F.quantize_4bit(wb.float(), blocksize=64, quant_type="nf4")[0].view(-1), pk.view(-1)),
          file=sys.stderr)
    # offset = torch mean vs double-precision mean rounded to fp32
    tot = same = 0
    maxulp = 0
    for t in range(300):
        m = int(rng.integers(1, 20000))
        a = np.abs(rng.standard_normal(m) * rng.uniform(0.001, 1)).astype(f32)
        tm = np.float32(torch.from_numpy(a).mean().item())
        dm = np.float32(np.sum(a.astype(np.float64)) / m)
        tot += 1
        same += tm == dm
        maxulp = max(maxulp, abs(int(tm.view(np.int32)) - int(dm.view(np.int32))))
    print(f"offset: torch mean == double mean in {same}/{tot} random vectors, max {maxulp} ulp apart",
          file=sys.stderr)
    write_versions(out, "make_nf4_fixtures.py", ["bitsandbytes", "torch", "numpy"],
                   [n for n in os.listdir(out) if n.endswith(".bin")],
                   note="bitsandbytes on its CPU back end; the cuda_* arrays are this script's emulation (numpy).")


if __name__ == "__main__":
    main()
