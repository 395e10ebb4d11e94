// Ctrl-C, as a user presses it at the command line: the first stops the run within a step at any
// stage (the warm start included), the second quits at once even in the middle of a long step.

import assert from "node:assert/strict";
import { Interrupted, stopRequested } from "../../../runtime/run/interrupt.ts";
import type { RunInfo } from "../../../runtime/run/run_dir.ts";
import { assertNoStack, lines, RUN_PERMISSIONS, withTempDir } from "../../_helpers.ts";
import { TINY } from "../_tiny.ts";

const CLI = decodeURIComponent(new URL("../../../cli.ts", import.meta.url).pathname);
const SLOW = new URL("../fixtures/slow_objective.ts", import.meta.url).href;
const STOPPING = "stopping after this step to write a checkpoint (Ctrl-C again to quit now)";

/** The tiny recipe on wasm with `changes`, written as JSON into `dir`. */
async function writeRecipe(dir: string, changes: Record<string, unknown>): Promise<string> {
  const path = `${dir}/recipe.json`;
  await Deno.writeTextFile(path, JSON.stringify({ ...TINY, ...changes }, null, 2));
  return path;
}

/** A command line run in progress, its output collected as it comes. */
class Running {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly #done: Promise<void>;

  constructor(args: string[]) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...RUN_PERMISSIONS, CLI, ...args],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const collect = async (stream: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) this[into] += text;
    };
    this.#done = Promise.all([
      collect(this.child.stdout, "stdout"),
      collect(this.child.stderr, "stderr"),
    ]).then(() => {});
  }

  /** Waits until `what` says so, for at most `seconds` (the run is killed if it never does). */
  async waitFor(what: () => boolean, seconds: number, waiting: string): Promise<void> {
    const until = performance.now() + 1000 * seconds;
    while (!what()) {
      if (performance.now() > until) {
        this.child.kill("SIGKILL");
        await this.#done;
        assert.fail(`never ${waiting} in ${seconds} s:\n${this.stdout}\n${this.stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /**
   * The exit status and the seconds from now to the exit; killed (and failed) after `seconds`.
   */
  async exit(seconds: number): Promise<{ code: number; after: number }> {
    const from = performance.now();
    const watchdog = setTimeout(() => this.child.kill("SIGKILL"), 1000 * seconds);
    try {
      const { code } = await this.child.status;
      await this.#done;
      return { code, after: (performance.now() - from) / 1000 };
    } finally {
      clearTimeout(watchdog);
    }
  }
}

Deno.test("giftwrap run stopped by Ctrl-C during the warm start exits 130 within a step", async () => {
  await withTempDir(async (tmp) => {
    // A warm start of hours: only the signal ends this run.
    const recipe = await writeRecipe(tmp, {
      policy: { ...TINY.policy, warmStart: { sftSteps: 1_000_000, batchSize: 16 } },
    });
    const run = new Running(["run", recipe, "--runs-dir", `${tmp}/runs`]);
    await run.waitFor(() => run.stdout.includes("\nwarm start 50/1000000 "), 120, "warmed up");
    run.child.kill("SIGINT");
    const { code, after } = await run.exit(60);
    assert.equal(code, 130, run.stderr);
    // One warm-start step of this model takes milliseconds; the seconds allow for a busy machine.
    assert.ok(after < 5, `exited ${after.toFixed(1)} s after Ctrl-C`);
    assertNoStack(run.stderr);
    const out = lines(run.stdout);
    assert.ok(out.includes(STOPPING), run.stdout);
    const dir = / → (\S+)/.exec(out[0]!)![1]!;
    assert.equal(out.at(-1), `stopped during the warm start, before any RL step · ${dir}`);
    const info = JSON.parse(await Deno.readTextFile(`${dir}/run.json`)) as RunInfo;
    assert.deepEqual([info.status, info.step, info.checkpoint], ["interrupted", 0, null]);
    // Nothing of the warm start is kept (no initial policy, no cache entry), and no lock.
    assert.deepEqual(await Array.fromAsync(Deno.readDir(`${dir}/checkpoints`)), []);
    await assert.rejects(() => Deno.stat(`${tmp}/runs/.cache/warm-start`), Deno.errors.NotFound);
    await assert.rejects(() => Deno.stat(`${dir}/run.lock`), Deno.errors.NotFound);
  });
});

Deno.test("giftwrap run quits at once on a second Ctrl-C, in the middle of a long step", async () => {
  await withTempDir(async (tmp) => {
    // The first update holds the thread that trains for 60 s: neither signal can reach it.
    const recipe = await writeRecipe(tmp, {
      reference: "none",
      objective: { kind: "custom", module: SLOW, export: "slow", reads: { reference: false } },
    });
    const run = new Running(["run", recipe, "--runs-dir", `${tmp}/runs`]);
    await run.waitFor(() => run.stderr.includes("slow update"), 120, "reached the slow update");
    run.child.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 300));
    run.child.kill("SIGINT");
    const { code, after } = await run.exit(50);
    assert.equal(code, 130);
    assert.ok(after < 5, `exited ${after.toFixed(1)} s after the second Ctrl-C`);
    // It quit without finishing the step: no checkpoint line, run.json still says running.
    assert.ok(!run.stdout.includes("stopped after step"), run.stdout);
  });
});

/** The tiny recipe whose reward, in-process, computes for 60 s on its first call without yielding. */
async function busyRewardRecipe(dir: string): Promise<string> {
  await Deno.writeTextFile(
    `${dir}/busy.ts`,
    `let calls = 0;
export function busy(): number {
  if (calls++ === 0) {
    console.error("busy reward");
    const until = performance.now() + 60_000;
    while (performance.now() < until) {
      // no await: neither a signal listener nor a timer runs on this thread until it returns
    }
  }
  return 1;
}
`,
  );
  return await writeRecipe(dir, {
    policy: { ...TINY.policy, warmStart: { sftSteps: 2, batchSize: 4 } },
    eval: { ...TINY.eval, metric: { kind: "numericAnswer" } },
    rewards: [{ source: { kind: "fn", module: "./busy.ts", export: "busy", sandbox: false } }],
  });
}

for (const [signal, status] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  Deno.test(`giftwrap run quits at once on a second ${signal} while an in-process reward computes`, async () => {
    await withTempDir(async (tmp) => {
      const recipe = await busyRewardRecipe(tmp);
      const run = new Running(["run", recipe, "--runs-dir", `${tmp}/runs`]);
      await run.waitFor(() => run.stderr.includes("busy reward"), 120, "reached the busy reward");
      run.child.kill(signal);
      await new Promise((resolve) => setTimeout(resolve, 300));
      run.child.kill(signal);
      const { code, after } = await run.exit(50);
      assert.equal(code, status, run.stderr);
      assert.ok(after < 5, `exited ${after.toFixed(1)} s after the second ${signal}`);
      assert.ok(!run.stdout.includes("stopped after step"), run.stdout);
    });
  });
}

Deno.test("giftwrap run takes a Ctrl-C delivered twice at once (terminal and deno task) as one", async () => {
  await withTempDir(async (tmp) => {
    const recipe = await writeRecipe(tmp, {
      policy: { ...TINY.policy, warmStart: { sftSteps: 1_000_000, batchSize: 16 } },
    });
    const run = new Running(["run", recipe, "--runs-dir", `${tmp}/runs`]);
    await run.waitFor(() => run.stdout.includes("\nwarm start 50/1000000 "), 120, "warmed up");
    // A terminal sends Ctrl-C to the process group; deno task, in it, forwards it to the run too:
    // the run gets SIGINT twice, some milliseconds apart, for one press.
    run.child.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 10));
    run.child.kill("SIGINT");
    const { code } = await run.exit(60);
    assert.equal(code, 130, run.stderr);
    const out = lines(run.stdout);
    assert.ok(out.includes(STOPPING), run.stdout);
    assert.match(out.at(-1)!, /^stopped during the warm start, before any RL step · /);
  });
});

Deno.test("stopRequested() lets an abort waiting for the event loop land while a loop computes", async () => {
  assert.equal(await stopRequested(undefined), false);
  const stop = new AbortController();
  await stopRequested(stop.signal); // the event loop turns now, and not again for 50 ms
  // Aborted by a timer, which fires only when the computing loop lets the event loop turn.
  setTimeout(() => stop.abort(), 0);
  let computed = 0;
  while (!(await stopRequested(stop.signal))) {
    const until = performance.now() + 10;
    while (performance.now() < until) {
      // A step of compute that does not yield.
    }
    computed += 10;
    assert.ok(computed < 1000, "the abort never landed");
  }
  assert.ok(computed >= 10 && computed <= 100, `${computed} ms`);
  assert.equal(new Interrupted().name, "Interrupted");
});
