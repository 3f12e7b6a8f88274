#!/usr/bin/env python3
"""Fixtures for the data importer and loader (src/data/import.c, loader.c): a small RLAIF-V-shaped Parquet
file, the same rows as JSONL + an image directory, a JSONL file with malformed lines, and the expected
outcome of every row with the oracle token ids.

    python3 tools/oracle/make_data_fixtures.py [--out tests/fixtures/data]

Rows of rlaifv_small.parquet (row_group_size 4 -> 3 row groups; columns as in the hub files: ds_name,
image{bytes,path}, question, chosen, rejected, origin_dataset, origin_split, idx, image_path):
     0 ok   JPEG A 40x30            1 ok   JPEG A again (same bytes: stored once)   2 ok   PNG B 30x50 (RGBA)
     3 image_corrupt (JPEG magic + junk)   4 image_null (image is null)   5 same_answers
     6 answer_empty (rejected "")          7 question_empty ("   ")     8 image_tag_in_text ("<image>" in question)
     9 ok   JPEG C 70x20, long answer      10 image_null (image struct present, bytes null)   11 ok  JPEG D 20x90
rlaifv_small.jsonl + images/ hold the same 12 rows (null image -> "image": null).
bad.jsonl: line 2 not JSON, line 3 "image" is a number, line 4 blank (ignored), line 5 image file missing,
line 6 a JSON array; lines 1 and 7 are good.

expected.txt (ids of an oracle LlavaNextProcessor, transformers, built from tests/fixtures/tokenizer/tokenizer.json
with legacy=true and the image config of tests/fixtures/llava_tiny/model: tile 56, patch 14, its pinpoints):
    rows N
    skip <row> <reason>
    pair <pair index> row <row> h <height> w <width> nimg <image tokens> prefix <expanded prefix length>
    chosen <ids of prompt + chosen, <image> (32000) runs written I<count>>
    rejected <same for the rejected answer>
    end
The tiny model's text config does not match the Mistral tokenizer (vocab 320); the C tests widen its vocab
to 32064 with image_token_index 32000 (test_import_fixture.h), which is what these ids assume.
"""
import argparse
import io
import json
import os
import shutil
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOKJSON = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "tokenizer.json")
TINYCFG = os.path.join(ROOT, "tests", "fixtures", "llava_tiny", "model", "config.json")


