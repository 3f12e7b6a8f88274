#!/usr/bin/env python3
"""Oracle for `orpo-hpc export --peft` (tests/oracle/test_export.c): PEFT's own save_pretrained output for a
known LoRA state on the tiny LLaVA-NeXT (tests/fixtures/llava_tiny/model, fp32), and the log-probs that
transformers + PEFT compute with that adapter loaded back through PeftModel.from_pretrained.

Two variants, written under tests/fixtures/export/<variant>/:
  lora   r=4, alpha=8, dropout 0.05: LoRA on q,k,v,o,gate,up,down of the decoder, on lm_head and on both projector
         linears (job: lora.targets [q_proj, ..., down_proj, mm_projector, lm_head]); also saved with the adapter
         in bf16 (peft_bf16/) for --dtype bf16
  full   r=4, alpha=8, rsLoRA: LoRA q,v of the decoder and every linear of the last vision layer that feeds the
         projector (lora.vision_layers 1), the projector trained fully (modules_to_save) and the embedding rows of
         <image> (300) and <pad> (301) (trainable_token_indices)
Every trainable value is random (B != 0, projector and token rows perturbed), so a wrong name or transpose shows.
state.h5 holds the same state under orpo-hpc's trainer tensor names (<variant>/<name>), and for each pair of
tests/fixtures/step/step.h5 (same images and ids) the log-prob of every token given the ones before it
(<variant>/logp/pair<i>_{chosen,rejected}[t-1] = log p(token t)), from the logits in fp32 (log-softmax in fp64).
"""
import json
import os
import shutil

import h5py
import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlavaNextForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MODEL = os.path.join(ROOT, "tests", "fixtures", "llava_tiny", "model")
STEP = os.path.join(ROOT, "tests", "fixtures", "step", "step.h5")
OUT = os.path.join(ROOT, "tests", "fixtures", "export")

DEC = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
       "mlp.up_proj", "mlp.down_proj"]
VIS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"]


def esc(s):
    return s.replace(".", "\\.")


def target_regex(dec, proj, head, vis_layers, vis):
    """the target_modules regex orpo-hpc writes (current transformers layout)"""
    alts = []
    if dec:
        alts.append("model\\.language_model\\.layers\\.\\d+\\.(" + "|".join(esc(m) for m in dec) + ")")
    if vis:
        alts.append("model\\.vision_tower\\.encoder\\.layers\\.(" + "|".join(str(l) for l in vis_layers) + ")\\.("
                    + "|".join(esc(m) for m in vis) + ")")
    if proj:
        alts.append("model\\.multi_modal_projector\\.linear_(1|2)")
    if head:
        alts.append("lm_head")
    return "|".join(alts)


def our_name(n):
    """PEFT parameter name -> orpo-hpc trainer tensor name"""
    n = n.replace("base_model.model.", "", 1).replace(".default", "")
    if ".lora_A." in n or ".lora_B." in n:
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
    if "trainable_tokens_delta" in n:
        return "language_model.model.embed_tokens.trainable_rows"
    n = n.replace("modules_to_save.", "")
    return n[len("model."):] if n.startswith("model.") else n


def load_pairs():
    pairs = []
    with h5py.File(STEP, "r") as f:
        for i in range(2):
            g = f["pair%d" % i]
            pairs.append(dict(pix=torch.from_numpy(g["pixel_values"][()])[None], hw=[int(x) for x in g["image_size"][()]],
                              prefix=[int(x) for x in g["prefix"][()]], ch=[int(x) for x in g["chosen"][()]],
                              rj=[int(x) for x in g["rejected"][()]]))
    return pairs


def logps(model, pairs, g):
    with torch.no_grad():
        for i, p in enumerate(pairs):
            for kind in ("chosen", "rejected"):
                ids = torch.tensor([p["prefix"] + p["ch" if kind == "chosen" else "rj"]])
                out = model(input_ids=ids, pixel_values=p["pix"], image_sizes=torch.tensor([p["hw"]]))
                lp = torch.log_softmax(out.logits[0].double(), -1)[:-1].gather(1, ids[0, 1:, None])[:, 0]
                g.create_dataset("logp/pair%d_%s" % (i, kind), data=lp.numpy())


def run(variant, st, pairs):
    torch.manual_seed(11)
    model = LlavaNextForConditionalGeneration.from_pretrained(MODEL, dtype=torch.float32).eval()
    if variant == "lora":
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=target_regex(DEC, True, True, [], []))
    else:
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, use_rslora=True,
                         target_modules=target_regex(DEC[0:1] + DEC[2:3], False, False, [1], VIS),
                         modules_to_save=["multi_modal_projector"], trainable_token_indices={"embed_tokens": [300, 301]})
    pm = get_peft_model(model, cfg)
    gen = torch.Generator().manual_seed(21 if variant == "lora" else 22)
    g = st.create_group(variant)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if not p.requires_grad:
                continue
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            else:  # projector weights, token rows: perturb the copied values
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
            g.create_dataset(our_name(n), data=p.detach().numpy())
    d = os.path.join(OUT, variant, "peft")
    shutil.rmtree(d, ignore_errors=True)
    pm.save_pretrained(d)
    os.remove(os.path.join(d, "README.md"))  # the model card is orpo-hpc's own, not compared
    if variant == "lora":
        db = os.path.join(OUT, variant, "peft_bf16")
        shutil.rmtree(db, ignore_errors=True)
        pm.to(torch.bfloat16)
        pm.save_pretrained(db)
        os.remove(os.path.join(db, "README.md"))
    # logits of transformers + PEFT with the adapter as saved, loaded the ordinary way
    base = LlavaNextForConditionalGeneration.from_pretrained(MODEL, dtype=torch.float32).eval()
    lm = PeftModel.from_pretrained(base, d).eval()
    logps(lm, pairs, g)
    print(variant, "tensors", sum(1 for _ in g), json.load(open(os.path.join(d, "adapter_config.json")))["target_modules"])


def main():
    os.makedirs(OUT, exist_ok=True)
    pairs = load_pairs()
    with h5py.File(os.path.join(OUT, "state.h5"), "w") as st:
        for variant in ("lora", "full"):
            run(variant, st, pairs)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
