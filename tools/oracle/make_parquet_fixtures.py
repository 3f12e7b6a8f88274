#!/usr/bin/env python3
"""Parquet fixtures for the C reader (src/io/parquet.c): one small RLAIF-V-shaped table written
with pyarrow in many layouts, plus the expected values the C test compares against.

    python3 tools/oracle/make_parquet_fixtures.py [--out tests/fixtures/parquet]   (stack: tools/oracle/requirements.txt)

The tool versions are in VERSIONS (with the SHA-256 of every file) and in each file's footer (created_by).

Deterministic: fixed seeds, fixed texts, fixed images (PIL), no timestamps in the files.

The table has the 9 RLAIF-V columns (spec rlaifv-parquet.md 1.2: eight strings, `idx` a string,
`image` a struct{bytes: binary, path: string}) in the card's order, plus columns the real files do
not have but the reader must handle: a pandas-style `__index_level_0__` int64, an int32 with a
null, a double, a bool with a null and a REQUIRED int64. 12 rows; row 3 has a null image (def level 0), row 7 an
image struct whose bytes are null (def level 1), row 5 an empty question.

Layouts (every file holds the same table):
    {codec}_{dict|plain}_v{1|2}_rg1.parquet   codec in snappy, zstd, none; dictionary on/off;
                                              data page v1/v2; one row group (all 12 combinations)
    {codec}_{dict|plain}_v{1|2}_rg4.parquet   row_group_size=3, for the 4 combinations in MULTI_RG
    fallback_v1_snappy.parquet, fallback_v2_zstd.parquet
        `chosen` (long distinct texts): a dictionary page, dictionary-encoded data pages, then PLAIN
        pages in the same column chunk (small dictionary_pagesize_limit, write_batch_size=2,
        small data_page_size)
    legacy_v1fmt.parquet   format version 1.0: PLAIN_DICTIONARY pages
    empty_row_group.parquet   three row groups: rows 0..5, no rows, rows 6..11 (ParquetWriter with an empty
        table in between). pyarrow writes the empty group's chunks with data_page_offset 0 and only a dictionary
        page; a valid file (not part of files.txt: it has 3 row groups)

expected.txt, one record per line:
    rows N
    col <index> <dotted.path> <bytes|int|double|bool>
    v <row> <col> null
    v <row> <col> <len> <fnv1a64 hex>        (bytes)
    v <row> <col> <integer>                  (int, bool as 0/1)
    v <row> <col> <hex of the IEEE-754 bits> (double)
"""
import argparse
import io
import os
import random
import struct

import pyarrow as pa
import pyarrow.parquet as pq

from oracle_versions import write_versions
from PIL import Image

N_ROWS = 12
# the variants also written with row_group_size=3 (4 row groups); all 12 are written with one row group
MULTI_RG = {("snappy", True, "1.0"), ("snappy", False, "2.0"), ("zstd", True, "2.0"), ("none", False, "1.0")}


