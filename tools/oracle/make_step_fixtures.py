#!/usr/bin/env python3
"""Oracle for one ORPO + LoRA training step on the tiny LLaVA-NeXT (tests/oracle/test_step.c).

transformers + PEFT on tests/fixtures/llava_tiny/model (fp32, and the NF4 base: decoder linears quantized and
dequantized by bitsandbytes' CPU back end, everything else rounded to bf16, as `import-model --nf4-flavor cpu`
stores it). LoRA r=4, alpha=8, dropout 0 on q,k,v,o,gate,up,down of the decoder, on lm_head and on both
projector linears (variant "lora"), or LoRA q,v + the projector trained fully (variant "fullproj"). A and B are
set to random values (B != 0, so that every gradient is informative) and stored in the fixture under
orpo-hpc's tensor names. The ORPO loss is computed from the spec's definitions (TRL): each answer scored by the
mean log-prob of its tokens incl. </s>; NLL = token mean over the chosen sequences' prompt text and answer
tokens (BOS and image positions are not targets); loss = NLL - beta * mean logsigmoid(z). Chosen and rejected
are run as separate full sequences (no prefix sharing): the C side must match with and without sharing.
Then 3 AdamW steps (torch.optim.AdamW, clip_grad_norm_, linear warm-up 1 step then cosine over 4) on the same
batch; the weights after each step are stored.

Writes tests/fixtures/step/step.h5. Run: python3 tools/oracle/make_step_fixtures.py (stack: requirements.txt)
The tool versions that ran are in the root attribute `oracle_versions` and in tests/fixtures/step/VERSIONS.
"""
import math
import os

import h5py
import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlavaNextForConditionalGeneration
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

from oracle_versions import versions_line, write_versions

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MODEL = os.path.join(ROOT, "tests", "fixtures", "llava_tiny", "model")
OUT = os.path.join(ROOT, "tests", "fixtures", "step", "step.h5")
IMAGE, BETA, LR, WD, CLIP = 300, 0.1, 2e-4, 0.01, 1.0  # lr: the seed job's
PACKAGES = ["torch", "transformers", "peft", "bitsandbytes", "numpy", "h5py"]
PAIRS = [  # image (h, w), prompt ids before / after the image, chosen ids, rejected ids (answers end with </s> = 2)
    ((56, 56), [10, 11], [12, 13, 14], [30, 31, 2], [40, 41, 42, 2]),
    ((40, 100), [15], [16, 17, 18], [50, 51, 52, 53, 54, 2], [60, 2]),
]


def our_name(peft_name):
    n = peft_name.replace("base_model.model.", "", 1).replace(".default", "")
    kind = "A" if ".lora_A." in n else "B"
    mod = n.split(".lora_")[0]
    if mod.startswith("model.language_model."):
        mod = "language_model.model." + mod[len("model.language_model."):]
    elif mod.startswith("model.vision_tower."):
        mod = "vision_tower.vision_model." + mod[len("model.vision_tower."):]
    elif mod.startswith("model.multi_modal_projector."):
        mod = mod[len("model."):]
    elif mod == "lm_head":
        mod = "language_model.lm_head"
    return "lora/%s/%s" % (mod, kind)


def our_full_name(peft_name):
    n = peft_name.replace("base_model.model.", "", 1)
    n = n.replace("modules_to_save.default.", "")
    return n[len("model."):] if n.startswith("model.") else n


def nf4_base(model):
    import bitsandbytes.functional as bnbf
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".layers." in name and "language_model" in name and name.endswith("_proj.weight"):
                q, st = bnbf.quantize_4bit(p.data.contiguous(), blocksize=64, compress_statistics=True, quant_type="nf4")
                p.copy_(bnbf.dequantize_4bit(q, st).float())
            else:
                p.copy_(p.data.to(torch.bfloat16).float())


