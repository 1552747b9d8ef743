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
5. dsrt fp8: greedy generation (32 tokens, or up to EOS) with `dsrt logits --precision fp8`, one call per
   token, against transformers' float32 greedy continuation: for the first prompt (a headword of the book)
   they must be equal for the full 32 tokens; for the others a difference is reported with the float32
   top-2 margin where it happens (FP8 numerics move logits by a few tenths: a near-tie may flip).
6. Informative: a 320-token text, where the (untrained) indexer keeps 256 of the positions: the logit
   difference there, and how many of the indexer's top-k choices hang on exact ties.
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
    "RELIGION, n.",      # an entry of the book
    "COMPUTER, n.",      # a word Bierce never defined
    "The devil",         # free text
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


class IndexerTies(torch.overrides.TorchFunctionMode):
    """Counts near-ties at the indexer's top-k boundary (rows with more visible positions than k)."""

    def __init__(self, k):
        super().__init__()
        self.k, self.rows, self.tied, self.close = k, 0, 0, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.topk, torch.Tensor.topk) and (args[1] if len(args) > 1 else kwargs.get("k")) == self.k:
            with torch._C.DisableTorchFunction():
                x = args[0].detach().float().reshape(-1, args[0].shape[-1])
                for row in x:
                    row = row[torch.isfinite(row) & (row > torch.finfo(torch.float32).min)]
                    if row.numel() > self.k:
                        v = row.sort(descending=True).values
                        gap = float(v[self.k - 1] - v[self.k])
                        self.rows += 1
                        self.tied += gap == 0.0
                        self.close += gap < 1e-4
        return func(*args, **kwargs)


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
def corpus_loss(model, tok, held_out=True, limit=None):
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
        for seed in (args.seed + 2 * i, args.seed + 2 * i + 1):
            s = generate(model, ids, args.gen_tokens, False, gen["temperature"], gen["top_p"], seed=seed)
            print(f"\n--- sampled (temperature {gen['temperature']}, top_p {gen['top_p']}, seed {seed}), "
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
    with IndexerTies(cfg["index_topk"]) as ties:
        ref = logits_of(model, long_ids)
    got = dsrt_logits(args.dsrt, args.model_dir, long_ids, "f32", prefill=cfg["index_topk"] + 32)
    d = (got - ref).abs().max(-1).values
    k = cfg["index_topk"]
    print(f"beyond index_topk (informative): {len(long_ids)} tokens, rows < {k}: max |diff| {float(d[:k].max()):.3e}; "
          f"rows >= {k} (the indexer keeps {k} positions): max |diff| {float(d[k:].max()):.3e}, argmax equal on "
          f"{int((got[k:].argmax(-1) == ref[k:].argmax(-1)).sum())}/{len(long_ids) - k} rows; the untrained indexer's "
          f"k-th and (k+1)-th scores are exactly equal (a tie, most often at 0) in {ties.tied} of "
          f"{ties.rows} (layer, row) choices, and closer than 1e-4 in {ties.close}")

    # dsrt fp8: greedy generation, one dsrt call per token, against transformers' float32 greedy
    longest = 0
    for p in PROMPTS:
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
        longest = max(longest, len(fp8_out) if same else 0)
        seq = prompts[p] + ref_out
        cos = F.cosine_similarity(dsrt_logits(args.dsrt, args.model_dir, seq, "fp8", prefill=len(prompts[p])),
                                  logits_of(model, seq), dim=-1)
        print(f"dsrt fp8 greedy from {p!r}: {len(fp8_out)} tokens{' (ended by EOS)' if fp8_out[-1] == EOS else ''}, "
              f"{'equal to' if same else 'DIFFERENT from'} transformers f32 greedy; fp8 vs f32 logits cosine "
              f"min {float(cos.min()):.5f} mean {float(cos.mean()):.5f}\n  fp8: {tok.decode(fp8_out)!r}"
              + ("" if same else f"\n  f32: {tok.decode(ref_out)!r}"))
        if not same:
            at = next(i for i, (a, b) in enumerate(zip(fp8_out + [-1], ref_out + [-2])) if a != b)
            top2 = logits_of(model, prompts[p] + ref_out[:at])[-1].topk(2).values
            print(f"  first difference at generated token {at}: the f32 top-2 logits there are "
                  f"{float(top2[0]):.3f} and {float(top2[1]):.3f} (margin {float(top2[0] - top2[1]):.3f})")
            if p == PROMPTS[0]:
                failures.append(f"dsrt fp8 greedy continuation of {p!r} differs from the float32 one")
    if longest < args.fp8_tokens:
        failures.append(f"no prompt gave a {args.fp8_tokens}-token fp8 greedy generation equal to the f32 one")

    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("\nall checks passed")


if __name__ == "__main__":
    main()
