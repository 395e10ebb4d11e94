"""
PyTorch reference of the Llama-family architectures giftwrap's model runs
(runtime/engine/model/architecture.ts): Llama (with Llama 3.1's "llama3" RoPE scaling), Mistral
(without a sliding window), Qwen2 (q/k/v biases) and Qwen3 (per-head q/k RMSNorm, explicit
head_dim). Written in plain torch after transformers' modeling_llama.py, modeling_mistral.py,
modeling_qwen2.py, modeling_qwen3.py and modeling_rope_utils.py (`_compute_default_rope_parameters`,
`_compute_llama3_parameters`), since transformers is not installed here; the weights are read from a
Hugging Face checkpoint directory (config.json, model.safetensors in F32), the safetensors format
parsed by hand.

Usage: python3 torch_architectures.py DIR < ids.json
  ids.json: [[id, ...], ...] (B rows of T token ids, no padding)
  prints {"logits": [[[...V] * T] * B]} (float32 values, as JSON numbers)

Runs under Debian's /usr/bin/python3, whose python3-torch is 1.13.
"""

import json
import math
import struct
import sys

import torch
import torch.nn.functional as F


def read_safetensors(path):
    """Tensors by name of a safetensors file: an 8-byte little-endian header length, the JSON
    header, then the raw little-endian data (F32 only here)."""
    with open(path, "rb") as f:
        raw = f.read()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length].decode("utf-8"))
    data = raw[8 + length :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {entry['dtype']}, only F32 is read here")
        start, end = entry["data_offsets"]
        values = torch.frombuffer(bytearray(data[start:end]), dtype=torch.float32)
        tensors[name] = values.reshape(entry["shape"])
    return tensors


def rms_norm(x, weight, eps):
    """LlamaRMSNorm / Qwen3RMSNorm: in float32, x * rsqrt(mean(x^2) + eps), times the gain."""
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def inverse_frequencies(config, head_dim):
    """transformers' `_compute_default_rope_parameters`, then `_compute_llama3_parameters` when
    config.json's rope_scaling has rope_type "llama3"."""
    base = config.get("rope_theta", 10000.0)
    dim = head_dim
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaling = config.get("rope_scaling")
    if scaling is None:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind != "llama3":
        raise ValueError(f"rope_scaling of type {kind} is not supported here")
    factor = scaling["factor"]
    low_freq_factor = scaling["low_freq_factor"]
    high_freq_factor = scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]

    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor

    wavelen = 2 * math.pi / inv_freq
    # wavelen < high_freq_wavelen: do nothing
    # wavelen > low_freq_wavelen: divide by factor
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    # otherwise: interpolate between the two, using a smooth factor
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward(config, weights, ids, linear=None):
    """Logits [B, T, V] of a causal LM of config.json's model_type on ids [B, T]. `linear(module,
    x, bias)` applies a layer's projection `module` (model.layers.0.self_attn.q_proj); by default
    F.linear with the module's weight (torch_lora.py adds adapters there)."""
    model_type = config["model_type"]
    if model_type not in ("llama", "mistral", "qwen2", "qwen3"):
        raise ValueError(f"model_type {model_type} is not supported here")
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or hidden // heads
    eps = config["rms_norm_eps"]
    # Qwen2Attention: bias=True on q, k and v; Llama, Mistral and Qwen3: config.attention_bias.
    bias = True if model_type == "qwen2" else config.get("attention_bias", False)
    qk_norm = model_type == "qwen3"
    B, T = ids.shape

    inv_freq = inverse_frequencies(config, head_dim)  # [hd / 2]
    positions = torch.arange(T, dtype=torch.float32)
    freqs = (inv_freq[:, None].float() @ positions[None, :]).transpose(0, 1)  # [T, hd / 2]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # attention_scaling is 1 for default and llama3

    mask = torch.full((T, T), float("-inf")).triu(1)
    w = lambda name: weights[name]
    if linear is None:
        linear = lambda module, x, b=None: F.linear(x, w(module + ".weight"), b)
    x = F.embedding(ids, w("model.embed_tokens.weight"))  # [B, T, d]
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w(p + "input_layernorm.weight"), eps)

        def projection(name, n):
            b = w(p + f"self_attn.{name}_proj.bias") if bias else None
            y = linear(p + f"self_attn.{name}_proj", h, b).view(B, T, n, head_dim)
            if qk_norm and name in ("q", "k"):
                y = rms_norm(y, w(p + f"self_attn.{name}_norm.weight"), eps)
            return y.transpose(1, 2)  # [B, n, T, hd]

        q = projection("q", heads)
        k = projection("k", kv_heads)
        v = projection("v", kv_heads)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
        scores = q @ k.transpose(2, 3) * head_dim**-0.5 + mask
        attended = torch.softmax(scores.float(), dim=-1) @ v  # [B, H, T, hd]
        attended = attended.transpose(1, 2).reshape(B, T, heads * head_dim)
        x = x + linear(p + "self_attn.o_proj", attended)
        g = rms_norm(x, w(p + "post_attention_layernorm.weight"), eps)
        gate = linear(p + "mlp.gate_proj", g)
        up = linear(p + "mlp.up_proj", g)
        x = x + linear(p + "mlp.down_proj", F.silu(gate) * up)
    x = rms_norm(x, w("model.norm.weight"), eps)
    tied = config.get("tie_word_embeddings", False)
    head = w("model.embed_tokens.weight") if tied else w("lm_head.weight")
    return F.linear(x, head)


def main():
    directory = sys.argv[1]
    with open(f"{directory}/config.json") as f:
        config = json.load(f)
    weights = read_safetensors(f"{directory}/model.safetensors")
    ids = torch.tensor(json.load(sys.stdin), dtype=torch.int64)
    with torch.no_grad():
        logits = forward(config, weights, ids)
    print(json.dumps({"torch": torch.__version__, "logits": logits.tolist()}))


if __name__ == "__main__":
    main()
