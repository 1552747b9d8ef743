#!/usr/bin/env python3
"""One-off check: dsrt's chat encoder and parser against DeepSeek's own test files for encoding_dsv32.py.

    python3 tools/reference/check_official_encoding.py --encoder-dir /work/ref-encoding --dsrt build/dsrt

--encoder-dir holds the official encoding folder as published (encoding_dsv32.py, test_input*.json,
test_output*.txt); nothing from it is copied into the repository. For every test_input<X>.json present it
runs `dsrt encode --request test_input<X>.json --thinking` and compares with test_output<X>.txt after
.strip(), exactly as test_encoding_dsv32.py compares (test_input.json keeps its tools at the top level,
which `dsrt encode` attaches to the leading system message, as that test does by hand). It then repeats the
official test's two parse checks (messages[4], a tool-call turn, and messages[-6], a thinking turn) with
`dsrt parse --thinking`, the completions made by the official encoder with context.
"""
import argparse
import copy
import glob
import importlib.util
import json
import os
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder-dir", default="/work/ref-encoding")
    ap.add_argument("--dsrt", default=os.path.join(os.path.dirname(__file__), "..", "..", "build", "dsrt"))
    args = ap.parse_args()
    failures = 0
    inputs = sorted(glob.glob(os.path.join(args.encoder_dir, "test_input*.json")))
    if not inputs:
        sys.exit(f"no test_input*.json in {args.encoder_dir}")
    for inp in inputs:
        suffix = os.path.basename(inp)[len("test_input"):-len(".json")]
        gold_path = os.path.join(args.encoder_dir, f"test_output{suffix}.txt")
        if not os.path.exists(gold_path):
            print(f"{os.path.basename(inp)}: no test_output{suffix}.txt, skipped")
            continue
        with open(gold_path, encoding="utf-8") as f:
            gold = f.read().strip()
        r = subprocess.run([args.dsrt, "encode", "--request", inp, "--thinking"], capture_output=True)
        got = r.stdout.decode("utf-8")
        ok = r.returncode == 0 and got == gold
        failures += not ok
        print(f"{os.path.basename(inp)} -> test_output{suffix}.txt: {'identical' if ok else 'DIFFERENT'} "
              f"({len(got.encode())} bytes){'' if r.returncode == 0 else ' ' + r.stderr.decode().strip()}")

    # the official test's parse checks, on test_input.json
    spec = importlib.util.spec_from_file_location("encoding_dsv32", os.path.join(args.encoder_dir, "encoding_dsv32.py"))
    enc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(enc)
    with open(os.path.join(args.encoder_dir, "test_input.json"), encoding="utf-8") as f:
        d = json.load(f)
    messages = d["messages"]
    messages[0]["tools"] = d["tools"]
    cfg = dict(thinking_mode="thinking", drop_thinking=True, add_default_bos_token=True)
    for label, i in (("messages[4] (tool calls)", 4), ("messages[-6] (thinking)", len(messages) - 6)):
        completion = enc.encode_messages([copy.deepcopy(messages[i])], context=copy.deepcopy(messages[:i]), **cfg)
        want = enc.parse_message_from_completion_text(completion, thinking_mode="thinking")
        r = subprocess.run([args.dsrt, "parse", "--thinking"], input=completion.encode(), capture_output=True)
        ok = r.returncode == 0 and json.loads(r.stdout) == want
        failures += not ok
        print(f"parse {label}: {'same as the official parser' if ok else 'DIFFERENT: ' + r.stdout.decode() + r.stderr.decode()}")
    print("all identical" if failures == 0 else f"{failures} difference(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
