"""
PyTorch reference of a Hugging Face reward model: transformers' LlamaForSequenceClassification /
Qwen2ForSequenceClassification with one label, in plain torch (transformers is not installed
here). The base model is tests/runtime/engine/model/torch_architectures.py's forward pass with
`score.weight` [1, d] as its output projection, so its "logits" are the score at every position;
the score of a sequence is read as transformers reads it, at the last token that is not
config.json's pad_token_id (at the last token when config.json names none).

Usage: python3 torch_reward_model.py DIR < ids.json
  ids.json: [[id, ...], ...] (sequences of any lengths, each scored alone, unpadded)
  prints {"scores": [...], "positions": [...]} (float32 values as JSON numbers)

Runs under Debian's /usr/bin/python3, whose python3-torch is 1.13.
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "engine", "model"))
from torch_architectures import forward, read_safetensors  # noqa: E402


def main():
    directory = sys.argv[1]
    with open(f"{directory}/config.json") as f:
        config = json.load(f)
    weights = read_safetensors(f"{directory}/model.safetensors")
    # The score head as an untied output projection of one row: logits [B, T, 1] are the scores.
    weights["lm_head.weight"] = weights.pop("score.weight")
    config = {**config, "tie_word_embeddings": False}
    pad_token_id = config.get("pad_token_id")
    scores, positions = [], []
    for row in json.load(sys.stdin):
        input_ids = torch.tensor([row], dtype=torch.int64)
        with torch.no_grad():
            logits = forward(config, weights, input_ids)  # [1, T, 1]
        # transformers' rule: the last token that is not the pad id (an argmax over positions).
        if pad_token_id is None:
            last = torch.tensor([input_ids.shape[-1] - 1])
        else:
            non_pad_mask = (input_ids != pad_token_id).int()
            token_indices = torch.arange(input_ids.shape[-1], dtype=torch.int32)
            last = (token_indices * non_pad_mask).argmax(-1)
        scores.append(logits[0, last[0], 0].item())
        positions.append(int(last[0]))
    print(json.dumps({"torch": torch.__version__, "scores": scores, "positions": positions}))


if __name__ == "__main__":
    main()