def fnv1a64(b: bytes) -> int:
    h = 0xCBF29CE484222325
    for x in b:
        h ^= x
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def tiny_image(i: int, fmt: str) -> bytes:
    rng = random.Random(1000 + i)
    w, h = 6 + i % 5, 5 + i % 4
    img = Image.new("RGB", (w, h))
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(w * h)])
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=70)
    else:
        img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def make_table() -> pa.Table:
    rng = random.Random(42)
    words = ("the a cat dog sits on mat red blue image shows two people near tree car road sky "
             "building window table with cup of tea and book open page light shadow").split()

    def text(n):
        return " ".join(rng.choice(words) for _ in range(n))

    ds_names = ["RLAIF-V", "RLAIF-V", "RLAIF-V", "OmniLMM"] * 3
    origin_ds = ["VQAv2", "OKVQA", "COCO", "TextVQA", "ShareGPT4V", "MovieNet"] * 2
    splits = ['{"model":"llava15_7b","feedback":"RLAIF-V 12B","type":"question_answering"}',
              '{"model":"omnilmm_12b","feedback":"RLAIF-V 34B","type":"detailed_description"}']
    image, question, chosen, rejected, idx, image_path = [], [], [], [], [], []
    for i in range(N_ROWS):
        if i == 3:
            image.append(None)                         # null image: def 0
        elif i == 7:
            image.append({"bytes": None, "path": "broken/7.jpg"})   # struct present, bytes null: def 1
        else:
            fmt = "PNG" if i % 4 == 1 else "JPEG"
            image.append({"bytes": tiny_image(i, fmt), "path": ("img/%02d.jpg" % i) if i % 3 == 0 else None})
        question.append("" if i == 5 else "Question %d: %s?" % (i, text(6 + i)))
        # long, distinct answers: the column whose dictionary overflows in the fallback files
        chosen.append("Chosen %d. %s." % (i, text(40 + 3 * i)))
        rejected.append("Rejected %d. %s." % (i, text(10 + i)))
        idx.append("%032x" % rng.getrandbits(128))
        image_path.append("coco/train2014/COCO_train2014_%012d.jpg" % (1000 + 37 * i))
    cols = {
        "ds_name": pa.array(ds_names, pa.string()),
        "image": pa.array(image, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "question": pa.array(question, pa.string()),
        "chosen": pa.array(chosen, pa.string()),
        "rejected": pa.array(rejected, pa.string()),
        "origin_dataset": pa.array(origin_ds, pa.string()),
        "origin_split": pa.array([splits[i % 2] for i in range(N_ROWS)], pa.string()),
        "idx": pa.array(idx, pa.string()),
        "image_path": pa.array(image_path, pa.string()),
        "__index_level_0__": pa.array([100 + i * i * 1000003 for i in range(N_ROWS)], pa.int64()),
        "n_i32": pa.array([None if i == 4 else (i * 7 - 40) for i in range(N_ROWS)], pa.int32()),
        "w_f64": pa.array([i / 8.0 - 0.7 for i in range(N_ROWS)], pa.float64()),
        "ok": pa.array([None if i == 9 else (i % 3 == 0) for i in range(N_ROWS)], pa.bool_()),
        "req_i64": pa.array([-(i ** 5) for i in range(N_ROWS)], pa.int64()),
    }
    t = pa.table(cols)
    # req_i64 is REQUIRED (max definition level 0: pages without a level section)
    schema = pa.schema([f.with_nullable(False) if f.name == "req_i64" else f for f in t.schema])
    return t.cast(schema)


def leaves(table: pa.Table):
    """(dotted path, kind, python values) for every Parquet leaf column, in schema order."""
    out = []
    for name in table.column_names:
        col = table.column(name).to_pylist()
        t = table.schema.field(name).type
        if pa.types.is_struct(t):
            for f in t:
                vals = [None if v is None else v[f.name] for v in col]
                out.append((name + "." + f.name, kind_of(f.type), vals))
        else:
            out.append((name, kind_of(t), col))
    return out


def kind_of(t):
    if pa.types.is_string(t) or pa.types.is_binary(t):
        return "bytes"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_boolean(t):
        return "bool"
    raise ValueError(t)


def write_expected(table: pa.Table, path: str):
    lines = ["rows %d" % table.num_rows]
    lv = leaves(table)
    for ci, (p, k, _) in enumerate(lv):
        lines.append("col %d %s %s" % (ci, p, k))
    for r in range(table.num_rows):
        for ci, (p, k, vals) in enumerate(lv):
            v = vals[r]
            if v is None:
                lines.append("v %d %d null" % (r, ci))
            elif k == "bytes":
                b = v.encode("utf-8") if isinstance(v, str) else v
                lines.append("v %d %d %d %016x" % (r, ci, len(b), fnv1a64(b)))
            elif k == "int":
                lines.append("v %d %d %d" % (r, ci, v))
            elif k == "bool":
                lines.append("v %d %d %d" % (r, ci, 1 if v else 0))
            else:
                lines.append("v %d %d %016x" % (r, ci, struct.unpack("<Q", struct.pack("<d", v))[0]))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_unsupported(out):
    """Files the reader must refuse column by column, with a clear error (not part of files.txt)."""
    t = pa.table({
        "ok": pa.array(["a", "b", None, "d"], pa.string()),
        "delta_ba": pa.array(["x1", "x2", "x3", "x4"], pa.string()),
        "delta_lba": pa.array(["y1", "y22", "y333", None], pa.string()),
        "bss": pa.array([1.5, 2.5, None, 4.5], pa.float64()),
        "dbp": pa.array([10, 20, 30, 40], pa.int64()),
        "tags": pa.array([["t"], [], None, ["u", "v"]], pa.list_(pa.string())),
    })
    pq.write_table(t, os.path.join(out, "unsupported_encodings.parquet"), compression="none", use_dictionary=False,
                   column_encoding={"delta_ba": "DELTA_BYTE_ARRAY", "delta_lba": "DELTA_LENGTH_BYTE_ARRAY",
                                    "bss": "BYTE_STREAM_SPLIT", "dbp": "DELTA_BINARY_PACKED"})
    pq.write_table(t.select(["ok"]), os.path.join(out, "unsupported_gzip.parquet"), compression="gzip")


def write_empty_row_group(table: pa.Table, out: str):
    path = os.path.join(out, "empty_row_group.parquet")
    with pq.ParquetWriter(path, table.schema, compression="snappy", write_statistics=True, store_schema=True) as w:
        w.write_table(table.slice(0, 6))
        w.write_table(table.slice(0, 0))
        w.write_table(table.slice(6))
    md = pq.ParquetFile(path).metadata
    assert md.num_row_groups == 3 and md.row_group(1).num_rows == 0
    assert pq.read_table(path).equals(table)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "parquet"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    table = make_table()
    common = dict(write_statistics=True, store_schema=True)
    written = []
    for codec in ("snappy", "zstd", "none"):
        for dict_on in (True, False):
            for ver in ("1.0", "2.0"):
                for rg in (N_ROWS, 3):
                    if rg == 3 and (codec, dict_on, ver) not in MULTI_RG:
                        continue
                    name = "%s_%s_v%s_rg%d.parquet" % (codec, "dict" if dict_on else "plain", ver[0],
                                                       1 if rg == N_ROWS else N_ROWS // rg)
                    pq.write_table(table, os.path.join(args.out, name), compression=codec,
                                   use_dictionary=dict_on, data_page_version=ver, row_group_size=rg,
                                   **common)
                    written.append(name)
    for name, codec, ver in (("fallback_v1_snappy.parquet", "snappy", "1.0"),
                             ("fallback_v2_zstd.parquet", "zstd", "2.0")):
        pq.write_table(table, os.path.join(args.out, name), compression=codec, use_dictionary=True,
                       data_page_version=ver, dictionary_pagesize_limit=1200, write_batch_size=2,
                       data_page_size=700, **common)
        written.append(name)
    pq.write_table(table, os.path.join(args.out, "legacy_v1fmt.parquet"), compression="snappy",
                   use_dictionary=True, version="1.0", **common)
    written.append("legacy_v1fmt.parquet")
    write_unsupported(args.out)
    write_empty_row_group(table, args.out)
    write_expected(table, os.path.join(args.out, "expected.txt"))
    # a sanity check with pyarrow itself: every file reads back to the same table
    for name in written:
        back = pq.read_table(os.path.join(args.out, name))
        assert back.equals(table), name
    with open(os.path.join(args.out, "files.txt"), "w") as f:
        f.write("\n".join(written) + "\n")
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in written)
    print("wrote %d files, %d bytes" % (len(written), total))
    files = [n for n in os.listdir(args.out) if n.endswith(".parquet") or n.endswith(".txt")]
    write_versions(args.out, "make_parquet_fixtures.py", ["pyarrow", "pillow", "numpy"], files)


if __name__ == "__main__":
    main()
