#!/usr/bin/env python3
"""FP8 golden logits from DeepSeek's official V3.2 inference code.

    python tools/reference/golden_official.py --official-model /work/ref-official/model.py \
        --case-dir tests/data/tiny-yarn --prompt-len 20 --decode 8 --prompt-seed 15 --perturb

--official-model is `inference/model.py` of DeepSeek-V3.2-Exp as fixed on 2025-11-17 (indexer
RoPE non-interleaved); transformers keeps that file at
src/transformers/models/deepseek_v32/deepseek_files/inference/model.py. It is imported unmodified
and is never part of this project. Its TileLang kernels and the fast_hadamard_transform package
are replaced by the PyTorch stand-ins in tools/reference/standins/ (same numerics).

The model runs with torch.set_default_dtype(torch.bfloat16), ModelArgs filled from config.json
(dtype fp8, the config's scale_fmt). max_seq_len is picked so that YaRN (and its softmax mscale)
is on exactly when the config has rope_scaling: the official code turns it on only when
max_seq_len > original_seq_len.

Rows: the official forward returns the last position's logits only, so the prefill calls the
model's own modules in forward's order (embed, each block with its residual, the final norm,
the fp32 head) to get every position; the script checks that its last row equals what
forward(prompt) returns. Decode steps go through forward(tokens, start_pos).

Writes logits_fp8.bin + golden_fp8.json (same layout as the float32 ones).
--compare FILE re-runs with the tokens recorded beside FILE (teacher-forced) and prints per-row
cosines against FILE's logits (CPU vs GPU, or FP8 vs the float32 golden).
--perturb re-runs teacher-forced under every variant of perturb.OFFICIAL_VARIANTS (other reduction
orders and precisions, rounding jitter, one-ulp noise) and refuses to write a case whose logits or
top-k decisions move more than perturb.CRITERIA_FP8 allows; --held-out N adds N fresh noise runs
(recorded, not a criterion); --dsrt BIN records how a dsrt binary's FP8 logits compare (README.md,
"Robustness").
"""

import argparse
import hashlib
import importlib.util
import os
import socket
import sys
import time

import torch
import torch.distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
import perturb  # noqa: E402

# --------------------------------------------------------------------------- names

_ATTN = {
    "q_a_proj": "wq_a",
    "q_a_layernorm": "q_norm",
    "q_b_proj": "wq_b",
    "kv_a_proj_with_mqa": "wkv_a",
    "kv_a_layernorm": "kv_norm",
    "kv_b_proj": "wkv_b",
    "o_proj": "wo",
}
_INDEXER = {"wq_b", "wk", "k_norm", "weights_proj"}
_FFN = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}


def _leaf(x):
    return {"weight": "weight", "weight_scale_inv": "scale", "bias": "bias"}[x]


def official_name(name, n_layers):
    """HF checkpoint name -> official module name; None for the MTP layer (not in the official model)."""
    if name == "model.embed_tokens.weight":
        return "embed.weight"
    if name == "model.norm.weight":
        return "norm.weight"
    if name == "lm_head.weight":
        return "head.weight"
    parts = name.split(".")
    if parts[:2] != ["model", "layers"]:
        raise KeyError(name)
    layer = int(parts[2])
    if layer >= n_layers:
        return None
    rest = parts[3:]
    pre = f"layers.{layer}."
    if rest == ["input_layernorm", "weight"]:
        return pre + "attn_norm.weight"
    if rest == ["post_attention_layernorm", "weight"]:
        return pre + "ffn_norm.weight"
    if rest[0] == "self_attn":
        if rest[1] == "indexer" and rest[2] in _INDEXER and len(rest) == 4:
            return pre + f"attn.indexer.{rest[2]}.{_leaf(rest[3])}"
        if rest[1] in _ATTN and len(rest) == 3:
            return pre + f"attn.{_ATTN[rest[1]]}.{_leaf(rest[2])}"
    if rest[0] == "mlp":
        if rest[1] in _FFN and len(rest) == 3:
            return pre + f"ffn.{_FFN[rest[1]]}.{_leaf(rest[2])}"
        if rest[1] == "gate" and rest[2:] == ["weight"]:
            return pre + "ffn.gate.weight"
        if rest[1] == "gate" and rest[2:] == ["e_score_correction_bias"]:
            return pre + "ffn.gate.bias"
        if rest[1] == "experts" and len(rest) == 5 and rest[3] in _FFN:
            return pre + f"ffn.experts.{int(rest[2])}.{_FFN[rest[3]]}.{_leaf(rest[4])}"
        if rest[1] == "shared_experts" and len(rest) == 4 and rest[2] in _FFN:
            return pre + f"ffn.shared_experts.{_FFN[rest[2]]}.{_leaf(rest[3])}"
    raise KeyError(name)


