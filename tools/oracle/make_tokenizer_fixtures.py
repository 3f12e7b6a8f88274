#!/usr/bin/env python3
"""Fixtures for the tokenizer (src/data/tok.c) and the chat template (src/data/template.c): tests/fixtures/tokenizer/.

    python3 tools/oracle/make_tokenizer_fixtures.py      (stack: tools/oracle/requirements.txt, pinned)

Rerunnable and deterministic. Made with transformers 5.25.0, tokenizers 0.23.3, sentencepiece 0.2.3,
mistral-common 1.13.1 (the exact versions that ran are in every file's header and in VERSIONS). Writes
  tokenizer.model   the Mistral-7B v0.1/v0.2 SentencePiece model (mistral-common's tokenizer.model.v1)
  tokenizer.json    an HF `tokenizers` file built from the same model the way llava-hf/llava-v1.6-mistral-7b-hf
                    ships it (transformers 4.x LlamaTokenizerFast, legacy=True): BPE with merges ranked by piece
                    score, byte_fallback, fuse_unk, normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer,
                    added tokens <unk> <s> </s> (special) and <image>=32000, <pad>=32001 (special, not normalized)
  cases.txt         the corpus and, per string, the ids from
                      sp  sentencepiece on tokenizer.model, with the segment rule: the text is split at the special
                          tokens (<unk> <s> </s> <image> <pad>, leftmost-longest) and each remaining segment is
                          encoded as its own SentencePiece string (own dummy prefix)
                      hf  tokenizers on tokenizer.json, add_special_tokens=False
                      tf  the tokenizer of transformers' LlavaNextProcessor for a llava_next model directory
                          (config.json model_type llava_next + tokenizer.json + tokenizer_config.json), which
                          transformers 5.25 loads as TokenizersBackend (the generic tokenizers backend: the
                          normalizer/pre-tokenizer of tokenizer.json as they are), add_special_tokens=False
                    and sentencepiece's decode of the ids (when every id < 32000)
  template.txt      LlavaNextProcessor input_ids for prompt/answer pairs (see make_template_fixture)
  VERSIONS          the tool versions and the SHA-256 of every file above

The rule of transformers 5.25 for llava_next (docs/tokenizer.md): the added tokens are split
out of the raw text, then every piece of text between them is normalized on its own by tokenizer.json's
normalizer, whose Prepend("▁") puts a "▁" before every non-empty piece, also before one that starts with a space:
"<s> a" = <s> ▁ ▁a = 1 28705 264. transformers 5.0-5.24 loaded the same directory as LlamaTokenizer, which
replaces the file's normalizer with Metaspace(prepend_scheme="always"), and Metaspace adds no "▁" to a piece that
already starts with one: "<s> a" = <s> ▁a = 1 264 (recorded as full_llama in template.txt).

Format of cases.txt (one record per string, fields on their own lines):
  case <index> <name>
  text <hex of the UTF-8 bytes>
  sp <ids...>
  hf <ids...>             (absent for malformed UTF-8, which Python strings cannot hold)
  hfbos <ids...>          (tokenizer with add_special_tokens=True)
  tf <ids...>             (LlavaNextProcessor's tokenizer, add_special_tokens=False; absent for malformed UTF-8)
  tfbos <ids...>          (the same with add_special_tokens=True, what the processor itself does)
  dec <hex of sp.decode(sp ids)>   (absent if an id is >= 32000)
  end
"""
import hashlib
import json
import os
import random
import sys

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
from tokenizers.models import BPE

from oracle_versions import versions_line, write_versions

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "tokenizer")
SPECIALS = {"<unk>": 0, "<s>": 1, "</s>": 2, "<image>": 32000, "<pad>": 32001}
PACKAGES = ["transformers", "tokenizers", "sentencepiece", "mistral_common", "protobuf", "pillow", "torch"]
SCRIPT = "make_tokenizer_fixtures.py"


def source_model():
    import mistral_common
    return os.path.join(os.path.dirname(mistral_common.__file__), "data", "tokenizer.model.v1")


