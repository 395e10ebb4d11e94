import assert from "node:assert/strict";
import { fnScorer } from "../../../../runtime/rl/rewards/fn.ts";
import type { BatchScorer, Sample } from "../../../../runtime/rl/rewards/types.ts";

function sample(completion: string, answer = ""): Sample {
  return { prompt: "", completion, answer, row: { id: 1 }, tokens: 1, truncated: false };
}

const HELPER = `export const scale = 10;\n`;

const REWARD = `
import { scale } from "./helper.ts";
import config from "./config.json" with { type: "json" };

type S = { completion: string; answer: string };

export default function (sample: S): number {
  return sample.completion.length / scale;
}

export async function exact(sample: S): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 1));
  return sample.completion === sample.answer ? 1 : 0;
}

export const notAFunction = 3;

export function throws() {
  throw new RangeError("no way\\nsecond line");
}

export function nan() {
  return NaN;
}

export function text() {
  return "1";
}

export function loop(sample: S): number {
  if (sample.completion === "loop") for (;;) {}
  return 1;
}

export function never(): Promise<number> {
  return new Promise(() => {});
}

export function late() {
  setTimeout(() => { throw new Error("late"); }, 0);
  return 1;
}

export async function reads() {
  return (await Deno.readTextFile(new URL("./secret.txt", import.meta.url))).length;
}

export async function fetches() {
  return (await fetch("http://example.com/")).status;
}

export async function connects() {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: 8123 });
  conn.close();
  return 1;
}

export function configured(): number {
  return config.bonus;
}

export function env() {
  return Deno.env.get("HOME")?.length ?? 0;
}
`;

/** The reward module and the files beside it, written once for this file. */
const DIR = Deno.makeTempDirSync({ prefix: "giftwrap_fn_" });
Deno.writeTextFileSync(`${DIR}/helper.ts`, HELPER);
Deno.writeTextFileSync(`${DIR}/reward.ts`, REWARD);
Deno.writeTextFileSync(`${DIR}/secret.txt`, "secret");
Deno.writeTextFileSync(`${DIR}/config.json`, `{ "bonus": 0.25 }`);
globalThis.addEventListener("unload", () => Deno.removeSync(DIR, { recursive: true }));

/** Runs `body` with the reward module's URL and its directory. */
async function withModule(body: (url: string, dir: string) => Promise<void>): Promise<void> {
  await body(new URL(`file://${DIR}/reward.ts`).href, DIR);
}

/** Loads a scorer, runs `body` with it, closes it. */
async function withScorer(
  options: Parameters<typeof fnScorer>[0],
  body: (scorer: BatchScorer) => Promise<void>,
): Promise<void> {
  const scorer = await fnScorer(options);
  try {
    await body(scorer);
  } finally {
    await scorer.close?.();
  }
}

function messages(scores: (number | Error)[]): (number | string)[] {
  return scores.map((s) => s instanceof Error ? s.message : s);
}

Deno.test("fnScorer() scores the same in-process and sandboxed, sync and async", async () => {
  // The module imports a helper module and a JSON file next to it, which the sandbox allows.
  await withModule(async (module) => {
    const samples = [sample("abc", "abc"), sample("", "x"), sample("abcdefghij", "abc")];
    for (const sandbox of [false, true]) {
      const options = { module, sandbox, timeoutMs: 2000 };
      await withScorer({ ...options, export: "default" }, async (scorer) => {
        assert.deepEqual(await scorer.score(samples), [0.3, 0, 1], `sandbox: ${sandbox}`);
      });
      await withScorer({ ...options, export: "exact" }, async (scorer) => {
        assert.deepEqual(await scorer.score(samples), [1, 0, 0], `sandbox: ${sandbox}`);
      });
      await withScorer({ ...options, export: "configured" }, async (scorer) => {
        assert.deepEqual(await scorer.score(samples.slice(0, 1)), [0.25], `sandbox: ${sandbox}`);
      });
    }
  });
});

