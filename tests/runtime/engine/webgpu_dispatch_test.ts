/**
 * The webgpu dispatch caches (runtime/engine/webgpu_dispatch.ts), an optional group like
 * webgpu_test.ts: it runs where WebGPU offers an adapter (lavapipe on a machine without a GPU) and
 * is skipped elsewhere. Front-door train steps and a sampling call compute the same bits with the
 * caches as without; a bind group found in the cache binds a buffer's new contents after the pool
 * handed it to another tensor; uniforms and pipeline keys that differ in a shape or a kernel's
 * own constant are never confused; a destroyed buffer leaves no bind group behind; the caches stay within their
 * bounds; and submits come after the number of dispatches or the bytes held, as set.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import { deviceConstantCount } from "../../../runtime/engine/kernels/constants.ts";
import { countWebgpu } from "../../../runtime/engine/webgpu_counters.ts";
import {
  installWebgpuDispatch,
  uninstallWebgpuDispatch,
  webgpuDispatchInstalled,
  webgpuDispatchStats,
} from "../../../runtime/engine/webgpu_dispatch.ts";
import { setup, train } from "../../../bench/_giftwrap_worker.ts";
import { sampleCompletions } from "../../../runtime/rl/sample.ts";
import { needsWebgpu } from "../_webgpu.ts";
import { disposeState, frontDoorGroup } from "./_front_door.ts";

/** Tensors alive, less those the device caches keep from one step to the next. */
function live(): number {
  return tf.memory().numTensors - deviceConstantCount();
}

/** Runs `body` with GIFTWRAP_WEBGPU_DISPATCH set to `value`, then puts the variable back. */
async function withDispatchEnv<T>(value: string, body: () => Promise<T>): Promise<T> {
  const before = Deno.env.get("GIFTWRAP_WEBGPU_DISPATCH");
  Deno.env.set("GIFTWRAP_WEBGPU_DISPATCH", value);
  try {
    return await body();
  } finally {
    if (before === undefined) Deno.env.delete("GIFTWRAP_WEBGPU_DISPATCH");
    else Deno.env.set("GIFTWRAP_WEBGPU_DISPATCH", before);
  }
}

/** `n` float32 values of `f(i)` as tfjs stores them. */
function values(n: number, f: (i: number) => number): Float32Array<ArrayBuffer> {
  return Float32Array.from({ length: n }, (_, i) => f(i));
}

/** tf.neg of a tensor of `x`'s values made on the CPU, read back; everything freed. */
async function negate(x: Float32Array): Promise<Float32Array> {
  const t = tf.tensor1d(x);
  const y = tf.neg(t);
  const out = await y.data() as Float32Array;
  tf.dispose([t, y]);
  return out;
}

Deno.test({
  ...needsWebgpu(
    "installWebgpuDispatch() changes no result: 4 front-door train steps and a sample",
  ),
  async fn() {
    const run = async (on: boolean) => {
      const { state } = await withDispatchEnv(on ? "1" : "0", () => setup(frontDoorGroup()));
      assert.equal(webgpuDispatchInstalled(), on);
      const out: number[] = [];
      for (let i = 0; i < 4; i++) {
        const step = await train(state);
        out.push(step.loss as number, step.gradNorm as number);
      }
      // a sampling call after them: its tokens and their log-probs
      const { promptTokens: P, newTokens: C } = state.shapes;
      const options = { temperature: 1, topK: 0, topP: 1, maxNewTokens: C, promptLength: P };
      const drawn = await sampleCompletions(
        state.kernels,
        state.params,
        state.config,
        state.tokenizer,
        state.prompts,
        options,
        state.sampleRng,
      );
      const params = await Promise.all(Object.values(state.params).map((t) => t.data()));
      disposeState(state);
      return [
        out,
        Array.from(drawn.ids),
        Array.from(drawn.logp),
        ...params.map((p) => Array.from(p)),
      ];
    };
    const before = live();
    const plain = await run(false);
    const cached = await run(true);
    assert.ok(webgpuDispatchStats().bindGroupHits > 0 && webgpuDispatchStats().uniformHits > 0);
    // bit for bit: deepEqual compares numbers with Object.is
    assert.equal(cached.length, plain.length);
    cached.forEach((values, i) => assert.deepEqual(values, plain[i], `array ${i}`));
    assert.equal(live(), before);
  },
});