def build_hf(model_bytes):
    """tokenizer.json as transformers 4.x LlamaConverter (legacy) + llava-hf's added tokens."""
    m = pb.ModelProto()
    m.ParseFromString(model_bytes)
    pieces = [(p.piece, p.score) for p in m.pieces]
    vocab = {p: i for i, (p, _) in enumerate(pieces)}
    # merges: every split of a piece into two vocab pieces, ordered by the merged piece's score
    # (descending, stable), within one piece by (id of left, id of right)  -- SentencePieceExtractor 4.x
    merges = []
    for piece, score in pieces:
        local = []
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                local.append((left, right, score))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda x: x[2], reverse=True)
    merges = [(a, b) for a, b, _ in merges]
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<unk>", "<s>", "</s>")])
    tok.add_special_tokens([AddedToken("<image>", normalized=False, special=True),
                            AddedToken("<pad>", normalized=False, special=True)])
    assert tok.token_to_id("<image>") == 32000 and tok.token_to_id("<pad>") == 32001
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok


def split_specials(s):
    """Leftmost-longest split at the special tokens: list of str (text) or int (id)."""
    out, i, start = [], 0, 0
    while i < len(s):
        best = None
        for t in SPECIALS:
            if s.startswith(t, i) and (best is None or len(t) > len(best)):
                best = t
        if best is None:
            i += 1
            continue
        if start < i:
            out.append(s[start:i])
        out.append(SPECIALS[best])
        i += len(best)
        start = i
    if start < len(s):
        out.append(s[start:])
    return out


def sp_encode(sp, s):
    ids = []
    for part in split_specials(s):
        ids.extend([part] if isinstance(part, int) else sp.encode(part))
    return ids


def long_text(rng, n_words):
    words = ("the of and to in is was that for on with as by at from this are be or an it which image shows "
             "a man woman dog cat sitting standing near table red blue green small large building street car "
             "picture photo left right behind front background foreground two three several people tree sky "
             "answer question describe detail color wearing holding looking appears there".split())
    extra = ["café", "naïve", "Zürich", "日本語", "東京", "😀", "🏽", "—", "«quote»", "3.14159", "2024-05-17",
             "e-mail", "C++", "x86_64", "ü", "ß", "Ωmega", "¿Qué?", "\t", "\n", "\n\n", "  ", "(", ")", "\"",
             "1,234,567", "$100", "100%", "Привет", "мир", "مرحبا", "שלום", "नमस्ते", "한국어", "ไทย"]
    out = []
    for i in range(n_words):
        r = rng.random()
        if r < 0.08:
            out.append(rng.choice(extra))
        else:
            w = rng.choice(words)
            if rng.random() < 0.1:
                w = w.capitalize()
            out.append(w)
        if rng.random() < 0.07:
            out.append(rng.choice([".", ",", "!", "?", ":", ";"]))
    return " ".join(out)


