#!/usr/bin/env python3
"""Fixtures for LLaVA-NeXT image preprocessing (src/data/image.c, src/data/anyres.c).

Reference: transformers LlavaNextImageProcessorPil (the PIL/numpy backend, Pillow BICUBIC) and
LlavaNextProcessor._get_number_of_features (first made with 5.24; regenerated with the pinned stack of
tools/oracle/requirements.txt, transformers 5.25.0 + Pillow 13.0.0, the versions that ran are in manifest.txt's
header and in VERSIONS). Deterministic (fixed seeds); rerun to regenerate:

    python3 tools/oracle/make_image_fixtures.py            # writes tests/fixtures/image/

Output (tests/fixtures/image/):
  manifest.txt   one record per line, whitespace separated (read by tests/oracle/test_image.c):
    config NAME TILE PATCH H1xW1,H2xW2,...          grid config (pinpoints are (height, width), HF order)
    case NAME IMAGE CONFIG REF H W P ROWS COLS NTOK ROWSTEP EXPECTED
        HF pixel_values of IMAGE, as uint8 u = round((v*std + mean)*255), which is lossless because HF
        derives v from uint8 pixels; EXPECTED is a PNG of the P patches stacked vertically, keeping
        patch rows y with y % ROWSTEP == 0 (ROWSTEP > 1 only to keep big fixtures small).
        REF = pil: HF fed with Image.open(bytes) (the real reference);
        REF = stb: HF fed with the pixels stb_image decodes (isolates preprocessing from JPEG decoder
        differences, see docs/preprocessing.md).
    decode NAME IMAGE W H RGBPNG                   HF convert_to_rgb(Image.open(bytes)), stored as an RGB PNG
    tokens CONFIG H W NTOK ROWS COLS               HF processor token count and grid for an image size
    resize K IW IH OW OH OFFSET                    Pillow BICUBIC of LCG pixels (see lcg_pixels): OW*OH*3
                                                   bytes at OFFSET of resize.u8
  norm.f32       3 x 256 float32: HF rescale + normalize (CLIP mean/std) of u = 0..255 per channel
  *.png, *.jpg   the encoded input images
  VERSIONS       the tool versions and the SHA-256 of every file above
"""
import ctypes
import io
import os
import sys

import numpy as np
from PIL import Image

from oracle_versions import versions_line, write_versions

from transformers.image_processing_utils import select_best_resolution
from transformers.image_transforms import convert_to_rgb
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "image")

# llava-hf/llava-v1.6-mistral-7b-hf preprocessor_config.json / processor_config.json
LLAVA16 = dict(tile=336, patch=14, pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]])
# a tiny config for the demo model: 56-pixel tiles, same code path, small fixtures
TINY = dict(tile=56, patch=14, pinpoints=[[56, 56], [56, 112], [112, 56], [112, 112], [168, 56], [56, 168]])
CONFIGS = {"llava16": LLAVA16, "tiny": TINY}
PACKAGES = ["transformers", "pillow", "numpy"]


def processor(cfg):
    t = cfg["tile"]
    return LlavaNextImageProcessorPil(
        size={"shortest_edge": t}, crop_size={"height": t, "width": t}, image_grid_pinpoints=cfg["pinpoints"],
        resample=3, rescale_factor=0.00392156862745098, do_resize=True, do_center_crop=True, do_rescale=True,
        do_normalize=True, do_convert_rgb=True, do_pad=True, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)


def num_tokens(cfg, h, w):
    """LlavaNextProcessor._get_number_of_features - 1 (the 'default' strategy drops CLS), re-derived with
    the processor's own method on a stub object so that the code under test is transformers' own."""
    from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor

    class Stub:
        pass

    s = Stub()
    s.image_processor = Stub()
    s.image_processor.image_grid_pinpoints = cfg["pinpoints"]
    s.patch_size = cfg["patch"]
    s.num_additional_image_tokens = 1
    s._get_unpadded_features = LlavaNextProcessor._get_unpadded_features.__get__(s)
    n = LlavaNextProcessor._get_number_of_features(s, h, w, cfg["tile"], cfg["tile"])
    return n - 1


def grid(cfg, h, w):
    bh, bw = select_best_resolution((h, w), cfg["pinpoints"])
    return bh // cfg["tile"], bw // cfg["tile"]


# ---- stb_image decoding through the system library (only for REF = stb expectations) -----------
_stb = None


def stb_version():
    import subprocess
    try:
        return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libstb0"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "(version unknown)"


