// run.lock lives as long as a process runs the run: held while it trains, removed when it ends,
// however it ends (finished, stopped, failed); `runs` still tells running from killed by it.

import assert from "node:assert/strict";
import { listRuns } from "../../../analysis/runs.ts";
import { execute, RunSetupError } from "../../../runtime/run/execute.ts";
import { isRunLocked } from "../../../runtime/run/run_dir.ts";
import { withTempDir } from "../../_helpers.ts";
import { tinyPlan } from "../_tiny.ts";

/** Whether `dir` has a run.lock file. */
async function hasLock(dir: string): Promise<boolean> {
  return await Deno.stat(`${dir}/run.lock`).then(() => true, () => false);
}

/** The one run directory under `runsDir`. */
async function onlyRun(runsDir: string): Promise<string> {
  const [entry, ...more] = (await Array.fromAsync(Deno.readDir(runsDir))).filter((e) =>
    e.name !== ".cache"
  );
  assert.ok(entry && more.length === 0);
  return `${runsDir}/${entry.name}`;
}

Deno.test("execute() holds run.lock while it runs, and removes it when it stops or finishes", async () => {
  await withTempDir(async (runsDir) => {
    const plan = tinyPlan({ steps: 3 });
    const held: Promise<boolean>[] = [];
    const stop = new AbortController();
    const stopped = await execute(plan, {
      runsDir,
      log: () => {},
      signal: stop.signal,
      onStep: (m) => {
        held.push(onlyRun(runsDir).then(isRunLocked));
        if (m.step === 2) stop.abort();
      },
    });
    assert.equal(stopped.status, "interrupted");
    assert.deepEqual(await Promise.all(held), [true, true]);
    assert.equal(await hasLock(stopped.dir), false);
    assert.deepEqual((await listRuns(runsDir)).map((r) => r.status), ["interrupted"]);

    const resumed = await execute(plan, {
      resume: stopped.dir,
      log: () => {},
      onStep: () => held.push(isRunLocked(stopped.dir)),
    });
    assert.equal(resumed.status, "finished");
    assert.deepEqual(await Promise.all(held), [true, true, true]);
    assert.equal(await hasLock(stopped.dir), false);
    assert.deepEqual((await listRuns(runsDir)).map((r) => r.status), ["finished"]);

    // A finished run refuses to resume, and leaves no lock behind for it.
    await assert.rejects(
      () => execute(plan, { resume: stopped.dir, log: () => {} }),
      (e: Error) => e instanceof RunSetupError && / it finished \(step 3\)$/.test(e.message),
    );
    assert.equal(await hasLock(stopped.dir), false);
  });
});

Deno.test("execute() removes run.lock when the run fails", async () => {
  await withTempDir(async (runsDir) => {
    const fail = (m: { step: number }) => {
      if (m.step === 2) throw new Error("the disk is on fire");
    };
    await assert.rejects(
      () => execute(tinyPlan(), { runsDir, log: () => {}, onStep: fail }),
      /^Error: the disk is on fire$/,
    );
    const dir = await onlyRun(runsDir);
    assert.equal(await hasLock(dir), false);
    const [run] = await listRuns(runsDir);
    assert.deepEqual([run!.status, run!.step, run!.error], ["failed", 1, "the disk is on fire"]);
  });
});
