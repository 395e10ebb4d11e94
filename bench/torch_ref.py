"""
PyTorch reference of giftwrap's training step and sampler: the peer `deno task bench` compares
giftwrap with. On the CPU it runs under Debian's /usr/bin/python3 (the interpreter that has torch
1.13); bench/gpu.sh runs it on CUDA (setup's `device: "cuda"`) under the GPU machine's python3.
On CUDA every timed command waits for the GPU (`torch.cuda.synchronize`) before it reads the clock.

The model is runtime/engine/model/transformer.ts layer for layer, so both do the same FLOPs:

- token embedding; L pre-norm blocks of RMSNorm -> grouped-query attention (kvHeads key/value
  heads, each serving heads/kvHeads query heads, HF's repeat_interleave order) with rotary
  embeddings in HF's rotate-half layout -> residual, RMSNorm -> SwiGLU (ffnDim) -> residual;
  a final RMSNorm and the output projection (the embedding's transpose when tied).
- no biases but Qwen2's on q, k and v (`attentionBias`); no dropout; an additive -1e9 causal
  mask; scores scaled after the product.
- LoRA (setup's `lora`: rank, alpha, targets): every weight frozen, PEFT-style adapters on the
  target projections (giftwrap's draw when its export carries them), AdamW and clipping over the
  adapters only; sampling runs them unmerged.
- parameter names are HF Llama's, as giftwrap's (`model.layers.0.self_attn.q_proj.weight`);
  nn.Linear keeps [out, in], giftwrap keeps [in, out]: weights are transposed on load.
- token log-probs: the final norm and head run only on the positions that predict a completion
  token (giftwrap's `logitsFrom`), then log_softmax and the target's entry.

The train step is one optimiser update, as runtime/rl/train_step.ts does for one mini-batch:

  1) logp = token log-probs of the completions                          [B, C]
  2) GIFT (runtime/rl/objectives/gift.ts): u_i = sum_t mask * (logp - refLogp);
     A = group-standardised rewards (sample std, + eps); u~ = (u - m_g) / (s_g + eps) with m_g, s_g
     from u.detach(); L = mean_i (A_i - beta_c u~_i)^2
  3) backward; clip_grad_norm_ (PyTorch's rule, which giftwrap copies); AdamW (decoupled decay
     on matrices only, as runtime/engine/optim.ts), constant learning rate; a non-finite norm skips it.

Sampling is KV-cache sampling of B rows as giftwrap's sampler does it: one prefill per distinct
prompt, then one token per step at temperature 1 (multinomial) for the rows that have not drawn
<eos>, recording each token's log-prob; at most `newTokens` steps.

Left out on purpose: left padding of prompts (the benchmark has none), stop strings, top-k/top-p,
schedules other than a constant rate.

Protocol: one JSON command per line on stdin, one JSON answer per line on stdout.

  {"cmd": "setup", "config": {...}}  -> {"torch": "1.13.0", "threads": 1, "openblasCore": "SkylakeX", …}
  {"cmd": "train"}                   -> {"ms": 77.1, "loss": 0.98, "gradNorm": 1.2}
  {"cmd": "sample"}                  -> {"tokens": 498, "steps": 4, "ms": 11.0}
  {"cmd": "logprobs"}                -> {"logp": [...]}          # [B, C] row-major
  {"cmd": "memory"}                  -> {"peakRssBytes": ..., "rssBytes": ..., ...}
  {"cmd": "profile", "what": "train"} -> the train (or sample) answer plus time by op

A failing command answers {"error": "..."}.
"""