def corpus():
    rng = random.Random(1234)
    c = [
        ("empty", ""),
        ("space", " "),
        ("two_spaces", "  "),
        ("many_spaces", " " * 17),
        ("newline", "\n"),
        ("newlines", "\n\n\n"),
        ("tab", "\t"),
        ("hello", "Hello world"),
        ("hello_lower", "hello world!"),
        ("leading_space", " leading space"),
        ("leading_spaces", "   three leading spaces"),
        ("trailing_spaces", "trailing spaces   "),
        ("space_runs", "a  b   c    d     e      f"),
        ("tabs", "col1\tcol2\t\tcol3\t"),
        ("newline_mix", "line one\nline two\r\nline three\n\n  indented\n"),
        ("digits", "0123456789 12345 3.14159 2024-05-17 1,234,567"),
        ("accents", "café naïve résumé Zürich façade crème brûlée São Paulo"),
        ("german", "Die Straße ist größer als früher. Übermäßig!"),
        ("cjk", "日本語のテキストです。中文文本。한국어 텍스트."),
        ("rare_cjk", "𠀀𠀁𪚥 龘 鱻 麤"),
        ("emoji", "I love 😀👍🏽🎉🧑‍🚀 and 🇫🇷 flags"),
        ("cyrillic_arabic", "Привет мир! مرحبا بالعالم שלום עולם"),
        ("indic_thai", "नमस्ते दुनिया สวัสดีชาวโลก"),
        ("control_chars", "a\x01b\x02c\x7fd\x1be\x00f"),
        ("replacement_char", "bad \ufffd char"),
        ("zero_width", "zero\u200bwidth\u200djoiner\ufeffbom"),
        ("nbsp", "non\u00a0breaking\u2009thin\u3000ideographic"),
        ("math", "∑_{i=1}^{n} x_i ≤ ∞ → ∀ε>0 ∃δ; α+β=γ"),
        ("code", "def f(x):\n    return x ** 2  # square\n\nif __name__ == '__main__':\n\tprint(f(3))"),
        ("url", "https://example.com/path?query=1&b=two#frag user@example.org"),
        ("punct", "!!! ??? ... --- *** ''' \"\"\" ``` ~~~ ### @@@ $$$ %%% ^^^ &&& ((( )))"),
        ("underline_char", "a ▁ b ▁▁ c▁d"),
        ("byte_piece_text", "<0x0A> <0xFF> <unk"),
        ("inst_literal", "[INST] What is this? [/INST]"),
        ("image_prompt", "[INST] <image>\nWhat is shown in this image? [/INST]"),
        ("image_answer", "[INST] <image>\nWhat is shown in this image? [/INST] The image shows a radar chart.</s>"),
        ("image_only", "<image>"),
        ("image_twice", "<image><image>"),
        ("image_spaces", "  <image>  \n  "),
        ("bos_eos_literal", "<s>hello</s> world</s>"),
        ("unk_literal", "this   <unk>   image"),
        ("pad_literal", "x<pad><pad>y"),
        ("near_specials", "<im age> <imag <image <s </s <pad <unk> <<s>> </s>>"),
        ("special_in_word", "foo<image>bar</s>baz"),
        ("multi_turn", "[INST] <image>\nQ1 [/INST] A1</s> [INST] Q2 [/INST]"),
        ("sys_prompt", "<<SYS>>\nYou are helpful.\n<</SYS>>\n\n[INST] hi [/INST]"),
        ("long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism"),
        ("repeated", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ("repeated_mix", "abababababababababab ab ab ab abab abba"),
        ("paragraph", long_text(rng, 300)),
        # a literal special token followed by a space: transformers 5.25 (tokenizers' Prepend normalizer) gives the
        # following piece its own "▁" as sentencepiece does; 5.0-5.24 (LlamaTokenizer's Metaspace) did not
        ("special_space", "<s> a"),
        ("special_two_spaces", "</s>  b"),
        ("special_trailing_space", "x</s> "),
        ("special_space_only", "<s> </s> <image> "),
        ("image_space_newline", "<image> \n"),
        ("special_space_runs", "<pad> <pad>  <unk>   x"),
        ("special_ws_piece", "<s>▁x </s>▁ y"),
        ("special_tab_newline", "</s>\tx </s>\n y"),
        ("question_literal_eos", "Is there a <s> or </s> in the text?"),
        ("answer_after_inst", "[INST] Q [/INST] </s> A</s>"),
    ]
    # random strings over a mixed alphabet: stresses merges, bytes, spaces
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEF  0123456789.,!?'\"-\n\t") + \
        ["é", "ü", "ñ", "日", "本", "語", "😀", "🏽", "𠀀", "\x01", "▁", "<", ">", "/", "s", "<image>", "</s>", "<s>"]
    for k in range(40):
        n = rng.randint(1, 60)
        c.append(("random_%02d" % k, "".join(rng.choice(alphabet) for _ in range(n))))
    c.append(("long_text", long_text(rng, 4000)))
    # malformed UTF-8 (bytes, sentencepiece only: each bad byte becomes U+FFFD)
    c += [("bad_utf8_ff", b"a\xffb"), ("bad_utf8_lone_lead", b"\xc3"), ("bad_utf8_truncated", b"ok\xf0\x9f\x98"),
          ("bad_utf8_surrogate", b"x\xed\xa0\x80y"), ("bad_utf8_overlong", b"\xc0\xaf \xe0\x80\xaf"),
          ("bad_utf8_too_big", b"\xf4\x90\x80\x80 \xf8\x88\x80\x80\x80"), ("bad_utf8_cont", b"\x80\x80 z \xbf")]
    return c


def processor_dir(tmp, model_dir=True):
    """A LlavaNextProcessor for llava-v1.6-mistral built from our tokenizer.json and the Hub's processor configs.

    model_dir=True: with a config.json of model_type llava_next, as in a real model directory. transformers 5.25
    then loads the tokenizer as TokenizersBackend (llava_next is in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS of
    models/auto/tokenization_auto.py): tokenizer.json as it is, whatever tokenizer_config's tokenizer_class and
    legacy say. model_dir=False: no config.json, so tokenizer_config's LlamaTokenizer class is used, with `legacy:
    true`; that class rebuilds the pre-tokenizer as Metaspace(prepend_scheme="always"), which is what
    transformers 5.0-5.24 did for llava_next (the earlier fixtures, made with 5.24, agree on every case)."""
    import shutil
    shutil.copy(os.path.join(OUT, "tokenizer.json"), tmp)
    added = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                      "special": True} for t, i in SPECIALS.items()}
    cfg = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
           "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "padding_side": "left",
           "image_token": "<image>", "processor_class": "LlavaNextProcessor", "legacy": True,
           "added_tokens_decoder": added}
    json.dump(cfg, open(os.path.join(tmp, "tokenizer_config.json"), "w"))
    if model_dir:
        json.dump({"model_type": "llava_next", "architectures": ["LlavaNextForConditionalGeneration"],
                   "image_token_index": 32000, "text_config": {"model_type": "mistral", "vocab_size": 32064},
                   "vision_config": {"model_type": "clip_vision_model"}},
                  open(os.path.join(tmp, "config.json"), "w"))
    json.dump({"image_processor_type": "LlavaNextImageProcessor", "crop_size": {"height": 336, "width": 336},
               "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True, "do_pad": True,
               "do_rescale": True, "do_resize": True,
               "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
               "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
               "processor_class": "LlavaNextProcessor", "resample": 3, "rescale_factor": 0.00392156862745098,
               "size": {"shortest_edge": 336}}, open(os.path.join(tmp, "preprocessor_config.json"), "w"))
    json.dump({"patch_size": 14, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1,
               "image_token": "<image>", "processor_class": "LlavaNextProcessor"},
              open(os.path.join(tmp, "processor_config.json"), "w"))
    from transformers import LlavaNextProcessor
    proc = LlavaNextProcessor.from_pretrained(tmp)
    want = "TokenizersBackend" if model_dir else "LlamaTokenizer"
    assert type(proc.tokenizer).__name__ == want, (type(proc.tokenizer).__name__, want)
    return proc


