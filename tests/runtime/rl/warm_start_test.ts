import assert from "node:assert/strict";
import { type BackendName, tf, useBackend } from "../../../runtime/engine/backend.ts";
import { initParams, modelConfig } from "../../../runtime/engine/model/transformer.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { loadTask } from "../../../runtime/data/task.ts";
import { RunWriteError } from "../../../runtime/run/run_dir.ts";
import {
  WARM_START_READ_EVERY,
  warmStart,
  warmStartKey,
  type WarmStartOptions,
} from "../../../runtime/rl/warm_start.ts";
import {
  installWebgpuCounters,
  resetWebgpuCounters,
  webgpuCounters,
} from "../../../runtime/engine/webgpu_counters.ts";
import { assertClose } from "../_numeric.ts";
import { needsWebgpu } from "../_webgpu.ts";
import { withTempDir } from "../../_helpers.ts";
import { tinyPlan } from "../_tiny.ts";
import { valuesOf } from "../_run.ts";

Deno.test("warmStartKey() names the matmul path, whose sums give other weights, and nothing else", () => {
  const plan = tinyPlan();
  const plain = warmStartKey(plan);
  assert.match(plain, /^[0-9a-f]{16}$/);
  assert.equal(warmStartKey(plan, null), plain);
  const blas = warmStartKey(plan, "OpenBLAS SkylakeX, 2 threads");
  assert.notEqual(blas, plain);
  assert.notEqual(warmStartKey(plan, "OpenBLAS Haswell, 2 threads"), blas);
  // The RL settings do not touch the warm start: the same key.
  assert.equal(warmStartKey(tinyPlan({ steps: 9, optimizer: { lr: 0.5 } })), plain);
  assert.notEqual(warmStartKey(tinyPlan({ seed: 8 })), plain);
});

/**
 * The tiny plan's warm start on `backend` (cpu) into `cacheDir`, from the seed: its result, weights
 * and notes. `onDevice` sets the kernel set's `updateOnDevice`; `progress` is passed on.
 */
async function warmStartTiny(
  cacheDir: string,
  backend: BackendName = "cpu",
  options: { onDevice?: boolean; progress?: WarmStartOptions["progress"] } = {},
) {
  const plan = tinyPlan({ backend });
  const { kernels } = await useBackend(backend);
  const seed = new Rng(plan.seed);
  const config = modelConfig(plan.model);
  const params = initParams(config, seed.fork("init"), kernels.layout);
  const task = await loadTask(plan, seed.fork("data"), "file:///");
  const notes: string[] = [];
  const { onDevice, progress } = options;
  try {
    const result = await warmStart(
      plan,
      params,
      config,
      task.tokenizer,
      task.splits.train,
      seed.fork("warm start"),
      {
        kernels: onDevice === undefined ? kernels : { ...kernels, updateOnDevice: onDevice },
        cacheDir,
        note: (line) => notes.push(line),
        ...(progress ? { progress } : {}),
      },
    );
    return { result, weights: valuesOf(params), notes };
  } finally {
    tf.dispose(Object.values(params));
  }
}

async function names(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
}

