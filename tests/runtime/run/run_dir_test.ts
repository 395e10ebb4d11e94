import assert from "node:assert/strict";
import {
  isRunLocked,
  JsonlLog,
  lockRunDir,
  parseMetrics,
  pruneCheckpoints,
  RunWriteError,
  stepCheckpoints,
  unlockRunDir,
  writeCheckpointDir,
  writeFileAtomic,
} from "../../../runtime/run/run_dir.ts";
import { withTempDir } from "../../_helpers.ts";

const WRITER = decodeURIComponent(
  new URL("../fixtures/write_checkpoints.ts", import.meta.url).pathname,
);

async function names(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
}

Deno.test("writeCheckpointDir() that fails midway leaves the previous checkpoint and no trace", async () => {
  await withTempDir(async (dir) => {
    await writeCheckpointDir(`${dir}/step-000001`, { "a.bin": new Uint8Array([1]), "b.json": "1" });
    // The second file cannot be created (its directory does not exist): the write fails after
    // the first file is written.
    await assert.rejects(
      () =>
        writeCheckpointDir(`${dir}/step-000002`, {
          "a.bin": new Uint8Array([2]),
          "missing/b.json": "2",
        }),
      (e: Error) => {
        assert.ok(e instanceof RunWriteError);
        assert.match(e.message, /^Cannot write '.*\/step-000002': No such file or directory/);
        return true;
      },
    );
    assert.deepEqual(await names(dir), ["step-000001"]);
    assert.deepEqual(await names(`${dir}/step-000001`), ["a.bin", "b.json"]);
    assert.equal(await Deno.readTextFile(`${dir}/step-000001/b.json`), "1");
    // A checkpoint is never overwritten: writing one that exists fails and changes nothing.
    await assert.rejects(() => writeCheckpointDir(`${dir}/step-000001`, { "b.json": "x" }));
    assert.equal(await Deno.readTextFile(`${dir}/step-000001/b.json`), "1");
    assert.deepEqual(await names(dir), ["step-000001"]);
  });
});

Deno.test("writeCheckpointDir() killed with SIGKILL mid-write leaves only whole checkpoints", async () => {
  await withTempDir(async (dir) => {
    let next = 1;
    for (let trial = 0; trial < 3; trial++) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-read", "--allow-write", WRITER, dir, String(next)],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      // Kill it while a temporary directory exists: a checkpoint half written.
      let midway = false;
      for (let i = 0; i < 2000 && !midway; i++) {
        const entries = await names(dir);
        midway = entries.some((n) => n.includes(".tmp-")) &&
          entries.filter((n) => /^step-\d+$/.test(n)).length > (trial === 0 ? 0 : 1);
        if (!midway) await new Promise((resolve) => setTimeout(resolve, 2));
      }
      child.kill("SIGKILL");
      await child.status;
      await child.stderr.cancel();
      assert.ok(midway, "never saw a checkpoint being written");
      assert.ok((await names(dir)).some((n) => n.includes(".tmp-")));

      // Every step-* directory is whole; the leftover is removed; the newest loads.
      const steps = await stepCheckpoints(dir);
      assert.ok(steps.length > 0);
      for (const { step, dir: name } of steps) {
        assert.deepEqual(await names(`${dir}/${name}`), [
          "model.safetensors",
          "trainer_state.json",
        ]);
        const model = await Deno.readFile(`${dir}/${name}/model.safetensors`);
        assert.equal(model.length, 16 << 20);
        assert.ok(model.every((b) => b === step % 256), `${name} holds another step's bytes`);
        const state = JSON.parse(await Deno.readTextFile(`${dir}/${name}/trainer_state.json`));
        assert.equal(state.step, step);
      }
      await pruneCheckpoints(dir, 1);
      assert.deepEqual(await names(dir), [steps[0]!.dir]);
      // The next trial goes on after the newest, as a resumed run would.
      next = steps[0]!.step + 1;
    }
  });
});

Deno.test("JsonlLog appends whole lines and, reopened with a size, cuts the file back to it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/metrics.jsonl`;
    const log = await JsonlLog.open(path);
    await log.append({ step: 1 }, { step: 2 });
    const kept = log.bytes;
    await log.append({ step: 3 });
    log.close();
    // A crash mid-line leaves a partial line; reopening at the checkpoint's size drops it.
    await Deno.writeTextFile(path, '{"st', { append: true });
    const again = await JsonlLog.open(path, kept);
    assert.equal(again.bytes, kept);
    await again.append({ step: 3, resumed: true });
    again.close();
    assert.equal(
      await Deno.readTextFile(path),
      '{"step":1}\n{"step":2}\n{"step":3,"resumed":true}\n',
    );
  });
});

Deno.test("writeFileAtomic() replaces a file whole, and names the file when it cannot", async () => {
  await withTempDir(async (dir) => {
    await writeFileAtomic(`${dir}/run.json`, "one\n");
    await writeFileAtomic(`${dir}/run.json`, "two\n");
    assert.equal(await Deno.readTextFile(`${dir}/run.json`), "two\n");
    assert.deepEqual(await names(dir), ["run.json"]);
    await assert.rejects(
      () => writeFileAtomic(`${dir}/nowhere/run.json`, "x"),
      /^RunWriteError: Cannot write '.*\/nowhere\/run\.json': No such file or directory/,
    );
  });
});

Deno.test("unlockRunDir() removes run.lock and frees it; a stale holder of the old file blocks no one", async () => {
  await withTempDir(async (dir) => {
    const lock = await lockRunDir(dir);
    assert.ok(lock);
    assert.equal(await isRunLocked(dir), true);
    assert.equal(await lockRunDir(dir), null, "held");
    // A process that opened run.lock just before its holder let go of it…
    const stale = await Deno.open(`${dir}/run.lock`, { read: true, write: true });
    await unlockRunDir(dir, lock);
    assert.deepEqual(await names(dir), []);
    assert.equal(await isRunLocked(dir), false);
    // …may lock that file now, but it is no longer run.lock: the next run takes the new one.
    assert.equal(await stale.tryLock(true), true);
    const next = await lockRunDir(dir);
    assert.ok(next);
    assert.equal(await isRunLocked(dir), true);
    stale.close();
    await unlockRunDir(dir, next);
    assert.deepEqual(await names(dir), []);
  });
});

Deno.test("parseMetrics() reads metrics.jsonl back, skipping blank lines and a line cut short", () => {
  assert.deepEqual(
    parseMetrics('{"step":0,"evalAccuracy":0.5}\n\n{"step":1,"kl":0.1}\n["x"]\n{"loss":1}\n{"st'),
    [{ step: 0, evalAccuracy: 0.5 }, { step: 1, kl: 0.1 }],
  );
  assert.deepEqual(parseMetrics(""), []);
});