def build_inputs(model, gen):
    cfg = model.config
    batch = []
    for (h, w), pre_a, pre_b, ch, rj in PAIRS:
        P = image_size_to_num_patches((h, w), cfg.image_grid_pinpoints, cfg.vision_config.image_size)
        pix = torch.randn(1, P, 3, 56, 56, generator=gen)
        with torch.no_grad():
            feats = model.get_base_model().model.get_image_features(pixel_values=pix, image_sizes=torch.tensor([[h, w]]))
            n_img = feats.pooler_output[0].shape[0]
        batch.append(dict(h=h, w=w, P=P, pix=pix, pre_a=pre_a, pre_b=pre_b, ch=ch, rj=rj, n_img=n_img))
    return batch


def orpo_loss(model, batch):
    nll_sum, nll_n, lw, ll = 0.0, 0, [], []
    for b in batch:
        prefix = [1] + b["pre_a"] + [IMAGE] * b["n_img"] + b["pre_b"]
        scores = []
        for ans, is_chosen in ((b["ch"], True), (b["rj"], False)):
            ids = torch.tensor([prefix + ans])
            out = model(input_ids=ids, pixel_values=b["pix"], image_sizes=torch.tensor([[b["h"], b["w"]]]))
            logp = torch.log_softmax(out.logits[0].double(), -1)
            tok = ids[0]
            lp = logp[:-1].gather(1, tok[1:, None])[:, 0]  # lp[t-1] = log p(token t)
            Lp = len(prefix)
            ans_lp = lp[Lp - 1:]
            scores.append(ans_lp.mean())
            if is_chosen:
                mask = (tok[1:] != IMAGE)
                nll_sum = nll_sum + lp[mask].sum()
                nll_n += int(mask.sum())
        lw.append(scores[0])
        ll.append(scores[1])
    lw, ll = torch.stack(lw), torch.stack(ll)

    def log1mexp(x):
        return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))

    z = (lw - ll) - (log1mexp(lw) - log1mexp(ll))
    ratio = torch.nn.functional.logsigmoid(z)
    nll = -nll_sum / nll_n
    loss = nll - BETA * ratio.mean()
    metrics = dict(loss=loss, nll_loss=nll, log_odds_ratio=ratio.mean(), log_odds_chosen=z.mean(),
                   chosen_logps=lw.mean(), rejected_logps=ll.mean(),
                   reward_accuracy=((BETA * lw) > (BETA * ll)).double().mean(), reward_margin=(BETA * (lw - ll)).mean())
    return loss, {k: float(v) for k, v in metrics.items()}


def rmsnorm_in_input_dtype():
    """transformers' MistralRMSNorm always computes in float32; for a float64 finite-difference reference the
    same math must run in float64, or fp32 rounding (1e-7 relative) swamps the differences."""
    from transformers.models.mistral import modeling_mistral

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    modeling_mistral.MistralRMSNorm.forward = forward


def finite_differences(pm, batch, trainable, g, name_of):
    """Central differences in float64 at 3 random coordinates of every trainable tensor, on the initial
    weights: an independent check of the gradient that does not trust autograd."""
    saved = __import__("transformers.models.mistral.modeling_mistral", fromlist=["x"]).MistralRMSNorm.forward
    rmsnorm_in_input_dtype()
    with torch.no_grad():
        for n, p in trainable:
            p.copy_(torch.from_numpy(g["init/" + name_of(n)][()]))
    pm.double()
    for b in batch:
        b["pix"] = b["pix"].double()
    gen = torch.Generator().manual_seed(3)
    h = 1e-5
    with torch.no_grad():
        for n, p in trainable:
            idx = torch.randint(0, p.numel(), (3,), generator=gen)
            fd = []
            for i in idx.tolist():
                flat = p.view(-1)
                old = float(flat[i])
                flat[i] = old + h
                lp, _ = orpo_loss(pm, batch)
                flat[i] = old - h
                lm, _ = orpo_loss(pm, batch)
                flat[i] = old
                fd.append((float(lp) - float(lm)) / (2 * h))
            g.create_dataset("fdidx/" + name_of(n), data=idx.numpy().astype(np.int64))
            g.create_dataset("fd/" + name_of(n), data=np.array(fd))
    for b in batch:
        b["pix"] = b["pix"].float()
    __import__("transformers.models.mistral.modeling_mistral", fromlist=["x"]).MistralRMSNorm.forward = saved


