#!/usr/bin/env python3
"""Trains dsrt's default model (a small DeepSeek-V3.2) on The Devil's Dictionary and exports it in the
official FP8 checkpoint layout.

Train (one H100, about 4 minutes; CPU works for a smoke test with --max-steps):
    python3 tools/default_model/train.py --out $OUT --budget-s 240
Export a saved training state to the model folder (CPU, seconds):
    python3 tools/default_model/train.py --export $OUT --model-dir tools/default_model/model

Model: transformers' DeepseekV32ForCausalLM with the config in CONFIG (MLA, lightning indexer, MoE with
sigmoid group-limited routing, one dense layer first), vocabulary = the tokenizer's (make_tokenizer.py).

Data: every document of the corpus (make_corpus.py: Bierce's preface and each dictionary entry) becomes
`<BOS> text <EOS>`; documents are laid end to end into one token stream. A training sequence is 257 tokens
of it (256 inputs, 256 shifted targets), starting at a document's BOS half of the time and at a random
token otherwise. Every 50th document is held out for the validation loss.

Training: AdamW (betas 0.9/0.95, weight decay 0.1 on matrices), linear warm-up then cosine decay to 10%,
bf16 autocast with float32 master weights, dropout on each attention and FFN output (training only: it is
not part of the architecture). The number of steps fits the wall-clock budget: after a few steps the
step time is measured and the schedule is set to end inside --budget-s. MoE balance is DeepSeek-V3's
auxiliary-loss-free rule: after each step every router's `e_score_correction_bias` moves by --bias-rate
towards equal expert loads. The indexer gets no gradient (transformers computes its top-k under
no_grad) and keeps its initial weights; while a sequence is at most index_topk (256) tokens long it
selects every position, so attention is dense, as in training. The last --qat-frac of the steps train
through the FP8 weight format (straight-through estimator: the forward pass sees every big weight
rounded to e4m3 with its 128x128 power-of-two scale, exactly as the export stores it), so the exported
FP8 model is the model that was trained.

Output (--out): `state-1.safetensors`, `state-2.safetensors` (the float32 weights, in two files, saved
every --save-every-s seconds and at the end), `state.json` (step, losses, config) and the log on stdout.

Export: every big linear (q_a, q_b, kv_a, kv_b, o, indexer wq_b and wk, the dense FFN, each routed
expert, the shared expert) becomes FP8 e4m3 (round to nearest even, saturating at 448) with a float32
`weight_scale_inv` per 128x128 block, 2^ceil(log2(amax/448)) (UE8M0); embeddings, lm_head, norms, the
router weight, `indexer.weights_proj` and `indexer.k_norm` stay bf16, `e_score_correction_bias` f32.
Names follow the official Hugging Face V3.2 layout (per-expert `mlp.experts.{e}.{gate,up,down}_proj`).
One `model.safetensors` (written byte-for-byte reproducibly), `config.json` with `quantization_config`,
`generation_config.json`.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F
import torch.nn.utils.parametrize as P

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

BLOCK = 128
FP8_MAX = 448.0

CONFIG = dict(
    hidden_size=256,
    intermediate_size=512,
    moe_intermediate_size=128,
    num_hidden_layers=4,
    first_k_dense_replace=1,
    num_attention_heads=4,
    q_lora_rank=128,
    kv_lora_rank=128,
    qk_nope_head_dim=64,
    qk_rope_head_dim=32,
    v_head_dim=64,
    n_routed_experts=8,
    n_group=2,
    topk_group=1,
    num_experts_per_tok=2,
    n_shared_experts=1,
    routed_scaling_factor=2.5,
    index_n_heads=4,
    index_head_dim=128,
    index_topk=256,
    rope_theta=10000.0,
    max_position_embeddings=4096,
)

QUANT_CONFIG = {
    "activation_scheme": "dynamic",
    "fmt": "e4m3",
    "quant_method": "fp8",
    "scale_fmt": "ue8m0",
    "weight_block_size": [BLOCK, BLOCK],
}

GENERATION_CONFIG = {
    "_from_model_config": True,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "do_sample": True,
    "temperature": 0.8,
    "top_p": 0.95,
}


def hf_config(vocab_size):
    """config.json as the official V3.2 checkpoint writes it (plain RoPE: no rope_scaling; no MTP layer)."""
    c = CONFIG
    return {
        "architectures": ["DeepseekV32ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "ep_size": 1,
        "first_k_dense_replace": c["first_k_dense_replace"],
        "hidden_act": "silu",
        "hidden_size": c["hidden_size"],
        "index_head_dim": c["index_head_dim"],
        "index_n_heads": c["index_n_heads"],
        "index_topk": c["index_topk"],
        "initializer_range": 0.02,
        "intermediate_size": c["intermediate_size"],
        "kv_lora_rank": c["kv_lora_rank"],
        "max_position_embeddings": c["max_position_embeddings"],
        "model_type": "deepseek_v32",
        "moe_intermediate_size": c["moe_intermediate_size"],
        "moe_layer_freq": 1,
        "n_group": c["n_group"],
        "n_routed_experts": c["n_routed_experts"],
        "n_shared_experts": c["n_shared_experts"],
        "norm_topk_prob": True,
        "num_attention_heads": c["num_attention_heads"],
        "num_experts_per_tok": c["num_experts_per_tok"],
        "num_hidden_layers": c["num_hidden_layers"],
        "num_key_value_heads": c["num_attention_heads"],
        "num_nextn_predict_layers": 0,
        "q_lora_rank": c["q_lora_rank"],
        "qk_nope_head_dim": c["qk_nope_head_dim"],
        "qk_rope_head_dim": c["qk_rope_head_dim"],
        "quantization_config": dict(QUANT_CONFIG),
        "rms_norm_eps": 1e-6,
        "rope_theta": c["rope_theta"],
        "routed_scaling_factor": c["routed_scaling_factor"],
        "scoring_func": "sigmoid",
        "tie_word_embeddings": False,
        "topk_group": c["topk_group"],
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "v_head_dim": c["v_head_dim"],
        "vocab_size": vocab_size,
    }


def check_shapes():
    """Every dimension the official FP8 path quantizes in 1x128 blocks must be a multiple of 128."""
    c = CONFIG
    nh = c["num_attention_heads"]
    must = {
        "hidden_size (input of q_a, kv_a, wk, gate/up, experts)": c["hidden_size"],
        "q_lora_rank (input of q_b, indexer wq_b)": c["q_lora_rank"],
        "kv_lora_rank (latent, input of kv_b)": c["kv_lora_rank"],
        "heads*v_head_dim (input of o_proj)": nh * c["v_head_dim"],
        "intermediate_size (input of down)": c["intermediate_size"],
        "moe_intermediate_size (input of expert down)": c["moe_intermediate_size"],
        "index_head_dim": c["index_head_dim"],
        "heads*(nope+v) (rows of kv_b; the official decode dequantizes it in whole blocks)":
            nh * (c["qk_nope_head_dim"] + c["v_head_dim"]),
    }
    for what, v in must.items():
        if v % BLOCK:
            raise SystemExit(f"{what} = {v} is not a multiple of {BLOCK}")
    assert c["n_routed_experts"] % c["n_group"] == 0


def make_model(vocab_size, attn="sdpa"):
    from transformers import DeepseekV32Config, DeepseekV32ForCausalLM

    cfg = hf_config(vocab_size)
    del cfg["quantization_config"]  # the training model holds float weights
    config = DeepseekV32Config(**cfg)
    config._attn_implementation = attn
    return DeepseekV32ForCausalLM(config)


# --------------------------------------------------------------------------- FP8 weight format

def quantize_blocks(w):
    """[..., n, k] float -> (e4m3 [..., n, k], float32 scale [..., ceil(n/128), ceil(k/128)]).
    scale = 2^ceil(log2(amax/448)) per 128x128 block (a power of two: UE8M0); q = e4m3(clamp(w/scale)),
    round to nearest even, saturating (amax is floored at 1e-12 so that an all-zero block stays finite)."""
    *lead, n, k = w.shape
    nb_r, nb_c = -(-n // BLOCK), -(-k // BLOCK)
    pad = torch.zeros(*lead, nb_r * BLOCK, nb_c * BLOCK, dtype=torch.float32, device=w.device)
    pad[..., :n, :k] = w.float()
    blocks = pad.view(*lead, nb_r, BLOCK, nb_c, BLOCK)
    amax = blocks.abs().amax(dim=(-3, -1)).clamp_min(1e-12)  # [..., nb_r, nb_c]
    scale = torch.exp2(torch.ceil(torch.log2(amax / FP8_MAX)))
    s_full = scale[..., :, None, :, None]
    q = (blocks / s_full).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    q = q.view(*lead, nb_r * BLOCK, nb_c * BLOCK)[..., :n, :k].contiguous()
    return q, scale


def dequantize_blocks(q, scale):
    n, k = q.shape[-2:]
    s = scale.float().repeat_interleave(BLOCK, -2)[..., :n, :].repeat_interleave(BLOCK, -1)[..., :k]
    return q.float() * s


class FakeFP8(torch.nn.Module):
    """Parametrization: the forward pass sees the weight in its exported FP8 form; gradients pass straight
    through to the float32 weight."""

    def forward(self, w):
        q, s = quantize_blocks(w.detach())
        return w + (dequantize_blocks(q, s).to(w.dtype) - w).detach()


def fp8_param_names(model):
    """(module, attribute) of every weight that the export stores as FP8."""
    out = []
    for name, mod in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(mod, torch.nn.Linear) and leaf in (
                "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "wq_b", "wk",
                "gate_proj", "up_proj", "down_proj"):
            out.append((mod, "weight"))
        elif leaf == "experts":
            out.append((mod, "gate_up_proj"))
            out.append((mod, "down_proj"))
    return out


def clean_state(model):
    """float32 state with plain names (parametrizations undone), buffers included."""
    out = {}
    for name, t in model.state_dict().items():
        if ".parametrizations." in name:
            if not name.endswith(".original"):
                continue
            name = name.replace(".parametrizations.", ".").replace(".original", "")
        if "rotary_emb" in name:
            continue
        out[name] = t.detach().float().cpu().contiguous()
    return out


# --------------------------------------------------------------------------- data

def load_data(tokenizer_path):
    from tokenizers import Tokenizer
    from make_corpus import read_documents

    tok = Tokenizer.from_file(tokenizer_path)
    bos, eos = tok.token_to_id("<｜begin▁of▁sentence｜>"), tok.token_to_id("<｜end▁of▁sentence｜>")
    assert (bos, eos) == (0, 1)
    docs = read_documents()
    train, val = [], []
    for i, d in enumerate(docs):
        ids = [bos] + tok.encode(d, add_special_tokens=False).ids + [eos]
        (val if i % 50 == 49 else train).append(ids)
    return tok, train, val


class Stream:
    def __init__(self, docs, seq_len):
        self.tokens = torch.tensor([t for d in docs for t in d], dtype=torch.long)
        starts, at = [], 0
        for d in docs:
            starts.append(at)
            at += len(d)
        self.starts = starts
        self.seq_len = seq_len

    def batch(self, rng, n):
        L = self.seq_len + 1
        last = len(self.tokens) - L
        rows = []
        for _ in range(n):
            if rng.random() < 0.5:
                s = min(rng.choice(self.starts), last)
            else:
                s = rng.randrange(0, last + 1)
            rows.append(self.tokens[s:s + L])
        b = torch.stack(rows)
        return b[:, :-1], b[:, 1:]

    def eval_batches(self, n):
        """Deterministic windows: every document start (as far as the stream allows), n per batch."""
        L = self.seq_len + 1
        last = len(self.tokens) - L
        starts = sorted({min(s, last) for s in self.starts})
        for i in range(0, len(starts), n):
            b = torch.stack([self.tokens[s:s + L] for s in starts[i:i + n]])
            yield b[:, :-1], b[:, 1:]


# --------------------------------------------------------------------------- training

def add_dropout(model, p):
    def attn_hook(mod, inp, out):
        return (F.dropout(out[0], p, mod.training),) + tuple(out[1:])

    def mlp_hook(mod, inp, out):
        return F.dropout(out, p, mod.training)

    for layer in model.model.layers:
        layer.self_attn.register_forward_hook(attn_hook)
        layer.mlp.register_forward_hook(mlp_hook)


class LoadCounter:
    """Counts expert choices of every router (forward hooks), for the bias update."""

    def __init__(self, model, n_experts):
        self.gates = [layer.mlp.gate for layer in model.model.layers if hasattr(layer.mlp, "gate")]
        self.counts = [None] * len(self.gates)
        self.n = n_experts
        for i, g in enumerate(self.gates):
            g.register_forward_hook(self._hook(i))

    def _hook(self, i):
        def hook(mod, inp, out):
            if mod.training:
                c = torch.bincount(out[2].reshape(-1), minlength=self.n).float()
                self.counts[i] = c if self.counts[i] is None else self.counts[i] + c
        return hook

    @torch.no_grad()
    def update_bias(self, rate):
        imbalance = 0.0
        for g, c in zip(self.gates, self.counts):
            if c is None:
                continue
            g.e_score_correction_bias += rate * torch.sign(c.mean() - c)
            imbalance = max(imbalance, float(c.max() / c.mean()))
        self.counts = [None] * len(self.gates)
        return imbalance


@torch.no_grad()
def evaluate(model, stream, device, amp, batch):
    model.eval()
    tot, n = 0.0, 0
    for x, y in stream.eval_batches(batch):
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
        tot += float(loss)
        n += y.numel()
    model.train()
    return tot / n


def save_state(model, out, meta):
    from safetensors.torch import save_file

    st = clean_state(model)
    names = sorted(st)
    half = sum(st[n].numel() for n in names) // 2
    parts, acc = ({}, {}), 0
    for n in names:
        parts[0 if acc < half else 1][n] = st[n]
        acc += st[n].numel()
    for i, p in enumerate(parts):
        tmp = os.path.join(out, f"state-{i + 1}.safetensors.tmp")
        save_file(p, tmp)
        os.replace(tmp, os.path.join(out, f"state-{i + 1}.safetensors"))
    with open(os.path.join(out, "state.json.tmp"), "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(os.path.join(out, "state.json.tmp"), os.path.join(out, "state.json"))


def train(args):
    check_shapes()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = device.type == "cuda" and not args.no_amp
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tok, train_docs, val_docs = load_data(args.tokenizer)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    tr, va = Stream(train_docs, args.seq_len), Stream(val_docs, args.seq_len)
    model = make_model(vocab).to(device).float()
    # the indexer gets no gradient (top-k under no_grad): keep it out of the optimizer
    for n, p in model.named_parameters():
        if ".indexer." in n:
            p.requires_grad_(False)
    add_dropout(model, args.dropout)
    loads = LoadCounter(model, CONFIG["n_routed_experts"])
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")
    n_params = sum(p.numel() for p in model.parameters())
    n_tok = len(tr.tokens)
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), torch "
          f"{torch.__version__}, transformers {__import__('transformers').__version__}, amp {amp}")
    print(f"params {n_params}, vocab {vocab}, train tokens {n_tok} ({len(train_docs)} docs), "
          f"val tokens {len(va.tokens)} ({len(val_docs)} docs), batch {args.batch}x{args.seq_len}")
    os.makedirs(args.out, exist_ok=True)

    t0 = time.time()
    total = args.max_steps
    step, qat_on, last_save, ema, hist, t_cal = 0, False, t0, None, [], t0
    model.train()
    while step < total:
        if step == args.calibrate_at and args.budget_s:
            per = (time.time() - t_cal) / (step - 10)
            left = args.budget_s - (time.time() - t0)
            # QAT steps cost a little more: budget them at 1.3x
            total = min(args.max_steps, step + int(left / (per * (1 + 0.3 * args.qat_frac))))
            print(f"calibrated: {per * 1000:.1f} ms/step -> {total} steps in {args.budget_s} s", flush=True)
        if step == 10:
            t_cal = time.time()
        if args.budget_s and time.time() - t0 > args.budget_s * 1.1 and total > step + 1:
            total = step + 1  # running late: one more step, then the final evaluation and save
            print(f"step {step}: over the time budget, stopping at {total}", flush=True)
        if not qat_on and step >= int(total * (1 - args.qat_frac)) and args.qat_frac > 0 and step >= args.calibrate_at:
            for mod, attr in fp8_param_names(model):
                P.register_parametrization(mod, attr, FakeFP8())
            qat_on = True
            print(f"step {step}: FP8 weight format on (straight-through)", flush=True)
        warm = min(args.warmup, max(1, total // 10))
        lr = args.lr * (step + 1) / warm if step < warm else \
            args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = tr.batch(rng, args.batch)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp), P.cached():
            # cached(): each FP8 parametrization is computed once per step, not once per access
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        imb = loads.update_bias(args.bias_rate)
        step += 1
        if step % args.log_every == 0 or step == total:
            lv = float(loss.detach())
            ema = lv if ema is None else 0.9 * ema + 0.1 * lv
            print(f"step {step}/{total} loss {lv:.4f} (ema {ema:.4f}) lr {lr:.2e} gnorm {float(gn):.2f} "
                  f"max/mean expert load {imb:.2f} {time.time() - t0:.0f}s", flush=True)
            hist.append({"step": step, "loss": lv, "t": round(time.time() - t0, 1)})
        if step % args.eval_every == 0 or step == total:
            vl = evaluate(model, va, device, amp, args.batch)
            print(f"step {step}: val loss {vl:.4f}", flush=True)
            hist.append({"step": step, "val_loss": vl})
        if time.time() - last_save > args.save_every_s or step == total:
            meta = {"step": step, "total_steps": total, "qat": qat_on, "elapsed_s": round(time.time() - t0, 1),
                    "history": hist, "args": vars(args), "config": CONFIG, "vocab_size": vocab,
                    "torch": torch.__version__, "transformers": __import__("transformers").__version__,
                    "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}
            if step == total:
                meta["final_train_loss_f32"] = evaluate(model, tr, device, False, args.batch) \
                    if args.final_f32_eval else None
                meta["final_val_loss_f32"] = evaluate(model, va, device, False, args.batch)
                print(f"final (float32 eval): train {meta['final_train_loss_f32']} val {meta['final_val_loss_f32']}")
            save_state(model, args.out, meta)
            last_save = time.time()
    print(f"done: {step} steps, {time.time() - t0:.1f} s", flush=True)


# --------------------------------------------------------------------------- export

ST_DTYPES = {torch.float8_e4m3fn: "F8_E4M3", torch.bfloat16: "BF16", torch.float32: "F32"}


def save_safetensors(path, tensors, names, metadata):
    """Reproducible safetensors: tensors in the given order, sorted metadata, 8-byte aligned header."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    offset, blobs = 0, []
    for n in names:
        t = tensors[n].contiguous().cpu()
        raw = t.view(torch.uint8).numpy().tobytes()
        header[n] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)


