"""Shared helpers for the dsrt reference-data scripts.

Everything here is plain PyTorch/NumPy: reading the tiny checkpoints written by
make_tiny_checkpoint.py, dequantizing their FP8 blocks, building prompts, watching
every top-k decision a model makes (to prove the golden data has no near-ties),
and writing/reading the logits files.
"""

import hashlib
import json
import math
import os
import platform
import struct
import sys

import numpy as np
import torch

BLOCK = 128

# --------------------------------------------------------------------------- checkpoint


def read_config(case_dir):
    with open(os.path.join(case_dir, "config.json")) as f:
        return json.load(f)


def read_checkpoint(case_dir, device="cpu"):
    """All tensors of a sharded safetensors checkpoint, as stored (dtype kept)."""
    from safetensors.torch import load_file

    with open(os.path.join(case_dir, "model.safetensors.index.json")) as f:
        index = json.load(f)
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        part = load_file(os.path.join(case_dir, shard), device=device)
        for name, t in part.items():
            if index["weight_map"].get(name) != shard:
                raise ValueError(f"{name} found in {shard} but the index says {index['weight_map'].get(name)}")
            tensors[name] = t
    missing = set(index["weight_map"]) - set(tensors)
    if missing:
        raise ValueError(f"tensors listed in the index but absent from the shards: {sorted(missing)[:5]}")
    return tensors


def dequant_block(weight_fp8, scale_inv):
    """W[r][c] = fp8[r][c] * scale_inv[r // 128][c // 128], in float32 (edge blocks may be partial)."""
    n, k = weight_fp8.shape
    s = scale_inv.float()
    if s.shape != (math.ceil(n / BLOCK), math.ceil(k / BLOCK)):
        raise ValueError(f"scale grid {tuple(s.shape)} does not fit weight {tuple(weight_fp8.shape)}")
    s_full = s.repeat_interleave(BLOCK, 0)[:n].repeat_interleave(BLOCK, 1)[:, :k]
    return weight_fp8.float() * s_full


def dequantized_state(tensors):
    """HF-named float32 tensors: every `*.weight` with a `*.weight_scale_inv` companion is dequantized."""
    out = {}
    for name, t in tensors.items():
        if name.endswith(".weight_scale_inv"):
            continue
        scale_name = name + "_scale_inv"
        if scale_name in tensors:
            if t.dtype != torch.float8_e4m3fn:
                raise ValueError(f"{name} has a scale but dtype {t.dtype}")
            out[name] = dequant_block(t, tensors[scale_name])
        else:
            out[name] = t.float()
    return out


# --------------------------------------------------------------------------- prompts


def make_prompt(vocab_size, length, prompt_seed, bos_token_id=0, eos_token_id=1):
    """BOS followed by pseudo-random ordinary tokens (never BOS/EOS), reproducible from the seed."""
    rng = np.random.default_rng(prompt_seed)
    body = rng.integers(2, vocab_size, size=length - 1)
    assert bos_token_id not in body and eos_token_id not in body
    return [int(bos_token_id)] + [int(t) for t in body]


# --------------------------------------------------------------------------- tie watching


