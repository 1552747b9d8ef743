#!/usr/bin/env python3
"""Trains the tokenizer of dsrt's default model on The Devil's Dictionary.

    python3 tools/default_model/make_tokenizer.py [--vocab-size 2560] [--out tools/default_model/model]

A byte-level BPE trained with Hugging Face `tokenizers` on the documents of `corpus/devils_dictionary.txt.gz`
(make_corpus.py), in the configuration of DeepSeek-V3's tokenizer.json: an empty normalizer Sequence, the
three isolating Split regexes then ByteLevel without regex or prefix space, ByteLevel post-processor and
decoder, merges stored as "a b" strings. The regexes and the added tokens come from the project's
fixture script (tools/reference/make_tokenizer_fixture.py), imported, so the two cannot drift apart.

Ids: 0 `<｜begin▁of▁sentence｜>`, 1 `<｜end▁of▁sentence｜>`, 2 `<｜▁pad▁｜>`, then the 256 byte symbols and the
learned merges, then DeepSeek's added tokens (`<｜User｜>`, `<｜Assistant｜>`, `<think>`, `</think>`,
`｜DSML｜`, the fim / tool / search tokens, ...). The BPE part is sized so that the whole vocabulary is
exactly --vocab-size ids (a multiple of 128 by default).

Writes tokenizer.json and tokenizer_config.json. Deterministic for a given tokenizers version (training
runs single-threaded).
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import make_tokenizer_fixture as fixture  # noqa: E402  (sets RAYON_NUM_THREADS=1 before tokenizers loads)
from make_corpus import read_documents  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from tokenizers.trainers import BpeTrainer  # noqa: E402

# The fixture's last three added tokens exist only to test lstrip / rstrip / single_word matching.
TEST_ONLY = {"<｜pos｜>", "<｜neg｜>", "dsrtword"}
ADDED = [a for a in fixture.ADDED if a[0] not in TEST_ONLY]
SPECIAL = (fixture.BOS, fixture.EOS, fixture.PAD)


def build(docs, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False) for r in fixture.DS_SPLITS]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size - len(ADDED),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL],
    )
    tok.train_from_iterator(docs, trainer)
    for content, special, normalized, lstrip, rstrip, single_word in ADDED:
        at = AddedToken(content, special=special, normalized=normalized, lstrip=lstrip, rstrip=rstrip,
                        single_word=single_word)
        (tok.add_special_tokens if special else tok.add_tokens)([at])

    # The parts the library writes differently from DeepSeek-V3's file.
    j = json.loads(tok.to_str())
    j["normalizer"] = {"type": "Sequence", "normalizers": []}
    j["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [{"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": False}
                          for r in fixture.DS_SPLITS]
        + [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}],
    }
    j["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    j["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    j["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    return j


def tokenizer_config(model_max_length):
    def tok(content):
        return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
                "rstrip": False, "single_word": False}
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": tok(fixture.BOS),
        "clean_up_tokenization_spaces": False,
        "eos_token": tok(fixture.EOS),
        "legacy": True,
        "model_max_length": model_max_length,
        "pad_token": tok(fixture.EOS),
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab-size", type=int, default=2560, help="total ids, added tokens included")
    ap.add_argument("--out", default=os.path.join(HERE, "model"))
    args = ap.parse_args()
    docs = read_documents()
    j = build(docs, args.vocab_size)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(j, ensure_ascii=False, indent=1))
        f.write("\n")
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(4096), f, ensure_ascii=False, indent=2)
        f.write("\n")

    final = Tokenizer.from_file(path)
    n = final.get_vocab_size(with_added_tokens=True)
    assert final.token_to_id(fixture.BOS) == 0 and final.token_to_id(fixture.EOS) == 1
    assert n == args.vocab_size, (n, args.vocab_size)
    n_tokens = 0
    for d in docs:
        ids = final.encode(d, add_special_tokens=False).ids
        assert final.decode(ids, skip_special_tokens=False) == d
        n_tokens += len(ids)
    chars = sum(len(d) for d in docs)
    print(f"{path}: {n} ids ({len(j['model']['vocab'])} BPE, {len(j['model']['merges'])} merges, "
          f"{len(j['added_tokens'])} added); corpus {n_tokens} tokens, {chars / n_tokens:.2f} characters/token")


if __name__ == "__main__":
    main()
