"""
An independent reader of the Hugging Face directories giftwrap saves (runtime/engine/model/hf_save.ts):
the safetensors format parsed by hand (an 8-byte little-endian header length, the JSON header,
the little-endian data), F32, F16 and BF16 read with torch.frombuffer, and the rounding checked
against PyTorch's own: every tensor of an F16 or BF16 copy must be, bit for bit, the F32 copy's
tensor converted by `.to(torch.float16)` / `.to(torch.bfloat16)`.

Usage: python3 torch_safetensors.py F32_DIR [OTHER_DIR ...]
  Each directory holds model.safetensors or model.safetensors.index.json with its shards.
  Prints one JSON object: {dir: {"dtypes": {name: dtype}, "shapes": {name: shape},
  "total_size": bytes or null, "shards": [file, ...], "first": {name: [first 4 values, NaN and
  infinities as strings]},
  "differ_from_torch_rounding": [names whose bits differ from PyTorch's rounding of F32_DIR's]}}

Runs under Debian's /usr/bin/python3, whose python3-torch is 1.13 (transformers and the
safetensors package are not installed).
"""

import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def read_safetensors(path):
    """Tensors by name and their dtype names, of one safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length].decode("utf-8"))
    data = raw[8 + length :]
    tensors, dtypes = {}, {}
    covered = 0
    assert header.pop("__metadata__", None) == {"format": "pt"}, f"{path}: metadata"
    for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        start, end = entry["data_offsets"]
        assert start == covered, f"{path}: {name} starts at {start}, not {covered}"
        covered = end
        dtype = DTYPES[entry["dtype"]]
        tensors[name] = torch.frombuffer(bytearray(data[start:end]), dtype=dtype).reshape(
            entry["shape"]
        )
        dtypes[name] = entry["dtype"]
    assert covered == len(data), f"{path}: data is {len(data)} bytes, tensors cover {covered}"
    return tensors, dtypes


def read_dir(path):
    """Every tensor of a model directory, its dtypes, shard files and the index's total_size."""
    try:
        with open(f"{path}/model.safetensors.index.json") as f:
            index = json.load(f)
    except FileNotFoundError:
        tensors, dtypes = read_safetensors(f"{path}/model.safetensors")
        return tensors, dtypes, ["model.safetensors"], None
    tensors, dtypes = {}, {}
    shards = sorted(set(index["weight_map"].values()))
    for shard in shards:
        t, d = read_safetensors(f"{path}/{shard}")
        for name in t:
            assert index["weight_map"][name] == shard, f"{name} in {shard}, index says otherwise"
        tensors.update(t)
        dtypes.update(d)
    assert set(tensors) == set(index["weight_map"]), "the index and the shards name other tensors"
    return tensors, dtypes, shards, index["metadata"]["total_size"]


def number(x):
    """A value as JSON holds it: a number, or "NaN", "Infinity", "-Infinity"."""
    x = float(x)
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def main():
    reference, _, _, _ = read_dir(sys.argv[1])
    out = {}
    for path in sys.argv[1:]:
        tensors, dtypes, shards, total = read_dir(path)
        differ = []
        for name, t in tensors.items():
            rounded = reference[name].to(t.dtype)
            bits = BITS[t.dtype]
            # NaN's bits are not compared (PyTorch's vectorised BF16 conversion writes 0xffff)
            nan = torch.isnan(rounded) & torch.isnan(t)
            if not torch.equal(rounded.view(bits)[~nan], t.view(bits)[~nan]) or not torch.equal(
                torch.isnan(rounded), torch.isnan(t)
            ):
                differ.append(name)
        out[path] = {
            "dtypes": dtypes,
            "shapes": {name: list(t.shape) for name, t in tensors.items()},
            "total_size": total,
            "shards": shards,
            "first": {name: [number(x) for x in t.flatten()[:4].float()] for name, t in tensors.items()},
            "differ_from_torch_rounding": differ,
        }
    json.dump(out, sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main()