# --------------------------------------------------------------------------- setup


def import_official(path):
    standins = os.path.join(HERE, "standins")
    sys.path.insert(0, standins)  # `from kernel import ...` and `fast_hadamard_transform` resolve here
    spec = importlib.util.spec_from_file_location("deepseek_official_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import kernel  # noqa: F401  (make sure the stand-in, not a real TileLang kernel, was picked up)

    if os.path.dirname(os.path.abspath(kernel.__file__)) != standins:
        raise SystemExit(f"kernel resolved to {kernel.__file__}, expected the stand-in in {standins}")
    return mod


def init_single_rank(device):
    """The indexer calls dist.broadcast: a one-rank group on loopback satisfies it."""
    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)


def model_args(M, cfg, total_len):
    rs = cfg.get("rope_scaling")
    q = cfg.get("quantization_config")
    kw = dict(
        max_batch_size=1,
        dtype="fp8" if q else "bf16",
        scale_fmt=q.get("scale_fmt") if q else None,
        vocab_size=cfg["vocab_size"],
        dim=cfg["hidden_size"],
        inter_dim=cfg["intermediate_size"],
        moe_inter_dim=cfg["moe_intermediate_size"],
        n_layers=cfg["num_hidden_layers"],
        n_dense_layers=cfg["first_k_dense_replace"],
        n_heads=cfg["num_attention_heads"],
        n_routed_experts=cfg["n_routed_experts"],
        n_shared_experts=cfg["n_shared_experts"],
        n_activated_experts=cfg["num_experts_per_tok"],
        n_expert_groups=cfg["n_group"],
        n_limited_groups=cfg["topk_group"],
        score_func=cfg.get("scoring_func", "sigmoid"),
        route_scale=cfg["routed_scaling_factor"],
        q_lora_rank=cfg["q_lora_rank"],
        kv_lora_rank=cfg["kv_lora_rank"],
        qk_nope_head_dim=cfg["qk_nope_head_dim"],
        qk_rope_head_dim=cfg["qk_rope_head_dim"],
        v_head_dim=cfg["v_head_dim"],
        rope_theta=cfg.get("rope_theta", 10000.0),
        index_n_heads=cfg["index_n_heads"],
        index_head_dim=cfg["index_head_dim"],
        index_topk=cfg["index_topk"],
    )
    if rs:
        if rs.get("type", rs.get("rope_type")) != "yarn":
            raise SystemExit(f"rope_scaling {rs} is not yarn")
        # the official code has one mscale, used as transformers uses mscale_all_dim (softmax scale)
        mscale = rs.get("mscale_all_dim", rs.get("mscale", 1.0))
        if rs.get("mscale", mscale) != mscale:
            raise SystemExit("mscale != mscale_all_dim: the official ModelArgs cannot express that")
        orig = rs["original_max_position_embeddings"]
        kw.update(
            original_seq_len=orig,
            rope_factor=rs["factor"],
            beta_fast=rs.get("beta_fast", 32),
            beta_slow=rs.get("beta_slow", 1),
            mscale=mscale,
            max_seq_len=max(total_len, orig + 1),  # > original_seq_len: YaRN and mscale on
        )
    else:
        kw.update(max_seq_len=total_len, original_seq_len=max(total_len, cfg["max_position_embeddings"]))
    args = M.ModelArgs(**kw)
    assert (args.max_seq_len > args.original_seq_len) == bool(rs)
    return args


