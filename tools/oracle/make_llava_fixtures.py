#!/usr/bin/env python3
"""Oracle fixtures for the LLaVA-NeXT forward pass (tests/oracle/test_llava_forward.c).

Builds a random tiny LlavaNextForConditionalGeneration in float32 with every structural feature of
llava-v1.6-mistral-7b (several CLIP layers with layer -2 selected and CLS dropped, a 2-layer GELU
projector, anyres with 5 pinpoints and unpad, image_newline, GQA with 2 query heads per KV head,
RoPE theta 1e6, untied lm_head), saves it with save_pretrained, and records for a few image sizes
(square, wide, tall, tiny, odd unpad remainder): pixel values, image sizes, input ids with the
<image> token expanded, the selected vision features, the packed image features, the input
embeddings and the logits of every position.

Writes tests/fixtures/llava_tiny/model/ (HF directory) and tests/fixtures/llava_tiny/forward.h5.
Run: python3 tools/oracle/make_llava_fixtures.py   (stack: tools/oracle/requirements.txt)
The tool versions that ran are in forward.h5's root attribute `oracle_versions`, in model/config.json's
`transformers_version` (save_pretrained) and in tests/fixtures/llava_tiny/VERSIONS.
"""
import os

import h5py
import numpy as np
import torch
from transformers import CLIPVisionConfig, LlavaNextConfig, LlavaNextForConditionalGeneration, MistralConfig
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

from oracle_versions import versions_line, write_versions

PACKAGES = ["torch", "transformers", "bitsandbytes", "safetensors", "numpy", "h5py"]

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "fixtures", "llava_tiny"))

TILE, PATCH = 56, 14
PINPOINTS = [[56, 112], [112, 56], [112, 112], [56, 168], [168, 56]]  # (height, width) as HF
VOCAB, IMAGE_TOKEN, PAD_TOKEN = 320, 300, 301
CASES = {"square": (56, 56), "wide": (40, 100), "tall": (100, 40), "tiny": (7, 5), "odd": (90, 61)}


def tiny_config():
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                              image_size=TILE, patch_size=PATCH, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                              projection_dim=32)
    text = MistralConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
                         rope_theta=1e6, max_position_embeddings=4096, sliding_window=None,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=PAD_TOKEN)
    return LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN,
                           projector_hidden_act="gelu", vision_feature_layer=-2,
                           vision_feature_select_strategy="default", image_grid_pinpoints=PINPOINTS,
                           tie_word_embeddings=False)


def main():
    torch.manual_seed(20261127)
    cfg = tiny_config()
    model = LlavaNextForConditionalGeneration(cfg).float().eval()
    # default init leaves biases/norm weights at 0/1 and small weights; perturb everything so that a
    # wrong bias, norm or newline handling shows in the logits
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    mdir = os.path.join(OUT, "model")
    os.makedirs(mdir, exist_ok=True)
    model.save_pretrained(mdir, safe_serialization=True)

    # The same model as orpo-hpc's NF4 import sees it: decoder linears quantized by bitsandbytes (NF4,
    # blocksize 64, double-quantized absmax; the CPU back end here, so `--nf4-flavor cpu`) and
    # dequantized again; every other tensor rounded to bf16 (how model.h5 stores it).
    import bitsandbytes.functional as bnbf
    qmodel = LlavaNextForConditionalGeneration(cfg).float().eval()
    qmodel.load_state_dict(model.state_dict())
    with torch.no_grad():
        for name, p in qmodel.named_parameters():
            if ".layers." in name and "language_model" in name and name.endswith("_proj.weight"):
                q, st = bnbf.quantize_4bit(p.data.contiguous(), blocksize=64, compress_statistics=True, quant_type="nf4")
                p.copy_(bnbf.dequantize_4bit(q, st).float())
            else:
                p.copy_(p.data.to(torch.bfloat16).float())

    inner = model.model
    with h5py.File(os.path.join(OUT, "forward.h5"), "w") as f:
        f.attrs["tile"], f.attrs["patch"] = TILE, PATCH
        f.attrs["oracle_versions"] = versions_line("make_llava_fixtures.py", PACKAGES)
        for name, (h, w) in CASES.items():
            g = f.create_group(name)
            npatch = image_size_to_num_patches((h, w), PINPOINTS, TILE)
            pixel = torch.randn(1, npatch, 3, TILE, TILE)
            sizes = torch.tensor([[h, w]])
            with torch.no_grad():
                vis = inner.vision_tower(pixel[0], output_hidden_states=True)
                selected = vis.hidden_states[-2][:, 1:]
                proj = inner.multi_modal_projector(selected)
                packed, lens = inner.pack_image_features([proj], sizes, "default", inner.image_newline)
                feats = packed[0]
                n_img = feats.shape[0]
                ids = [1, 10, 11] + [IMAGE_TOKEN] * n_img + [12, 13, 14, 15]
                input_ids = torch.tensor([ids])
                out = model(input_ids=input_ids, pixel_values=pixel, image_sizes=sizes)
                emb = inner.get_input_embeddings()(input_ids)[0]
                emb[torch.tensor(ids) == IMAGE_TOKEN] = feats
            g.create_dataset("pixel_values", data=pixel[0].numpy())
            g.create_dataset("image_size", data=np.array([h, w], dtype=np.int32))
            g.create_dataset("input_ids", data=np.array(ids, dtype=np.int32))
            g.create_dataset("vision_selected", data=selected.numpy())
            g.create_dataset("image_features", data=feats.numpy())
            g.create_dataset("inputs_embeds", data=emb.numpy())
            g.create_dataset("logits", data=out.logits[0].numpy())
            with torch.no_grad():
                qout = qmodel(input_ids=input_ids, pixel_values=pixel, image_sizes=sizes)
            g.create_dataset("logits_nf4", data=qout.logits[0].numpy())
            g.attrs["n_image_tokens"] = n_img
            print(name, (h, w), "patches", npatch, "image tokens", n_img, "seq", len(ids))
    write_versions(OUT, "make_llava_fixtures.py", PACKAGES,
                   ["forward.h5"] + [os.path.join("model", n) for n in sorted(os.listdir(mdir))])
    print("wrote", OUT)


if __name__ == "__main__":
    main()