def stb_decode(data):
    global _stb
    if _stb is None:
        _stb = ctypes.CDLL("libstb.so.0")
        _stb.stbi_load_from_memory.restype = ctypes.POINTER(ctypes.c_ubyte)
        _stb.stbi_load_from_memory.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                               ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int),
                                               ctypes.c_int]
    w, h, n = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    p = _stb.stbi_load_from_memory(data, len(data), ctypes.byref(w), ctypes.byref(h), ctypes.byref(n), 3)
    assert p, "stb_image failed"
    arr = np.ctypeslib.as_array(p, shape=(h.value, w.value, 3)).copy()
    _stb.stbi_image_free(p)
    return arr


# ---- deterministic synthetic images ------------------------------------------------------------
def photo(h, w, seed, noise=0.0, block=True):
    """Smooth colour waves + a few sharp shapes + a block of strong noise (a sixth of each side):
    exercises ringing/clipping of the bicubic kernel while staying compressible."""
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    fx, fy = rs.uniform(20, 90, 3), rs.uniform(20, 90, 3)
    img = np.stack([128 + 110 * np.sin(x / fx[c] + y / fy[c] + c) for c in range(3)], -1)
    for _ in range(4):  # hard-edged rectangles (black / white / saturated)
        y0, x0 = rs.randint(0, h), rs.randint(0, w)
        img[y0:y0 + max(1, h // 5), x0:x0 + max(1, w // 6)] = rs.choice([0, 255], 3)
    img[h // 2, :] = 255  # one-pixel line
    img += rs.normal(0, noise, img.shape)
    if block:
        bh, bw = max(1, h // 6), max(1, w // 6)
        by, bx = rs.randint(0, h - bh + 1), rs.randint(0, w - bw + 1)
        img[by:by + bh, bx:bx + bw] += rs.normal(0, 60, (bh, bw, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def lcg_pixels(seed, n):
    """x <- x * 1103515245 + 12345 (mod 2^32), starting from 2463534242 + seed; pixel = x >> 24."""
    out = np.empty(n, np.uint8)
    x = (2463534242 + seed) & 0xFFFFFFFF
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        out[i] = x >> 24
    return out


def png_bytes(im, **kw):
    b = io.BytesIO()
    im.save(b, "PNG", **kw)
    return b.getvalue()


def jpeg_bytes(im, **kw):
    b = io.BytesIO()
    im.save(b, "JPEG", **kw)
    return b.getvalue()


def find_odd_unpad(cfg):
    """First (h, w) in a deterministic scan whose unpad removes an odd number of feature rows/cols,
    so HF keeps nh + 1 (one more than the resized content)."""
    side = cfg["tile"] // cfg["patch"]
    for h in range(120, 900, 7):
        for w in range(500, 1200, 13):
            rows, cols = grid(cfg, h, w)
            ch, cw = side * rows, side * cols
            if w / h > cw / ch:
                nh = int(round(h * (cw / w), 7))
                if (ch - nh) % 2 == 1:
                    return h, w
    raise RuntimeError("no odd-unpad size found")


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    lines = []
    for name, cfg in CONFIGS.items():
        pp = ",".join(f"{a}x{b}" for a, b in cfg["pinpoints"])
        lines.append(f"config {name} {cfg['tile']} {cfg['patch']} {pp}")

    odd_h, odd_w = find_odd_unpad(LLAVA16)
    # name -> (encoded bytes, file name)
    images = {}

    def add(name, data, ext):
        fn = f"{name}.{ext}"
        with open(os.path.join(OUT, fn), "wb") as f:
            f.write(data)
        images[name] = (data, fn)

    add("square", png_bytes(Image.fromarray(photo(360, 360, 1))), "png")          # 2x2 grid
    add("wide", png_bytes(Image.fromarray(photo(150, 1000, 2))), "png")           # 1x3 grid
    add("tall", png_bytes(Image.fromarray(photo(1000, 150, 3))), "png")           # 3x1 grid
    add("tiny", png_bytes(Image.fromarray(photo(5, 7, 4, noise=40))), "png")      # 5x7: huge upscale
    add("exact", png_bytes(Image.fromarray(photo(112, 56, 5))), "png")            # = a tiny pinpoint: no resize
    add("exact2", png_bytes(Image.fromarray(photo(56, 112, 5))), "png")           # the transposed one
    add("oddunpad", png_bytes(Image.fromarray(photo(odd_h, odd_w, 6))), "png")    # odd unpad remainder
    g = photo(90, 120, 7)[..., 1]
    add("grey", png_bytes(Image.fromarray(g, "L")), "png")                         # mode L
    alpha = np.tile(np.linspace(0, 255, 150).round().astype(np.uint8), (100, 1))
    alpha[40:60, 50:100] = np.random.RandomState(9).randint(0, 256, (20, 50))
    alpha[:20, :] = 0
    alpha[20:40, :] = 255
    rgba = np.dstack([photo(100, 150, 8), alpha])
    add("rgba", png_bytes(Image.fromarray(rgba, "RGBA")), "png")                   # alpha -> white
    add("photo", jpeg_bytes(Image.fromarray(photo(768, 1024, 10, block=False)), quality=75), "jpg")  # 4:2:0 JPEG, also the speed benchmark input
    add("small", jpeg_bytes(Image.fromarray(photo(60, 80, 11)), quality=90, subsampling=0), "jpg")  # 4:4:4

    # decode-only variants: PNG modes Pillow and stb_image must agree on
    rs = np.random.RandomState(12)
    la = np.dstack([rs.randint(0, 256, (12, 16)), rs.randint(0, 256, (12, 16))]).astype(np.uint8)
    add("dec_la", png_bytes(Image.fromarray(la, "LA")), "png")
    pal = Image.fromarray(rs.randint(0, 256, (12, 16, 3)).astype(np.uint8)).convert("P", palette=Image.ADAPTIVE,
                                                                                      colors=16)
    add("dec_pal", png_bytes(pal), "png")
    add("dec_paltrns", png_bytes(pal, transparency=3), "png")
    add("dec_rgbtrns", png_bytes(Image.fromarray(rs.randint(0, 4, (12, 16, 3)).astype(np.uint8) * 85),
                                 transparency=(85, 0, 170)), "png")
    add("dec_grey16", png_bytes(Image.fromarray((rs.randint(0, 600, (12, 16))).astype(np.uint16))), "png")
    add("dec_bw", png_bytes(Image.fromarray(rs.randint(0, 2, (12, 16)).astype(bool))), "png")
    add("dec_interlaced", png_bytes(Image.fromarray(photo(12, 16, 13)), optimize=False), "png")
    add("dec_greyjpg", jpeg_bytes(Image.fromarray(photo(24, 32, 14)[..., 0], "L"), quality=85), "jpg")
    add("dec_progjpg", jpeg_bytes(Image.fromarray(photo(24, 32, 15)), quality=85, progressive=True), "jpg")
    add("dec_jpg422", jpeg_bytes(Image.fromarray(photo(24, 32, 16)), quality=85, subsampling=1), "jpg")
    add("dec_cmykjpg", jpeg_bytes(Image.fromarray(photo(24, 32, 17)).convert("CMYK"), quality=90), "jpg")

    for name, (data, fn) in images.items():
        im = Image.open(io.BytesIO(data))
        rgb = convert_to_rgb(im, return_numpy=True)
        raw = f"{name}.rgb.png"
        if name.startswith("dec_") or name in ("grey", "rgba", "small"):
            with open(os.path.join(OUT, raw), "wb") as f:
                f.write(png_bytes(Image.fromarray(rgb.astype(np.uint8), "RGB")))
            lines.append(f"decode {name} {fn} {rgb.shape[1]} {rgb.shape[0]} {raw}")

    # full preprocessing cases
    mean = np.array(OPENAI_CLIP_MEAN, np.float32)
    std = np.array(OPENAI_CLIP_STD, np.float32)
    # every image through the tiny config; the 336 config (real pinpoints and tile) on the geometry cases
    cases = [(n, "tiny") for n in ("square", "wide", "tall", "tiny", "exact", "exact2", "oddunpad", "grey", "rgba",
                                   "photo", "small")]
    cases += [(n, "llava16") for n in ("square", "wide", "tall", "tiny", "oddunpad", "photo")]
    for name, cname in cases:
        cfg = CONFIGS[cname]
        data, fn = images[name]
        refs = ["pil"] + (["stb"] if fn.endswith(".jpg") else [])
        for ref in refs:
            im = Image.open(io.BytesIO(data)) if ref == "pil" else Image.fromarray(stb_decode(data))
            h, w = im.size[1], im.size[0]
            out = processor(cfg)(im, return_tensors="np")
            pv = out["pixel_values"][0]  # [P, 3, t, t] float32
            assert tuple(out["image_sizes"][0]) == (h, w)
            u = np.round((pv * std[None, :, None, None] + mean[None, :, None, None]) * 255.0)
            assert u.min() >= 0 and u.max() <= 255
            u = u.astype(np.uint8)
            # the inversion is lossless: redo HF's forward math on u and demand bit equality
            back = ((u.astype(np.float64) * 0.00392156862745098).astype(np.float32)
                    - mean[None, :, None, None]) / std[None, :, None, None]
            assert np.array_equal(back.astype(np.float32), pv), f"{name}: lossy u8 inversion"
            P, t = pv.shape[0], cfg["tile"]
            rows, cols = grid(cfg, h, w)
            assert P == 1 + rows * cols
            ntok = num_tokens(cfg, h, w)
            step = 4 if cname == "llava16" else 1  # every fourth patch row: keeps the 336 fixtures small
            hwc = u.transpose(0, 2, 3, 1)[:, ::step]  # [P, t/step, t, 3]
            stack = hwc.reshape(-1, t, 3)
            exp = f"{name}.{cname}.{ref}.png"
            with open(os.path.join(OUT, exp), "wb") as f:
                f.write(png_bytes(Image.fromarray(stack), optimize=True))
            lines.append(f"case {name}.{cname}.{ref} {fn} {cname} {ref} {h} {w} {P} {rows} {cols} {ntok} {step} {exp}")

    # Pillow BICUBIC alone on pseudo-random pixels (both pass orders, extreme ratios, 1-pixel sides):
    # the input comes from the LCG below, which tests/oracle/test_image.c repeats, so only outputs are stored
    pairs = [(37, 29, 11, 7), (29, 37, 7, 11), (5, 90, 17, 3), (90, 5, 3, 17), (64, 64, 64, 9), (64, 64, 9, 64),
             (1, 1, 13, 9), (13, 9, 1, 1), (200, 150, 23, 61), (150, 200, 61, 23), (7, 5, 336, 2), (3, 300, 40, 40),
             (48, 48, 47, 49), (120, 31, 120, 5), (31, 120, 5, 120), (17, 200, 16, 60)]
    blob = bytearray()
    for k, (iw, ih, ow, oh) in enumerate(pairs):
        src = lcg_pixels(k, iw * ih * 3).reshape(ih, iw, 3)
        dst = np.array(Image.fromarray(src).resize((ow, oh), Image.BICUBIC))
        lines.append(f"resize {k} {iw} {ih} {ow} {oh} {len(blob)}")
        blob += dst.tobytes()
    with open(os.path.join(OUT, "resize.u8"), "wb") as f:
        f.write(bytes(blob))

    # token counts: the spec's worked examples, boundaries and a deterministic random sweep
    sizes = [(899, 1024), (480, 640), (560, 560), (1080, 1920), (1000, 300), (300, 1000), (336, 336), (100, 100),
             (200, 100), (235, 1128), (792, 1408), (1, 1), (1, 2000), (2000, 1), (336, 672), (672, 336),
             (337, 673), (5, 7), (odd_h, odd_w)]
    rs = np.random.RandomState(99)
    sizes += [(int(a), int(b)) for a, b in rs.randint(1, 2500, (300, 2))]
    sizes += [(int(a), int(b)) for a, b in rs.randint(1, 200, (100, 2))]
    for cname, cfg in CONFIGS.items():
        for h, w in sizes:
            try:
                rows, cols = grid(cfg, h, w)
            except TypeError:  # best_fit None: HF cannot process this size
                continue
            lines.append(f"tokens {cname} {h} {w} {num_tokens(cfg, h, w)} {rows} {cols}")

    # HF's float32 rescale + normalize for every uint8 value, per channel
    v = np.arange(256, dtype=np.uint8)[None, :, None].repeat(3, 0)  # [3, 256, 1] channels-first
    proc = processor(LLAVA16)
    nt = proc.normalize(proc.rescale(v, 0.00392156862745098), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    assert nt.dtype == np.float32
    nt[:, :, 0].astype("<f4").tofile(os.path.join(OUT, "norm.f32"))

    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("# %s; do not edit\n" % versions_line("make_image_fixtures.py", PACKAGES))
        f.write("\n".join(lines) + "\n")
    write_versions(OUT, "make_image_fixtures.py", PACKAGES, [n for n in os.listdir(OUT) if n != "VERSIONS"],
                   note="stb_image (REF = stb cases): the system's libstb.so.0, Debian package libstb0 " + stb_version())
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes to {OUT}; odd-unpad size {odd_h}x{odd_w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