def order_key(name):
    if name.startswith("model.layers."):
        idx, tail = name[len("model.layers."):].split(".", 1)
        return (1, int(idx), tail)
    return (0 if name.startswith("model.embed_tokens") else 2, 0, name)


def load_state(state_dir):
    from safetensors.torch import load_file

    st = {}
    for i in (1, 2):
        st.update(load_file(os.path.join(state_dir, f"state-{i}.safetensors")))
    with open(os.path.join(state_dir, "state.json")) as f:
        meta = json.load(f)
    return st, meta


FP8_LEAVES = ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "wq_b", "wk",
              "gate_proj", "up_proj", "down_proj")


def official_tensors(st):
    """float32 HF-transformers state -> official checkpoint tensors (FP8 + scales, bf16, f32)."""
    out = {}

    def fp8(name, w):
        q, s = quantize_blocks(w)
        out[name + ".weight"] = q
        out[name + ".weight_scale_inv"] = s.float()

    I = CONFIG["moe_intermediate_size"]
    for name, w in st.items():
        if name.endswith("mlp.experts.gate_up_proj"):
            p = name[: -len("gate_up_proj")]
            for e in range(w.shape[0]):
                fp8(f"{p}{e}.gate_proj", w[e, :I])
                fp8(f"{p}{e}.up_proj", w[e, I:])
        elif name.endswith("mlp.experts.down_proj"):
            p = name[: -len("down_proj")]
            for e in range(w.shape[0]):
                fp8(f"{p}{e}.down_proj", w[e])
        elif name.endswith(".e_score_correction_bias"):
            out[name] = w.float()
        elif name.endswith(".weight") and name.split(".")[-2] in FP8_LEAVES:
            fp8(name[: -len(".weight")], w)
        else:
            out[name] = w.to(torch.bfloat16)
    return out


