#!/usr/bin/env python3
"""Write the generated sample answers of an orpo-hpc run as a Markdown page beside its curves.

    python3 tools/samples_page.py runs/<job>/metrics.h5 [--data data.h5] [-o runs/<job>/samples.md]

One section per validation step: for each sample its prompt, the model's answer at that step, the chosen and the
rejected answer (metrics.h5 table `samples`, docs/metrics.md). With --data (the job's data.h5) the images are
written beside the page (samples-<i>.png/.jpg) and shown: the samples are the first eval.samples pairs of the val
split in file order, the pairs the trainer generates for. Needs h5py (Debian: python3-h5py).
"""
import argparse
import os

import h5py


def text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def val_images(data_path, n):
    """the encoded bytes of the images of the first n val pairs (split 1) of data.h5, in file order"""
    out = []
    with h5py.File(data_path, "r") as f:
        pairs = f["pairs"][()]
        offs = f["image_offsets"][()]
        for p in pairs:
            if int(p["split"]) != 1:
                continue
            i = int(p["image"])
            out.append(bytes(f["image_bytes"][offs[i]:offs[i + 1]]))
            if len(out) == n:
                break
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics", help="runs/<job>/metrics.h5")
    ap.add_argument("--data", help="the job's data.h5 (to show the images)")
    ap.add_argument("-o", "--out", help="the page (default: samples.md beside metrics.h5)")
    a = ap.parse_args()
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(a.metrics)), "samples.md")
    with h5py.File(a.metrics, "r") as f:
        rows = f["samples"][()] if "samples" in f else []
    nidx = max([int(r["index"]) for r in rows], default=-1) + 1
    images = []
    if a.data and nidx > 0:
        for i, b in enumerate(val_images(a.data, nidx)):
            ext = "png" if b[:4] == b"\x89PNG" else "jpg"
            name = "samples-%d.%s" % (i, ext)
            with open(os.path.join(os.path.dirname(out), name), "wb") as g:
                g.write(b)
            images.append(name)
    lines = ["# Sample answers of %s" % a.metrics, ""]
    step = None
    for r in rows:
        if int(r["step"]) != step:
            step = int(r["step"])
            lines += ["## Step %d" % step, ""]
        i = int(r["index"])
        lines.append("### Sample %d" % i)
        if i < len(images):
            lines.append("![sample %d](%s)" % (i, images[i]))
        for k in ("prompt", "answer", "chosen", "rejected"):
            lines.append("- **%s**: %s" % (k, text(r[k]).replace("\n", " ")))
        lines.append("")
    with open(out, "w") as g:
        g.write("\n".join(lines) + "\n")
    print("wrote", out, "(%d samples)" % len(rows))


if __name__ == "__main__":
    main()