def rle(ids):
    """ids as text, runs of <image> (32000) written I<count>"""
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


TEMPLATE_CASES = [  # (question, answer, image (width, height) or None)
    ("What is shown in this image?", "The image shows a radar chart.", (1024, 899)),
    ("Describe the photo in detail.", "A cat is sitting on a red sofa, looking at the camera.", (640, 480)),
    ("Was ist auf dem Bild zu sehen?\nAntworte kurz.", "Ein Hund vor einem Café — 2 Stühle.", (336, 336)),
    ("How many people are there?", "There are 3 people: two adults and a child.\nThey stand near a car.", (300, 1000)),
    ("  Leading spaces and trailing spaces  ", "  Answer with spaces  ", (200, 100)),
    ("日本語で説明してください。", "これは猫の写真です。😀", (500, 500)),
    ("Is there a <s> or </s> in the text?", "No.", (336, 336)),
    ("What color is the sky?", "Blue.", None),
    # a literal special token followed by a space in user text (transformers 5.25 != 5.24 on each)
    ("End with a literal </s> ", " <s> starts the answer", None),
    ("</s> first, then text", "Done </s> really.", (400, 300)),
    ("Tabs\t</s>\tand <pad> pads", "<s>  two spaces after a special", None),
    ("<unk> ?", "</s> ", (336, 700)),
]


