#!/usr/bin/env python3
"""Float32 golden logits from Hugging Face transformers' DeepseekV32ForCausalLM.

    python tools/reference/golden_transformers.py --case-dir tests/data/tiny-yarn --prompt-len 20 --decode 8 \
        --prompt-seed 15 --perturb

Builds the model from the case's config.json (eager attention, float32), loads the
checkpoint dequantized to float32 (fp8 * weight_scale_inv, bf16 -> f32; the per-expert
tensors are stacked into transformers' fused `experts.gate_up_proj` / `experts.down_proj`),
runs a prefill of the prompt and then greedy-decodes one token at a time through the KV cache.

Writes into the case folder (or --out-dir):
  logits_f32.bin    float32 little-endian, one row of vocab_size per fed token
                    (every prefill position, then every decode step)
  golden_f32.json   tokens fed at each row, prefill length, rows, vocab, margins, versions, ...

Checks made on every run (the script fails if one does not hold):
  * every model parameter/buffer is loaded from the checkpoint, every checkpoint tensor is used
    (the MTP layer aside: transformers has no MTP module);
  * prefill-then-decode logits equal one full prefill over the same tokens (to --tol);
  * the golden data does not depend on top-k ties (indexer, router, groups) nor on a near-tie
    of the greedy argmax (thresholds in common.THRESHOLDS).

--compare FILE re-runs with the tokens recorded beside FILE (teacher-forced) and prints per-row
cosines between this run's logits and FILE's (e.g. the FP8 golden of the official code).
--perturb re-runs teacher-forced in float64 and with reordered float32 reductions
(perturb.F32_VARIANTS) and refuses to write a case whose logits move by more than 1e-4 or whose
top-k decisions change; --dsrt BIN records how a dsrt binary's float32 logits compare.
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import perturb  # noqa: E402


def load_hf_model(case_dir):
    from transformers import AutoConfig, DeepseekV32ForCausalLM

    config = AutoConfig.from_pretrained(case_dir)
    # the weights are dequantized here: build a plain float32 model, no quantizer
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = DeepseekV32ForCausalLM(config).to(torch.float32).eval()

    raw = common.read_checkpoint(case_dir)
    deq = common.dequantized_state(raw)
    L = config.num_hidden_layers
    E = config.n_routed_experts
    state = {}
    used = set()
    for name, t in deq.items():
        if name.startswith(f"model.layers.{L}."):
            continue  # MTP module: not part of DeepseekV32ForCausalLM
        if ".mlp.experts." in name:
            continue  # stacked below
        state[name] = t
        used.add(name)
    for layer in range(L):
        p = f"model.layers.{layer}.mlp.experts."
        if p + "0.gate_proj.weight" not in deq:
            continue
        gate_up, down = [], []
        for e in range(E):
            g = deq[f"{p}{e}.gate_proj.weight"]
            u = deq[f"{p}{e}.up_proj.weight"]
            d = deq[f"{p}{e}.down_proj.weight"]
            gate_up.append(torch.cat([g, u], dim=0))  # forward does .chunk(2): gate first, then up
            down.append(d)
            used.update(f"{p}{e}.{w}.weight" for w in ("gate_proj", "up_proj", "down_proj"))
        state[p + "gate_up_proj"] = torch.stack(gate_up)
        state[p + "down_proj"] = torch.stack(down)
    unused = [n for n in deq if n not in used and not n.startswith(f"model.layers.{L}.")]
    if unused:
        raise SystemExit(f"checkpoint tensors not used: {unused[:10]}")
    expected = model.state_dict()
    for name, t in state.items():
        if name not in expected:
            raise SystemExit(f"{name} has no place in the transformers model")
        if expected[name].shape != t.shape:
            raise SystemExit(f"{name}: checkpoint {tuple(t.shape)} vs model {tuple(expected[name].shape)}")
    model.load_state_dict(state, strict=True)
    for name, t in model.state_dict().items():
        if t.dtype != torch.float32:
            raise SystemExit(f"{name} is {t.dtype}, expected float32")
    return model, config


def watched_modules(model, config):
    mods = []
    for i, layer in enumerate(model.model.layers):
        mods.append((layer.self_attn.indexer, "indexer", i))
        if hasattr(layer.mlp, "gate"):
            mods.append((layer.mlp.gate, "router", i))
    return mods


def generate(model, config, prompt, n_decode, forced=None, record_decisions=False):
    """Returns (logits [rows, vocab], tokens fed, TopkWatch)."""
    watch = common.TopkWatch(record_decisions=record_decisions)
    hooks = watch.label_modules(watched_modules(model, config), config.n_routed_experts)
    logits, tokens = run(model, prompt, n_decode, forced, watch)
    for h in hooks:
        h.remove()
    return logits, tokens, watch


@torch.no_grad()
def run(model, prompt, n_decode, forced=None, watch=None):
    """Prefill `prompt`, then feed n_decode tokens one at a time (greedy, or `forced`)."""
    ids = torch.tensor([prompt], dtype=torch.long)
    ctx = watch if watch is not None else _null()
    with ctx:
        out = model(input_ids=ids, use_cache=True)
        rows = [out.logits[0].float()]
        pkv = out.past_key_values
        tokens = list(prompt)
        last = out.logits[0, -1]
        for step in range(n_decode):
            nxt = int(last.argmax()) if forced is None else int(forced[step])
            tokens.append(nxt)
            if watch is not None:
                watch.row_offset = len(prompt) + step
            out = model(input_ids=torch.tensor([[nxt]]), past_key_values=pkv, use_cache=True)
            pkv = out.past_key_values
            last = out.logits[0, -1]
            rows.append(out.logits[0].float())
    return torch.cat(rows, dim=0), tokens


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def robustness(model, config, tokens, prefill, golden, variants=None):
    """Re-run teacher-forced on `tokens` under each variant of perturb.F32_VARIANTS and compare with
    the plain run against perturb.CRITERIA_F32. Returns (summary dict for the json, passed)."""
    prompt, forced = tokens[:prefill], tokens[prefill:]
    base, _, bw = generate(model, config, prompt, len(forced), forced, True)
    out = {"criteria": perturb.CRITERIA_F32, "plain_rerun_bit_identical": bool(torch.equal(base, golden)),
           "variants": {}}
    ok = out["plain_rerun_bit_identical"]
    for v in variants or perturb.F32_VARIANTS:
        with perturb.f32_variant(model, v):
            lg, _, w = generate(model, config, prompt, len(forced), forced, True)
        r = perturb.summarize(base, lg.float(), bw.decision_sets, w.decision_sets, prefill)
        r["passed"] = (r["max_abs_diff"] <= perturb.CRITERIA_F32["max_abs_diff"] and r["decisions_differing"] == 0
                       and not r["argmax_changed_rows"])
        out["variants"][v] = r
        ok = ok and r["passed"]
    vs = list(out["variants"].values())
    rows = range(len(vs[0]["row_cosines"]))
    out["per_row_max_abs_diff"] = [max(r["row_max_abs_diff"][i] for r in vs) for i in rows]
    out["per_row_min_cosine"] = [min(r["row_cosines"][i] for r in vs) for i in rows]
    out["worst"] = {
        "min_row_cosine": min(r["min_cosine"] for r in out["variants"].values()),
        "max_abs_diff": max(r["max_abs_diff"] for r in out["variants"].values()),
        "decisions_differing": sum(r["decisions_differing"] for r in out["variants"].values()),
        "decisions_compared": next(iter(out["variants"].values()))["decisions_compared"],
    }
    out["passed"] = bool(ok)
    return out, bool(ok)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case-dir", required=True)
    ap.add_argument("--prompt-len", type=int, default=40)
    ap.add_argument("--decode", type=int, default=8, help="tokens fed one at a time after the prefill")
    ap.add_argument("--prompt-seed", type=int, default=0)
    ap.add_argument("--out-dir", default=None, help="where to write (default: the case folder)")
    ap.add_argument("--compare", default=None, help="logits .bin to compare with (tokens from its json)")
    ap.add_argument("--tol", type=float, default=1e-4, help="prefill+decode vs full prefill tolerance")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--allow-ties", action="store_true", help="write even if a margin is below threshold")
    ap.add_argument("--perturb", action="store_true",
                    help="robustness check: re-run under every variant of perturb.F32_VARIANTS (teacher-forced), "
                    "require max |diff| <= 1e-4 and identical decisions, record it under `robustness`")
    ap.add_argument("--allow-fragile", action="store_true", help="write even if --perturb finds the case fragile")
    ap.add_argument("--dsrt", default=None,
                    help="path of a dsrt binary: also run `dsrt logits --precision f32` on the golden tokens and "
                    "record the cross-check under robustness.dsrt_cross_check")
    ap.add_argument("--save-decisions", default=None,
                    help="save every indexer/router top-k result (torch.save) for golden_official.py --replay-decisions")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    model, config = load_hf_model(args.case_dir)
    V = config.vocab_size

    forced = None
    if args.compare:
        ref_json = common.golden_json_for(args.compare)
        prompt = ref_json["tokens"][: ref_json["prefill"]]
        forced = ref_json["tokens"][ref_json["prefill"] :]
        n_decode = len(forced)
    else:
        prompt = common.make_prompt(V, args.prompt_len, args.prompt_seed, config.bos_token_id, config.eos_token_id)
        n_decode = args.decode

    logits, tokens, watch = generate(model, config, prompt, n_decode, forced, bool(args.save_decisions))
    P = len(prompt)
    if args.save_decisions:
        os.makedirs(os.path.dirname(os.path.abspath(args.save_decisions)), exist_ok=True)
        torch.save({"tokens": tokens, "prefill": P, "decisions": watch.decisions}, args.save_decisions)
        print(f"saved {len(watch.decisions)} top-k decisions to {args.save_decisions}")

    # prefill-then-decode must equal one prefill over the same tokens
    with torch.no_grad():
        full = model(input_ids=torch.tensor([tokens]), use_cache=False).logits[0].float()
    full_diff = float((full - logits).abs().max())
    print(f"prefill+decode vs full prefill: max |diff| = {full_diff:.3g} over {len(tokens)} rows")
    if full_diff > args.tol:
        raise SystemExit(f"prefill+decode differs from full prefill by {full_diff} > {args.tol}")

    margins = watch.summary()
    am = common.argmax_margins(logits, P)
    print("margins:", margins)
    print("argmax margins:", am)
    problems = common.check_margins(margins, am, "f32") if forced is None else []

    if args.compare:
        ref = common.read_logits(args.compare, V)
        rows = min(ref.shape[0], logits.shape[0])
        cos = common.row_cosines(logits[:rows], ref[:rows])
        for r in range(rows):
            tag = "prefill" if r < P else "decode"
            print(f"row {r:3d} {tag:7s} token {tokens[r]:6d} cosine {float(cos[r]):.7f}")
        print(f"min cosine {float(cos.min()):.7f}  mean {float(cos.mean()):.7f}  "
              f"max |diff| {float((logits[:rows] - ref[:rows]).abs().max()):.4g}")
        if args.out_dir is None:
            return

    if problems and not args.allow_ties:
        raise SystemExit("near-ties, choose another --prompt-seed: " + "; ".join(problems))

    rob = None
    if args.perturb:
        rob, robust = robustness(model, config, tokens, P, logits)
        print(f"plain teacher-forced re-run bit-identical: {rob['plain_rerun_bit_identical']}")
        for v, r in rob["variants"].items():
            print(f"  {v:16s} min cos {r['min_cosine']:.12f}  max|diff| {r['max_abs_diff']:.3g}  decisions differing "
                  f"{r['decisions_differing']}/{r['decisions_compared']}  argmax changed {r['argmax_changed_rows']}  "
                  f"{'ok' if r['passed'] else 'FRAGILE'}")
            del r["row_cosines"], r["row_max_abs_diff"]
        print("per-row max |diff|: " + " ".join(f"{d:.2g}" for d in rob["per_row_max_abs_diff"]))
        print(f"robust: {robust}")
        if not robust and not args.allow_fragile:
            raise SystemExit("the case is fragile under float32 perturbations: choose other seeds")
    if args.dsrt:
        rob = rob if rob is not None else {}
        x = common.dsrt_cross_check(args.dsrt, args.case_dir, tokens, P, "f32", logits, common.DSRT_F32)
        common.print_cross_check(x)
        rob["dsrt_cross_check"] = x

    out_dir = args.out_dir or args.case_dir
    os.makedirs(out_dir, exist_ok=True)
    common.write_logits(os.path.join(out_dir, "logits_f32.bin"), logits)
    meta = {
        "tool": "tools/reference/golden_transformers.py",
        "numerics": "float32, transformers DeepseekV32ForCausalLM (eager attention), weights dequantized to float32",
        "case": os.path.basename(os.path.normpath(args.case_dir)),
        "tokens": tokens,
        "prefill": P,
        "decode_steps": len(tokens) - P,
        "rows": int(logits.shape[0]),
        "vocab": V,
        "next_token": int(logits[-1].argmax()),
        "logits_file": "logits_f32.bin",
        "layout": "float32 little-endian, rows x vocab; row r = logits after feeding tokens[r] at position r",
        "seed": {"checkpoint": common.checkpoint_seed(args.case_dir), "prompt": args.prompt_seed,
                 "torch_manual_seed": 0},
        "checkpoint_sha256": common.checkpoint_digest(args.case_dir),
        "checks": {"prefill_plus_decode_vs_full_prefill_max_abs_diff": full_diff},
        "tie_margins": margins,
        "argmax_margins": am,
        "thresholds": common.THRESHOLDS["f32"],
        "robustness": rob,
        "versions": common.versions(),
        "command": common.command_line(),
    }
    common.write_json(os.path.join(out_dir, "golden_f32.json"), meta)
    print(f"wrote {out_dir}/logits_f32.bin ({logits.shape[0]} x {V}) and golden_f32.json in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
