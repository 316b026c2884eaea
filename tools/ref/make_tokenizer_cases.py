#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/deepseek-v3-hf-cases.jsonl: texts and the ids / decodes that HF
`tokenizers` (PyPI 0.23.3, Tokenizer.from_file) gives with models/deepseek-v3/tokenizer.json.

Each line: {"cat": category, "text": str, "ids": [int],
            "decoded": str (only if decode(ids, skip_special_tokens=False) != text),
            "decoded_skip": str (only if decode(ids, skip_special_tokens=True) != text),
            "text_hex": hex of the UTF-8 text (only if it contains U+0000),
            "piece_ends": byte offsets where the pre-tokenizer's pieces end (texts <= 600 bytes)}
encode uses add_special_tokens=False (it adds nothing for DeepSeek-V3 anyway; BOS is the caller's job).

Text sources are real text already on a Debian system: gettext translations (/usr/share/locale/*/
LC_MESSAGES/*.mo) for multilingual text, /usr/lib/python3.11/*.py and /usr/include/*.h for code,
data/corpus/*.jsonl (scripts/build_corpus.sh) for English prose when present; plus generated emoji,
whitespace, digit, special-token and random-Unicode strings. Deterministic (fixed seed, sorted file lists).

Usage: python3 tools/ref/make_tokenizer_cases.py [--out FILE] [--tokenizer FILE]
"""
import argparse, gettext, glob, json, os, random, sys

import tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mo_strings(lang, domains):
    out = []
    for d in domains:
        p = f"/usr/share/locale/{lang}/LC_MESSAGES/{d}.mo"
        if not os.path.exists(p):
            continue
        with open(p, "rb") as f:
            try:
                cat = gettext.GNUTranslations(f)._catalog
            except Exception:
                continue
        for k in sorted(cat, key=str):
            v = cat[k]
            if isinstance(v, str) and v.strip() and k:
                out.append(v)
    return out


def chunks_of_files(files, rng, n, lo, hi):
    out = []
    texts = []
    for p in files:
        try:
            with open(p, encoding="utf-8") as f:
                texts.append(f.read())
        except (UnicodeDecodeError, OSError):
            pass
    texts = [t for t in texts if len(t) > hi]
    for _ in range(n):
        t = rng.choice(texts)
        size = rng.randint(lo, hi)
        start = rng.randint(0, len(t) - size)
        out.append(t[start:start + size])
    return out


def random_valid_cp(rng):
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x250, 0x36F), (0x370, 0x3FF), (0x400, 0x52F), (0x590, 0x6FF),
              (0x900, 0x97F), (0x980, 0x9FF), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x1AB0, 0x1AFF),
              (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2070, 0x20CF), (0x20D0, 0x20FF), (0x2100, 0x23FF),
              (0x2460, 0x27BF), (0x2E80, 0x2FDF), (0x3000, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
              (0xAC00, 0xD7A3), (0xE000, 0xE0FF), (0xF900, 0xFAFF), (0xFE00, 0xFE6F), (0xFF00, 0xFFEF),
              (0xFFF0, 0xFFFD), (0x10000, 0x1007F), (0x1D400, 0x1D7FF), (0x1F000, 0x1FAFF), (0x20000, 0x2A6DF),
              (0xE0000, 0xE007F), (0x10FFF0, 0x10FFFF), (0x0, 0x1F), (0x7F, 0x9F)]
    a, b = rng.choice(blocks)
    return chr(rng.randint(a, b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "models/deepseek-v3/tokenizer.json"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/fixtures/tokenizer/deepseek-v3-hf-cases.jsonl"))
    args = ap.parse_args()
    tok = tokenizers.Tokenizer.from_file(args.tokenizer)
    rng = random.Random(20261128)
    cases = []  # (category, text)

    # 1. multilingual: gettext translations
    domains = ["glib20", "gtk20", "coreutils", "apt", "iso_3166-1", "iso_639-3", "dpkg", "Linux-PAM", "xkeyboard-config",
               "shared-mime-info", "libc", "bash", "grep", "tar"]
    langs = ["zh_CN", "zh_TW", "ja", "ko", "ar", "he", "fa", "hi", "bn", "ta", "ru", "uk", "el", "th", "vi", "ka",
             "am", "tr", "pl", "de", "fr", "es"]
    for lang in langs:
        s = mo_strings(lang, domains)
        if not s:
            continue
        for v in rng.sample(s, min(25, len(s))):
            cases.append(("multilingual", v))
        for _ in range(2):  # paragraphs
            cases.append(("multilingual", "\n".join(rng.sample(s, min(40, len(s))))))

    # 2. code
    py = sorted(glob.glob("/usr/lib/python3.11/*.py"))
    hdr = sorted(glob.glob("/usr/include/*.h"))
    for c in chunks_of_files(py, rng, 40, 200, 4000):
        cases.append(("code-python", c))
    for c in chunks_of_files(hdr, rng, 30, 200, 4000):
        cases.append(("code-c", c))

    # 3. emoji
    emoji = ["😀", "😂", "🥲", "❤️", "👍", "🔥", "🎉", "🙏", "👋", "🤖", "🧑‍💻", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈",
             "🏴‍☠️", "🇯🇵", "🇺🇸", "🇩🇪", "1️⃣", "#️⃣", "👍🏻", "👍🏿", "🤝🏼", "🧔🏾‍♂️", "👨‍❤️‍💋‍👨", "☺", "✌️", "🫠",
             "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "©️", "™", "\u200d", "\ufe0f"]
    words = ["hello", "world", "ok", "nice", "thanks", "こんにちは", "你好", "привет", "!", "?", ",", " "]
    for _ in range(80):
        parts = [rng.choice(emoji if rng.random() < 0.5 else words) for _ in range(rng.randint(1, 12))]
        cases.append(("emoji", rng.choice(["", " "]).join(parts)))

    # 4. whitespace runs
    ws = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2028", "\u2029", "\u0085", "\u2003", "\u200b",
          "\u000b", "\u000c", "\u1680", "\u202f", "\u205f", "\ufeff"]
    toks = ["word", "x", ".", "1", "中文", "a.b", "(", ")", "\"", "—", "é"]
    for _ in range(150):
        parts = [rng.choice(ws) if rng.random() < 0.6 else rng.choice(toks) for _ in range(rng.randint(1, 20))]
        cases.append(("whitespace", "".join(parts)))

    # 5. digits
    digit_sets = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "０１２３４５６７８９", "²³¹⁴", "½¼⅓", "ⅠⅡⅢⅫ", "①②③", "𝟎𝟏𝟐"]
    for _ in range(100):
        parts = []
        for _ in range(rng.randint(1, 6)):
            ds = rng.choice(digit_sets) if rng.random() < 0.4 else "0123456789"
            parts.append("".join(rng.choice(ds) for _ in range(rng.randint(1, 40))))
            parts.append(rng.choice(["", " ", ".", ",", "-", "e", "x", "abc", "\n", "年", "%", "$"]))
        cases.append(("digits", "".join(parts)))

    # 6. special / added tokens embedded in text
    added = [a.content for a in tok.get_added_tokens_decoder().values()]
    named = [a for a in added if "place" not in a] + rng.sample([a for a in added if "place" in a], 10)
    fillers = ["Hello", " world", "\n", "", " ", "<", ">", "｜", "<｜", "｜>", "User", "<|", "|>", "1+1=2", "你好",
               "<｜User", "Assistant｜>", "<｜place▁holder▁no▁", "▁"]
    for _ in range(120):
        parts = [rng.choice(named) if rng.random() < 0.4 else rng.choice(fillers) for _ in range(rng.randint(1, 12))]
        cases.append(("special", "".join(parts)))
    cases.append(("special", "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜>4<｜end▁of▁sentence｜>"))
    cases.append(("special", "<｜fim▁begin｜>def f(x):\n    <｜fim▁hole｜>\n    return y<｜fim▁end｜>"))

    # 7. random Unicode (valid code points from many blocks, incl. combining marks and controls)
    for _ in range(250):
        cases.append(("random-unicode", "".join(random_valid_cp(rng) for _ in range(rng.randint(1, 60)))))

    # 7b. code points assigned after Unicode 14 (HF's Oniguruma has Unicode 16.0 tables, Debian's
    # libonig 14.0; see tools/ref/make_unicode_tables.py), mixed with ASCII
    new_blocks = [(0x1FA70, 0x1FAFF), (0x1F8B0, 0x1F8BB), (0x31350, 0x323AF), (0x2EBF0, 0x2EE5D), (0x11F00, 0x11F5F),
                  (0x1E030, 0x1E08F), (0x10D40, 0x10D8F), (0x16100, 0x1613F), (0x1CC00, 0x1CEBF), (0x1E5D0, 0x1E5FF),
                  (0x11BC0, 0x11BFF), (0x105C0, 0x105FF), (0x0C5D, 0x0C5D), (0x1DF25, 0x1DF2A), (0x10EFC, 0x10EFF)]
    for _ in range(100):
        parts = []
        for _ in range(rng.randint(1, 25)):
            if rng.random() < 0.6:
                a, b = rng.choice(new_blocks)
                parts.append(chr(rng.randint(a, b)))
            else:
                parts.append(rng.choice(["a", "Z", " ", "  ", "1", "23", ".", "!", "\n", "é", "中", "\u0301"]))
        cases.append(("unicode-16", "".join(parts)))

    # 8. English prose
    corpus = sorted(glob.glob(os.path.join(ROOT, "data/corpus/*.jsonl")))
    docs = []
    for p in corpus:
        with open(p, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= 2000:
                    break
                docs.append(json.loads(line)["text"])
    for d in rng.sample(docs, min(120, len(docs))):
        cases.append(("prose", d[:3000]))

    # 9. long inputs (>= 100 KB)
    pysrc = "".join(open(p, encoding="utf-8").read() for p in py[:40])
    cases.append(("long-code", pysrc[:120_000]))
    if docs:
        cases.append(("long-prose", "\n\n".join(docs[:2000])[:110_000]))
    ml = "\n".join(s for lang in ["zh_CN", "ja", "ar", "hi", "ru", "th"] for s in mo_strings(lang, ["glib20", "gtk20"]))
    cases.append(("long-multilingual", ml[:50_000]))  # 50 K chars = ~110 KB of UTF-8
    cases.append(("long-spaces", " " * 5000 + "x" + "\t" * 3000 + "\n" * 2000 + "a" * 4000))

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    n = 0
    with open(args.out, "w", encoding="utf-8") as f:
        for cat, text in cases:
            enc = tok.encode(text, add_special_tokens=False)
            rec = {"cat": cat, "text": text, "ids": enc.ids}
            if "\0" in text:  # C JSON parsers stop strings at NUL: give the exact bytes too
                rec["text_hex"] = text.encode("utf-8").hex()
            if len(text.encode("utf-8")) <= 600:
                # pre-tokenizer alone (no added-token split): byte offsets where its pieces end
                ends = [len(text[:e].encode("utf-8")) for _, (_, e) in tok.pre_tokenizer.pre_tokenize_str(text)]
                rec["piece_ends"] = ends
            d = tok.decode(enc.ids, skip_special_tokens=False)
            if d != text:
                rec["decoded"] = d
            ds = tok.decode(enc.ids, skip_special_tokens=True)
            if ds != text:
                rec["decoded_skip"] = ds
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    print(f"wrote {n} cases to {args.out} ({os.path.getsize(args.out)} bytes), tokenizers {tokenizers.__version__}",
          file=sys.stderr)
    make_gpt2_style(os.path.join(os.path.dirname(args.out), "gpt2-style"), cases, rng)


def make_gpt2_style(outdir, cases, rng):
    """A small GPT-2-style tokenizer (ByteLevel pre-tokenizer with use_regex=true, merges in the
    [["a","b"]] form) trained here with tokenizers' own BpeTrainer on Python stdlib source, plus
    variants: legacy "a b" merges, add_prefix_space=true, ignore_merges=true. Cases record the
    ids of each variant."""
    from tokenizers import Tokenizer, AddedToken, models, pre_tokenizers, decoders, trainers
    os.makedirs(outdir, exist_ok=True)
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=1500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                             special_tokens=["<|endoftext|>"], show_progress=False)
    t.train(sorted(glob.glob("/usr/lib/python3.11/*.py"))[:30], tr)
    t.add_tokens([AddedToken("<tool>", normalized=True, special=False)])
    base = json.loads(t.to_str())
    assert isinstance(base["model"]["merges"][0], list)
    variants = {"ids": base}
    legacy = json.loads(json.dumps(base))
    legacy["model"]["merges"] = [a + " " + b for a, b in base["model"]["merges"]]
    prefix = json.loads(json.dumps(base))
    prefix["pre_tokenizer"]["add_prefix_space"] = True
    ignore = json.loads(json.dumps(base))
    ignore["model"]["ignore_merges"] = True
    # "id" fields that HF ignores: it gives an added token the vocab id of its content, or the next
    # free id (here "<tool>" listed as 5000 gets 1500, "def" listed as 1600 gets its vocab id)
    odd = json.loads(json.dumps(base))
    odd["added_tokens"][1]["id"] = 5000
    odd["added_tokens"].append({"id": 1600, "content": "def", "single_word": False, "lstrip": False,
                                "rstrip": False, "normalized": True, "special": True})
    files = {"ids": "tokenizer.json", "ids_legacy": "tokenizer-legacy-merges.json",
             "ids_prefix": "tokenizer-prefix-space.json", "ids_ignore_merges": "tokenizer-ignore-merges.json",
             "ids_odd_added": "tokenizer-odd-added-ids.json"}
    for key, d in [("ids", base), ("ids_legacy", legacy), ("ids_prefix", prefix), ("ids_ignore_merges", ignore),
                   ("ids_odd_added", odd)]:
        with open(os.path.join(outdir, files[key]), "w", encoding="utf-8") as f:
            json.dump(d, f, ensure_ascii=False)
    toks = {k: Tokenizer.from_file(os.path.join(outdir, f)) for k, f in files.items()}
    short = [c for c in cases if len(c[1]) < 1500]
    texts = [c[1] for c in rng.sample(short, 250)]
    texts += ["<|endoftext|>hello<tool> world", "a<tool><tool>b<|endoftext|>", "<tool", "x <|endoftext|> y",
              " leading space", "  two", "'s 've 're 'll 'd 'm 't", "I'm here, you're there.", "",
              "def f(): <tool> undefined define", "<tool>def<|endoftext|>"]
    out = os.path.join(outdir, "cases.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for text in texts:
            rec = {"text": text}
            if "\0" in text:
                rec["text_hex"] = text.encode("utf-8").hex()
            for k, tk in toks.items():
                rec[k] = tk.encode(text, add_special_tokens=False).ids
            assert rec.pop("ids_legacy") == rec["ids"]  # the C test checks the legacy file gives "ids" too
            d = toks["ids"].decode(rec["ids"], skip_special_tokens=False)
            if d != text:
                rec["decoded"] = d
            ds = toks["ids"].decode(rec["ids"], skip_special_tokens=True)
            if ds != text:
                rec["decoded_skip"] = ds
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"wrote {len(texts)} GPT-2-style cases to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