Deno.test({
  ...needsWebgpu("installWebgpuDispatch(): a cached bind group binds a reused buffer's new values"),
  async fn() {
    await useBackend("webgpu");
    assert.ok(webgpuDispatchInstalled());
    const before = live();
    const a = values(2000, (i) => i / 7);
    const b = values(2000, (i) => Math.sqrt(i) - 5);
    assert.deepEqual(await negate(a), a.map((v) => -v)); // compiles, fills the pool
    assert.deepEqual(await negate(a), a.map((v) => -v));
    const { bindGroupHits, bindGroupMisses } = webgpuDispatchStats();
    // b goes into the buffer a had (the pool hands out its lowest-numbered free one), so the
    // bind group over it is found again: it must read b, not a
    const { result, counts } = await countWebgpu(() => negate(b));
    assert.deepEqual(result, b.map((v) => -v));
    assert.equal(webgpuDispatchStats().bindGroupHits, bindGroupHits + 1);
    assert.equal(webgpuDispatchStats().bindGroupMisses, bindGroupMisses);
    assert.equal(counts.bindGroups, 0);
    assert.equal(counts.uniformWrites, 0); // the same shapes: the same uniforms
    assert.equal(live(), before);
  },
});

Deno.test({
  ...needsWebgpu(
    "installWebgpuDispatch(): uniforms and kernels differing in a shape or a constant never mix",
  ),
  async fn() {
    await useBackend("webgpu");
    const x = values(2000, (i) => (i % 17) / 4 - 1);
    const t = tf.tensor1d(x);
    const cases: [string, () => tf.Tensor, (i: number) => number][] = [
      // the same 2,000 values in two shapes: the same bytes but for the shapes and strides
      ["reshape [2000] + 1", () => tf.add(t, tf.onesLike(t)), (i) => x[i]! + 1],
      [
        "reshape [1000, 2] + row",
        () => tf.add(t.reshape([1000, 2]), tf.tensor2d([[1, 2]])).reshape([2000]),
        (i) => x[i]! + (i % 2 === 0 ? 1 : 2),
      ],
      // the same shapes, the kernel's own constants differing
      ["clip [0, 1]", () => tf.clipByValue(t, 0, 1), (i) => Math.min(Math.max(x[i]!, 0), 1)],
      ["clip [0, 2]", () => tf.clipByValue(t, 0, 2), (i) => Math.min(Math.max(x[i]!, 0), 2)],
      [
        "clip [-1, 0.5]",
        () => tf.clipByValue(t, -1, 0.5),
        (i) => Math.min(Math.max(x[i]!, -1), 0.5),
      ],
    ];
    const before = live();
    for (let round = 0; round < 2; round++) {
      const { uniformMisses: misses, shaderKeyMisses: keys } = webgpuDispatchStats();
      for (const [name, op, f] of cases) {
        const y = tf.tidy(op);
        assert.deepEqual(await y.data(), values(2000, f), `${name}, round ${round}`);
        y.dispose();
      }
      // the second round writes no uniform: every one of them is in the cache, none overwritten
      // and runs tfjs's own code for none: every pipeline key is remembered
      if (round === 1) assert.equal(webgpuDispatchStats().uniformMisses, misses);
      if (round === 1) assert.equal(webgpuDispatchStats().shaderKeyMisses, keys);
    }
    assert.equal(live(), before);
    t.dispose();
  },
});

