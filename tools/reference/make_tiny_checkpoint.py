#!/usr/bin/env python3
"""Write a tiny DeepSeek-V3.2 checkpoint in the official Hugging Face layout (SPEC section 7).

    python tools/reference/make_tiny_checkpoint.py --case tiny-yarn  --out tests/data/tiny-yarn
    python tools/reference/make_tiny_checkpoint.py --case tiny-plain --out tests/data/tiny-plain

Output: config.json, generation_config.json, model-00001-of-00002.safetensors,
model-00002-of-00002.safetensors, model.safetensors.index.json.

Weights are random (NumPy PCG64, fixed seed) and scaled so that activations keep unit-ish
RMS through the layers and the logits have a real spread. Every big linear is stored as
FP8 e4m3 with a float32 `weight_scale_inv` grid of 128x128 blocks whose values are powers
of two (UE8M0); each block gets its own random magnitude so that the scales differ from
block to block and a loader that mixes them up is caught.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BLOCK  # noqa: E402

FP8_MAX = 448.0

QUANT_CONFIG = {
    "activation_scheme": "dynamic",
    "fmt": "e4m3",
    "quant_method": "fp8",
    "scale_fmt": "ue8m0",
    "weight_block_size": [128, 128],
}

CASES = {
    "tiny-yarn": dict(
        seed=1,
        vocab_size=512,
        hidden_size=128,
        intermediate_size=256,
        moe_intermediate_size=128,
        num_hidden_layers=2,
        first_k_dense_replace=1,
        num_attention_heads=4,
        q_lora_rank=128,
        kv_lora_rank=128,
        qk_nope_head_dim=64,
        qk_rope_head_dim=32,
        v_head_dim=32,
        n_routed_experts=8,
        n_group=4,
        topk_group=2,
        num_experts_per_tok=2,
        n_shared_experts=1,
        routed_scaling_factor=2.5,
        index_n_heads=8,
        index_head_dim=128,
        index_topk=16,
        rope_theta=10000.0,
        rope_scaling={
            "beta_fast": 32,
            "beta_slow": 1,
            "factor": 40,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 32,
            "type": "yarn",
        },
        max_position_embeddings=1280,
    ),
    "tiny-plain": dict(
        seed=20250929,
        vocab_size=512,
        hidden_size=128,
        intermediate_size=256,
        moe_intermediate_size=128,
        num_hidden_layers=2,
        first_k_dense_replace=1,
        num_attention_heads=2,
        q_lora_rank=128,
        kv_lora_rank=256,
        qk_nope_head_dim=128,
        qk_rope_head_dim=64,
        v_head_dim=64,
        n_routed_experts=8,
        n_group=2,
        topk_group=1,
        num_experts_per_tok=2,
        n_shared_experts=1,
        routed_scaling_factor=2.5,
        index_n_heads=8,
        index_head_dim=128,
        index_topk=12,
        rope_theta=10000.0,
        rope_scaling=None,
        max_position_embeddings=2048,
    ),
}


def hf_config(c):
    cfg = {
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
        "num_nextn_predict_layers": 1,
        "q_lora_rank": c["q_lora_rank"],
        "qk_nope_head_dim": c["qk_nope_head_dim"],
        "qk_rope_head_dim": c["qk_rope_head_dim"],
        "quantization_config": dict(QUANT_CONFIG),
        "rms_norm_eps": 1e-6,
        "rope_scaling": c["rope_scaling"],
        "rope_theta": c["rope_theta"],
        "routed_scaling_factor": c["routed_scaling_factor"],
        "scoring_func": "sigmoid",
        "tie_word_embeddings": False,
        "topk_group": c["topk_group"],
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "v_head_dim": c["v_head_dim"],
        "vocab_size": c["vocab_size"],
    }
    if c["rope_scaling"] is None:
        del cfg["rope_scaling"]
    return cfg


def check_shapes(c):
    """Every dimension the official code quantizes in 1x128 blocks must be a multiple of 128."""
    nh = c["num_attention_heads"]
    must = {
        "hidden_size (input of q_a, kv_a, wk, gate/up)": c["hidden_size"],
        "q_lora_rank (input of q_b, indexer wq_b)": c["q_lora_rank"],
        "kv_lora_rank (latent, input of kv_b)": c["kv_lora_rank"],
        "heads*v_head_dim (input of o_proj)": nh * c["v_head_dim"],
        "intermediate_size (input of down)": c["intermediate_size"],
        "moe_intermediate_size (input of expert down)": c["moe_intermediate_size"],
        "index_head_dim": c["index_head_dim"],
        # the official decode path dequantizes kv_b with full 128x128 blocks
        "heads*(nope+v) (rows of kv_b)": nh * (c["qk_nope_head_dim"] + c["v_head_dim"]),
    }
    for what, v in must.items():
        if v % BLOCK:
            raise SystemExit(f"{what} = {v} is not a multiple of {BLOCK}")
    assert c["n_routed_experts"] % c["n_group"] == 0


class Weights:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.tensors = {}

    def normal(self, shape, std):
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def bf16(self, name, arr):
        self.tensors[name] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(torch.bfloat16)

    def f32(self, name, arr):
        self.tensors[name] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))

    def norm(self, name, n):
        # around 1, so that a runtime that ignores the weight is caught
        self.bf16(name, 1.0 + self.normal((n,), 0.1))

    def fp8_linear(self, name, n_out, n_in, gain=1.0):
        """FP8 e4m3 weight [n_out, n_in] + power-of-two scale grid; std ~ gain / sqrt(n_in)."""
        w = self.normal((n_out, n_in), gain / math.sqrt(n_in))
        nb_r, nb_c = math.ceil(n_out / BLOCK), math.ceil(n_in / BLOCK)
        # one random magnitude per block (log-uniform in [1/2, 2]) so block scales differ
        blk = np.exp2(self.rng.uniform(-1.0, 1.0, size=(nb_r, nb_c))).astype(np.float32)
        w = w * np.repeat(np.repeat(blk, BLOCK, 0), BLOCK, 1)[:n_out, :n_in]
        wt = torch.from_numpy(w)
        scale = torch.empty(nb_r, nb_c, dtype=torch.float32)
        q = torch.empty(n_out, n_in, dtype=torch.float8_e4m3fn)
        for i in range(nb_r):
            for j in range(nb_c):
                b = wt[i * BLOCK : (i + 1) * BLOCK, j * BLOCK : (j + 1) * BLOCK]
                amax = float(b.abs().max())
                s = 2.0 ** math.ceil(math.log2(amax / FP8_MAX))  # UE8M0: a power of two
                scale[i, j] = s
                q[i * BLOCK : (i + 1) * BLOCK, j * BLOCK : (j + 1) * BLOCK] = (
                    (b / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
                )
        self.tensors[name + ".weight"] = q
        self.tensors[name + ".weight_scale_inv"] = scale


def decoder_layer(W, c, p, moe):
    H = c["hidden_size"]
    nh = c["num_attention_heads"]
    qk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    W.norm(p + "input_layernorm.weight", H)
    W.norm(p + "post_attention_layernorm.weight", H)
    a = p + "self_attn."
    W.fp8_linear(a + "q_a_proj", c["q_lora_rank"], H)
    W.norm(a + "q_a_layernorm.weight", c["q_lora_rank"])
    W.fp8_linear(a + "q_b_proj", nh * qk, c["q_lora_rank"])
    W.fp8_linear(a + "kv_a_proj_with_mqa", c["kv_lora_rank"] + c["qk_rope_head_dim"], H)
    W.norm(a + "kv_a_layernorm.weight", c["kv_lora_rank"])
    W.fp8_linear(a + "kv_b_proj", nh * (c["qk_nope_head_dim"] + c["v_head_dim"]), c["kv_lora_rank"])
    W.fp8_linear(a + "o_proj", H, nh * c["v_head_dim"])
    ix = a + "indexer."
    W.fp8_linear(ix + "wq_b", c["index_n_heads"] * c["index_head_dim"], c["q_lora_rank"])
    W.fp8_linear(ix + "wk", c["index_head_dim"], H)
    W.norm(ix + "k_norm.weight", c["index_head_dim"])
    W.bf16(ix + "k_norm.bias", W.normal((c["index_head_dim"],), 0.1))
    W.bf16(ix + "weights_proj.weight", W.normal((c["index_n_heads"], H), 1.0 / math.sqrt(H)))
    m = p + "mlp."
    if not moe:
        W.fp8_linear(m + "gate_proj", c["intermediate_size"], H)
        W.fp8_linear(m + "up_proj", c["intermediate_size"], H)
        W.fp8_linear(m + "down_proj", H, c["intermediate_size"])
        return
    E, I = c["n_routed_experts"], c["moe_intermediate_size"]
    W.bf16(m + "gate.weight", W.normal((E, H), 1.0 / math.sqrt(H)))
    W.f32(m + "gate.e_score_correction_bias", W.rng.uniform(-0.1, 0.1, size=E))
    for e in range(E):
        W.fp8_linear(f"{m}experts.{e}.gate_proj", I, H)
        W.fp8_linear(f"{m}experts.{e}.up_proj", I, H)
        W.fp8_linear(f"{m}experts.{e}.down_proj", H, I)
    Is = I * c["n_shared_experts"]
    W.fp8_linear(m + "shared_experts.gate_proj", Is, H)
    W.fp8_linear(m + "shared_experts.up_proj", Is, H)
    W.fp8_linear(m + "shared_experts.down_proj", H, Is)


def build(c):
    W = Weights(c["seed"])
    H, V, L = c["hidden_size"], c["vocab_size"], c["num_hidden_layers"]
    logit_gain = 3.0  # logits std ~3 on unit-RMS normed hidden states: a real spread
    W.bf16("model.embed_tokens.weight", W.normal((V, H), 1.0))
    for layer in range(L):
        decoder_layer(W, c, f"model.layers.{layer}.", moe=layer >= c["first_k_dense_replace"])
    W.norm("model.norm.weight", H)
    W.bf16("lm_head.weight", W.normal((V, H), logit_gain / math.sqrt(H)))
    # MTP module: layer index num_hidden_layers
    p = f"model.layers.{L}."
    W.norm(p + "enorm.weight", H)
    W.norm(p + "hnorm.weight", H)
    W.bf16(p + "eh_proj.weight", W.normal((H, 2 * H), 1.0 / math.sqrt(2 * H)))
    decoder_layer(W, c, p, moe=True)
    W.norm(p + "shared_head.norm.weight", H)
    W.tensors[p + "embed_tokens.weight"] = W.tensors["model.embed_tokens.weight"].clone()
    W.tensors[p + "shared_head.head.weight"] = W.tensors["lm_head.weight"].clone()
    return W.tensors


def order_key(name):
    """Checkpoint order: embeddings, layers in numeric order, final norm, lm_head."""
    if name.startswith("model.layers."):
        rest = name[len("model.layers.") :]
        idx, tail = rest.split(".", 1)
        return (1, int(idx), tail)
    if name.startswith("model.embed_tokens"):
        return (0, 0, name)
    return (2, 0, name)


ST_DTYPES = {torch.float8_e4m3fn: "F8_E4M3", torch.bfloat16: "BF16", torch.float32: "F32"}


def save_safetensors(path, tensors, names, metadata):
    """A byte-for-byte reproducible safetensors file: tensors in the given order, metadata keys
    sorted (safetensors' own writer orders the metadata map differently from run to run)."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    blobs = []
    for n in names:
        t = tensors[n].contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.float32 else t.numpy().astype("<f4").tobytes()
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


def write_checkpoint(tensors, out_dir, meta, n_shards=2):
    names = sorted(tensors, key=order_key)
    sizes = [tensors[n].numel() * tensors[n].element_size() for n in names]
    total = sum(sizes)
    # cut by bytes, so the boundary falls inside a layer as it does in real checkpoints
    shard_of, acc = {}, 0
    for n, s in zip(names, sizes):
        shard_of[n] = min(n_shards - 1, acc * n_shards // total)
        acc += s
    files = [f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors" for i in range(n_shards)]
    for i, fname in enumerate(files):
        part = [n for n in names if shard_of[n] == i]
        save_safetensors(os.path.join(out_dir, fname), tensors, part, {"format": "pt", **meta})
    index = {"metadata": {"total_size": total}, "weight_map": {n: files[shard_of[n]] for n in names}}
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    return total


def write_case(case, out_dir, seed=None):
    """Write case `case` (CASES) into out_dir, with weight seed `seed` (default: the case's)."""
    c = dict(CASES[case])
    if seed is not None:
        c["seed"] = seed
    check_shapes(c)
    os.makedirs(out_dir, exist_ok=True)
    cfg = hf_config(c)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    gen = {
        "_from_model_config": True,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "do_sample": True,
        "temperature": 1.0,
        "top_p": 0.95,
    }
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")
    tensors = build(c)
    meta = {"dsrt_case": case, "dsrt_seed": str(c["seed"]), "dsrt_tool": "tools/reference/make_tiny_checkpoint.py"}
    total = write_checkpoint(tensors, out_dir, meta)
    return len(tensors), total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--seed", type=int, default=None, help="weight seed (default: the case's, see CASES)")
    args = ap.parse_args()
    n, total = write_case(args.case, args.out, args.seed)
    print(f"{args.case}: {n} tensors, {total} bytes of tensor data -> {args.out}")


if __name__ == "__main__":
    main()