import ctypes
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def proc_status_bytes(field):
    """A `kB` field of /proc/self/status (VmHWM: peak resident set, VmRSS: current) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


START_RSS = proc_status_bytes("VmRSS")
PAD, EOS = 0, 2  # runtime/engine/model/tokenizer.ts


def openblas_core():
    """The kernels OpenBLAS chose (torch calls it for matmuls): e.g. "SkylakeX", or "Prescott"."""
    try:
        lib = ctypes.CDLL("libopenblas.so.0")  # the copy torch already loaded
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None


# ----------------------------------------------------------------------------------------------
# model


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        mean_square = x.pow(2).mean(-1, keepdim=True)  # [..., 1]
        return x * torch.rsqrt(mean_square + self.eps) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)  # [B, H, T, hd/2] each
    return torch.cat((-x2, x1), dim=-1)  # [B, H, T, hd]


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.heads, self.kv_heads, self.hd = c["dModel"], c["heads"], c["kvHeads"], c["headDim"]
        bias = bool(c.get("attentionBias"))  # Qwen2: q, k and v have biases
        self.q_proj = nn.Linear(d, self.heads * self.hd, bias=bias)
        self.k_proj = nn.Linear(d, self.kv_heads * self.hd, bias=bias)
        self.v_proj = nn.Linear(d, self.kv_heads * self.hd, bias=bias)
        self.o_proj = nn.Linear(self.heads * self.hd, d, bias=False)
        self.scale = 1 / math.sqrt(self.hd)

    def forward(self, x, cos, sin, bias, cache):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.hd).transpose(1, 2)  # [B, H, T, hd]
        k = self.k_proj(x).view(B, T, self.kv_heads, self.hd).transpose(1, 2)  # [B, kvH, T, hd]
        v = self.v_proj(x).view(B, T, self.kv_heads, self.hd).transpose(1, 2)  # [B, kvH, T, hd]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            k = torch.cat((cache[0], k), dim=2)  # [B, kvH, S, hd], S = past + T
            v = torch.cat((cache[1], v), dim=2)
        new_cache = (k, v)
        repeats = self.heads // self.kv_heads
        if repeats > 1:
            k = k.repeat_interleave(repeats, dim=1)  # [B, H, S, hd]
            v = v.repeat_interleave(repeats, dim=1)
        scores = (q @ k.transpose(-2, -1)) * self.scale  # [B, H, T, S]
        if bias is not None:
            scores = scores + bias
        y = F.softmax(scores, dim=-1) @ v  # [B, H, T, hd]
        y = y.transpose(1, 2).reshape(B, T, self.heads * self.hd)  # [B, T, H*hd]
        return self.o_proj(y), new_cache  # [B, T, d]


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c["dModel"], c["ffnDim"], bias=False)
        self.up_proj = nn.Linear(c["dModel"], c["ffnDim"], bias=False)
        self.down_proj = nn.Linear(c["ffnDim"], c["dModel"], bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # [B, T, d]


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["dModel"], c["normEps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["dModel"], c["normEps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, bias, cache):
        a, new_cache = self.self_attn(self.input_layernorm(x), cos, sin, bias, cache)
        x = x + a  # [B, T, d]
        x = x + self.mlp(self.post_attention_layernorm(x))  # [B, T, d]
        return x, new_cache


class Body(nn.Module):
    """HF's `model.` prefix: embedding, blocks, final norm."""

    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["dModel"])
        self.layers = nn.ModuleList([Block(c) for _ in range(c["layers"])])
        self.norm = RMSNorm(c["dModel"], c["normEps"])


class Transformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Body(c)
        self.lm_head = None if c["tiedEmbeddings"] else nn.Linear(c["dModel"], c["vocab"], bias=False)
        # RoPE tables for every position, computed in float64 as giftwrap does, then float32.
        hd = c["headDim"]
        positions = torch.arange(c["contextLength"], dtype=torch.float64)  # [ctx]
        inv_freq = c["ropeTheta"] ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)  # [hd/2]
        angles = torch.outer(positions, inv_freq)  # [ctx, hd/2]
        angles = torch.cat((angles, angles), dim=-1)  # [ctx, hd]
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, ids, cache=None, logits_from=0):
        """ids [B, T] after `cache` (S - T cached positions) -> logits [B, T - logits_from, V]."""
        B, T = ids.shape
        past = 0 if cache is None else cache[0][0].shape[2]
        if past + T > self.c["contextLength"]:
            raise ValueError(f"{past + T} positions exceed the context length {self.c['contextLength']}")
        cos, sin = self.cos[past : past + T], self.sin[past : past + T]  # [T, hd]
        # causal: -1e9 on keys after the query; nothing to mask for a single new token
        bias = None if T == 1 else torch.full((T, past + T), -1e9, device=ids.device).triu(past + 1)
        x = self.model.embed_tokens(ids)  # [B, T, d]
        new_cache = []
        for i, layer in enumerate(self.model.layers):
            x, kv = layer(x, cos, sin, bias, None if cache is None else cache[i])
            new_cache.append(kv)
        x = self.model.norm(x[:, logits_from:])  # [B, T', d]
        head = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight  # [V, d]
        return F.linear(x, head), new_cache  # [B, T', V]


