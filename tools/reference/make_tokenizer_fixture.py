#!/usr/bin/env python3
"""Builds dsrt's small DeepSeek-style tokenizer fixture and the ids Hugging Face `tokenizers` gives for it.

    python3 -m venv /work/venv-text && /work/venv-text/bin/pip install tokenizers
    /work/venv-text/bin/python tools/reference/make_tokenizer_fixture.py [--out tests/data/tokenizer]

Writes
  tokenizer.json  a byte-level BPE (a few thousand merges) trained here on text written for this project,
                  with DeepSeek-V3's normalizer / pre_tokenizer / post_processor / decoder configuration
                  (the three Split regexes with behaviour Isolated, then ByteLevel without regex or prefix
                  space) and DeepSeek-style added tokens, merges stored as "a b" strings like DeepSeek's file;
  cases.json      [{"name", "text", "ids", "ids_special"}]: ids from tokenizers' encode() of the final
                  file, without (ids) and with (ids_special) add_special_tokens.

The output is deterministic for a given tokenizers version (training is single-threaded here).
"""
import argparse
import json
import os
import random

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # deterministic merges order under ties

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors  # noqa: E402
from tokenizers.trainers import BpeTrainer  # noqa: E402

# DeepSeek-V3's pre-tokenizer, as its tokenizer.json states it: three isolating splits, then ByteLevel.
# The second class holds the literal characters U+4E00-U+9FA5, U+3040-U+309F, U+30A0-U+30FF; the third regex
# holds literal CR and LF characters (the JSON file writes them as \r and \n escapes).
DS_SPLITS = [
    "\\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"

# (content, special, normalized, lstrip, rstrip, single_word). DeepSeek-style names; the last three exist
# only to exercise the lstrip / rstrip / single_word rules of added-token matching.
ADDED = [
    ("<｜fim▁hole｜>", True, False, False, False, False),
    ("<｜fim▁begin｜>", True, False, False, False, False),
    ("<｜fim▁end｜>", True, False, False, False, False),
    ("<｜User｜>", False, True, False, False, False),
    ("<｜Assistant｜>", False, True, False, False, False),
    ("<|EOT|>", True, False, False, False, False),
    ("<｜tool▁calls▁begin｜>", False, True, False, False, False),
    ("<｜tool▁calls▁end｜>", False, True, False, False, False),
    ("<｜tool▁call▁begin｜>", False, True, False, False, False),
    ("<｜tool▁call▁end｜>", False, True, False, False, False),
    ("<｜tool▁outputs▁begin｜>", False, True, False, False, False),
    ("<｜tool▁outputs▁end｜>", False, True, False, False, False),
    ("<｜tool▁output▁begin｜>", False, True, False, False, False),
    ("<｜tool▁output▁end｜>", False, True, False, False, False),
    ("<｜tool▁sep｜>", False, True, False, False, False),
    ("<think>", False, True, False, False, False),
    ("</think>", False, True, False, False, False),
    ("｜DSML｜", False, True, False, False, False),
    ("<｜search▁begin｜>", False, False, False, False, False),
    ("<｜search▁end｜>", False, False, False, False, False),
    ("<｜place▁holder▁no▁1｜>", True, False, False, False, False),
    ("<｜place▁holder▁no▁12｜>", True, False, False, False, False),
    ("<｜pos｜>", False, False, True, False, False),
    ("<｜neg｜>", False, False, False, True, False),
    ("dsrtword", False, False, False, False, True),
]

# Training text written for this project (no third-party text), mixed with generated sentences below.
SEED_TEXT = """
The runtime reads a checkpoint, places every layer on a device, and streams tokens back to the caller.
A tokenizer turns text into numbers; the model never sees letters, only the ids of merged byte pairs.
When the cache is warm, decoding one token costs one read of the weights and a little arithmetic.
Porting to a new accelerator means writing a backend: buffers, streams, events and a table of operations.
Tests compare every operation with the reference on the host, within a tolerance that each dtype earns.
She said: "It's the third build today, and it's still green." We'll see whether it stays that way.
Numbers such as 3.14159, 2,718,281 and 1e-9 appear in logs; dates like 2025-11-27 and times like 14:30:00 too.
Version v0.1.0 shipped on 12/01; the next one, v0.2.0-rc1, adds FP8 weights and 128x128 block scales.
int main(int argc, char **argv) { return argc > 1 ? atoi(argv[1]) : 0; }
for (size_t i = 0; i < n; i++) { sum += x[i] * w[i]; }  // dot product, fp32 accumulate
def merge(pairs, rank):\n    return sorted(pairs, key=lambda p: rank.get(p, float("inf")))
if err != nil {\n\treturn fmt.Errorf("open %s: %w", path, err)\n}
SELECT id, name FROM tokens WHERE rank < 1000 ORDER BY rank;
{"role": "user", "content": "hello", "tools": [], "temperature": 0.6, "top_p": 0.95}
<div class="note">Rendered at 60 fps &amp; 4K.</div>
模型把文本切成词元，再把词元映射成编号。推理时，每生成一个词元都要读取一次全部权重。
今天天气很好，我们去公园散步吧。明天可能会下雨，记得带伞。
深度学习模型需要大量的数据和计算资源。稀疏注意力可以减少长上下文的计算量。
日本語のテキストも少し含めます。ひらがなとカタカナ、そして漢字が混ざっています。
トークナイザーはテキストを数字に変換します。東京は晴れ、大阪は曇りです。
한국어 문장도 조금 넣습니다. 토크나이저는 글자를 숫자로 바꿉니다.
Русский текст: модель читает веса и выдаёт следующий токен.
Ελληνικά: το μοντέλο διαβάζει τα βάρη.
العربية: النموذج يقرأ الأوزان ويكتب الرمز التالي.
हिन्दी: मॉडल वज़न पढ़ता है और अगला टोकन लिखता है।
Café, naïve, façade, jalapeño, Zürich, Ångström, œuvre, Straße.
Emoji: 😀 😃 🚀 🔥 ✨ 📅 🌤️ 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇨🇳 🇫🇷
Math: ∑ x² + ∫ f(x) dx ≤ ∞, α β γ δ, ½ ¾, Ⅻ, ①②③.
Whitespace:\tTabs\tand  double  spaces,\r\nWindows line ends, and trailing spaces   \n\n\nblank lines.
"""

WORDS = (
    "model token layer device stream buffer tensor expert router cache page kernel matrix vector scale block "
    "weight bias norm attention index sparse dense prefill decode batch sequence prompt reply answer question "
    "tool result search date today tomorrow weather city number value error status message file path line "
    "the a an of to in on for with by from and or not is are was were be been being have has had do does did "
    "fast slow small large first last next previous new old good bad right left high low open close read write"
).split()
CJK_WORDS = "模型 词元 编号 权重 推理 注意力 专家 路由 缓存 设备 天气 城市 日期 工具 结果 搜索 问题 回答 用户 助手".split()


SYLLABLES = "ka ri to na me su lo pe ti va ne ro mi sa de ku zo fa bi lu ng ch th st qu ex in on er al".split()


def training_corpus():
    rng = random.Random(20250101)
    lexicon = WORDS + ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(1500)]
    lines = [SEED_TEXT] * 8
    for _ in range(12000):
        n = rng.randint(4, 14)
        words = [rng.choice(lexicon) for _ in range(n)]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 99999)))
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), "".join(rng.choice(CJK_WORDS) for _ in range(rng.randint(1, 3))))
        s = " ".join(words)
        s = s[0].upper() + s[1:] + rng.choice([".", "!", "?", ":", ";", ","])
        lines.append(s)
    return lines