def export(args):
    check_shapes()
    st, meta = load_state(args.export)
    vocab = meta["vocab_size"]
    tensors = official_tensors(st)
    os.makedirs(args.model_dir, exist_ok=True)
    with open(os.path.join(args.model_dir, "config.json"), "w") as f:
        json.dump(hf_config(vocab), f, indent=2)
        f.write("\n")
    with open(os.path.join(args.model_dir, "generation_config.json"), "w") as f:
        json.dump(GENERATION_CONFIG, f, indent=2)
        f.write("\n")
    names = sorted(tensors, key=order_key)
    md = {"format": "pt", "dsrt_tool": "tools/default_model/train.py",
          "dsrt_training": f"{meta['step']} steps, The Devil's Dictionary (Ambrose Bierce, 1911, public domain)"}
    path = os.path.join(args.model_dir, "model.safetensors")
    save_safetensors(path, tensors, names, md)
    n_fp8 = sum(1 for n in names if tensors[n].dtype == torch.float8_e4m3fn)
    print(f"{path}: {len(names)} tensors ({n_fp8} FP8), {os.path.getsize(path)} bytes; step {meta['step']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="training: where the state and log go")
    ap.add_argument("--export", metavar="STATE_DIR", help="export the state saved in STATE_DIR, then exit")
    ap.add_argument("--model-dir", default=os.path.join(HERE, "model"))
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "model", "tokenizer.json"))
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=1911)
    ap.add_argument("--budget-s", type=float, default=240.0, help="wall-clock budget of the training loop")
    ap.add_argument("--max-steps", type=int, default=20000)
    ap.add_argument("--calibrate-at", type=int, default=40, help="step at which the step time is measured")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--bias-rate", type=float, default=1e-3)
    ap.add_argument("--qat-frac", type=float, default=0.2)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--save-every-s", type=float, default=60.0)
    ap.add_argument("--final-f32-eval", action="store_true", help="also a float32 loss over the training set")
    ap.add_argument("--no-amp", action="store_true")
    args = ap.parse_args()
    if args.export:
        export(args)
    elif args.out:
        train(args)
    else:
        ap.error("give --out (train) or --export STATE_DIR")


if __name__ == "__main__":
    main()