def build_model(M, args, case_dir, device):
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = M.Transformer(args)
        # the official Gate creates its correction bias only when dim == 7168
        for layer in model.layers:
            gate = getattr(layer.ffn, "gate", None)
            if gate is not None and gate.bias is None:
                gate.bias = torch.nn.Parameter(torch.empty(args.n_routed_experts, dtype=torch.float32))
    raw = common.read_checkpoint(case_dir, device=device)
    state = {}
    for name, t in raw.items():
        oname = official_name(name, args.n_layers)
        if oname is not None:
            state[oname] = t
    expected = model.state_dict()
    for k, t in state.items():
        if k not in expected:
            raise SystemExit(f"{k} has no place in the official model")
        if expected[k].shape != t.shape:
            raise SystemExit(f"{k}: checkpoint {tuple(t.shape)} vs model {tuple(expected[k].shape)}")
    model.load_state_dict(state, strict=True)  # copies in place: weight.scale stays the loaded scale
    for mod in model.modules():
        w = getattr(mod, "weight", None)
        if isinstance(w, torch.Tensor) and w.dtype == torch.float8_e4m3fn:
            assert w.scale is mod.scale, "weight.scale no longer points at the loaded scale"
    model.eval()
    return model


def watched_modules(model):
    mods = []
    for i, layer in enumerate(model.layers):
        mods.append((layer.attn.indexer, "indexer", i))
        if hasattr(layer.ffn, "gate"):
            mods.append((layer.ffn.gate, "router", i))
    return mods


@torch.inference_mode()
def prefill_all_positions(model, tokens):
    """Transformer.forward, but the head applied to every position."""
    seqlen = tokens.size(1)
    freqs_cis = model.freqs_cis[0:seqlen]
    mask = torch.full((seqlen, seqlen), float("-inf"), device=tokens.device).triu_(1) if seqlen > 1 else None
    h, residual = model.embed(tokens), None
    for layer in model.layers:
        h, residual = layer(h, residual, 0, freqs_cis, mask)
    h, _ = model.norm(h, residual)
    return model.head(h.float())[0]


def generate(model, margs, prompt, n_decode, forced=None, device="cpu", replay=None, record_decisions=False,
             check_forward=True):
    """Per-position prefill of `prompt`, then n_decode single-token steps (greedy, or `forced`).

    Returns (logits [rows, vocab] float32 on CPU, tokens fed, TopkWatch, last-row check)."""
    P = len(prompt)
    watch = common.TopkWatch(record_decisions=record_decisions, replay=replay)
    if os.environ.get("DSRT_REPLAY_ONLY"):  # debugging aid: replay only these labels (comma-separated)
        watch.replay_labels = tuple(os.environ["DSRT_REPLAY_ONLY"].split(","))
    hooks = watch.label_modules(watched_modules(model), margs.n_routed_experts)
    tok = torch.tensor([prompt], dtype=torch.long, device=device)
    with watch:
        pre = prefill_all_positions(model, tok)
    fwd_diff = None
    if replay is None and check_forward:
        # forward() over the prompt must give the last row (it rewrites the same cache entries)
        last = model.forward(tok, 0)[0]
        fwd_diff = float((last.float() - pre[-1].float()).abs().max())
        if fwd_diff > 1e-5:
            raise SystemExit(f"the per-position prefill does not reproduce forward(): {fwd_diff}")
    rows = [pre.float().cpu()]
    tokens = list(prompt)
    cur = pre[-1]
    with watch:
        for step in range(n_decode):
            nxt = int(cur.argmax()) if forced is None else int(forced[step])
            tokens.append(nxt)
            watch.row_offset = P + step
            cur = model.forward(torch.tensor([[nxt]], device=device), P + step)[0]
            rows.append(cur.float().cpu().unsqueeze(0))
    for h in hooks:
        h.remove()
    return torch.cat(rows, dim=0), tokens, watch, fwd_diff


