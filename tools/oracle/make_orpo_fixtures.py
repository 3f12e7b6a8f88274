#!/usr/bin/env python3
"""Fixtures for tests/oracle/test_orpo.c and tests/oracle/test_adamw.c.

Writes tests/fixtures/orpo/orpo.h5:
  /orpo/<case>   per-token log-probs of a few preference pairs (different prompt/answer lengths, one pair
                 with L̄ ~ -1e-6 and one near -ln 2), token roles, the ORPO loss, the TRL metrics and
                 d loss / d log-prob of every token by torch autograd in float64.
                 Cases: beta 0.1 / 0.25 x nll all (TRL) / answer (LLaMA-Factory) x 1 / 2 micro-batches.
  /edge          single pairs at L̄ = -1e-8, -ln 2, -50 and the spec's A.12 values: z, logsigmoid(z) and
                 d(-beta logsigmoid z)/dL̄_w, /dL̄_l by autograd (float64, branch-exact log1mexp).
  /sched/<name>  the lr factor of every step from transformers' get_*_schedule_with_warmup + LambdaLR.
  /adamw/<case>  torch.optim.AdamW (2 parameter groups, different lr / weight decay) + clip_grad_norm_ +
                 LambdaLR: initial params, the gradients of each step, params after each step, the norms.
  /lora_init     PEFT LoRA A/B init: kaiming bound from torch's own formula and PEFT's initialised tensors.

Definitions follow TRL's ORPOTrainer (trl/experimental/orpo, HEAD: log1mexp with the Mächler branch, logsigmoid)
as restated in /work/shared/spec/orpo-qlora-peft.md section A; no TRL install is needed.
Run: python3 tools/oracle/make_orpo_fixtures.py   (deterministic; CPU only; stack: requirements.txt)
The tool versions that ran are in the root attribute `oracle_versions` and in tests/fixtures/orpo/VERSIONS.
"""
import math
import os

import h5py
import numpy as np
import torch

from oracle_versions import versions_line, write_versions

PACKAGES = ["torch", "peft", "transformers", "numpy", "h5py"]

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "orpo", "orpo.h5")
NLL, CHOSEN, REJECTED = 1, 2, 4
LN2 = math.log(2.0)


def log1mexp(x):
    # Mächler: x < -ln2 -> log1p(-exp(x)), else log(-expm1(x)); masked so that no branch sees bad values
    small = x < -LN2
    a = torch.where(small, x, torch.full_like(x, -1.0))
    b = torch.where(small, torch.full_like(x, -0.5), x)
    return torch.where(small, torch.log1p(-torch.exp(a)), torch.log(-torch.expm1(b)))


def orpo_reference(lw, ll, nll_sum, nll_n, beta, nll_mode):
    """TRL odds_ratio_loss + concatenated_forward NLL over one optimiser step (float64 tensors)."""
    z = (lw - ll) - (log1mexp(lw) - log1mexp(ll))
    ratio = torch.nn.functional.logsigmoid(z)
    nll = -nll_sum / nll_n if nll_mode == 0 else -lw.mean()
    loss = nll - (beta * ratio).mean()
    cr, rr = beta * lw.detach(), beta * ll.detach()
    metrics = {
        "loss": loss.item(),
        "nll_loss": nll.item(),
        "log_odds_ratio": ratio.mean().item(),
        "log_odds_chosen": z.mean().item(),
        "chosen_logps": lw.mean().item(),
        "rejected_logps": ll.mean().item(),
        "reward_accuracy": (cr > rr).double().mean().item(),
        "reward_margin": (cr - rr).mean().item(),
        "rewards_chosen": cr.mean().item(),
        "rewards_rejected": rr.mean().item(),
    }
    return loss, metrics