class TopkWatch(torch.overrides.TorchFunctionMode):
    """Records the margin of every top-k decision made while active.

    Which decision a `topk` call belongs to is told by a label that forward pre-hooks set
    on the indexer and router modules (`label_modules`). For each row of each call the
    margin is the gap between the k-th and (k+1)-th largest *eligible* scores, where
    masked-out entries (-inf, or the finfo.min transformers uses) are not eligible. A row
    whose eligible count is <= k keeps all of them and has no margin to measure.
    """

    def __init__(self, record_decisions=False, replay=None):
        super().__init__()
        self.label = None
        self.layer = None
        self.records = {"indexer": [], "router_experts": [], "router_groups": []}
        # decision log: every indexer / router top-k result, in call order
        self.record_decisions = record_decisions
        self.decisions = []
        # with record_decisions: (label, layer, first row, [set of chosen eligible indices per row])
        self.decision_sets = []
        self.row_offset = 0  # the generate loops set this to the row of the first query position
        self.replay = list(replay) if replay is not None else None
        self.replay_labels = ("indexer", "router")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in (torch.topk, torch.Tensor.topk) or self.label is None:
            return func(*args, **kwargs)
        x = args[0]
        k = args[1] if len(args) > 1 else kwargs["k"]
        self._record(x, k)
        group_top2 = self.label == "router" and x.dim() == 3
        if self.replay is not None and not group_top2:
            rec = self.replay.pop(0)
            if self.label in self.replay_labels:
                return self._replayed(x, k, rec)
        out = func(*args, **kwargs)
        if self.record_decisions and not group_top2:
            self.decisions.append((self.label, self.layer, int(k), out[1].detach().to("cpu", torch.long)))
            self.decision_sets.append((self.label, self.layer, self.row_offset, _chosen_sets(x, out[1])))
        return out

    def _replayed(self, x, k, rec):
        """Return the recorded decision instead of this run's own (for like-for-like comparisons)."""
        label, layer, k0, idx = rec
        if (label, layer, k0) != (self.label, self.layer, int(k)) or tuple(idx.shape[:-1]) != tuple(x.shape[:-1]):
            raise RuntimeError(f"decision replay out of step: recorded {(label, layer, k0, tuple(idx.shape))}, "
                               f"now {(self.label, self.layer, int(k), tuple(x.shape))}")
        with torch._C.DisableTorchFunction():
            idx = idx.to(x.device)
            vals = torch.gather(x, -1, idx)
        return torch.return_types.topk((vals, idx))

    def _record(self, x, k):
        with torch._C.DisableTorchFunction():
            xs = x.detach().float()
            last = xs.shape[-1]
            rows = xs.reshape(-1, last)
            if self.label == "indexer":
                kind = "indexer"
            elif self.label == "router":
                if x.dim() == 3:  # top-2 inside each group: its ties cannot change the group score
                    return
                kind = "router_groups" if last != self.n_experts else "router_experts"
            else:
                return
            for r in range(rows.shape[0]):
                v = rows[r]
                ok = torch.isfinite(v) & (v > -1e30)
                v = v[ok]
                if v.numel() <= k:
                    continue
                top = torch.topk(v, k + 1).values
                gap = float(top[k - 1] - top[k])
                ref = float(max(abs(top[k - 1]), abs(top[k]), 1e-30))
                spread = float(v.max() - v.min())
                self.records[kind].append(
                    {
                        "layer": self.layer,
                        "gap": gap,
                        "rel_gap": gap / ref,
                        "gap_over_spread": gap / spread if spread > 0 else 0.0,
                    }
                )

    def label_modules(self, modules, n_experts):
        """modules: list of (module, label, layer_index)."""
        self.n_experts = n_experts
        hooks = []
        for mod, label, layer in modules:

            def pre(m, a, kw=None, _label=label, _layer=layer):
                self.label, self.layer = _label, _layer

            def post(m, a, o, _label=label):
                self.label = None

            hooks.append(mod.register_forward_pre_hook(pre))
            hooks.append(mod.register_forward_hook(post))
        return hooks

    def summary(self):
        out = {}
        for kind, recs in self.records.items():
            if not recs:
                out[kind] = {"checked": 0}
                continue
            out[kind] = {
                "checked": len(recs),
                "min_gap": min(r["gap"] for r in recs),
                "min_rel_gap": min(r["rel_gap"] for r in recs),
                "min_gap_over_spread": min(r["gap_over_spread"] for r in recs),
            }
        return out


def _chosen_sets(x, idx):
    """Per row of a top-k call, the set of chosen indices whose score was eligible (finite, not masked):
    which masked entries fill up a row with fewer eligible scores than k is arbitrary and harmless."""
    with torch._C.DisableTorchFunction():
        xs = x.detach().float().reshape(-1, x.shape[-1]).cpu()
        ix = idx.detach().to("cpu", torch.long).reshape(-1, idx.shape[-1])
        vals = torch.gather(xs, 1, ix)
        ok = torch.isfinite(vals) & (vals > -1e30)
        return [frozenset(ix[r][ok[r]].tolist()) for r in range(ix.shape[0])]