Deno.test({
  ...needsWebgpu("installWebgpuDispatch(): a destroyed or external buffer leaves no bind group"),
  async fn() {
    await useBackend("webgpu");
    const before = live();
    const a = values(2000, (i) => i);
    await negate(a);
    await negate(a);
    // 1) a bindable buffer destroyed through the pool drops every cached bind group
    const backend = tf.backend() as unknown as {
      device: GPUDevice;
      bufferManager: {
        acquireBuffer(size: number, usage: number): GPUBuffer;
        releaseBuffer(buffer: GPUBuffer, reuse?: boolean): void;
      };
    };
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const doomed = backend.bufferManager.acquireBuffer(64, usage);
    const drops = webgpuDispatchStats().bindGroupDrops;
    backend.bufferManager.releaseBuffer(doomed, false); // destroys it
    assert.equal(webgpuDispatchStats().bindGroupDrops, drops + 1);
    assert.equal(webgpuDispatchStats().bindGroupsCached, 0);
    const { result, counts } = await countWebgpu(() => negate(a));
    assert.deepEqual(result, a.map((v) => -v));
    assert.equal(counts.bindGroups, 1); // made again
    // 2) a tensor over the caller's own buffer is bound uncached: the caller may destroy it
    const external = async (v: Float32Array<ArrayBuffer>) => {
      const buffer = backend.device.createBuffer({ size: v.byteLength, usage });
      backend.device.queue.writeBuffer(buffer, 0, v);
      const t = tf.tensor({ buffer, zeroCopy: true }, [v.length], "float32");
      const y = tf.neg(t);
      const out = await y.data();
      tf.dispose([t, y]);
      buffer.destroy();
      return out;
    };
    const uncached = webgpuDispatchStats().bindGroupsUncached;
    assert.deepEqual(await external(a), a.map((v) => -v));
    const b = values(2000, (i) => 3 - i / 3);
    assert.deepEqual(await external(b), b.map((v) => -v));
    assert.equal(webgpuDispatchStats().bindGroupsUncached, uncached + 2);
    assert.equal(live(), before);
  },
});

Deno.test({
  ...needsWebgpu("installWebgpuDispatch(): the caches keep to maxUniforms and maxBindGroups"),
  async fn() {
    await useBackend("webgpu");
    try {
      uninstallWebgpuDispatch();
      assert.deepEqual(installWebgpuDispatch(tf.backend(), { maxUniforms: 2, maxBindGroups: 2 }), {
        installed: true,
      });
      const before = live();
      // three sizes: three uniforms (their shapes), three bind groups
      for (let round = 0; round < 2; round++) {
        for (const n of [1500, 2500, 3500]) {
          const x = values(n, (i) => i % 13);
          assert.deepEqual(await negate(x), x.map((v) => -v), `${n} values, round ${round}`);
          assert.ok(webgpuDispatchStats().uniformsCached <= 2);
          assert.ok(webgpuDispatchStats().bindGroupsCached <= 2);
        }
      }
      const stats = webgpuDispatchStats();
      assert.equal(stats.uniformMisses, 6); // each pushed out before it came round again
      assert.equal(stats.uniformHits, 0);
      assert.ok(stats.bindGroupDrops >= 2);
      assert.equal(live(), before);
    } finally {
      uninstallWebgpuDispatch();
      installWebgpuDispatch();
    }
  },
});

/** `steps` negations in a chain, each input freed after its kernel is queued; the last read. */
async function chain(steps: number): Promise<Float32Array> {
  let x = tf.tensor1d(values(2000, (i) => i));
  for (let i = 0; i < steps; i++) {
    const y = tf.neg(x);
    x.dispose(); // its kernel is queued: tfjs holds its buffer until the next submit
    x = y;
  }
  const out = await x.data() as Float32Array;
  x.dispose();
  return out;
}

