"""
PyTorch reference of a LoRA adapter on a Llama-family model, as PEFT's `lora.Linear` computes it
in evaluation mode: y = base(x) + (x @ A.T) @ B.T * (lora_alpha / r) on each targeted module, the
base model being torch_architectures.py's forward. The adapter is read from a PEFT adapter
directory (adapter_config.json, adapter_model.safetensors with PEFT's tensor names), so the test
also checks the names and shapes giftwrap writes.

Usage: python3 torch_lora.py MODEL_DIR ADAPTER_DIR < ids.json
  prints {"logits": [[[...V] * T] * B]}

Runs under Debian's /usr/bin/python3, whose python3-torch is 1.13.
"""

import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_architectures import forward, read_safetensors  # noqa: E402


def main():
    model_dir, adapter_dir = sys.argv[1], sys.argv[2]
    with open(f"{model_dir}/config.json") as f:
        config = json.load(f)
    weights = read_safetensors(f"{model_dir}/model.safetensors")
    with open(f"{adapter_dir}/adapter_config.json") as f:
        adapter = json.load(f)
    assert adapter["peft_type"] == "LORA" and adapter["bias"] == "none"
    scaling = adapter["lora_alpha"] / adapter["r"]
    targets = set(adapter["target_modules"])
    lora = read_safetensors(f"{adapter_dir}/adapter_model.safetensors")
    used = set()

    def linear(module, x, b=None):
        y = F.linear(x, weights[module + ".weight"], b)
        if module.split(".")[-1] not in targets:
            return y
        a_name = f"base_model.model.{module}.lora_A.weight"
        b_name = f"base_model.model.{module}.lora_B.weight"
        used.update([a_name, b_name])
        return y + F.linear(F.linear(x, lora[a_name]), lora[b_name]) * scaling

    ids = torch.tensor(json.load(sys.stdin), dtype=torch.int64)
    with torch.no_grad():
        logits = forward(config, weights, ids, linear)
    assert used == set(lora), f"tensors never used: {sorted(set(lora) - used)}"
    print(json.dumps({"torch": torch.__version__, "logits": logits.tolist()}))


if __name__ == "__main__":
    main()