def cases():
    long_doc = (
        SEED_TEXT * 2
        + "<｜User｜>Summarise the log above.<｜Assistant｜><think>The log mentions 3 builds.</think>Three builds ran.<｜end▁of▁sentence｜>"
        + "\n".join(f"line {i}: value={i * 37 % 1000} status={'ok' if i % 3 else 'retry'} 模型{i}" for i in range(60))
    )
    return [
        ("empty", ""),
        ("english", "Hello, world! It's a fine day; isn't it? We'll see."),
        ("english_caps", "HTTP/2 and JSON-RPC over TLS: DON'T PANIC, 'tis O'Neil's."),
        ("code_c", "static int add(int a, int b) {\n    return a + b; // sum\n}\n"),
        ("code_py", "def f(x):\n\tif x >= 10:\n\t\treturn [i**2 for i in range(x)]\n\treturn {'k': x}\n"),
        ("code_punct", "a->b, c::d, e=>f, g!=h, i<=j, k&&l, m||n, #include <stdio.h>, @decorator, $var, `tick`"),
        ("cjk_chinese", "今天天气很好，我们去公园散步吧。明天（2024年1月16日）可能会下雨！"),
        ("cjk_japanese", "日本語のテキスト：ひらがな、カタカナ、漢字。ｶﾀｶﾅ半角もあります。"),
        ("cjk_korean", "한국어 문장입니다. 토크나이저 테스트!"),
        ("cjk_mixed_latin", "GPT模型和DeepSeek模型都用BPE，ABC中文DEF。"),
        ("emoji", "I love 🍕 and 🚀! 😀😃😄"),
        ("emoji_zwj", "Family: 👨‍👩‍👧‍👦, flag: 🏳️‍🌈, skin: 👍🏽👋🏿, heart: ❤️‍🔥, keycap: 1️⃣"),
        ("emoji_flags", "🇨🇳🇺🇸🇫🇷🇯🇵 flags in a row"),
        ("combining_marks", "e\u0301 vs é, n\u0303, a\u0308\u0304, Zalgo: Z\u0351\u036b\u0343a\u0352l\u0310g\u0357o"),
        ("indic_arabic", "हिन्दी पाठ, العربية النص، עִבְרִית"),
        ("digits_runs", "1 12 123 1234 12345 123456 1234567 3.14159 1,000,000 0x1F 2024-01-15"),
        ("digits_unicode", "Arabic-Indic ١٢٣٤٥, fullwidth １２３４, superscript x²³, roman Ⅻ, circled ①②, 一二三"),
        ("digits_letters", "abc123def4567ghi v2.0.1 H2O CO2 3rd 21st"),
        ("whitespace_runs", "a  b   c    d\t\te\t \tf\n\ng\r\nh \n i\n\n\n   j   "),
        ("whitespace_only", " \t\n\r\n   \n\t "),
        ("whitespace_unicode", "a\u00a0b\u3000c\u2003d\u2028e\u0085f\u200bg\ufeffh"),
        ("leading_trailing", "   leading and trailing   "),
        ("newline_punct", "end.\n\nNext:\n- item\n- item2\n\n```\ncode\n```\n"),
        ("special_tokens", f"{BOS}<｜User｜>Hi there<｜Assistant｜><think>hmm</think>Hello!{EOS}"),
        ("special_adjacent", "<｜User｜><｜User｜><think></think><｜Assistant｜>"),
        ("special_partial", "<｜User and <think and </thin k> and ｜DSML and <｜fim▁hole"),
        ("special_dsml", "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜function_calls>"),
        ("special_longest", "<｜place▁holder▁no▁1｜><｜place▁holder▁no▁12｜><｜place▁holder▁no▁123｜>"),
        ("special_in_words", "abc<think>def</think>ghi 123<｜User｜>456"),
        ("special_strip", "left   <｜pos｜>   right and left   <｜neg｜>   right"),
        ("special_single_word", "dsrtword alone, xdsrtword glued, dsrtwordy glued, (dsrtword) punct"),
        ("control_chars", "nul\u0000bell\u0007esc\u001bdel\u007f"),
        ("rare_unicode", "\U0001f9ec \U0001d400\U0001d401 \U00010348 \ue000 \ufffd \U0010fffd"),
        ("urls", "See https://example.com/path?q=1&x=y#frag or mailto:a.b@c.de (v1.2)."),
        ("json", '{"name": "get_weather", "arguments": {"city": "北京", "days": 3, "ok": true}}'),
        ("long_mixed", long_doc),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "tokenizer"))
    ap.add_argument("--vocab-size", type=int, default=3000)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False) for r in DS_SPLITS]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=args.vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in (BOS, EOS, PAD)],
    )
    tok.train_from_iterator(training_corpus(), trainer)
    for content, special, normalized, lstrip, rstrip, single_word in ADDED:
        at = AddedToken(content, special=special, normalized=normalized, lstrip=lstrip, rstrip=rstrip,
                        single_word=single_word)
        if special:
            tok.add_special_tokens([at])
        else:
            tok.add_tokens([at])

    # Match DeepSeek-V3's file in the parts the library fills differently: an empty normalizer Sequence, a
    # ByteLevel post_processor and decoder with DeepSeek's flags, the exact Split dicts, "a b" merges.
    j = json.loads(tok.to_str())
    j["normalizer"] = {"type": "Sequence", "normalizers": []}
    j["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [{"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": False}
                          for r in DS_SPLITS]
        + [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}],
    }
    j["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    j["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    j["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    text = json.dumps(j, ensure_ascii=False, indent=1)
    path = os.path.join(args.out, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)

    final = Tokenizer.from_file(path)  # the expected ids come from the file as written
    out = []
    for name, s in cases():
        ids = final.encode(s, add_special_tokens=False).ids
        ids_sp = final.encode(s, add_special_tokens=True).ids
        decoded = final.decode(ids, skip_special_tokens=False)
        if "strip" not in name:  # lstrip / rstrip tokens swallow the spaces beside them
            assert decoded == s, name
        out.append({"name": name, "text": s, "decoded": decoded,
                    "decoded_skip_special": final.decode(ids, skip_special_tokens=True),
                    "ids": ids, "ids_special": ids_sp})
    write_cases(os.path.join(args.out, "cases.json"), out)
    print(f"{path}: {len(j['model']['vocab'])} vocab, {len(j['model']['merges'])} merges, "
          f"{len(j['added_tokens'])} added; {len(out)} cases")
    variants = make_variants()
    with open(os.path.join(args.out, "variants.json"), "w", encoding="utf-8") as f:
        f.write("{\"tokenizers_version\": %s,\n \"variants\": [\n" % json.dumps(__import__("tokenizers").__version__))
        f.write(",\n".join("  " + json.dumps(v, ensure_ascii=False) for v in variants))
        f.write("\n]}\n")
    print(f"variants.json: {len(variants)} tokenizer variants")


def write_cases(path, out):
    """One case per line: small to store, readable in a diff."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\"tokenizers_version\": %s,\n \"cases\": [\n" % json.dumps(__import__("tokenizers").__version__))
        f.write(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in out))
        f.write("\n]}\n")


VARIANT_TEXTS = [
    "Hello  world, it's 2024-01-15!",
    "a  b   c\t\td\n\ne  ",
    "x=1;y=22;z=333 <think>t</think> 北京",
    "  leading, trailing  ",
]


def make_variants():
    """Small tokenizers whose pre_tokenizer uses the other Split behaviours, inversion, String patterns and
    ByteLevel's own regex, one with merges as pairs and one with ignore_merges: ids from tokenizers for each."""
    base = Tokenizer(models.BPE())
    base.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    base.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=330, min_frequency=2, show_progress=False,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    base.train_from_iterator([SEED_TEXT] * 4 + VARIANT_TEXTS * 4, trainer)
    base.add_tokens([AddedToken("<think>", normalized=True), AddedToken("</think>", normalized=True)])
    bj = json.loads(base.to_str())
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}

    def split(pattern, behavior, invert=False, literal=False):
        return {"type": "Split", "pattern": {"String" if literal else "Regex": pattern}, "behavior": behavior,
                "invert": invert}

    specs = [("bytelevel_regex", {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                  "use_regex": True}, {})]
    for behavior in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
        for invert in [False, True]:
            specs.append((f"split_{behavior}_{'inv' if invert else 'plain'}",
                          {"type": "Sequence", "pretokenizers": [split("\\s+", behavior, invert), bl]}, {}))
    specs.append(("split_string_pattern", {"type": "Sequence", "pretokenizers": [split(" ", "Isolated", literal=True), bl]}, {}))
    specs.append(("merges_as_pairs", {"type": "Sequence", "pretokenizers": [split("\\p{N}{1,3}", "Isolated"), bl]},
                  {"pairs": True}))
    specs.append(("ignore_merges", {"type": "Sequence", "pretokenizers": [split("\\s+", "Isolated"), bl]},
                  {"ignore_merges": True}))
    out = []
    for name, pt, opts in specs:
        j = json.loads(json.dumps(bj))
        j["pre_tokenizer"] = pt
        merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
        j["model"]["merges"] = [m.split(" ") for m in merges] if opts.get("pairs") else merges
        j["model"]["ignore_merges"] = bool(opts.get("ignore_merges"))
        text = json.dumps(j, ensure_ascii=False)
        tk = Tokenizer.from_str(text)
        cs = [{"text": t, "ids": tk.encode(t, add_special_tokens=False).ids} for t in VARIANT_TEXTS]
        out.append({"name": name, "tokenizer_json": text, "cases": cs})
    return out


if __name__ == "__main__":
    main()