def robustness(M, model, margs, tokens, prefill, golden, device="cpu", variants=None, stop_early=False, trace=True):
    """Re-run teacher-forced on `tokens` under each perturbation variant (perturb.py); compare with the
    plain run against perturb.CRITERIA_FP8.

    Returns (summary dict for the json, passed). The plain teacher-forced re-run must reproduce
    `golden` (the golden run, greedy on the same tokens) bit for bit."""
    prompt, forced = tokens[:prefill], tokens[prefill:]
    with perturb.QuantTrace(M, trace) as base_trace:
        base, _, base_watch, _ = generate(model, margs, prompt, len(forced), forced, device,
                                          record_decisions=True, check_forward=False)
    out = {"criteria": perturb.CRITERIA_FP8, "ulp_noise_rate": perturb.ULP_NOISE_RATE,
           "plain_rerun_bit_identical": bool(torch.equal(base, golden)), "variants": {}}
    ok = out["plain_rerun_bit_identical"]
    for v in variants or perturb.OFFICIAL_VARIANTS:
        with perturb.official_variant(M, v, model, margs), perturb.QuantTrace(M, trace) as vtrace:
            lg, _, w, _ = generate(model, margs, prompt, len(forced), forced, device,
                                   record_decisions=True, check_forward=False)
        r = perturb.summarize(base, lg, base_watch.decision_sets, w.decision_sets, prefill)
        if trace:
            r["fp8_activations_changed"] = base_trace.diff(vtrace)
        r["passed"] = perturb.passes_fp8(v, r)
        out["variants"][v] = r
        ok = ok and r["passed"]
        if stop_early and not ok:
            break
    out.update(perturb.worst_of(out["variants"], prefill))
    out["passed"] = bool(ok)
    return out, bool(ok)


def held_out_stress(M, model, margs, tokens, prefill, golden, n, device="cpu", seed0=None):
    """The stress test once more with n fresh noise seeds (from seed0, default perturb.HELD_OUT_SEED0):
    the case was chosen because it passed the first ones, so only fresh seeds estimate how often a
    few random FP8 differences change a decision."""
    seed0 = perturb.HELD_OUT_SEED0 if seed0 is None else seed0
    vs = [f"ulp_noise_{seed0 + i}" for i in range(n)]
    rob, _ = robustness(M, model, margs, tokens, prefill, golden, device, variants=vs, trace=False)
    rs = list(rob["variants"].values())
    return {
        "runs": n,
        "seeds": f"{seed0}..{seed0 + n - 1}",
        "runs_with_decision_changes": sum(1 for r in rs if r["decisions_differing"]),
        "runs_failing_stress_criteria": sum(1 for r in rs if not r["passed"]),
        "min_row_cosine_without_decision_changes": min(
            (r["min_cosine"] for r in rs if not r["decisions_differing"]), default=None),
    }


