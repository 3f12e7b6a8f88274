#!/usr/bin/env python3
"""Fixtures for tests/oracle/test_ops.c: every CPU op, forward and backward, computed by PyTorch
autograd in float64 and stored as float32 (inputs exactly as the C test reads them).

Writes tests/fixtures/ops/ops.h5. Group per op: inputs, the upstream gradient `dy`, the outputs and
the gradients of every input. Definitions follow transformers (Mistral RMSNorm/RoPE/attention,
CLIP LayerNorm/quick_gelu, erf GELU). Run: python3 tools/oracle/make_ops_fixtures.py (stack: requirements.txt)
The tool versions that ran are in the root attribute `oracle_versions` and in tests/fixtures/ops/VERSIONS.
"""
import math
import os

import h5py
import numpy as np
import torch

from oracle_versions import versions_line, write_versions

PACKAGES = ["torch", "numpy", "h5py"]

torch.manual_seed(1234)
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "ops", "ops.h5")


def r(*shape, scale=1.0):
    # float32 values, then float64 for the reference so that the reference is exact to fp32 rounding
    return (torch.randn(*shape) * scale).float().double().requires_grad_(True)


def save(g, **arrays):
    for k, v in arrays.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().numpy()
        v = np.asarray(v)
        if v.dtype == np.float64:
            v = v.astype(np.float32)
        g.create_dataset(k, data=v)


def backprop(y, *inputs):
    dy = torch.randn(y.shape).float().double()
    grads = torch.autograd.grad(y, inputs, dy)
    return dy, grads


def rope_ref(x, pos, theta, nhead, hd):
    # transformers: inv_freq in fp32, angle = pos * inv_freq in fp32, cos/sin of [ang, ang]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    ang = (pos.float()[:, None] * inv[None, :]).double()
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
    xx = x.view(x.shape[0], nhead, hd)
    h = hd // 2
    rot = torch.cat([-xx[..., h:], xx[..., :h]], -1)
    return (xx * cos + rot * sin).reshape(x.shape)


def attn_ref(q, k, v, seqs, nq, nkv, hd, causal):
    ntok = q.shape[0]
    out = torch.zeros(ntok, nq * hd, dtype=torch.float64)
    outs = []
    Q = q.view(ntok, nq, hd)
    K = k.view(ntok, nkv, hd)
    V = v.view(ntok, nkv, hd)
    g = nq // nkv
    for (start, ln, pos0, prefix) in seqs:
        keys = []
        if prefix >= 0:
            ps, pl = seqs[prefix][0], seqs[prefix][1]
            keys += list(range(ps, ps + pl))
        npre = len(keys)
        keys += list(range(start, start + ln))
        kk = K[keys].repeat_interleave(g, dim=1)  # [nk, nq, hd]
        vv = V[keys].repeat_interleave(g, dim=1)
        qq = Q[start:start + ln]  # [ln, nq, hd]
        sc = torch.einsum("thd,jhd->htj", qq, kk) / math.sqrt(hd)
        if causal:
            mask = torch.zeros(ln, len(keys), dtype=torch.bool)
            for t in range(ln):
                mask[t, npre + t + 1:] = True
            sc = sc.masked_fill(mask[None], float("-inf"))
        p = torch.softmax(sc, -1)
        o = torch.einsum("htj,jhd->thd", p, vv).reshape(ln, nq * hd)
        outs.append((start, o))
    rows = [None] * ntok
    for start, o in outs:
        for t in range(o.shape[0]):
            rows[start + t] = o[t]
    return torch.stack(rows)


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with h5py.File(OUT, "w") as f:
        f.attrs["oracle_versions"] = versions_line("make_ops_fixtures.py", PACKAGES)
        M, K, N = 7, 12, 10
        g = f.create_group("linear")
        x, w, b = r(M, K), r(N, K, scale=0.3), r(N)
        y = x @ w.T + b
        dy, (dx, dw, db) = backprop(y, x, w, b)
        save(g, x=x, w=w, b=b, y=y, dy=dy, dx=dx, dw=dw, db=db)

        D = 16
        g = f.create_group("rmsnorm")
        x, w = r(M, D), r(D)
        eps = 1e-5
        y = w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
        dy, (dx, dw) = backprop(y, x, w)
        save(g, x=x, w=w, y=y, dy=dy, dx=dx, dw=dw)

        g = f.create_group("layernorm")
        x, w, b = r(M, D, scale=2.0), r(D), r(D)
        y = torch.nn.functional.layer_norm(x, (D,), w, b, eps)
        dy, (dx, dw, db) = backprop(y, x, w, b)
        save(g, x=x, w=w, b=b, y=y, dy=dy, dx=dx, dw=dw, db=db)

        g = f.create_group("rope")
        nhead, hd, theta = 3, 8, 1e6
        pos = torch.tensor([0, 1, 2, 5, 17, 100, 4095], dtype=torch.int32)
        x = r(M, nhead * hd)
        y = rope_ref(x, pos, theta, nhead, hd)
        dy, (dx,) = backprop(y, x)
        save(g, x=x, pos=pos.numpy(), y=y, dy=dy, dx=dx)
        g.attrs["nhead"], g.attrs["hd"], g.attrs["theta"] = nhead, hd, theta

        for name, causal, seqs in (
            ("attn_causal_prefix", 1, [(0, 5, 0, -1), (5, 3, 5, 0), (8, 4, 5, 0), (12, 6, 0, -1)]),
            ("attn_full", 0, [(0, 7, 0, -1), (7, 7, 0, -1), (14, 4, 0, -1)]),
        ):
            g = f.create_group(name)
            nq, nkv, hd = 4, 2, 8
            ntok = sum(s[1] for s in seqs)
            q, k, v = r(ntok, nq * hd), r(ntok, nkv * hd), r(ntok, nkv * hd)
            y = attn_ref(q, k, v, seqs, nq, nkv, hd, causal)
            dy, (dq, dk, dv) = backprop(y, q, k, v)
            save(g, q=q, k=k, v=v, y=y, dy=dy, dq=dq, dk=dk, dv=dv,
                 seqs=np.array(seqs, dtype=np.int32))
            g.attrs["nq"], g.attrs["nkv"], g.attrs["hd"], g.attrs["causal"] = nq, nkv, hd, causal

        n = 40
        x = r(n, scale=2.0)
        g = f.create_group("gelu")
        y = torch.nn.functional.gelu(x)
        dy, (dx,) = backprop(y, x)
        save(g, x=x, y=y, dy=dy, dx=dx)
        g = f.create_group("quick_gelu")
        y = x * torch.sigmoid(1.702 * x)
        dy, (dx,) = backprop(y, x)
        save(g, x=x, y=y, dy=dy, dx=dx)
        g = f.create_group("swiglu")
        gate, up = r(n, scale=2.0), r(n)
        y = torch.nn.functional.silu(gate) * up
        dy, (dg, du) = backprop(y, gate, up)
        save(g, gate=gate, up=up, y=y, dy=dy, dgate=dg, dup=du)

        g = f.create_group("logprob")
        Vv = 50
        logits = r(M, Vv, scale=3.0)
        labels = torch.randint(0, Vv, (M,), dtype=torch.int32)
        lp = torch.log_softmax(logits, -1).gather(1, labels.long()[:, None])[:, 0]
        dy, (dl,) = backprop(lp, logits)
        save(g, logits=logits, labels=labels.numpy(), logp=lp, dy=dy, dlogits=dl)
    write_versions(os.path.dirname(OUT), "make_ops_fixtures.py", PACKAGES, [os.path.basename(OUT)])
    print("wrote", os.path.normpath(OUT), os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