def make_pairs(rng, n_pairs):
    """Per pair: prompt length, answer lengths and per-token log-prob generators."""
    scales = [0.05, LN2, 1.5, 3.0, "tiny", 0.4]
    pairs = []
    for i in range(n_pairs):
        P = int(rng.integers(2, 9))
        nw = int(rng.integers(1, 12))
        nl = int(rng.integers(1, 12))
        s = scales[i % len(scales)]
        if s == "tiny":  # a confident model: L̄ ~ -1e-6 (the log(-expm1) branch, z large)
            gw = -rng.uniform(0, 2e-6, nw)
            gl = -rng.uniform(0, 2e-6, nl) * 3
        elif s == LN2:  # around the branch point -ln 2
            gw = -LN2 + rng.uniform(-1e-3, 1e-3, nw)
            gl = -LN2 + rng.uniform(-1e-3, 1e-3, nl)
        else:
            gw = -rng.exponential(s, nw)
            gl = -rng.exponential(s * 1.3, nl)
        gp = -rng.exponential(2.0, P)
        pairs.append((gp, gw, gl))
    return pairs


def orpo_case(f, name, seed, beta, nll_mode, mb_sizes):
    rng = np.random.default_rng(seed)
    n_pairs = sum(mb_sizes)
    pairs = make_pairs(rng, n_pairs)
    logp, role, pair, mb = [], [], [], []
    g = 0
    for m, sz in enumerate(mb_sizes):
        toks = []
        for i in range(sz):
            gp, gw, gl = pairs[g]
            toks += [(v, NLL, i) for v in gp]               # prompt targets: NLL only
            toks += [(v, NLL | CHOSEN, i) for v in gw]      # chosen answer (incl. </s>): NLL and OR term
            toks += [(v, REJECTED, i) for v in gl]          # rejected answer: OR term only
            g += 1
        toks += [(-rng.exponential(1.0), 0, -1) for _ in range(2)]  # rows outside the loss: gradient 0
        order = rng.permutation(len(toks))                  # any token order must work
        for k in order:
            v, r, i = toks[k]
            logp.append(v)
            role.append(r)
            pair.append(i)
            mb.append(m)
    lp32 = np.asarray(logp, dtype=np.float32)
    role = np.asarray(role, dtype=np.int32)
    pair = np.asarray(pair, dtype=np.int32)
    mb = np.asarray(mb, dtype=np.int32)

    x = torch.tensor(lp32.astype(np.float64), requires_grad=True)
    gpair = pair + np.concatenate([[0], np.cumsum(mb_sizes)])[mb]  # step-wide pair index
    lw = torch.stack([x[torch.tensor(np.where((gpair == i) & ((role & CHOSEN) > 0))[0])].mean()
                      for i in range(n_pairs)])
    ll = torch.stack([x[torch.tensor(np.where((gpair == i) & ((role & REJECTED) > 0))[0])].mean()
                      for i in range(n_pairs)])
    nll_idx = torch.tensor(np.where((role & NLL) > 0)[0])
    loss, metrics = orpo_reference(lw, ll, x[nll_idx].sum(), float(len(nll_idx)), beta, nll_mode)
    loss.backward()

    grp = f.create_group(f"orpo/{name}")
    grp.create_dataset("logp", data=lp32)
    grp.create_dataset("role", data=role)
    grp.create_dataset("pair", data=pair)
    grp.create_dataset("mb", data=mb)
    grp.create_dataset("mb_pairs", data=np.asarray(mb_sizes, dtype=np.int32))
    grp.create_dataset("dlogp", data=x.grad.numpy())  # float64
    grp.attrs["beta"] = beta
    grp.attrs["nll"] = nll_mode
    grp.attrs["pairs"] = n_pairs
    grp.attrs["nll_tokens"] = len(nll_idx)
    for k, v in metrics.items():
        grp.attrs[k] = v
    return metrics