Deno.test("fnScorer() sandboxed: reading, fetching, connecting and env are denied", async () => {
  await withModule(async (module, dir) => {
    const denied: Record<string, string> = {};
    for (const name of ["reads", "fetches", "connects", "env"]) {
      await withScorer({ module, export: name, sandbox: true, timeoutMs: 2000 }, async (scorer) => {
        const [score] = await scorer.score([sample("x")]);
        assert.ok(score instanceof Error, name);
        denied[name] = score.message;
      });
    }
    // what the caller sees:
    const label = `reward ${module}`;
    assert.deepEqual(denied, {
      reads: `${label}#reads: permission denied: Requires read access to "${dir}/secret.txt"`,
      fetches: `${label}#fetches: permission denied: Requires net access to "example.com:80"`,
      connects: `${label}#connects: permission denied: Requires net access to "127.0.0.1:8123"`,
      env: `${label}#env: permission denied: Requires env access to "HOME"`,
    });
    // in-process, the same module reads what the trainer may read
    await withScorer({ module, export: "reads", sandbox: false, timeoutMs: 2000 }, async (s) => {
      assert.deepEqual(await s.score([sample("x")]), [6]);
    });
  });
});

Deno.test("fnScorer() sandboxed: a call stuck in a loop is killed and the next call works", async () => {
  await withModule(async (module) => {
    const options = { module, export: "loop", sandbox: true, timeoutMs: 300 };
    await withScorer(options, async (scorer) => {
      const scores = await scorer.score([sample("ok"), sample("loop"), sample("ok")]);
      const stuck = `reward ${module}#loop: no result within 300 ms (its process was killed)`;
      assert.deepEqual(messages(scores), [1, stuck, 1]);
      // Each stuck call's process is killed, so there is no limit on how many may time out.
      const again = await scorer.score([
        sample("loop"),
        sample("loop"),
        sample("loop"),
        sample("ok"),
      ]);
      assert.deepEqual(messages(again), [stuck, stuck, stuck, 1]);
    });
  });
});

Deno.test("fnScorer() times out a call that never resolves, in-process and sandboxed", async () => {
  await withModule(async (module) => {
    for (const sandbox of [false, true]) {
      await withScorer({ module, export: "never", sandbox, timeoutMs: 100 }, async (scorer) => {
        const [score] = await scorer.score([sample("x")]);
        assert.ok(score instanceof Error);
        assert.match(score.message, new RegExp(`^reward ${module}#never: no result within 100 ms`));
      });
    }
  });
});

Deno.test("fnScorer() gives an Error for a throw or a non-finite return, one line", async () => {
  await withModule(async (module) => {
    for (const sandbox of [false, true]) {
      const got: string[] = [];
      for (const name of ["throws", "nan", "text"]) {
        await withScorer({ module, export: name, sandbox, timeoutMs: 2000 }, async (scorer) => {
          got.push(...messages(await scorer.score([sample("x")])).map(String));
        });
      }
      assert.deepEqual(got, [
        `reward ${module}#throws: threw RangeError: no way`,
        `reward ${module}#nan: returned NaN, not a finite number`,
        `reward ${module}#text: returned string, not a finite number`,
      ], `sandbox: ${sandbox}`);
    }
  });
});

Deno.test("fnScorer() sandboxed: an error outside a call leaves its process serving", async () => {
  await withModule(async (module) => {
    await withScorer({ module, export: "late", sandbox: true, timeoutMs: 2000 }, async (scorer) => {
      assert.deepEqual(await scorer.score([sample("x")]), [1]);
      await new Promise((resolve) => setTimeout(resolve, 50)); // the timer has thrown by now
      assert.deepEqual(await scorer.score([sample("x"), sample("y")]), [1, 1]);
    });
  });
});

Deno.test("fnScorer() refuses a missing module, a missing export and a non-function", async () => {
  await withModule(async (module, dir) => {
    for (const sandbox of [false, true]) {
      const missing = new URL(`file://${dir}/nothing.ts`).href;
      await assert.rejects(
        fnScorer({ module: missing, export: "default", sandbox, timeoutMs: 1000 }),
        { message: `Cannot load reward ${missing}#default: module not found` },
      );
      await assert.rejects(
        fnScorer({ module, export: "score", sandbox, timeoutMs: 1000 }),
        { message: `Cannot load reward ${module}#score: export 'score' not found` },
      );
      await assert.rejects(
        fnScorer({ module, export: "notAFunction", sandbox, timeoutMs: 1000 }),
        {
          message: `Cannot load reward ${module}#notAFunction: ` +
            "export 'notAFunction' is not a function (number)",
        },
      );
    }
    await assert.rejects(
      fnScorer({ module: "./reward.ts", export: "default", sandbox: true, timeoutMs: 1000 }),
      /must be an absolute file: or https: URL/,
    );
  });
});