def compare_decision_sets(base, other):
    """Compare two runs' decision_sets (same tokens, same call sequence).

    Returns {"compared": number of per-row decisions, "differing": how many differ,
    "rows": sorted logits rows (query positions) where any decision differs,
    "where": up to 5 (label, layer, row) of differing decisions}."""
    if len(base) != len(other):
        raise RuntimeError(f"decision logs of different length: {len(base)} vs {len(other)}")
    compared, differing, rows, where = 0, 0, set(), []
    for (la, ya, ra, sa), (lb, yb, rb, sb) in zip(base, other):
        if (la, ya, ra, len(sa)) != (lb, yb, rb, len(sb)):
            raise RuntimeError(f"decision logs out of step: {(la, ya, ra, len(sa))} vs {(lb, yb, rb, len(sb))}")
        for i, (a, b) in enumerate(zip(sa, sb)):
            compared += 1
            if a != b:
                differing += 1
                rows.add(ra + i)
                if len(where) < 5:
                    where.append((la, ya, ra + i))
    return {"compared": compared, "differing": differing, "rows": sorted(rows), "where": where}


def argmax_margins(logits, prefill):
    """Top-1 minus top-2 logit per row: min over all rows, and over the rows whose argmax was fed back."""
    top2 = torch.topk(logits.float(), 2, dim=-1).values
    gaps = (top2[:, 0] - top2[:, 1]).tolist()
    return {
        "min_all_rows": min(gaps),
        "min_generating_rows": min(gaps[prefill - 1 :]),
    }


# Thresholds a golden file must clear (README: "Tie margins"). The indexer's gap is measured
# against the spread of that row's visible scores; router gaps are absolute (sigmoid units,
# bias included); the argmax gap is in logits, over the rows whose argmax was fed back.
# f32: an implementation that follows the float32 math in another order moves these by ~1e-6.
# fp8: a faithful port of the official numerics (SPEC section 9) differs from it by the odd bf16
# ulp (matmul order), which moves these by ~1e-5..1e-4.
THRESHOLDS = {
    "f32": {"indexer_gap_over_spread": 1e-4, "router_experts_gap": 1e-4, "router_groups_gap": 1e-4,
            "argmax_gap_generating": 1e-2},
    "fp8": {"indexer_gap_over_spread": 3e-4, "router_experts_gap": 3e-4, "router_groups_gap": 3e-4,
            "argmax_gap_generating": 2e-2},
}


def margin_ratios(margins, argmax, numerics):
    """Each margin divided by its threshold (>= 1 passes)."""
    t = THRESHOLDS[numerics]
    r = {}
    ix = margins["indexer"]
    r["indexer"] = ix["min_gap_over_spread"] / t["indexer_gap_over_spread"] if ix["checked"] else 0.0
    for kind in ("router_experts", "router_groups"):
        m = margins[kind]
        r[kind] = m["min_gap"] / t[kind + "_gap"] if m["checked"] else float("inf")
    r["argmax"] = argmax["min_generating_rows"] / t["argmax_gap_generating"]
    return r


def check_margins(margins, argmax, numerics):
    return [f"{k} margin at {v:.3g} x threshold" for k, v in margin_ratios(margins, argmax, numerics).items() if v < 1]


# --------------------------------------------------------------------------- files


def versions():
    import safetensors

    v = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }
    try:
        import transformers

        v["transformers"] = transformers.__version__
    except ImportError:
        pass
    return v