Deno.test({
  ...needsWebgpu("installWebgpuDispatch(): submits after submitDispatches, or submitPendingBytes"),
  async fn() {
    await useBackend("webgpu");
    const expected = values(2000, (i) => i); // negated an even number of times
    try {
      await chain(10);
      const submits = async (options: Parameters<typeof installWebgpuDispatch>[1]) => {
        installWebgpuDispatch(tf.backend(), options);
        await chain(10); // the same buffers each time, once warm
        const { result, counts } = await countWebgpu(() => chain(10));
        assert.deepEqual(result, expected);
        assert.equal(counts.dispatches, 10);
        return counts.submits;
      };
      // the read's submit only
      assert.equal(await submits({ submitDispatches: 256, submitPendingBytes: 1 << 30 }), 1);
      // after dispatches 4 and 8, and the read
      assert.equal(await submits({ submitDispatches: 4, submitPendingBytes: 1 << 30 }), 3);
      // 8,000 bytes held per freed input (and the upload's staging buffer): 16,000 reached at
      // dispatch 2 (staging and x₀), then at 5 and 8 (an input freed just after a submit is
      // released at once), and the read

      assert.equal(await submits({ submitDispatches: 256, submitPendingBytes: 16000 }), 4);
      uninstallWebgpuDispatch();
      await chain(10);
      const { counts } = await countWebgpu(() => chain(10));
      assert.equal(counts.submits, 1); // tfjs: every 15 dispatches
    } finally {
      installWebgpuDispatch(tf.backend(), {});
    }
  },
});

Deno.test({
  ...needsWebgpu("installWebgpuDispatch(): kernels timed by tf.time() run tfjs's own recording"),
  async fn() {
    await useBackend("webgpu");
    const x = values(2000, (i) => i / 3);
    const t = tf.tensor1d(x);
    const before = live();
    /** −x and |x| under tf.time(), read back. */
    const timed = async () => {
      let y: tf.Tensor[] = [];
      const timing = await tf.time(() => void (y = [tf.neg(t), tf.abs(t)]));
      assert.ok(timing.wallMs >= 0);
      const out = await Promise.all(y.map((r) => r.data()));
      tf.dispose(y);
      return out;
    };
    await timed(); // compiles both, remembers their keys
    const { shaderKeyMisses } = webgpuDispatchStats();
    const { result, counts } = await countWebgpu(timed);
    assert.deepEqual(result, [x.map((v) => -v), x.map((v) => Math.abs(v))]);
    // the keys were remembered, so both went on to the patched recordAndSubmit, which handed them
    // to tfjs's own: it ends the pass after each timed kernel, 2 passes (untimed, one)
    assert.equal(webgpuDispatchStats().shaderKeyMisses, shaderKeyMisses);
    assert.equal(counts.dispatches, 2);
    assert.equal(counts.computePasses, 2);
    t.dispose();
    assert.equal(live(), before - 1);
  },
});

Deno.test({
  ...needsWebgpu(
    "installWebgpuDispatch() refuses a backend that is not webgpu's, changing nothing",
  ),
  async fn() {
    await useBackend("webgpu");
    const cpu = tf.findBackend("cpu") ?? (await useBackend("cpu"), tf.findBackend("cpu"));
    const done = installWebgpuDispatch(cpu!);
    assert.equal(done.installed, false);
    assert.match((done as { reason: string }).reason, /lacks .*makeUniforms/);
    await useBackend("webgpu");
    assert.ok(webgpuDispatchInstalled());
    await withDispatchEnv("0", () => useBackend("webgpu"));
    assert.ok(!webgpuDispatchInstalled());
    await useBackend("webgpu", { webgpuDispatch: true });
    assert.ok(webgpuDispatchInstalled());
  },
});