def giftwrap_params(c):
    """(name, shape as giftwrap stores it, init) in runtime/engine/model/transformer.ts `paramShapes` order."""
    d, f = c["dModel"], c["ffnDim"]
    q, kv = c["heads"] * c["headDim"], c["kvHeads"] * c["headDim"]
    std, residual = 0.02, 0.02 / math.sqrt(2 * c["layers"])
    out = [("model.embed_tokens.weight", [c["vocab"], d], std)]
    for layer in range(c["layers"]):
        p = f"model.layers.{layer}."
        out += [
            (p + "input_layernorm.weight", [d], "ones"),
            (p + "self_attn.q_proj.weight", [d, q], std),
            (p + "self_attn.k_proj.weight", [d, kv], std),
            (p + "self_attn.v_proj.weight", [d, kv], std),
            (p + "self_attn.o_proj.weight", [q, d], residual),
        ]
        if c.get("attentionBias"):  # after o_proj, as runtime/engine/model/transformer.ts
            out += [(p + f"self_attn.{n}_proj.bias", [size], "zeros") for n, size in (("q", q), ("k", kv), ("v", kv))]
        out += [
            (p + "post_attention_layernorm.weight", [d], "ones"),
            (p + "mlp.gate_proj.weight", [d, f], std),
            (p + "mlp.up_proj.weight", [d, f], std),
            (p + "mlp.down_proj.weight", [f, d], residual),
        ]
    out.append(("model.norm.weight", [d], "ones"))
    if not c["tiedEmbeddings"]:
        out.append(("lm_head.weight", [d, c["vocab"]], std))
    return out


def is_linear(name):
    return name.endswith("_proj.weight") or name == "lm_head.weight"


@torch.no_grad()
def load_weights(model, c, path):
    """
    Loads giftwrap's float32 export (`path`, manifest at `path + '.json'`): [in, out] -> [out, in].
    Returns what follows the model's weights there: giftwrap's LoRA adapters by name, as stored
    (A [in, r], B [r, out]), for `load_adapters` once they are in the model.
    """
    with open(path + ".json") as f:
        manifest = json.load(f)
    expected = [(n, s) for n, s, _ in giftwrap_params(c)]
    if [(e["name"], e["shape"]) for e in manifest[: len(expected)]] != expected:
        raise ValueError(f"{path}.json does not list this model's parameters in giftwrap's order")
    flat = torch.from_file(path, size=sum(math.prod(e["shape"]) for e in manifest), dtype=torch.float32)
    params = dict(model.named_parameters())
    rest = {}
    at = 0
    for e in manifest:
        name, shape = e["name"], e["shape"]
        n = math.prod(shape)
        w = flat[at : at + n].view(shape)
        if name in params:
            params[name].copy_(w.t() if is_linear(name) else w)
        else:
            rest[name] = w
        at += n
    return rest


@torch.no_grad()
def load_adapters(model, adapters):
    """giftwrap's adapters (`load_weights`' rest: `<module>.lora_A.weight` [in, r], B [r, out]) into the LoRALinear modules."""
    params = dict(model.named_parameters())
    missing = [n for n in params if ".lora_" in n and n + ".weight" not in adapters]
    if missing or len(adapters) != sum(".lora_" in n for n in params):
        raise ValueError(f"the exported adapters do not match lora.targets (missing {missing[:2]})")
    for name, w in adapters.items():
        params[name[: -len(".weight")]].copy_(w.t())


