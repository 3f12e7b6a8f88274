#!/usr/bin/env python3
"""Oracle fixtures for greedy generation (tests/oracle/test_generate.c).

Loads the tiny random LLaVA-NeXT of tests/fixtures/llava_tiny/model (made by make_llava_fixtures.py; not
changed here) and, for a few images of different shapes, runs transformers'
generate(do_sample=False, max_new_tokens=NEW) with its KV cache. Records per case: the pixel values, the
image size, the prompt ids with <image> expanded, the generated ids and the raw logits of every generated
step (output_logits), from which the C test computes the top-2 margin of every step and asserts it is above
its fp32 error bound (a near-tie makes the comparison beyond that token meaningless).

Cases are drawn from a fixed seed; a candidate qualifies when it generates NEW tokens without </s> and
every step's top-2 margin is at least MARGIN (relative to max |logit| of that step), far above the error
bound (about 6e-4 relative, see tests/oracle/tolerance.h), so the fixture is stable under any fp32 order.
A random tiny model soon repeats itself; of ATTEMPTS candidates the one with the most distinct generated
tokens is kept, so that a decoder that mixed up positions or the cache would show.

Writes tests/fixtures/generate/generate.h5 and tests/fixtures/generate/VERSIONS.
Run: python3 tools/oracle/make_generate_fixtures.py   (stack: tools/oracle/requirements.txt)
"""
import os

import h5py
import numpy as np
import torch
from transformers import LlavaNextForConditionalGeneration
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

from oracle_versions import versions_line, write_versions

PACKAGES = ["torch", "transformers", "safetensors", "numpy", "h5py"]

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "fixtures", "llava_tiny", "model"))
OUT = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "fixtures", "generate"))

NEW = 40          # new tokens per case
MARGIN = 0.005    # smallest top-2 margin accepted, relative to max |logit| of the step (> 8x the bound)
ATTEMPTS = 60     # candidates per case; the one with the most distinct generated tokens is kept
CASES = {"square": (56, 56), "wide": (40, 100), "tall": (100, 40)}
TILE = 56


def main():
    model = LlavaNextForConditionalGeneration.from_pretrained(MODEL, dtype=torch.float32).eval()
    cfg = model.config
    image_token, eos, pad = cfg.image_token_index, cfg.text_config.eos_token_id, cfg.text_config.pad_token_id
    pinpoints = cfg.image_grid_pinpoints
    gen = torch.Generator().manual_seed(20261204)
    os.makedirs(OUT, exist_ok=True)
    with h5py.File(os.path.join(OUT, "generate.h5"), "w") as f:
        f.attrs["oracle_versions"] = versions_line("make_generate_fixtures.py", PACKAGES)
        f.attrs["max_new_tokens"] = NEW
        for name, (h, w) in CASES.items():
            npatch = image_size_to_num_patches((h, w), pinpoints, TILE)
            best = None
            for attempt in range(ATTEMPTS):
                pixel = torch.randn(1, npatch, 3, TILE, TILE, generator=gen)
                sizes = torch.tensor([[h, w]])
                text = torch.randint(3, 290, (6,), generator=gen).tolist()
                # the image-token count of this size (anyres with unpad and newline)
                inner = model.model
                with torch.no_grad():
                    vis = inner.vision_tower(pixel[0], output_hidden_states=True)
                    proj = inner.multi_modal_projector(vis.hidden_states[-2][:, 1:])
                    packed, _ = inner.pack_image_features([proj], sizes, "default", inner.image_newline)
                n_img = packed[0].shape[0]
                ids = [1] + text[:3] + [image_token] * n_img + text[3:]
                input_ids = torch.tensor([ids])
                with torch.no_grad():
                    out = model.generate(input_ids=input_ids, pixel_values=pixel, image_sizes=sizes,
                                         attention_mask=torch.ones_like(input_ids), do_sample=False,
                                         max_new_tokens=NEW, min_new_tokens=0, return_dict_in_generate=True,
                                         output_logits=True, pad_token_id=pad, eos_token_id=eos)
                new = out.sequences[0, len(ids):].tolist()
                logits = torch.stack([l[0] for l in out.logits]).float()
                top2 = torch.topk(logits, 2, dim=-1).values
                rel = ((top2[:, 0] - top2[:, 1]) / logits.abs().max(dim=-1).values).min().item()
                if len(new) == NEW and eos not in new and rel >= MARGIN:
                    if best is None or len(set(new)) > len(set(best[3])):
                        best = (pixel, ids, rel, new, logits, attempt)
            if best is None:
                raise SystemExit("no case for %s with margin %g" % (name, MARGIN))
            pixel, ids, rel, new, logits, attempt = best
            g = f.create_group(name)
            g.create_dataset("pixel_values", data=pixel[0].numpy())
            g.create_dataset("image_size", data=np.array([h, w], dtype=np.int32))
            g.create_dataset("input_ids", data=np.array(ids, dtype=np.int32))
            g.create_dataset("generated", data=np.array(new, dtype=np.int32))
            g.create_dataset("logits", data=logits.numpy())
            print(name, (h, w), "attempt", attempt, "prompt", len(ids), "new", len(new), "min rel margin %.3g" % rel,
                  "distinct tokens", len(set(new)))
    write_versions(OUT, "make_generate_fixtures.py", PACKAGES, ["generate.h5"])
    print("wrote", OUT)


if __name__ == "__main__":
    main()