def edge_cases(f):
    """Single pairs, loss = -beta*logsigmoid(z), beta 0.1; log1mexp branch chosen in Python (exact)."""
    vals = [(-0.3, -0.9), (-2.0, -1.5), (-1e-8, -0.5), (-0.5, -1e-8), (-1e-8, -1e-8), (-LN2, -LN2 - 1e-3),
            (-LN2 + 1e-12, -LN2 - 1e-12), (-50.0, -1e-8), (-1e-8, -50.0), (-50.0, -50.0), (-50.0, -1.0),
            (-1e-6, -2e-6), (-1e-15, -0.2)]
    beta = 0.1

    def l1me(t):
        return torch.log1p(-torch.exp(t)) if t.item() < -LN2 else torch.log(-torch.expm1(t))

    rows = []
    for a, b in vals:
        lw = torch.tensor(a, dtype=torch.float64, requires_grad=True)
        ll = torch.tensor(b, dtype=torch.float64, requires_grad=True)
        z = (lw - ll) - (l1me(lw) - l1me(ll))
        ls = torch.nn.functional.logsigmoid(z)
        loss = -beta * ls
        loss.backward()
        rows.append([a, b, z.item(), ls.item(), lw.grad.item(), ll.grad.item()])
    g = f.create_group("edge")
    g.create_dataset("rows", data=np.asarray(rows, dtype=np.float64))  # lw, ll, z, logsig, dlw, dll
    g.attrs["beta"] = beta


def sched_cases(f):
    from transformers import (get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
                              get_linear_schedule_with_warmup)
    cases = [("cosine", 0, 3, 10), ("cosine", 0, 0, 7), ("cosine", 0, 5, 5), ("cosine", 0, 30, 1000),
             ("constant", 1, 4, 10), ("constant", 1, 0, 6), ("linear", 2, 3, 10)]
    for name, kind, warm, total in cases:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1.0)
        if kind == 0:
            s = get_cosine_schedule_with_warmup(opt, warm, total)
        elif kind == 1:
            s = get_constant_schedule_with_warmup(opt, warm)
        else:
            s = get_linear_schedule_with_warmup(opt, warm, total)
        lrs = []
        for _ in range(total + 1):
            lrs.append(opt.param_groups[0]["lr"])  # the lr the optimiser step of this index uses
            opt.step()
            s.step()
        g = f.create_group(f"sched/{name}_w{warm}_t{total}")
        g.create_dataset("factor", data=np.asarray(lrs, dtype=np.float64))
        g.attrs["kind"] = kind
        g.attrs["warmup"] = warm
        g.attrs["total"] = total