@torch.no_grad()
def init_weights(model, c, seed):
    """giftwrap's initialisation (same distributions, torch's random stream)."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    for name, _, init in giftwrap_params(c):
        p = params[name]
        if init == "ones":
            p.fill_(1)
        elif init == "zeros":
            p.zero_()
        else:
            p.copy_(torch.randn(p.shape, generator=gen) * init)


class LoRALinear(nn.Module):
    """
    PEFT's LoRA on a frozen nn.Linear: base(x) + (alpha / rank) * x A^T B^T, A [rank, in] drawn as
    PEFT draws it (Kaiming-uniform, a = sqrt(5)), B [out, rank] zeros; no dropout.
    """

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / rank

    def forward(self, x):
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


def add_lora(model, lora):
    """Freezes every weight and wraps the attention projections in `targets` with LoRA adapters."""
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers:
        for name in lora["targets"]:
            owner = layer.self_attn if hasattr(layer.self_attn, name) else layer.mlp
            if not hasattr(owner, name):
                raise ValueError(f"lora.targets: expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj, got {name!r}")
            setattr(owner, name, LoRALinear(getattr(owner, name), lora["rank"], lora["alpha"]))


# ----------------------------------------------------------------------------------------------
# log-probs, GIFT, one update, sampling


def token_logprobs(model, ids, prompt_len):
    """Log-probs of the completion tokens of ids [B, P + C] -> [B, C]."""
    logits, _ = model(ids[:, :-1], logits_from=prompt_len - 1)  # [B, C, V]
    logp = F.log_softmax(logits, dim=-1)  # [B, C, V]
    targets = ids[:, prompt_len:]  # [B, C]
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [B, C]


def group_standardize(x, group, eps):
    """(x - mean_g x) / (std_g x + eps) per group of `group` consecutive rows, sample std: [B]."""
    v = x.view(-1, group)  # [P, G]
    return ((v - v.mean(1, keepdim=True)) / (v.std(1, keepdim=True) + eps)).view(-1)  # [B]


def gift_loss(logp, ref_logp, mask, rewards, group, beta_c, eps):
    advantage = group_standardize(rewards, group, eps)  # [B], a constant
    u = ((logp - ref_logp) * mask).sum(1)  # [B] implicit reward
    stats = u.detach().view(-1, group)  # [P, G]: statistics are constants (stop-gradient)
    u_tilde = (u.view(-1, group) - stats.mean(1, keepdim=True)) / (stats.std(1, keepdim=True) + eps)
    return (advantage - beta_c * u_tilde.view(-1)).pow(2).mean()


class Worker:
    def sync(self):
        """Waits for the GPU's queued work, so that a time taken after it includes that work."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def setup(self, msg):
        c = msg["config"]
        self.threads = int(c.get("threads") or 1)
        torch.set_num_threads(self.threads)
        torch.manual_seed(c["seed"])
        # "cpu" (the default) or "cuda": bench/gpu.sh compares giftwrap's webgpu with PyTorch CUDA
        self.device = torch.device(c.get("device") or "cpu")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for, and this torch sees no CUDA GPU")
        m, s = c["model"], c["shapes"]
        self.model = Transformer(m)
        adapters = {}
        if c.get("weights"):
            adapters = load_weights(self.model, m, c["weights"])
        else:
            init_weights(self.model, m, c["seed"])
        if c.get("lora"):  # after the weights: their names are the plain model's
            add_lora(self.model, c["lora"])
            if adapters:  # giftwrap's own draw, so that both train the same adapters
                load_adapters(self.model, adapters)
        elif adapters:
            raise ValueError("the exported weights carry LoRA adapters, and the setup has no 'lora'")
        self.model.to(self.device)
        dev = self.device
        self.rows, self.group = s["rows"], s["groupSize"]
        self.prompt_len, self.new_tokens = s["promptTokens"], s["newTokens"]
        self.ids = torch.tensor(c["ids"], dtype=torch.long, device=dev).view(self.rows, -1)  # [B, P + C]
        self.prompts = self.ids[:, : self.prompt_len].contiguous()  # [B, P]
        self.mask = torch.ones(self.rows, self.new_tokens, device=dev)  # [B, C]
        self.ref_logp = torch.full((self.rows, self.new_tokens), float(c["refLogp"]), device=dev)  # [B, C]
        self.rewards = torch.tensor(c["rewards"], dtype=torch.float32, device=dev)  # [B]
        self.beta_c, self.eps = c["objective"]["betaC"], c["objective"]["stdEpsilon"]
        o = c["optimizer"]
        if o["warmupSteps"] != 0 or o["schedule"] != "constant":
            raise ValueError("only a constant learning rate without warm-up is mirrored here")
        self.clip = o["clipGradNorm"]
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]  # LoRA: adapters only
        self.params = [p for _, p in named]
        groups = [
            {"params": [p for _, p in named if p.dim() > 1], "weight_decay": o["weightDecay"]},
            {"params": [p for _, p in named if p.dim() <= 1], "weight_decay": 0.0},
        ]
        self.opt = torch.optim.AdamW(groups, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"])
        self.gen = torch.Generator(device=dev).manual_seed(c["seed"])
        return {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "openblasCore": openblas_core(),
            "params": sum(p.numel() for p in self.model.parameters()),
            "trainable": sum(p.numel() for p in self.params),
        }

    def train(self, msg):
        self.sync()
        start = time.perf_counter()
        logp = token_logprobs(self.model, self.ids, self.prompt_len)  # [B, C]
        loss = gift_loss(logp, self.ref_logp, self.mask, self.rewards, self.group, self.beta_c, self.eps)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = float(nn.utils.clip_grad_norm_(self.params, self.clip) if self.clip > 0 else 0.0)
        value = loss.item()
        if math.isfinite(norm) and math.isfinite(value):  # as adamWStep: a non-finite step is skipped
            self.opt.step()
        self.sync()
        return {"ms": (time.perf_counter() - start) * 1000, "loss": value, "gradNorm": norm}

    @torch.no_grad()
    def sample(self, msg):
        """
        Samples full batches back to back for at least `minMs` (one at least); `tokens` and `ms`
        are their sums, `calls` how many. Each batch is giftwrap's sampler, step for step: the
        prefill runs once per distinct prompt (a group's G rows share theirs) and its cache is
        copied to the rows; a row stops at <eos>, and from the next step on the model runs only on
        rows still going (the cache is compacted when rows end). `tokens` counts the completion
        tokens drawn, <eos> included.
        """
        min_ms = float(msg.get("minMs") or 0)
        most = int(msg.get("newTokens") or self.new_tokens)  # profile.ts: giftwrap's step count
        self.sync()
        start = time.perf_counter()
        tokens = calls = steps = 0
        while True:
            drawn, steps = self.sample_once(most)
            tokens, calls = tokens + drawn, calls + 1
            ms = (time.perf_counter() - start) * 1000
            if ms >= min_ms:
                return {"tokens": tokens, "steps": steps, "calls": calls, "ms": ms}

    def sample_once(self, steps):
        """One full batch of at most `steps` tokens: (completion tokens drawn, model calls)."""
        unique, row_of = torch.unique(self.prompts, dim=0, return_inverse=True)  # [U, P], [B]
        logits, cache = self.model(unique, logits_from=self.prompt_len - 1)  # [U, 1, V] prefill
        logits = logits.index_select(0, row_of)  # [B, 1, V]
        cache = [(k.index_select(0, row_of), v.index_select(0, row_of)) for k, v in cache]
        live = torch.arange(self.rows, device=self.device)  # rows still going, in cache order
        tokens = torch.full((self.rows, steps), PAD, dtype=torch.long, device=self.device)  # [B, C]
        logps = torch.zeros(self.rows, steps, device=self.device)  # [B, C]
        drawn = 0
        for t in range(steps):
            logp = F.log_softmax(logits[:, -1], dim=-1)  # [L, V]
            nxt = torch.multinomial(logp.exp(), 1, generator=self.gen)  # [L, 1]
            tokens[live, t] = nxt[:, 0]
            logps[live, t] = logp.gather(1, nxt)[:, 0]
            drawn += len(live)
            going = nxt[:, 0] != EOS  # [L]
            if t + 1 == steps or not bool(going.any()):
                break
            if not bool(going.all()):  # some rows ended: drop them from the batch and the cache
                keep = going.nonzero()[:, 0]
                live, nxt = live[keep], nxt[keep]
                cache = [(k.index_select(0, keep), v.index_select(0, keep)) for k, v in cache]
            logits, cache = self.model(nxt, cache=cache)  # [L, 1, V]
        self.sync()
        return drawn, t + 1

    @torch.no_grad()
    def logprobs(self, msg):
        return {"logp": token_logprobs(self.model, self.ids, self.prompt_len).flatten().tolist()}

    def profile(self, msg):
        """`train` or `sample` under torch.profiler: self CPU time by op, top `top`."""
        from torch.profiler import ProfilerActivity, profile

        cuda = self.device.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        cpu_start = time.process_time()
        with profile(activities=activities) as prof:
            answer = self.sample(msg) if msg.get("what") == "sample" else self.train(msg)
        cpu_ms = (time.process_time() - cpu_start) * 1000

        def own_us(e):  # on CUDA, the time on the GPU; else the CPU time
            return e.self_device_time_total if cuda else e.self_cpu_time_total

        events = sorted(prof.key_averages(), key=own_us, reverse=True)
        ops = [{"name": e.key, "ms": own_us(e) / 1000, "calls": e.count} for e in events if own_us(e) > 0]
        return {
            **answer,
            "cpuMs": cpu_ms,
            "kernelMs": sum(o["ms"] for o in ops),
            "kernelCalls": sum(o["calls"] for o in ops),
            "kernels": ops[: int(msg.get("top", 12))],
        }

    def memory(self, msg):
        cuda = getattr(self, "device", torch.device("cpu")).type == "cuda"
        return {
            # the CUDA caching allocator's peak: the GPU memory this process held at most
            "peakDeviceBytes": torch.cuda.max_memory_reserved(self.device) if cuda else None,
            "peakRssBytes": proc_status_bytes("VmHWM"),
            "maxRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # the same counter
            "rssBytes": proc_status_bytes("VmRSS"),
            "startRssBytes": START_RSS,
        }


COMMANDS = ("setup", "train", "sample", "logprobs", "memory", "profile")


def main():
    worker = Worker()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            if msg.get("cmd") not in COMMANDS:
                raise ValueError(f"unknown command {msg.get('cmd')!r}: expected one of {COMMANDS}")
            answer = getattr(worker, msg["cmd"])(msg)
        except Exception as e:  # one line back to the bench, which raises it there
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