def run(variant, base, g):
    torch.manual_seed(7)
    model = LlavaNextForConditionalGeneration.from_pretrained(MODEL, torch_dtype=torch.float32).eval()
    if base == "nf4":
        nf4_base(model)
    dec = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
    if variant == "lora":
        targets = dec + r"|lm_head|model\.multi_modal_projector\.linear_(1|2)"
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets)
    elif variant == "vision":  # decoder q,v + every linear of the last vision layer that feeds the projector
        targets = (r"model\.language_model\.layers\.\d+\.self_attn\.(q|v)_proj"
                   r"|model\.vision_tower\.encoder\.layers\.1\.(self_attn\.(q|k|v|out)_proj|mlp\.fc(1|2))")
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets)
    else:
        targets = r"model\.language_model\.layers\.\d+\.self_attn\.(q|v)_proj"
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets,
                         modules_to_save=["multi_modal_projector"])
    pm = get_peft_model(model, cfg)
    gen = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_A" in n or "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    batch = build_inputs(pm, torch.Generator().manual_seed(5))
    trainable = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]

    def name_of(n):
        return our_name(n) if ("lora_A" in n or "lora_B" in n) else our_full_name(n)

    for n, p in trainable:
        g.create_dataset("init/" + name_of(n), data=p.detach().numpy())
    loss, metrics = orpo_loss(pm, batch)
    loss.backward()
    for n, p in trainable:
        g.create_dataset("grad/" + name_of(n), data=p.grad.detach().numpy())
    for k, v in metrics.items():
        g.attrs[k] = v
    # 3 AdamW steps on the same batch
    opt = torch.optim.AdamW([p for _, p in trainable], lr=LR, weight_decay=WD)
    warm, total = 1, 4
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: s / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm))))
    opt.zero_grad()
    losses = []
    for step in range(3):
        loss, _ = orpo_loss(pm, batch)
        losses.append(float(loss))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], CLIP)
        opt.step()
        sched.step()
        for n, p in trainable:
            g.create_dataset("step%d/%s" % (step + 1, name_of(n)), data=p.detach().numpy())
    g.attrs["losses"] = np.array(losses)
    if base == "fp32":
        finite_differences(pm, batch, trainable, g, name_of)
    print(variant, base, "loss", metrics["loss"], "steps", losses, "tensors", len(trainable))
    return batch


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with h5py.File(OUT, "w") as f:
        f.attrs["beta"], f.attrs["lr"], f.attrs["weight_decay"], f.attrs["clip"] = BETA, LR, WD, CLIP
        f.attrs["warmup"], f.attrs["total_steps"], f.attrs["rank"], f.attrs["alpha"] = 1, 4, 4, 8.0
        f.attrs["oracle_versions"] = versions_line("make_step_fixtures.py", PACKAGES)
        batch = None
        for variant in ("lora", "fullproj", "vision"):
            for base in (("fp32", "nf4") if variant != "vision" else ("fp32",)):
                batch = run(variant, base, f.create_group("%s_%s" % (variant, base)))
        for i, b in enumerate(batch):
            g = f.create_group("pair%d" % i)
            g.create_dataset("pixel_values", data=b["pix"][0].numpy())
            g.create_dataset("image_size", data=np.array([b["h"], b["w"]], dtype=np.int32))
            prefix = [1] + b["pre_a"] + [IMAGE] * b["n_img"] + b["pre_b"]
            g.create_dataset("prefix", data=np.array(prefix, dtype=np.int32))
            g.create_dataset("chosen", data=np.array(b["ch"], dtype=np.int32))
            g.create_dataset("rejected", data=np.array(b["rj"], dtype=np.int32))
    write_versions(os.path.dirname(OUT), "make_step_fixtures.py", PACKAGES, [os.path.basename(OUT)],
                   note="input: tests/fixtures/llava_tiny/model (tools/oracle/make_llava_fixtures.py)")
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