Deno.test({
  ...needsWebgpu(
    "installWebgpuDispatch(): the pool's used lists and counts end as tfjs's releaseBuffer leaves them",
  ),
  async fn() {
    await useBackend("webgpu");
    const manager = (tf.backend() as unknown as {
      bufferManager: {
        usedBuffers: Map<string, GPUBuffer[]>;
        freeBuffers: Map<string, GPUBuffer[]>;
        numUsedBuffers: number;
        numBytesUsed: number;
        acquireBuffer(size: number, usage: number, mapped?: boolean, reuse?: boolean): GPUBuffer;
        releaseBuffer(buffer: GPUBuffer, reuse?: boolean): void;
      };
    }).bufferManager;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const size = 4 * 777; // a size no other test uses: this test's buffers only
    const key = `${size}_${usage}`;
    // tfjs 4.22's own release: the buffer's place searched for, the last moved into it, popped
    const model = [...(manager.usedBuffers.get(key) ?? [])];
    const release = (buffer: GPUBuffer) => {
      const i = model.indexOf(buffer);
      model[i] = model[model.length - 1]!;
      model.pop();
      manager.releaseBuffer(buffer);
    };
    // some acquired before the patch goes on again (it finds their places as it goes on)
    uninstallWebgpuDispatch();
    const early = Array.from({ length: 3 }, () => manager.acquireBuffer(size, usage));
    model.push(...early);
    assert.ok(installWebgpuDispatch().installed);
    const counts = [manager.numUsedBuffers, manager.numBytesUsed];
    const late = Array.from({ length: 5 }, () => manager.acquireBuffer(size, usage));
    model.push(...late);
    assert.deepEqual(manager.usedBuffers.get(key), model);
    const all = [...early, ...late];
    for (const i of [6, 0, 3, 7, 1]) {
      release(all[i]!);
      assert.deepEqual(manager.usedBuffers.get(key), model, `after releasing buffer ${i}`);
    }
    // acquired again, released again: the places moved by the swaps are still right
    const again = [manager.acquireBuffer(size, usage), manager.acquireBuffer(size, usage)];
    model.push(...again);
    for (const buffer of [all[2]!, again[0]!, all[5]!, again[1]!, all[4]!]) release(buffer);
    assert.deepEqual(manager.usedBuffers.get(key), model);
    assert.equal(manager.numUsedBuffers, counts[0]! - 3);
    assert.equal(manager.numBytesUsed, counts[1]! - 3 * size);
    assert.equal(manager.freeBuffers.get(key)!.length >= 8, true);
    assert.throws(() => manager.releaseBuffer(all[0]!), /Cannot find the buffer/);
  },
});

Deno.test({
  ...needsWebgpu(
    "installWebgpuDispatch(): two uniform blocks of one hash each get their own buffer",
  ),
  async fn() {
    await useBackend("webgpu");
    const backend = tf.backend() as unknown as {
      makeUniforms(uniforms: { type: string; data: number[] }[]): { buffer: GPUBuffer };
    };
    // the cache's hash (webgpu_dispatch.ts, `UniformWriter.hash`): FNV-1a over 32-bit words; a
    // block of one int32 vec2 [a, b] is 2 words, and [a2, b2] with b2 chosen below hashes alike
    const P = 0x01000193;
    const first = (a: number) => Math.imul((0x811c9dc5 ^ 2) ^ a, P);
    const hash = (a: number, b: number) => Math.imul(first(a) ^ b, P);
    const [a, b, a2] = [12345, 678, 91011];
    const b2 = first(a) ^ first(a2) ^ b;
    assert.equal(hash(a2, b2), hash(a, b));
    const block = (x: number, y: number) => [{ type: "int32", data: [x, y] }];
    const before = webgpuDispatchStats();
    const one = backend.makeUniforms(block(a, b)).buffer;
    const other = backend.makeUniforms(block(a2, b2)).buffer;
    assert.notEqual(other, one); // not the first block's buffer, whose bytes differ
    const again = backend.makeUniforms(block(a2, b2)).buffer;
    assert.equal(again, other); // found: it took the hash's place
    const back = backend.makeUniforms(block(a, b)).buffer;
    assert.notEqual(back, other);
    const after = webgpuDispatchStats();
    assert.equal(after.uniformMisses - before.uniformMisses, 3);
    assert.equal(after.uniformHits - before.uniformHits, 1);
  },
});