def img_bytes(w, h, fmt, seed):
    """a small deterministic picture: gradients and a block, so that JPEG has real content"""
    mode = "RGBA" if fmt == "PNG" else "RGB"
    im = Image.new(mode, (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            r, g, b = (x * 255 // max(w - 1, 1) + seed * 40) % 256, (y * 255 // max(h - 1, 1)) % 256, (seed * 97) % 256
            if w // 3 <= x < 2 * w // 3 and h // 3 <= y < 2 * h // 3:
                r, g, b = 255 - r, 255 - g, b // 2
            px[x, y] = (r, g, b, 128 + (x * 127 // max(w - 1, 1))) if mode == "RGBA" else (r, g, b)
    buf = io.BytesIO()
    if fmt == "JPEG":
        im.save(buf, format="JPEG", quality=90)
    else:
        im.save(buf, format="PNG")
    return buf.getvalue()


LONG = ("The picture shows a wide landscape with a small river that winds through green fields, a row of old "
        "trees along the bank, two wooden boats tied to a short pier, and a grey sky with thin clouds above the "
        "hills in the distance; on the left a narrow path leads to a farmhouse with a red roof.")


def rows():
    A = img_bytes(40, 30, "JPEG", 1)
    B = img_bytes(30, 50, "PNG", 2)
    C = img_bytes(70, 20, "JPEG", 3)
    D = img_bytes(20, 90, "JPEG", 4)
    corrupt = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(7, 200, 3))
    # (image bytes or None, image struct null?, question, chosen, rejected, file name, outcome)
    return [
        (A, False, "What is in the picture?", "A red square on a gradient.", "A blue circle.", "a.jpg", "ok"),
        (A, False, "Which colors dominate?", "Red and green.", "Only black.", "a.jpg", "ok"),
        (B, False, "Describe the image briefly.", "A small picture with a darker block in the middle.",
         "It is a photo of a dog.", "b.png", "ok"),
        (corrupt, False, "What is this?", "A corrupt file.", "A cat.", "corrupt.jpg", "image_corrupt"),
        (None, True, "Is there an image?", "No.", "Yes.", None, "image_null"),
        (C, False, "Same answers?", "Identical text.", "Identical text.", "c.jpg", "same_answers"),
        (C, False, "Empty rejected answer?", "This one is fine.", "", "c.jpg", "answer_empty"),
        (C, False, "   ", "An answer.", "Another answer.", "c.jpg", "question_empty"),
        (C, False, "Where is the <image> tag?", "In the question.", "Nowhere.", "c.jpg", "image_tag_in_text"),
        (C, False, "Describe the scene in detail.", LONG, "A city at night with many lights.", "c.jpg", "ok"),
        (None, False, "Bytes are null here.", "Right.", "Wrong.", None, "image_null"),
        (D, False, "Is the picture tall or wide?", "It is tall.", "It is wide.", "d.jpg", "ok"),
    ]


def processor(tmp):
    """LlavaNextProcessor with the Mistral tokenizer.json (legacy=true) and the tiny model's image config"""
    cfg = json.load(open(TINYCFG))
    tile, patch = cfg["vision_config"]["image_size"], cfg["vision_config"]["patch_size"]
    shutil.copy(TOKJSON, tmp)
    json.dump({"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
               "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
               "image_token": "<image>", "legacy": True, "processor_class": "LlavaNextProcessor"},
              open(os.path.join(tmp, "tokenizer_config.json"), "w"))
    json.dump({"image_processor_type": "LlavaNextImageProcessor", "crop_size": {"height": tile, "width": tile},
               "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True, "do_pad": True,
               "do_rescale": True, "do_resize": True, "image_grid_pinpoints": cfg["image_grid_pinpoints"],
               "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
               "processor_class": "LlavaNextProcessor", "resample": 3, "rescale_factor": 1 / 255,
               "size": {"shortest_edge": tile}}, open(os.path.join(tmp, "preprocessor_config.json"), "w"))
    json.dump({"patch_size": patch, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1,
               "image_token": "<image>", "processor_class": "LlavaNextProcessor"},
              open(os.path.join(tmp, "processor_config.json"), "w"))
    from transformers import LlavaNextProcessor
    return LlavaNextProcessor.from_pretrained(tmp)


def rle(ids):
    out, i = [], 0
    while i < len(ids):
        if ids[i] == 32000:
            j = i
            while j < len(ids) and ids[j] == 32000:
                j += 1
            out.append("I%d" % (j - i))
            i = j
        else:
            out.append(str(ids[i]))
            i += 1
    return " ".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "data"))
    out = ap.parse_args().out
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    R = rows()

    # Parquet, shaped like the hub files
    image_col = []
    for img, struct_null, *_ in R:
        image_col.append(None if struct_null else {"bytes": img, "path": None})
    table = pa.table({
        "ds_name": pa.array(["RLAIF-V"] * len(R)),
        "image": pa.array(image_col, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "question": pa.array([r[2] for r in R]),
        "chosen": pa.array([r[3] for r in R]),
        "rejected": pa.array([r[4] for r in R]),
        "origin_dataset": pa.array(["fixture"] * len(R)),
        "origin_split": pa.array([json.dumps({"model": "m", "type": "question_answering"})] * len(R)),
        "idx": pa.array(["%032x" % i for i in range(len(R))]),
        "image_path": pa.array(["images/%s" % (r[5] or "none") for r in R]),
    })
    pq.write_table(table, os.path.join(out, "rlaifv_small.parquet"), row_group_size=4, compression="snappy")

    # the same rows as JSONL + images
    with open(os.path.join(out, "rlaifv_small.jsonl"), "w") as f:
        for img, _, q, c, r, name, _ in R:
            if name:
                with open(os.path.join(out, "images", name), "wb") as g:
                    g.write(img)
            f.write(json.dumps({"image": name if img is not None else None, "question": q, "chosen": c,
                                "rejected": r}, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "bad.jsonl"), "w") as f:
        f.write(json.dumps({"image": "a.jpg", "question": "Good line one?", "chosen": "Yes.", "rejected": "No."}) + "\n")
        f.write("this is not json\n")
        f.write(json.dumps({"image": 5, "question": "q", "chosen": "c", "rejected": "r"}) + "\n")
        f.write("\n")
        f.write(json.dumps({"image": "nope.jpg", "question": "Missing file?", "chosen": "Yes.", "rejected": "No."}) + "\n")
        f.write("[1, 2, 3]\n")
        f.write(json.dumps({"image": "d.jpg", "question": "Good line seven?", "chosen": "Tall.", "rejected": "Wide."}) + "\n")

    # expected outcomes with oracle ids
    tmp = tempfile.mkdtemp()
    proc = processor(tmp)
    lines = ["# generated by tools/oracle/make_data_fixtures.py (LlavaNextProcessor, transformers)",
             "rows %d" % len(R)]
    k = 0
    for i, (img, _, q, c, r, _, outcome) in enumerate(R):
        if outcome != "ok":
            lines.append("skip %d %s" % (i, outcome))
            continue
        pil = Image.open(io.BytesIO(img))
        w, h = pil.size
        prompt = "[INST] <image>\n" + q + " [/INST]"
        ids = {}
        for name, a in (("chosen", c), ("rejected", r)):
            ids[name] = proc(text=prompt + " " + a + "</s>", images=pil.convert("RGB"), return_tensors=None)["input_ids"][0]
        p_ids = proc(text=prompt, images=pil.convert("RGB"), return_tensors=None)["input_ids"][0]
        nimg = p_ids.count(32000)
        plen = 0
        while plen < len(p_ids) and p_ids[plen] == ids["chosen"][plen]:
            plen += 1
        lines += ["pair %d row %d h %d w %d nimg %d prefix %d" % (k, i, h, w, nimg, plen),
                  "chosen " + rle(ids["chosen"]), "rejected " + rle(ids["rejected"]), "end"]
        k += 1
    shutil.rmtree(tmp)
    with open(os.path.join(out, "expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
