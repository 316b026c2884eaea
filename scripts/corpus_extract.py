#!/usr/bin/env python3
"""Extract plain-text documents from Debian text packages into JSONL (one {"id","text"} per line).

Used by scripts/build_corpus.sh. Sources:
  gcide | jargon | devil : dictd databases (/usr/share/dictd/<name>.{index,dict.dz}); one entry = one document
  fortunes               : /usr/share/games/fortunes/*; one fortune (between '%' lines) = one document
  bible                  : King James Bible via the `bible` program; one chapter = one document
Output is deterministic for fixed package versions: entries are emitted in file order, no randomness.
Usage: corpus_extract.py SOURCE OUT.jsonl
"""
import gzip, json, os, re, subprocess, sys, textwrap, unicodedata

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64num(s):
    n = 0
    for c in s:
        n = n * 64 + B64.index(c)
    return n


def dict_entries(name):
    """Yield (headword, raw entry text) in dictionary file order, one per distinct entry."""
    raw = gzip.open(f"/usr/share/dictd/{name}.dict.dz", "rb").read()
    spans = {}
    with open(f"/usr/share/dictd/{name}.index", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith("00"):  # 00-database-*, 00-web1913-info: metadata
                continue
            off, ln = b64num(parts[1]), b64num(parts[2])
            spans.setdefault(off, (ln, parts[0]))
    for off in sorted(spans):
        ln, head = spans[off]
        yield head, raw[off:off + ln].decode("utf-8", errors="replace")


# GCIDE writes accented letters as bracketed codes: [a^] breve, [=a] macron, ['e] acute, [`e] grave,
# ["o] diaeresis, [^e] circumflex, [~n] tilde, [.a] dot above, [,c] cedilla, plus named ones.
GCIDE_NAMED = {
    "ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ", "eth": "ð", "th": "þ", "TH": "Þ", "imac": "ī", "aum": "ä",
    "add": "ä", "udd": "ü", "asl": "a", "yogh": "ȝ", "ng": "ŋ", "root": "√", "deg": "°", "sect": "§",
    "=oo": "o͞o", "oo^": "o͝o", "=ae": "ǣ", "=AE": "Ǣ", "=oe": "œ̄", "sharp": "♯", "flat": "♭",
    "cre": "˘", "frac12": "½", "frac14": "¼", "frac34": "¾", "frac13": "⅓", "frac23": "⅔", "times": "×",
    "divide": "÷", "pound": "£", "cent": "¢", "hand": "☞", "prime": "′", "dprime": "″",
}
PREFIX_MARK = {"=": "\u0304", "'": "\u0301", "`": "\u0300", '"': "\u0308", "^": "\u0302", "~": "\u0303",
               ".": "\u0307", ",": "\u0327", "-": "\u0304", "*": ""}
SUFFIX_MARK = {"^": "\u0306", "~": "\u0303"}
CODE_RE = re.compile(r"\[([A-Za-z=.'`\"^~,*-]{1,6})\]")


def gcide_code(m):
    c = m.group(1)
    if c in GCIDE_NAMED:
        return GCIDE_NAMED[c]
    if len(c) == 2 and c[0] in PREFIX_MARK and c[1].isalpha():
        return unicodedata.normalize("NFC", c[1] + PREFIX_MARK[c[0]])
    if len(c) == 2 and c[1] in SUFFIX_MARK and c[0].isalpha():
        return unicodedata.normalize("NFC", c[0] + SUFFIX_MARK[c[1]])
    return m.group(0)  # [R.], [Obs.], [Eng.]: usage labels, kept as text


SOURCE_LINE = re.compile(r"^\s*\[(1913 Webster|PJC|WordNet[^\]]*|Webster 1913 Suppl\.|Century Dict\.|[A-Z]{2,4})\]\s*$")


def clean_dict_text(text, name):
    lines = text.split("\n")
    if name == "gcide" and lines:
        # Headword line "Abaca \Ab"a*ca\ ([a^]b"[.a]*k[.a]), n. [...]": drop the syllabified form and the
        # pronunciation that follows it (both are respelling markup, not prose).
        first = re.sub(r"\s*\\[^\\\n]*\\(\s*\([^()\n]*\))?\s*", " ", lines[0], count=1)
        lines[0] = re.sub(r" ([,.;:])", r"\1", first, count=1).strip()
        lines = [l for l in lines if not SOURCE_LINE.match(l)]
    text = "\n".join(lines)
    if name == "gcide":
        text = CODE_RE.sub(gcide_code, text)
    text = text.replace("{", "").replace("}", "")  # cross-reference braces
    head, sep, body = text.partition("\n")
    text = head.strip() + sep + textwrap.dedent(body)  # the body is indented under the headword
    text = "\n".join(l.rstrip() for l in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    return text


def fortunes():
    d = "/usr/share/games/fortunes"
    for fn in sorted(os.listdir(d)):
        p = os.path.join(d, fn)
        if fn.endswith(".dat") or os.path.islink(p) or not os.path.isfile(p):
            continue
        data = open(p, "rb").read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        for i, chunk in enumerate(re.split(r"^%[ \t]*$", text, flags=re.M)):
            chunk = "\n".join(l.rstrip() for l in chunk.split("\n")).strip("\n")
            if chunk.strip():
                yield f"fortunes:{fn}:{i}", chunk


def bible():
    out = subprocess.run(["bible", "-l0", "Gen1:1-Rev22:21"], capture_output=True, check=True,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COLUMNS": "0"}).stdout
    text = out.decode("utf-8", errors="replace")
    # Chapters start with a heading line "Book N" preceded by a blank line; verses are "  N text".
    chapters = re.split(r"\n\n(?=\S[^\n]* \d+\n)", "\n" + text)
    for ch in chapters:
        ch = ch.strip("\n")
        if not ch:
            continue
        head, _, body = ch.partition("\n")
        body = "\n".join(l.strip() for l in body.split("\n") if l.strip())
        yield "bible:" + head.strip(), head.strip() + "\n\n" + body


def main():
    src, out = sys.argv[1], sys.argv[2]
    if src in ("gcide", "jargon", "devil"):
        gen = ((f"{src}:{h}", clean_dict_text(t, src)) for h, t in dict_entries(src))
    elif src == "fortunes":
        gen = fortunes()
    elif src == "bible":
        gen = bible()
    else:
        sys.exit(f"corpus_extract.py: unknown source '{src}'")
    n = 0
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        for ident, text in gen:
            if not text.strip():
                continue
            f.write(json.dumps({"id": ident, "text": text}, ensure_ascii=False) + "\n")
            n += 1
    os.replace(out + ".tmp", out)
    print(f"{src}: {n} documents -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
