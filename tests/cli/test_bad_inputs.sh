#!/usr/bin/env bash
# Bad inputs to `dsrt logits` end in a clear error and a non-zero exit, never a crash:
# every case checks the exit status (1 or 2, not a signal) and a phrase of the message.
# usage: test_bad_inputs.sh DSRT_BINARY SOURCE_DIR
set -u
dsrt=$1
src=$2
case_dir=$src/tests/data/tiny-plain
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0
fail=0

# expect NAME EXPECTED_PHRASE -- COMMAND...
expect() {
  local name=$1 phrase=$2
  shift 3
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ $rc -ge 1 ] && [ $rc -le 2 ] && grep -qF -- "$phrase" <<<"$out"; then
    pass=$((pass + 1))
    echo "ok   $name: $(head -1 <<<"$out")"
  else
    fail=$((fail + 1))
    echo "FAIL $name: exit $rc, expected a message containing '$phrase'; got:"
    sed 's/^/     /' <<<"$out"
  fi
}

fresh() { # a writable copy of the case
  rm -rf "$work/m"
  mkdir -p "$work/m"
  cp "$case_dir"/config.json "$case_dir"/model*.safetensors* "$work/m/"
}

toks="0,5,7,9"
run() { "$dsrt" logits -m "$work/m" --tokens "$toks" --out "$work/out.bin" "$@"; }

fresh
if run; then pass=$((pass + 1)); echo "ok   the unmodified copy runs"; else echo "FAIL the unmodified copy does not run"; fail=$((fail + 1)); fi

fresh
python3 - "$work/m/model-00002-of-00002.safetensors" <<'PY'
import os, sys
p = sys.argv[1]
os.truncate(p, os.path.getsize(p) // 2)
PY
expect "truncated shard" "truncated or corrupt" -- run

fresh
python3 - "$work/m/model-00001-of-00002.safetensors" <<'PY'
import struct, sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.write(struct.pack("<Q", 1 << 40))
PY
expect "header length beyond the file" "goes beyond the file" -- run

fresh
python3 - "$work/m/model-00001-of-00002.safetensors" <<'PY'
import sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(8)
    f.write(b"{\"x\": [}")
PY
expect "broken header JSON" "not valid JSON" -- run

fresh
python3 - "$work/m" <<'PY'
import struct, sys, json
d = sys.argv[1]
# rename model.norm.weight (same length, so offsets stay valid) in its shard and in the index
idx = json.load(open(d + "/model.safetensors.index.json"))
shard = idx["weight_map"].pop("model.norm.weight")
idx["weight_map"]["model.norX.weight"] = shard
json.dump(idx, open(d + "/model.safetensors.index.json", "w"))
p = d + "/" + shard
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = b[8:8 + n].replace(b'"model.norm.weight"', b'"model.norX.weight"')
b[8:8 + n] = h
open(p, "wb").write(b)
PY
expect "missing tensor" "tensor 'model.norm.weight' is missing" -- run

fresh
rm "$work/m/model-00002-of-00002.safetensors"
expect "missing shard" "is missing" -- run

fresh
python3 - "$work/m/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["kv_lora_rank"] = c["kv_lora_rank"] * 2
json.dump(c, open(p, "w"))
PY
expect "config inconsistent with tensor shapes" "config.json implies" -- run

fresh
echo '{"vocab_size": 512, "hidden_size": ' > "$work/m/config.json"
expect "broken config.json" "malformed JSON" -- run

fresh
rm "$work/m/config.json"
expect "missing config.json" "config.json: cannot open" -- run

fresh
expect "negative token id" "token id -1" -- "$dsrt" logits -m "$work/m" --tokens 1,-1,2 --out "$work/out.bin"
expect "token id >= vocab" "outside the vocabulary" -- "$dsrt" logits -m "$work/m" --tokens 1,512 --out "$work/out.bin"
expect "token list not numbers" "is not an integer token id" -- "$dsrt" logits -m "$work/m" --tokens 1,x,2 --out "$work/out.bin"
expect "unknown backend" "unknown backend 'nosuch'" -- "$dsrt" logits -m "$work/m" --tokens 1,2 --backend nosuch --out "$work/out.bin"
expect "device index out of range" "out of range" -- "$dsrt" logits -m "$work/m" --tokens 1,2 --backend cpu:7 --out "$work/out.bin"
expect "unknown precision" "unknown precision" -- "$dsrt" logits -m "$work/m" --tokens 1,2 --precision fp4 --out "$work/out.bin"
expect "unknown option" "unknown option '--frobnicate'" -- "$dsrt" logits -m "$work/m" --tokens 1,2 --frobnicate 3 --out "$work/out.bin"
expect "missing --out" "are required" -- "$dsrt" logits -m "$work/m" --tokens 1,2
expect "prefill beyond tokens" "exceeds the 2 tokens" -- "$dsrt" logits -m "$work/m" --tokens 1,2 --prefill 3 --out "$work/out.bin"
expect "missing model folder" "does not exist" -- "$dsrt" logits -m "$work/nothing-here" --tokens 1,2 --out "$work/out.bin"
expect "failed plugin load" "backend plugin" -- "$dsrt" logits --backend-plugin "$work/m/config.json" -m "$work/m" --tokens 1 --out "$work/out.bin"
expect "unknown command" "unknown command" -- "$dsrt" frobnicate

echo
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
