#!/usr/bin/env python3
"""Turns Debian's dict-devil file into the plain text that dsrt's default model is trained on.

    apt-get download dict-devil && dpkg -x dict-devil_*.deb /tmp/dict-devil
    python3 tools/default_model/make_corpus.py --dict /tmp/dict-devil/usr/share/dictd/devil.dict.dz \
        --index /tmp/dict-devil/usr/share/dictd/devil.index

Input: the dictd database of Ambrose Bierce's *The Devil's Dictionary* (1911, public domain): a gzip'ed
`devil.dict.dz` holding every entry back to back, and `devil.index` giving each headword's offset and
length (dictd's base-64 numbers). Entries are cut out by the index, not by guessing at headwords.

Output: `corpus/devils_dictionary.txt.gz`: Bierce's preface, then every entry in dictionary order, each
separated from the next by two blank lines (entries themselves hold single blank lines around their
verses, never two). Dropped: dictd's `00-database-*` records (URL, short name, alphabet, format version)
and the Internet Wiretap edition's title and release notice that precede the preface. Kept as written:
the entries, their verses, their indentation and the right-aligned attributions; trailing spaces are
stripped. The gzip is written with a fixed mtime, so the file is byte-for-byte reproducible.

`read_documents()` gives back the list of documents (preface and entries) from the gzip'ed text; the
tokenizer and training scripts use it.
"""
import argparse
import gzip
import io
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus", "devils_dictionary.txt.gz")
SEPARATOR = "\n\n\n"  # two blank lines between documents

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64_number(s):
    """dictd index numbers: base 64, most significant digit first."""
    v = 0
    for ch in s:
        v = v * 64 + B64.index(ch)
    return v


def clean(text):
    lines = [ln.rstrip() for ln in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    out = "\n".join(lines)
    while "\n\n\n" in out:  # never two blank lines inside a document (that is the separator)
        out = out.replace("\n\n\n", "\n\n")
    return out


def extract(dict_bytes, index_lines):
    records = []
    for line in index_lines:
        line = line.rstrip("\n")
        if not line:
            continue
        word, off, length = line.split("\t")
        records.append((b64_number(off), b64_number(length), word))
    spans = sorted({(o, n) for o, n, w in records})  # several headwords can share one entry
    info = [(o, n) for o, n, w in records if w == "00databaseinfo"]
    meta = {(o, n) for o, n, w in records if w.startswith("00database")}
    docs = []
    for o, n in spans:
        text = dict_bytes[o:o + n].decode("ascii")
        if (o, n) in info:
            # the database info record: the Wiretap notice, then Bierce's preface; keep the preface
            at = text.find("PREFACE")
            if at < 0:
                raise SystemExit("no PREFACE in the info record")
            text = text[text.rfind("\n", 0, at) + 1:].strip("\n")
            docs.insert(0, clean(text.replace(" " * 30 + "PREFACE", "PREFACE", 1)))
            continue
        if (o, n) in meta:
            continue
        docs.append(clean(text))
    return [d for d in docs if d]


def read_documents(path=CORPUS):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        text = f.read()
    return text[:-1].split(SEPARATOR) if text.endswith("\n") else text.split(SEPARATOR)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dict", default="/usr/share/dictd/devil.dict.dz")
    ap.add_argument("--index", default="/usr/share/dictd/devil.index")
    ap.add_argument("--out", default=CORPUS)
    args = ap.parse_args()
    with gzip.open(args.dict, "rb") as f:  # dictzip files are ordinary gzip streams
        data = f.read()
    with open(args.index, encoding="ascii") as f:
        docs = extract(data, f.readlines())
    text = SEPARATOR.join(docs) + "\n"
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as g:
        g.write(text.encode("utf-8"))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(buf.getvalue())
    assert read_documents(args.out) == docs
    print(f"{args.out}: {len(docs)} documents (preface + {len(docs) - 1} entries), {len(text)} characters, "
          f"{len(buf.getvalue())} bytes gzip'ed")


if __name__ == "__main__":
    main()
