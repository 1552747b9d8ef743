#!/usr/bin/env bash
# dsrt run with the default model built in: works from another folder, is reproducible with a seed,
# greedy output follows the argmax path of dsrt logits, and bad input gives clear errors.
# usage: test_run.sh DSRT_BINARY SOURCE_DIR
set -u
dsrt=$1
src=$2
model=$src/tools/default_model/model
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1 # "from another folder"
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

if [ ! -f "$model/model.safetensors" ]; then
  echo "no default model in $model"
  echo "0 passed, 1 failed"
  exit 1
fi

prompt="ABSURDITY, n."
# 1. prints generated text, with statistics on stderr
if "$dsrt" run -p "$prompt" -n 32 --seed 7 >out1.txt 2>err1.txt && [ -s out1.txt ] && grep -q "tokens/s" err1.txt; then
  ok "run -p -n 32 prints text: $(head -c 120 out1.txt | tr '\n' ' ')"
else
  bad "run -p -n 32 printed nothing or failed: $(cat err1.txt)"
fi
# 2. the same seed gives the same text; another seed (sampling at temperature 1) may differ
"$dsrt" run -p "$prompt" -n 32 --seed 7 >out2.txt 2>/dev/null
if cmp -s out1.txt out2.txt; then ok "same seed, same text"; else bad "same seed gave different text"; fi

# 3. greedy generation equals the argmax path of dsrt logits over the same model files
"$dsrt" run -m "$model" -p "$prompt" -n 12 --temp 0 >greedy.txt 2>/dev/null
python3 - "$dsrt" "$model" "$prompt" greedy.txt <<'PY'
import json, struct, subprocess, sys
dsrt, model, prompt, greedy_file = sys.argv[1:5]
cfg = json.load(open(model + "/config.json"))
V, bos, eos = cfg["vocab_size"], cfg.get("bos_token_id", 0), cfg.get("eos_token_id", 1)
ids = [bos] + [int(x) for x in subprocess.run([dsrt, "tokenize", "-m", model, prompt], capture_output=True, text=True, check=True).stdout.split()]
gen = []
for _ in range(12):
    toks = ids + gen
    subprocess.run([dsrt, "logits", "-m", model, "--tokens", ",".join(map(str, toks)), "--out", "l.bin"], check=True)
    data = open("l.bin", "rb").read()
    row = struct.unpack("<%df" % V, data[-4 * V:])
    nxt = max(range(V), key=lambda i: (row[i], -i))
    if nxt == eos:
        break
    gen.append(nxt)
text = subprocess.run([dsrt, "detokenize", "-m", model, "--ids", " ".join(map(str, gen)), "--skip-special"], capture_output=True, text=True, check=True).stdout
want = open(greedy_file, encoding="utf-8").read()
if text.rstrip("\n") != want.rstrip("\n"):
    print("greedy text:  %r\nargmax path:  %r" % (want, text))
    sys.exit(1)
print("argmax path:", repr(text[:80]))
PY
if [ $? -eq 0 ]; then ok "greedy output equals the argmax path of dsrt logits"; else bad "greedy output differs from the argmax path"; fi

# 4. bad input
expect() { # name phrase -- command...
  local name=$1 phrase=$2
  shift 3
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ $rc -ge 1 ] && [ $rc -le 2 ] && grep -qF -- "$phrase" <<<"$out"; then ok "$name: $(head -1 <<<"$out")"; else
    bad "$name: exit $rc, wanted '$phrase', got: $out"
  fi
}
mkdir -p nomodel && cp "$model/config.json" "$model/model.safetensors" nomodel/
expect "missing tokenizer.json" "tokenizer.json" -- "$dsrt" run -m nomodel -p hi
cp "$model/config.json" "$model/model.safetensors" nomodel/ && echo '{"model": ' >nomodel/tokenizer.json
expect "malformed tokenizer.json" "tokenizer.json" -- "$dsrt" run -m nomodel -p hi
expect "invalid UTF-8 prompt" "not valid UTF-8" -- "$dsrt" run -p "$(printf 'ok \xc3\x28')"
expect "unknown flag" "unknown option '--frobnicate'" -- "$dsrt" run -p hi --frobnicate 1
expect "no prompt" "give the prompt" -- "$dsrt" run
long=$(printf 'word %.0s' $(seq 1 200))
expect "prompt longer than the context" "the context holds 16" -- "$dsrt" run -p "$long" --ctx 16
expect "bad temperature" "--temp expects" -- "$dsrt" run -p hi --temp -1

# 5. dsrt chat keeps the conversation: two turns from standard input
if printf 'What is a bore?\nAnd a cynic?\n' | "$dsrt" chat -n 16 --seed 3 >chat.txt 2>chat_err.txt && [ "$(grep -c 'tokens/s' chat_err.txt)" -eq 2 ]; then
  ok "chat answers two turns"
else
  bad "chat: $(cat chat_err.txt)"
fi

# 6. dsrt bench decodes a batch (KV pages sized per sequence) and reports the roofline fraction
if "$dsrt" bench -m "$model" --prompt 8 --gen 4 --context 100 --batch 8 >bench.txt 2>bench_err.txt &&
  grep -q "decode: batch 8 at context 100" bench.txt && grep -q "decode reaches" bench.txt; then
  ok "bench at batch 8: $(grep 'decode:' bench.txt)"
else
  bad "bench at batch 8: $(cat bench.txt bench_err.txt)"
fi

# 7. side by side on two devices: both run, then the ratio line
if "$dsrt" bench -m "$model" --prompt 8 --gen 2 --backend cpu,cpu:0 >bench2.txt 2>&1 &&
  grep -q "^cpu:0 / cpu = [0-9.]*$" bench2.txt; then
  ok "bench side by side: $(tail -1 bench2.txt)"
else
  bad "bench side by side: $(cat bench2.txt)"
fi

# 8. op benchmark on a device that reports no peak bandwidth: fractions of a measured copy bandwidth
if "$dsrt" bench --ops "topk2048 T1 " --backend cpu >bench3.txt 2>&1 &&
  grep -qE "^peaks: memory [1-9][0-9]* GB/s \(measured device copy" bench3.txt &&
  grep -qE "^topk2048 T1 .* [0-9.]+% " bench3.txt; then
  ok "bench --ops fractions: $(grep -E '^(peaks|topk2048 T1 )' bench3.txt | tr -s ' ' | tr '\n' ';')"
else
  bad "bench --ops fractions: $(cat bench3.txt)"
fi

echo
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
