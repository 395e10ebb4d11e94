// Checkpoints hold Hugging Face's [out, in] linear weights whatever the kernel set's layout
// (runtime/engine/model/checkpoint.ts): written from either layout and read back into either.

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import {
  inLayout,
  loadCheckpoint,
  saveCheckpoint,
  toTensorData,
} from "../../../../runtime/engine/model/checkpoint.ts";
import { decodeSafetensors } from "../../../../runtime/engine/model/safetensors.ts";
import { initParams, paramShapes } from "../../../../runtime/engine/model/transformer.ts";
import { Rng } from "../../../../runtime/engine/random.ts";
import { withTempDir } from "../../../_helpers.ts";
import { GQA_CONFIG } from "../../_tiny.ts";

const Q = "model.layers.0.self_attn.q_proj.weight"; // [d, H·hd] = [32, 32] in [in, out]
const UP = "model.layers.0.mlp.up_proj.weight"; // [32, 64] in [in, out], HF's [64, 32]

Deno.test("paramShapes() turns linear weights to the layout asked for, and nothing else", () => {
  const inOut = paramShapes(GQA_CONFIG);
  const outIn = paramShapes(GQA_CONFIG, "[out, in]");
  assert.deepEqual(inOut[UP]!.shape, [32, 64]);
  assert.deepEqual(outIn[UP]!.shape, [64, 32]);
  assert.deepEqual(outIn["lm_head.weight"]!.shape, [15, 32]);
  assert.deepEqual(outIn["model.embed_tokens.weight"]!.shape, [15, 32]);
  assert.deepEqual(outIn["model.norm.weight"]!.shape, [32]);
});

Deno.test("a checkpoint holds HF's [out, in] from either layout, and reads back into either", async () => {
  await useBackend("cpu");
  await withTempDir(async (dir) => {
    const inOut = initParams(GQA_CONFIG, new Rng(1));
    await saveCheckpoint(`${dir}/a`, inOut, GQA_CONFIG, "0123456789+=");
    const onDisk = decodeSafetensors(await Deno.readFile(`${dir}/a/model.safetensors`)).tensors;
    assert.deepEqual(onDisk[UP]!.shape, [64, 32]);
    const w = (await inOut[UP]!.array()) as number[][]; // [in, out]
    assert.equal(onDisk[UP]!.data[1 * 32 + 2], Math.fround(w[2]![1]!)); // HF [out 1, in 2]
    // read into [out, in]: as on disk
    const outIn = await loadCheckpoint(`${dir}/a`, "[out, in]");
    assert.deepEqual(outIn.weights[UP]!.shape, [64, 32]);
    assert.deepEqual(outIn.weights[UP]!.data, onDisk[UP]!.data);
    // written from [out, in]: the same file contents, so [in, out] reads back the first weights
    const params = Object.fromEntries(
      Object.entries(outIn.weights).map(([name, t]) => [name, tf.tensor(t.data, t.shape)]),
    );
    assert.deepEqual(
      (await toTensorData(params, "[out, in]"))[Q]!.data,
      (await toTensorData(inOut, "[in, out]"))[Q]!.data,
    );
    await saveCheckpoint(`${dir}/b`, params, GQA_CONFIG, "0123456789+=", { layout: "[out, in]" });
    const back = await loadCheckpoint(`${dir}/b`);
    for (const [name, p] of Object.entries(inOut)) {
      assert.deepEqual(back.weights[name]!.shape, p.shape, name);
      assert.deepEqual(back.weights[name]!.data, await p.data(), name);
    }
    tf.dispose([...Object.values(params), ...Object.values(inOut)]);
  });
});

Deno.test("inLayout() transposes linear weights from HF's [out, in] to [in, out], and nothing else", () => {
  // q_proj as stored: [out 2, in 3] = [[1, 2, 3], [4, 5, 6]]; as [in, out]: [[1, 4], [2, 5], [3, 6]]
  const stored = {
    "model.layers.0.self_attn.q_proj.weight": {
      dtype: "F32" as const,
      shape: [2, 3],
      data: Float32Array.of(1, 2, 3, 4, 5, 6),
    },
    "model.embed_tokens.weight": {
      dtype: "F32" as const,
      shape: [2, 3],
      data: Float32Array.of(1, 2, 3, 4, 5, 6),
    },
    "model.norm.weight": { dtype: "F32" as const, shape: [3], data: Float32Array.of(7, 8, 9) },
  };
  const inOut = inLayout(stored, "[in, out]");
  assert.deepEqual(inOut["model.layers.0.self_attn.q_proj.weight"], {
    dtype: "F32",
    shape: [3, 2],
    data: Float32Array.of(1, 4, 2, 5, 3, 6),
  });
  assert.equal(inOut["model.embed_tokens.weight"], stored["model.embed_tokens.weight"]);
  assert.equal(inOut["model.norm.weight"], stored["model.norm.weight"]);
  assert.equal(inLayout(stored, "[out, in]"), stored);
});

/** `promise`, or a rejection when it has not settled within `seconds` (the timer is cleared). */
async function within<T>(seconds: number, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${seconds} s`)), 1000 * seconds);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The error `promise` rejects with, which must come within 5 s and be one line. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  const error = await within(5, promise.then(() => null, (e: Error) => e));
  assert.ok(error instanceof Error, "it was read");
  assert.ok(!error.message.includes("\n"), error.message);
  return error.message;
}

Deno.test("loadCheckpoint() refuses a model.safetensors linked to /dev/zero, at once, in one line", async () => {
  await useBackend("cpu");
  await withTempDir(async (dir) => {
    await saveCheckpoint(`${dir}/ref`, initParams(GQA_CONFIG, new Rng(1)), GQA_CONFIG, "0123");
    await Deno.remove(`${dir}/ref/model.safetensors`);
    await Deno.symlink("/dev/zero", `${dir}/ref/model.safetensors`);
    assert.equal(
      await refusal(loadCheckpoint(`${dir}/ref`)),
      `Cannot read '${dir}/ref/model.safetensors' as it is a character device, not a regular file`,
    );
  });
});

Deno.test("loadCheckpoint() refuses a config.json that is a FIFO without waiting for a writer", async () => {
  await useBackend("cpu");
  await withTempDir(async (dir) => {
    await saveCheckpoint(`${dir}/ref`, initParams(GQA_CONFIG, new Rng(1)), GQA_CONFIG, "0123");
    await Deno.remove(`${dir}/ref/config.json`);
    const made = await new Deno.Command("mkfifo", { args: [`${dir}/ref/config.json`] }).output();
    assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));
    assert.equal(
      await refusal(loadCheckpoint(`${dir}/ref`)),
      `Cannot read '${dir}/ref/config.json' as it is a FIFO, not a regular file`,
    );
  });
});

Deno.test("loadCheckpoint() refuses a config.json over its size limit before reading it", async () => {
  await useBackend("cpu");
  await withTempDir(async (dir) => {
    await saveCheckpoint(`${dir}/ref`, initParams(GQA_CONFIG, new Rng(1)), GQA_CONFIG, "0123");
    // 1 GiB, sparse: nothing is written, and nothing may be read.
    const file = await Deno.open(`${dir}/ref/config.json`, { write: true, truncate: true });
    await file.truncate(2 ** 30);
    file.close();
    assert.equal(
      await refusal(loadCheckpoint(`${dir}/ref`)),
      `Cannot read '${dir}/ref/config.json' as it is 1073741824 bytes, over its limit of ` +
        "16777216",
    );
  });
});