def adamw_case(f, name, seed, groups, steps, warm, total, kind, max_norm):
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup
    gen = torch.Generator().manual_seed(seed)
    params, pgroups, gscale = [], [], []
    for gi, (gname, lr, wd, shapes, gs_) in enumerate(groups):
        gscale += [gs_] * len(shapes)
        ps = [torch.nn.Parameter((torch.randn(*sh, generator=gen) * 0.5).float()) for sh in shapes]
        params.append(ps)
        pgroups.append({"params": ps, "lr": lr, "weight_decay": wd})
    init = [[p.detach().clone() for p in ps] for ps in params]
    opt = torch.optim.AdamW(pgroups, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    if kind == 0:
        sch = get_cosine_schedule_with_warmup(opt, warm, total)
    else:
        sch = get_constant_schedule_with_warmup(opt, warm)
    flat = [p for ps in params for p in ps]
    grads_all, after, norms, lrs = [], [], [], []
    for s in range(steps):
        gs = [(torch.randn(p.shape, generator=gen) * (1.0 + s) * sc).float() for p, sc in zip(flat, gscale)]
        for p, gg in zip(flat, gs):
            p.grad = gg.clone()
        lrs.append([pg["lr"] for pg in opt.param_groups])
        n = torch.nn.utils.clip_grad_norm_(flat, max_norm)
        norms.append(n.item())
        opt.step()
        sch.step()
        grads_all.append([gg.numpy() for gg in gs])
        after.append([p.detach().clone().numpy() for p in flat])
    g = f.create_group(f"adamw/{name}")
    g.attrs["steps"] = steps
    g.attrs["warmup"] = warm
    g.attrs["total"] = total
    g.attrs["kind"] = kind
    g.attrs["max_norm"] = max_norm
    g.attrs["ngroups"] = len(groups)
    g.create_dataset("norm", data=np.asarray(norms, dtype=np.float64))
    g.create_dataset("lr", data=np.asarray(lrs, dtype=np.float64))
    t = 0
    for gi, (gname, lr, wd, shapes, _) in enumerate(groups):
        gg = g.create_group(f"group{gi}")
        gg.attrs["name"] = np.bytes_(gname)  # fixed-length: H5LTget_attribute_string
        gg.attrs["lr"] = lr
        gg.attrs["weight_decay"] = wd
        gg.attrs["ntensors"] = len(shapes)
        for j in range(len(shapes)):
            tg = gg.create_group(f"t{j}")
            tg.create_dataset("p0", data=init[gi][j].numpy())
            for s in range(steps):
                tg.create_dataset(f"grad{s}", data=grads_all[s][t])
                tg.create_dataset(f"p{s + 1}", data=after[s][t])
            st = opt.state[flat[t]]
            tg.create_dataset("m", data=st["exp_avg"].numpy())
            tg.create_dataset("v", data=st["exp_avg_sq"].numpy())
            t += 1


def lora_init(f):
    import peft
    g = f.create_group("lora_init")
    rows = []
    for fan_in, r in [(16, 4), (1000, 8), (4096, 16)]:
        gain = torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5))
        bound = math.sqrt(3.0) * gain / math.sqrt(fan_in)
        model = torch.nn.Sequential()
        model.add_module("lin", torch.nn.Linear(fan_in, 24))
        torch.manual_seed(fan_in)
        pm = peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=16, target_modules=["lin"]))
        a = pm.base_model.model.lin.lora_A["default"].weight.detach()
        b = pm.base_model.model.lin.lora_B["default"].weight.detach()
        assert tuple(a.shape) == (r, fan_in) and float(b.abs().max()) == 0.0
        rows.append([fan_in, r, bound, float(a.abs().max()), float(a.double().var()), float(b.abs().max())])
    g.create_dataset("rows", data=np.asarray(rows, dtype=np.float64))  # fan_in, r, bound, max|A|, var A, max|B|


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    torch.set_default_dtype(torch.float32)
    with h5py.File(OUT + ".tmp", "w") as f:
        f.attrs["generator"] = "tools/oracle/make_orpo_fixtures.py"
        f.attrs["torch"] = str(torch.__version__)
        f.attrs["oracle_versions"] = versions_line("make_orpo_fixtures.py", PACKAGES)
        seed = 100
        for beta in (0.1, 0.25):
            for nll_mode, nll_name in ((0, "all"), (1, "answer")):
                for mbs in ((5,), (3, 2)):
                    name = f"b{beta}_{nll_name}_mb{len(mbs)}"
                    m = orpo_case(f, name, seed, beta, nll_mode, list(mbs))
                    print(name, {k: round(v, 6) for k, v in m.items()})
                    seed += 1
        edge_cases(f)
        sched_cases(f)
        # (name, lr, weight decay, shapes, gradient scale)
        two = [("lora", 1e-2, 0.01, [(4, 6), (6, 3)], 1.0), ("mm_projector", 3e-3, 0.1, [(5,)], 1.0)]
        adamw_case(f, "cosine_clip", 7, two, steps=4, warm=2, total=6, kind=0, max_norm=1.0)
        # token_embeddings: gradients ~1e-8 so that sqrt(v_hat) ~ eps (where eps is added matters)
        three = [("lora", 2e-4, 0.0, [(8, 4), (3, 8)], 1.0), ("mm_projector", 1e-3, 0.05, [(7,)], 1.0),
                 ("token_embeddings", 5e-4, 0.0, [(2, 6)], 1e-8)]
        adamw_case(f, "constant_noclip", 8, three, steps=3, warm=1, total=3, kind=1, max_norm=1e3)
        lora_init(f)
    os.replace(OUT + ".tmp", OUT)
    write_versions(os.path.dirname(OUT), "make_orpo_fixtures.py", PACKAGES, [os.path.basename(OUT)])
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
