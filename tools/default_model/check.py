#!/usr/bin/env python3
"""Checks dsrt's default model: the exported FP8 checkpoint writes text like its corpus, and dsrt's C
runtime computes what transformers computes.

    cmake -S . -B build -G Ninja && ninja -C build
    python3 tools/default_model/check.py [--model-dir tools/default_model/model] [--dsrt build/dsrt]

1. Format: every tensor has the dtype the official layout gives it (F8_E4M3 + F32 scale grids for the big
   linears, BF16 elsewhere, F32 correction biases), every scale is a power of two, nothing is left over.
2. The checkpoint is dequantized (W = fp8 * scale per 128x128 block) into transformers'
   DeepseekV32ForCausalLM in float32 (eager attention); its loss over the corpus documents (held-out ones
   apart) is printed, and it writes greedy and sampled continuations of three prompts.
3. Tokenizer: `dsrt tokenize` gives the ids `tokenizers` gives, for each prompt.
4. dsrt f32: `dsrt logits --precision f32` (prompt as prefill, the rest through the decode path) against
   transformers' float32 logits of the same tokens: max |diff| must be <= 1e-3.
5. dsrt fp8: a 32-token greedy generation with `dsrt logits --precision fp8`, one call per token, must
   equal transformers' float32 greedy continuation.
Exit status 1 if a check fails.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

from train import BLOCK, FP8_LEAVES, dequantize_blocks  # noqa: E402

PROMPTS = [
    "LAWYER, n.",        # an entry of the book
    "RELIGION, n.",      # another
    "COMPUTER, n.",      # a word Bierce never defined
]
BOS, EOS = 0, 1


def load_checkpoint(model_dir):
    from safetensors import safe_open

    path = os.path.join(model_dir, "model.safetensors")
    tensors = {}
    with safe_open(path, "pt") as f:
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    return tensors, cfg


def check_format(tensors, cfg):
    problems = []
    for name, t in tensors.items():
        if name.endswith(".weight_scale_inv"):
            w = tensors.get(name[: -len("_scale_inv")])
            if w is None:
                problems.append(f"{name} has no weight")
                continue
            want = (math.ceil(w.shape[0] / BLOCK), math.ceil(w.shape[1] / BLOCK))
            if t.dtype != torch.float32 or tuple(t.shape) != want:
                problems.append(f"{name}: {t.dtype} {tuple(t.shape)}, want float32 {want}")
            m, e = torch.frexp(t)
            if not bool((m == 0.5).all()):
                problems.append(f"{name}: a scale is not a power of two")
            continue
        leaf = name.split(".")[-2] if name.endswith(".weight") else ""
        if leaf in FP8_LEAVES:
            want = torch.float8_e4m3fn
            if name[: -len(".weight")] + ".weight_scale_inv" not in tensors:
                problems.append(f"{name}: no scale")
        elif name.endswith(".e_score_correction_bias"):
            want = torch.float32
        else:
            want = torch.bfloat16
        if t.dtype != want:
            problems.append(f"{name}: {t.dtype}, want {want}")
    n_fp8 = sum(1 for t in tensors.values() if t.dtype == torch.float8_e4m3fn)
    print(f"format: {len(tensors)} tensors, {n_fp8} FP8 weights with power-of-two 128x128 scales; "
          f"quantization_config {cfg.get('quantization_config')}")
    return problems


def hf_model(tensors, cfg):
    """transformers' model, float32, holding the dequantized checkpoint."""
    from transformers import DeepseekV32Config, DeepseekV32ForCausalLM

    c = dict(cfg)
    c.pop("quantization_config", None)
    config = DeepseekV32Config(**c)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = DeepseekV32ForCausalLM(config).float().eval()
    deq = {}
    for name, t in tensors.items():
        if name.endswith(".weight_scale_inv"):
            continue
        s = tensors.get(name + "_scale_inv")
        deq[name] = dequantize_blocks(t, s) if s is not None else t.float()
    state, used = {}, set()
    for name, t in deq.items():
        if ".mlp.experts." not in name:
            state[name] = t
            used.add(name)
    E = cfg["n_routed_experts"]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}.mlp.experts."
        if p + "0.gate_proj.weight" not in deq:
            continue
        names = [f"{p}{e}.{w}.weight" for e in range(E) for w in ("gate_proj", "up_proj", "down_proj")]
        state[p + "gate_up_proj"] = torch.stack(
            [torch.cat([deq[f"{p}{e}.gate_proj.weight"], deq[f"{p}{e}.up_proj.weight"]]) for e in range(E)])
        state[p + "down_proj"] = torch.stack([deq[f"{p}{e}.down_proj.weight"] for e in range(E)])
        used.update(names)
    left = sorted(set(deq) - used)
    if left:
        raise SystemExit(f"checkpoint tensors with no place in the model: {left[:5]}")
    model.load_state_dict(state, strict=True)  # raises on any missing or unexpected name
    return model