def checkpoint_digest(case_dir):
    """sha256 over the shards, so a golden file names the exact weights it came from."""
    h = hashlib.sha256()
    with open(os.path.join(case_dir, "model.safetensors.index.json")) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    for s in shards:
        with open(os.path.join(case_dir, s), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def checkpoint_seed(case_dir):
    """The generator seed that make_tiny_checkpoint.py stored in the shards' metadata."""
    from safetensors import safe_open

    with open(os.path.join(case_dir, "model.safetensors.index.json")) as f:
        shard = sorted(set(json.load(f)["weight_map"].values()))[0]
    with safe_open(os.path.join(case_dir, shard), "pt") as f:
        meta = f.metadata() or {}
    return int(meta["dsrt_seed"]) if "dsrt_seed" in meta else None


def golden_json_for(logits_path):
    """logits_f32.bin -> golden_f32.json (same folder)."""
    d, b = os.path.split(logits_path)
    name = b.replace("logits_", "golden_", 1)
    name = name[: -len(".bin")] + ".json" if name.endswith(".bin") else name + ".json"
    with open(os.path.join(d, name)) as f:
        return json.load(f)


def write_logits(path, logits):
    arr = logits.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4")
    arr.tofile(path)


def read_logits(path, vocab):
    arr = np.fromfile(path, dtype="<f4")
    assert arr.size % vocab == 0, f"{path}: {arr.size} floats is not a whole number of rows of {vocab}"
    return torch.from_numpy(arr.reshape(-1, vocab).copy())


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def row_cosines(a, b):
    a = a.double()
    b = b.double()
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def command_line():
    return " ".join([os.path.relpath(sys.argv[0]) if os.path.exists(sys.argv[0]) else sys.argv[0]] + sys.argv[1:])


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


# --------------------------------------------------------------------------- dsrt cross-check

# A second, independent implementation (dsrt, the C runtime) run on the golden tokens. Its FP8 path
# follows the official numerics (SPEC section 9) and its f32 path the float32 math, so on a robust
# case it must land this close (dsrt's own acceptance test is looser: cosine >= 0.99 per row).
DSRT_FP8 = {"min_row_cosine": 0.9999}
DSRT_F32 = {"max_abs_diff": 1e-3}


def dsrt_logits(dsrt, case_dir, tokens, prefill, precision, attempts=4):
    """Logits of `dsrt logits` (float32 rows x vocab). Retries a failed run after a minute (the binary
    may be in the middle of a rebuild)."""
    import subprocess
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "logits.bin")
        cmd = [dsrt, "logits", "-m", case_dir, "--tokens", ",".join(str(t) for t in tokens),
               "--prefill", str(prefill), "--precision", precision, "--out", out]
        for attempt in range(attempts):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode == 0 and os.path.exists(out):
                break
            if attempt == attempts - 1:
                raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({r.returncode}): {r.stderr[-2000:]}")
            time.sleep(60)
        cfg = read_config(case_dir)
        return read_logits(out, cfg["vocab_size"])


def dsrt_identity(dsrt):
    import subprocess

    with open(dsrt, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    r = subprocess.run([dsrt, "--help"], capture_output=True, text=True)
    first = (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else ""
    return {"version": first.split(":")[0], "sha256": sha}


def dsrt_cross_check(dsrt, case_dir, tokens, prefill, precision, golden, criteria):
    """dsrt's logits on the golden tokens against the golden logits: row cosines, max |diff|,
    argmax agreement, and the rows that miss `criteria`."""
    got = dsrt_logits(dsrt, case_dir, tokens, prefill, precision)
    if got.shape != golden.shape:
        raise RuntimeError(f"dsrt returned {tuple(got.shape)}, golden is {tuple(golden.shape)}")
    cos = row_cosines(got, golden)
    diff = (got - golden).abs()
    row_diff = diff.max(-1).values
    if "min_row_cosine" in criteria:
        failing = [r for r in range(len(cos)) if float(cos[r]) < criteria["min_row_cosine"]]
    else:
        failing = [r for r in range(len(cos)) if float(row_diff[r]) > criteria["max_abs_diff"]]
    return {
        "dsrt": dsrt_identity(dsrt),
        "precision": precision,
        "criteria": criteria,
        "min_row_cosine": float(cos.min()),
        "mean_row_cosine": float(cos.mean()),
        "min_row_cosine_prefill": float(cos[:prefill].min()),
        "min_row_cosine_decode": float(cos[prefill:].min()) if len(cos) > prefill else None,
        "max_abs_diff": float(diff.max()),
        "argmax_agreement": float((got.argmax(-1) == golden.argmax(-1)).float().mean()),
        "failing_rows": failing,
        "passed": not failing,
    }


def print_cross_check(x):
    print(f"dsrt {x['precision']} vs golden: row cosine min {x['min_row_cosine']:.9f} mean {x['mean_row_cosine']:.9f}  "
          f"max |diff| {x['max_abs_diff']:.3g}  argmax agreement {x['argmax_agreement']:.3f}  "
          f"failing rows {x['failing_rows']}  {'ok' if x['passed'] else 'FAIL'}")