Deno.test("warmStart() checks its cache entry when read, and trains and writes again one that fails", async () => {
  await withTempDir(async (tmp) => {
    const cacheDir = `${tmp}/.cache/warm-start`;
    const trained = await warmStartTiny(cacheDir);
    assert.equal(trained.result.cached, false);
    const dir = trained.result.dir;
    const key = dir.slice(dir.lastIndexOf("/") + 1);
    assert.deepEqual(await names(dir), ["cache.json", "config.json", "model.safetensors"]);
    const cached = await warmStartTiny(cacheDir);
    assert.equal(cached.result.cached, true);
    assert.deepEqual(cached.weights, trained.weights);
    assert.deepEqual(cached.notes, []);

    // Cut short (a crash of an older writer, a failing disk): trained again, with a note.
    const model = `${dir}/model.safetensors`;
    const bytes = await Deno.readFile(model);
    await Deno.writeFile(model, bytes.subarray(0, 1000));
    // And what crashed writers left: this entry's temporary and another's set-aside copy.
    await Deno.mkdir(`${dir}.tmp-0badf00d`);
    await Deno.writeTextFile(`${dir}.tmp-0badf00d/model.safetensors`, "half");
    await Deno.mkdir(`${cacheDir}/0123456789abcdef.old-0badf00d`);
    const rebuilt = await warmStartTiny(cacheDir);
    assert.equal(rebuilt.result.cached, false);
    assert.deepEqual(rebuilt.notes, [
      `warm start: the cache ${dir} cannot be read (model.safetensors: its SHA-256 is not the ` +
      "one cache.json records); training it again",
    ]);
    assert.deepEqual(rebuilt.weights, trained.weights);
    assert.deepEqual(await Deno.readFile(model), bytes);
    assert.deepEqual(await names(cacheDir), [key]);
    // A hit removes what a crashed writer left too.
    await Deno.mkdir(`${cacheDir}/fedcba9876543210.tmp-0badf00d`);
    assert.equal((await warmStartTiny(cacheDir)).result.cached, true);
    assert.deepEqual(await names(cacheDir), [key]);

    // No cache.json (an entry from before it existed) is trained again too.
    await Deno.remove(`${dir}/cache.json`);
    const older = await warmStartTiny(cacheDir);
    assert.equal(older.result.cached, false);
    assert.match(older.notes[0]!, /\(cache\.json: No such file or directory \(os error 2\)\)/);
  });
});

Deno.test("warmStart() that cannot write its cache fails naming the entry and the reason", async () => {
  await withTempDir(async (tmp) => {
    await Deno.writeTextFile(`${tmp}/file`, "");
    await assert.rejects(
      () => warmStartTiny(`${tmp}/file/cache`),
      (e: Error) => {
        assert.ok(e instanceof RunWriteError, String(e));
        assert.match(
          e.message,
          /^Cannot write '.*\/file\/cache\/[0-9a-f]{16}': Not a directory \(os error 20\)$/,
        );
        return true;
      },
    );
  });
});

/**
 * The tiny plan's warm start (20 steps) on webgpu, its updates checked on the device or not
 * (`updateOnDevice`), into a fresh cache: its losses, the WebGPU reads counted at each progress
 * call, and its weights.
 */
async function warmStartWebgpu(onDevice: boolean) {
  const losses: number[] = [];
  const reads: number[] = [];
  return await withTempDir(async (tmp) => {
    resetWebgpuCounters();
    installWebgpuCounters();
    const { weights } = await warmStartTiny(`${tmp}/cache`, "webgpu", {
      onDevice,
      progress: (_step, _total, loss) => {
        losses.push(loss);
        reads.push(webgpuCounters().reads);
      },
    });
    return { losses, reads, weights };
  });
}

Deno.test({
  ...needsWebgpu(
    "warmStart() on webgpu: AdamW's checks on the device, one read per 16 steps, the host path's numbers",
  ),
  async fn() {
    const { kernels } = await useBackend("webgpu");
    assert.equal(kernels.updateOnDevice, true, "webgpu's kernel set updates on the device");
    const steps = tinyPlan().model.warmStart!.sftSteps;
    assert.equal(steps, WARM_START_READ_EVERY + 4); // two reads: 16 steps, then 4
    const host = await warmStartWebgpu(false);
    const device = await warmStartWebgpu(true);
    assert.equal(device.losses.length, steps);
    // the same examples in the same order; the clipping scale (max norm 1) is float32 on the device
    assertClose(device.losses, host.losses, "losses", { rtol: 1e-5, atol: 1e-7 });
    assertClose(device.weights, host.weights, "weights", { rtol: 1e-5, atol: 1e-6 });
    // the progress of steps 1–16 follows the first read, that of 17–20 the second
    const first = device.reads[0]!;
    assert.deepEqual(
      device.reads,
      Array.from({ length: steps }, (_, i) => first + (i < WARM_START_READ_EVERY ? 0 : 1)),
    );
    // the host path reads at every step
    assert.ok(host.reads[steps - 1]! - host.reads[0]! >= steps - 1, `${host.reads}`);
  },
});