@torch.no_grad()
def logits_of(model, ids):
    return model(input_ids=torch.tensor([ids])).logits[0].float()


@torch.no_grad()
def generate(model, ids, n, greedy, temperature=1.0, top_p=1.0, seed=0):
    """Plain loop over full forwards (no cache): the reference is the model, not a cache."""
    g = torch.Generator().manual_seed(seed)
    ids = list(ids)
    out = []
    for _ in range(n):
        row = logits_of(model, ids)[-1]
        if greedy:
            t = int(row.argmax())
        else:
            p = F.softmax(row / temperature, dim=-1)
            sp, si = p.sort(descending=True)
            keep = (sp.cumsum(0) - sp) < top_p
            sp = sp * keep
            t = int(si[torch.multinomial(sp / sp.sum(), 1, generator=g)])
        out.append(t)
        ids.append(t)
        if t == EOS:
            break
    return out


@torch.no_grad()
def corpus_loss(model, tok, every=None, held_out=True, limit=None):
    from make_corpus import read_documents

    docs = read_documents()
    tot, n = 0.0, 0
    picked = [d for i, d in enumerate(docs) if (i % 50 == 49) == held_out]
    if limit:
        picked = picked[:: max(1, len(picked) // limit)][:limit]
    for d in picked:
        ids = ([BOS] + tok.encode(d, add_special_tokens=False).ids + [EOS])[:257]
        lg = logits_of(model, ids[:-1])
        tot += float(F.cross_entropy(lg, torch.tensor(ids[1:]), reduction="sum"))
        n += len(ids) - 1
    return tot / n, len(picked)


def dsrt_tokenize(dsrt, tokenizer, text):
    r = subprocess.run([dsrt, "tokenize", "--tokenizer", tokenizer, text], capture_output=True, text=True, check=True)
    return [int(x) for x in r.stdout.split()]


def dsrt_logits(dsrt, model_dir, ids, precision, prefill=None):
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
        out = f.name
    try:
        cmd = [dsrt, "logits", "-m", model_dir, "--tokens", ",".join(map(str, ids)), "--precision", precision,
               "--out", out]
        if prefill is not None:
            cmd += ["--prefill", str(prefill)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        a = np.fromfile(out, dtype="<f4")
    finally:
        os.unlink(out)
    return torch.from_numpy(a.reshape(len(ids), -1).copy())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=os.path.join(HERE, "model"))
    ap.add_argument("--dsrt", default=os.path.join(ROOT, "build", "dsrt"))
    ap.add_argument("--gen-tokens", type=int, default=160)
    ap.add_argument("--fp8-tokens", type=int, default=32)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1911)
    ap.add_argument("--skip-loss", action="store_true")
    args = ap.parse_args()
    from tokenizers import Tokenizer

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    failures = []
    tensors, cfg = load_checkpoint(args.model_dir)
    failures += check_format(tensors, cfg)
    with open(os.path.join(args.model_dir, "generation_config.json")) as f:
        gen = json.load(f)
    tok_path = os.path.join(args.model_dir, "tokenizer.json")
    tok = Tokenizer.from_file(tok_path)
    model = hf_model(tensors, cfg)
    print(f"transformers {__import__('transformers').__version__}, torch {torch.__version__}: "
          f"{sum(p.numel() for p in model.parameters())} parameters, float32, dequantized")

    if not args.skip_loss:
        vl, nv = corpus_loss(model, tok, held_out=True)
        tl, nt = corpus_loss(model, tok, held_out=False, limit=100)
        print(f"loss (nats/token, first 256 tokens of each document): training documents {tl:.4f} "
              f"({nt} of them), held-out documents {vl:.4f} ({nv})")

    prompts = {}
    for p in PROMPTS:
        ids = tok.encode(p, add_special_tokens=False).ids
        d = dsrt_tokenize(args.dsrt, tok_path, p)
        if d != ids:
            failures.append(f"tokenize {p!r}: dsrt {d} vs tokenizers {ids}")
        prompts[p] = [BOS] + ids
    print(f"tokenizer: dsrt tokenize == tokenizers for the {len(PROMPTS)} prompts: "
          f"{all(dsrt_tokenize(args.dsrt, tok_path, p) == prompts[p][1:] for p in PROMPTS)}")

    greedy = {}
    for i, (p, ids) in enumerate(prompts.items()):
        greedy[p] = generate(model, ids, args.gen_tokens, True)
        print(f"\n--- greedy, prompt {p!r} ---\n{p}{tok.decode(greedy[p], skip_special_tokens=False)}")
        s = generate(model, ids, args.gen_tokens, False, gen["temperature"], gen["top_p"], seed=args.seed + i)
        print(f"\n--- sampled (temperature {gen['temperature']}, top_p {gen['top_p']}, seed {args.seed + i}), "
              f"prompt {p!r} ---\n{p}{tok.decode(s, skip_special_tokens=False)}")
    print()

    # dsrt float32 against transformers float32, same dequantized weights
    worst = 0.0
    for p, ids in prompts.items():
        seq = (ids + greedy[p])[:200]
        ref = logits_of(model, seq)
        got = dsrt_logits(args.dsrt, args.model_dir, seq, "f32", prefill=len(ids))
        d = float((got - ref).abs().max())
        worst = max(worst, d)
        print(f"dsrt f32 vs transformers f32, {p!r}: {len(seq)} tokens (prefill {len(ids)}, then decode), "
              f"max |diff| {d:.3e}, max |logit| {float(ref.abs().max()):.2f}, "
              f"argmax equal on {int((got.argmax(-1) == ref.argmax(-1)).sum())}/{len(seq)} rows")
    if worst > args.tolerance:
        failures.append(f"dsrt f32 logits differ from transformers by {worst:.3e} > {args.tolerance}")

    # beyond index_topk the (untrained) indexer chooses: informative only
    long_ids = [BOS] + tok.encode(" ".join(__import__("make_corpus").read_documents()[1:12]),
                                  add_special_tokens=False).ids
    long_ids = long_ids[: cfg["index_topk"] + 64]
    ref = logits_of(model, long_ids)
    got = dsrt_logits(args.dsrt, args.model_dir, long_ids, "f32", prefill=cfg["index_topk"] + 32)
    d = (got - ref).abs().max(-1).values
    k = cfg["index_topk"]
    print(f"beyond index_topk (informative): {len(long_ids)} tokens, rows < {k}: max |diff| {float(d[:k].max()):.3e}; "
          f"rows >= {k} (the indexer selects {k} of them): max |diff| {float(d[k:].max()):.3e}")

    # dsrt fp8: greedy generation, one dsrt call per token
    p = PROMPTS[0]
    ids = list(prompts[p])
    fp8_out = []
    for _ in range(args.fp8_tokens):
        lg = dsrt_logits(args.dsrt, args.model_dir, ids, "fp8", prefill=max(1, len(ids) - 1))
        t = int(lg[-1].argmax())
        fp8_out.append(t)
        ids.append(t)
        if t == EOS:
            break
    ref_out = greedy[p][: args.fp8_tokens]
    same = fp8_out == ref_out
    n_same = next((i for i, (a, b) in enumerate(zip(fp8_out, ref_out)) if a != b), min(len(fp8_out), len(ref_out)))
    print(f"dsrt fp8 greedy, {args.fp8_tokens} tokens from {p!r}: {'equal to' if same else 'DIFFERS from'} "
          f"transformers f32 greedy (first {n_same} equal)\n  fp8: {tok.decode(fp8_out)!r}\n  f32: {tok.decode(ref_out)!r}")
    if not same:
        failures.append("dsrt fp8 greedy continuation differs from the float32 one")
    seq = prompts[p] + ref_out
    a = dsrt_logits(args.dsrt, args.model_dir, seq, "fp8", prefill=len(prompts[p]))
    b = logits_of(model, seq)
    cos = F.cosine_similarity(a, b, dim=-1)
    print(f"dsrt fp8 vs transformers f32 logits over those {len(seq)} tokens: cosine min {float(cos.min()):.5f} "
          f"mean {float(cos.mean()):.5f}")

    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("\nall checks passed")


if __name__ == "__main__":
    main()