def print_robustness(rob):
    print(f"plain teacher-forced re-run bit-identical: {rob['plain_rerun_bit_identical']}")
    for v, r in rob["variants"].items():
        ch = r.get("fp8_activations_changed") or r.get("changed")
        extra = f"  fp8 values changed {ch['values']}/{ch['of_values']}, scales {ch['scales']}" if ch else ""
        print(f"  {v:16s} min cos {r['min_cosine']:.9f}  max|diff| {r['max_abs_diff']:.3g}  "
              f"decisions differing {r['decisions_differing']}/{r['decisions_compared']} rows {r['decision_rows']}  "
              f"argmax changed {r['argmax_changed_rows']}{extra}  {'ok' if r['passed'] else 'FRAGILE'}")
    for k in ("worst_natural", "worst_stress"):
        if k in rob:
            print(f"{k}: {rob[k]}")
    for k in ("natural", "stress"):
        if "per_row_min_cosine_" + k in rob:
            print(f"per-row min cosine, {k}: " + " ".join(f"{c:.6f}" for c in rob["per_row_min_cosine_" + k]))
    print(f"rows with a decision change: {rob['rows_with_decision_changes']}; rows below cosine 0.9999: "
          f"natural {rob['rows_below_0.9999_natural']}, stress {rob['rows_below_0.9999_stress']}")
    print(f"robust: {rob['passed']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official-model", required=True, help="path of the official inference/model.py")
    ap.add_argument("--case-dir", required=True)
    ap.add_argument("--prompt-len", type=int, default=40)
    ap.add_argument("--decode", type=int, default=8)
    ap.add_argument("--prompt-seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out-dir", default=None, help="where to write (default: the case folder)")
    ap.add_argument("--compare", default=None, help="logits .bin to compare with (tokens from its json)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--allow-ties", action="store_true")
    ap.add_argument("--perturb", action="store_true",
                    help="robustness check: re-run under every variant of perturb.py (teacher-forced), "
                    "require row cosine >= 0.99999 and identical decisions, record it under `robustness`")
    ap.add_argument("--allow-fragile", action="store_true", help="write even if --perturb finds the case fragile")
    ap.add_argument("--held-out", type=int, default=0, metavar="N",
                    help="with --perturb: also run the stress test with N fresh noise seeds and record how many "
                    "runs changed a decision (information, not a criterion)")
    ap.add_argument("--dsrt", default=None,
                    help="path of a dsrt binary: also run `dsrt logits --precision fp8` on the golden tokens and "
                    "record the cross-check under robustness.dsrt_cross_check")
    ap.add_argument("--replay-decisions", default=None,
                    help="use the indexer/router top-k results saved by golden_transformers.py --save-decisions "
                    "(same tokens) instead of this run's own: isolates numerics from discrete choices")
    args = ap.parse_args()

    t0 = time.time()
    torch.set_num_threads(args.threads)
    cfg = common.read_config(args.case_dir)
    V = cfg["vocab_size"]
    forced = None
    replay = None
    if args.replay_decisions:
        rec = torch.load(args.replay_decisions)
        replay = rec["decisions"]
        prompt = rec["tokens"][: rec["prefill"]]
        forced = rec["tokens"][rec["prefill"] :]
        n_decode = len(forced)
    elif args.compare:
        ref_json = common.golden_json_for(args.compare)
        prompt = ref_json["tokens"][: ref_json["prefill"]]
        forced = ref_json["tokens"][ref_json["prefill"] :]
        n_decode = len(forced)
    else:
        prompt = common.make_prompt(V, args.prompt_len, args.prompt_seed, cfg.get("bos_token_id", 0),
                                    cfg.get("eos_token_id", 1))
        n_decode = args.decode
    P = len(prompt)

    M = import_official(args.official_model)
    init_single_rank(args.device)
    margs = model_args(M, cfg, P + n_decode)
    model = build_model(M, margs, args.case_dir, args.device)

    logits, tokens, watch, fwd_diff = generate(model, margs, prompt, n_decode, forced, args.device, replay)
    if fwd_diff is not None:
        print(f"per-position prefill, last row vs forward(): max |diff| = {fwd_diff:.3g}")
    margins = watch.summary()
    am = common.argmax_margins(logits, P)
    print("margins:", margins)
    print("argmax margins:", am)
    problems = common.check_margins(margins, am, "fp8") if forced is None else []
    if replay is not None:
        assert not watch.replay, f"{len(watch.replay)} recorded decisions were not used"
        if not args.compare:
            raise SystemExit("--replay-decisions is for comparisons: give --compare FILE")

    if args.compare:
        ref = common.read_logits(args.compare, V)
        n = min(ref.shape[0], logits.shape[0])
        cos = common.row_cosines(logits[:n], ref[:n])
        for r in range(n):
            tag = "prefill" if r < P else "decode"
            print(f"row {r:3d} {tag:7s} token {tokens[r]:6d} cosine {float(cos[r]):.7f}")
        print(f"min cosine {float(cos.min()):.7f}  mean {float(cos.mean()):.7f}  "
              f"max |diff| {float((logits[:n] - ref[:n]).abs().max()):.4g}")
        if args.out_dir is None:
            return

    if problems and not args.allow_ties:
        raise SystemExit("near-ties, choose another --prompt-seed: " + "; ".join(problems))

    rob = None
    if args.perturb:
        rob, robust = robustness(M, model, margs, tokens, P, logits, args.device)
        print_robustness(rob)
        for r in rob["variants"].values():
            del r["row_cosines"], r["row_max_abs_diff"]
        if args.held_out:
            rob["held_out_stress"] = held_out_stress(M, model, margs, tokens, P, logits, args.held_out, args.device)
            print(f"held-out stress: {rob['held_out_stress']}")
        if not robust and not args.allow_fragile:
            raise SystemExit("the case is fragile under reduction-order perturbations: choose other seeds")
    if args.dsrt:
        rob = rob if rob is not None else {}
        x = common.dsrt_cross_check(args.dsrt, args.case_dir, tokens, P, "fp8", logits, common.DSRT_FP8)
        common.print_cross_check(x)
        if "sensitive_rows" in rob:
            # a failing row that no perturbation of the official code moved points at dsrt, not at the case
            x["failing_rows_not_sensitive_in_official"] = [
                r for r in x["failing_rows"] if r not in rob["sensitive_rows"]]
        rob["dsrt_cross_check"] = x

    out_dir = args.out_dir or args.case_dir
    os.makedirs(out_dir, exist_ok=True)
    common.write_logits(os.path.join(out_dir, "logits_fp8.bin"), logits)
    with open(args.official_model, "rb") as f:
        official_sha = hashlib.sha256(f.read()).hexdigest()
    meta = {
        "tool": "tools/reference/golden_official.py",
        "numerics": "FP8 (DeepSeek-V3.2-Exp inference/model.py as fixed 2025-11-17, bf16 default dtype, "
        "PyTorch stand-ins for act_quant/fp8_gemm/fp8_index/hadamard_transform)",
        "case": os.path.basename(os.path.normpath(args.case_dir)),
        "tokens": tokens,
        "prefill": P,
        "decode_steps": len(tokens) - P,
        "rows": int(logits.shape[0]),
        "vocab": V,
        "next_token": int(logits[-1].argmax()),
        "logits_file": "logits_fp8.bin",
        "layout": "float32 little-endian, rows x vocab; row r = logits after feeding tokens[r] at position r",
        "seed": {"checkpoint": common.checkpoint_seed(args.case_dir), "prompt": args.prompt_seed},
        "checkpoint_sha256": common.checkpoint_digest(args.case_dir),
        "official_model_sha256": official_sha,
        "device": args.device,
        "model_args": {k: getattr(margs, k) for k in margs.__dataclass_fields__},
        "yarn_on": margs.max_seq_len > margs.original_seq_len,
        "softmax_scale": model.layers[0].attn.softmax_scale,
        "checks": {"last_prefill_row_vs_forward_max_abs_diff": fwd_diff},
        "tie_margins": margins,
        "argmax_margins": am,
        "thresholds": common.THRESHOLDS["fp8"],
        "robustness": rob,
        "versions": common.versions(),
        "command": common.command_line(),
    }
    common.write_json(os.path.join(out_dir, "golden_fp8.json"), meta)
    print(f"wrote {out_dir}/logits_fp8.bin ({logits.shape[0]} x {V}) and golden_fp8.json in {time.time() - t0:.1f} s")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