def make_template_fixture(sp):
    """template.txt: LlavaNextProcessor input_ids for `[INST] <image>\n{q} [/INST]` + ` {a}</s>` (BOS added by the
    tokenizer) for a llava_next model directory (transformers 5.25: TokenizersBackend on tokenizer.json), and for
    the prompt alone; the ids of sentencepiece with the segment rule (full_sp); the ids of the LlamaTokenizer
    class with `legacy: true` (full_llama: what transformers 5.0-5.24 gave for llava_next; its Metaspace adds no
    "▁" to a segment that starts with a space, so it differs where user text holds a special token followed by a
    space: cases 6 and 8-11).

    Format: `# <versions>`, then per case: case <k> / question <hex> / answer <hex> / nimage <n> / full <ids> /
    prompt <ids> / full_sp <ids> / full_llama <ids> / end, ids written with runs of <image> (32000) as I<count>."""
    import shutil
    import tempfile
    from PIL import Image
    lines = ["# " + versions_line(SCRIPT, PACKAGES) + " (LlavaNextProcessor)"]
    procs, tmps = {}, []
    for model_dir in (True, False):
        tmps.append(tempfile.mkdtemp())
        procs[model_dir] = processor_dir(tmps[-1], model_dir)
    for k, (q, a, size) in enumerate(TEMPLATE_CASES):
        prompt = ("[INST] <image>\n" if size else "[INST] ") + q + " [/INST]"
        full = prompt + " " + a + "</s>"
        img = Image.new("RGB", size, (120, 30, 200)) if size else None
        def ids_of(proc, text):
            if img is None:
                return proc.tokenizer(text)["input_ids"]
            return proc(text=text, images=img, return_tensors=None)["input_ids"][0]
        full_ids = ids_of(procs[True], full)
        prompt_ids = ids_of(procs[True], prompt)
        n_img = full_ids.count(32000)
        # the segment rule with sentencepiece itself (spec section 8; original LLaVA, transformers 4.x legacy)
        sp_ids = [1] + sp_encode(sp, full.replace("<image>", "<image>" * n_img))
        llama_ids = ids_of(procs[False], full)
        print("template case %d: 5.25 %s sentencepiece, %s LlamaTokenizer" %
              (k, "==" if full_ids == sp_ids else "!=", "==" if full_ids == llama_ids else "!="))
        lines += ["case %d" % k, "question " + q.encode().hex(), "answer " + a.encode().hex(), "nimage %d" % n_img,
                  "full " + rle(full_ids), "prompt " + rle(prompt_ids), "full_sp " + rle(sp_ids),
                  "full_llama " + rle(llama_ids), "end"]
    for t in tmps:
        shutil.rmtree(t)
    with open(os.path.join(OUT, "template.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    model_bytes = open(source_model(), "rb").read()
    assert len(model_bytes) == 493443, len(model_bytes)
    with open(os.path.join(OUT, "tokenizer.model"), "wb") as f:
        f.write(model_bytes)
    hf = build_hf(model_bytes)
    hf.save(os.path.join(OUT, "tokenizer.json"), pretty=False)
    hf = Tokenizer.from_file(os.path.join(OUT, "tokenizer.json"))  # what the C test reads
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    assert sp.get_piece_size() == 32000

    import shutil
    import tempfile
    tmp = tempfile.mkdtemp()
    tf = processor_dir(tmp, True).tokenizer  # what LlavaNextProcessor tokenizes with (TokenizersBackend)
    n_diff = n_tf = 0
    lines = ["# " + versions_line(SCRIPT, PACKAGES)]
    for idx, (name, s) in enumerate(corpus()):
        if isinstance(s, bytes):  # malformed UTF-8: sentencepiece only
            ids_sp = sp.encode(s)
            lines += ["case %d %s" % (idx, name), "text " + s.hex(), "sp " + " ".join(map(str, ids_sp)),
                      "dec " + sp.decode(ids_sp).encode("utf-8").hex(), "end"]
            continue
        ids_sp = sp_encode(sp, s)
        ids_hf = hf.encode(s, add_special_tokens=False).ids
        ids_hfb = hf.encode(s, add_special_tokens=True).ids
        ids_tf = tf(s, add_special_tokens=False)["input_ids"]
        ids_tfb = tf(s)["input_ids"]
        if ids_tf != ids_hf or ids_tfb != ids_hfb:
            n_tf += 1
            print("tf != hf for %s: %r\n  tf %s\n  hf %s" % (name, s[:80], ids_tf[:40], ids_hf[:40]), file=sys.stderr)
        if ids_sp != ids_hf:
            n_diff += 1
            print("sp != hf for %s: %r\n  sp %s\n  hf %s" % (name, s[:80], ids_sp[:40], ids_hf[:40]), file=sys.stderr)
        lines.append("case %d %s" % (idx, name))
        lines.append("text " + s.encode("utf-8").hex())
        lines.append("sp " + " ".join(map(str, ids_sp)))
        lines.append("hf " + " ".join(map(str, ids_hf)))
        lines.append("hfbos " + " ".join(map(str, ids_hfb)))
        lines.append("tf " + " ".join(map(str, ids_tf)))
        lines.append("tfbos " + " ".join(map(str, ids_tfb)))
        if all(i < 32000 for i in ids_sp):
            lines.append("dec " + sp.decode(ids_sp).encode("utf-8").hex())
        lines.append("end")
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    shutil.rmtree(tmp)
    print("cases: %d strings, %d differ between sp and hf, %d between hf and the processor's tokenizer" %
          (len(corpus()), n_diff, n_tf))
    make_template_fixture(sp)
    files = ("tokenizer.model", "tokenizer.json", "cases.txt", "template.txt")
    write_versions(OUT, SCRIPT, PACKAGES, files,
                   note="tokenizer.model is mistral-common's data/tokenizer.model.v1, copied byte for byte.\n"
                        "tokenizer.json is written by tokenizers (Tokenizer.save) from that model.")
    for fn in files:
        p = os.path.join(OUT, fn)
        print("%-16s %8d bytes sha256 %s" % (fn, os.path.getsize(p), hashlib.sha256(open(p, "rb").read()).hexdigest()[:16]))


if __name__ == "__main__":
    main()
