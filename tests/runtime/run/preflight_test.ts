import assert from "node:assert/strict";
import { TINY } from "../_tiny.ts";
import {
  assertNoStack,
  assertUsageError,
  giftwrap,
  lines,
  RUN_PERMISSIONS,
  withTempDir,
} from "../../_helpers.ts";

const ROOT = new URL("../../../", import.meta.url);

/** The permissions of `deno task validate`, as deno.json grants them. */
const VALIDATE: string[] = JSON.parse(
  await Deno.readTextFile(new URL("deno.json", ROOT)),
).tasks.validate.split(" ").filter((w: string) => w.startsWith("--"));

const REWARDS = `
export const exact = ({ completion, answer }) => (completion === answer ? 1 : 0);
export const notAFunction = 3;
`;

/** Rows of one-digit sums, `{"q": "a+b=", "a": "c"}`. */
function sums(n: number): string[] {
  return Array.from(
    { length: n },
    (_, i) => JSON.stringify({ q: `${i % 10}+1=`, a: `${i % 10 + 1}` }),
  );
}

/** A tiny JSON Lines recipe on `data.jsonl` with an `fn` reward, as JSON, with `changes`. */
function jsonlRecipe(changes: Record<string, unknown> = {}): string {
  return JSON.stringify({
    ...TINY,
    data: {
      kind: "jsonl",
      path: "data.jsonl",
      prompt: "q",
      answer: "a",
      eval: 4,
      maxPromptTokens: 8,
    },
    rewards: [
      { source: { kind: "numericAnswer" } },
      { source: { kind: "fn", module: "./rewards.js", export: "exact" }, weight: 0 },
    ],
    eval: { every: 2, metric: { kind: "numericAnswer" } },
    ...changes,
  });
}

Deno.test("validate is ok for a recipe whose rewards load and whose data fits, and exits", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/rewards.js`, REWARDS);
    await Deno.writeTextFile(`${dir}/data.jsonl`, sums(20).join("\n") + "\n");
    await Deno.writeTextFile(`${dir}/ok.json`, jsonlRecipe());
    // The sandboxed worker is closed: the process ends by itself.
    const ok = await giftwrap(["validate", "ok.json"], dir, VALIDATE);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^ok\.json: ok · plan [0-9a-f]{16} · 0 warnings\n$/);
  });
});

Deno.test("validate names a reward export that does not exist or is no function, exit 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/rewards.js`, REWARDS);
    await Deno.writeTextFile(`${dir}/data.jsonl`, sums(20).join("\n") + "\n");
    const reward = (name: string) => [
      { source: { kind: "numericAnswer" } },
      { source: { kind: "fn", module: "./rewards.js", export: name }, weight: 0 },
    ];
    await Deno.writeTextFile(`${dir}/missing.json`, jsonlRecipe({ rewards: reward("exakt") }));
    await Deno.writeTextFile(
      `${dir}/number.json`,
      jsonlRecipe({ rewards: reward("notAFunction") }),
    );
    const [missing, number] = await Promise.all([
      giftwrap(["validate", "missing.json"], dir, VALIDATE),
      giftwrap(["validate", "number.json"], dir, VALIDATE),
    ]);
    assert.equal(missing.code, 2, missing.stderr);
    assert.deepEqual(lines(missing.stderr), [
      "missing.json: rewards[1].source: cannot load ./rewards.js#exakt: export 'exakt' not found",
    ]);
    assert.equal(missing.stdout, "");
    assert.equal(number.code, 2, number.stderr);
    assert.deepEqual(lines(number.stderr), [
      "number.json: rewards[1].source: cannot load ./rewards.js#notAFunction: export " +
      "'notAFunction' is not a function (number)",
    ]);
  });
});

Deno.test("validate names each data line that does not fit, with its file and line, exit 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/rewards.js`, REWARDS);
    const rows = sums(20);
    rows[2] = JSON.stringify({ q: "3×1=", a: "3" }); // line 3: not in the tokenizer's alphabet
    rows[6] = JSON.stringify({ q: "1+2+3+4=", a: "10" }); // line 7: 9 tokens with <bos>, over 8
    await Deno.writeTextFile(`${dir}/data.jsonl`, rows.join("\n") + "\n");
    await Deno.writeTextFile(`${dir}/bad.json`, jsonlRecipe());
    const bad = await giftwrap(["validate", "bad.json"], dir, VALIDATE);
    assert.equal(bad.code, 2, bad.stderr);
    assertNoStack(bad.stderr);
    const data = `${await Deno.realPath(dir)}/data.jsonl`;
    assert.deepEqual(lines(bad.stderr), [
      `${data}:3: prompt: expected characters of the tokenizer's alphabet (printable ASCII or a ` +
      `newline), got "×" (U+00D7) at character 2`,
      `${data}:7: prompt: expected at most 8 tokens with <bos> (data.maxPromptTokens), got 9`,
    ]);

    // The run stops at the first of them, before any training, naming its line.
    const run = await giftwrap(["run", "bad.json", "--runs-dir", "runs"], dir, RUN_PERMISSIONS);
    assert.equal(run.code, 2, run.stderr);
    assert.deepEqual(lines(run.stderr), [`giftwrap: ${lines(bad.stderr)[0]}`]);
  });
});

Deno.test("validate and run refuse a budget this machine cannot hold in one line, before training", async () => {
  await withTempDir(async (dir) => {
    // Completions of 131,072 tokens: a warm start estimated at terabytes, on every backend.
    const long = { ...TINY, sampling: { temperature: 1, maxNewTokens: 131072 } };
    for (const backend of ["cpu", "wasm", "webgpu"]) {
      await Deno.writeTextFile(`${dir}/${backend}.json`, JSON.stringify({ ...long, backend }));
    }
    const expected = (name: string) =>
      new RegExp(
        `^${name}: sampling\\.maxNewTokens: the warm start's estimated peak of 8\\.01 TiB \\(16 ` +
          `rows of 131077 tokens\\) does not fit .*; fix: set sampling\\.maxNewTokens to \\d+ ` +
          `or less \\(sequences of \\d+ tokens at these batch sizes\\)$`,
      );
    for (const backend of ["cpu", "wasm", "webgpu"]) {
      const validate = await giftwrap(["validate", `${backend}.json`], dir, VALIDATE);
      assertUsageError(validate, `validate on ${backend}`);
      assert.match(validate.stderr.trimEnd(), expected(`${backend}.json`));
      const plan = await giftwrap(["plan", `${backend}.json`], dir, VALIDATE);
      assertUsageError(plan, `plan on ${backend}`);
      // run refuses it before anything loads or trains: no run directory.
      const run = await giftwrap(["run", `${backend}.json`, "--runs-dir", "runs"], dir);
      assertUsageError(run, `run on ${backend}`);
      assert.match(run.stderr.trimEnd(), expected(`${backend}.json`));
    }
    assert.equal(await Deno.stat(`${dir}/runs`).then(() => true, () => false), false);
  });
});

Deno.test("validate names a missing checkpoint and objective module", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/files.json`,
      JSON.stringify({
        ...TINY,
        reference: { checkpoint: "runs/gone/checkpoints/final" },
        objective: { kind: "custom", module: "./objectives/mine.ts", reads: { reference: true } },
      }),
    );
    const files = await giftwrap(["validate", "files.json"], dir, VALIDATE);
    assert.equal(files.code, 2, files.stderr);
    assert.deepEqual(lines(files.stderr), [
      "files.json: reference.checkpoint: expected a checkpoint directory with config.json and " +
      "model.safetensors, got 'runs/gone/checkpoints/final' without config.json and " +
      "model.safetensors",
      "files.json: objective.module: expected a module, got './objectives/mine.ts' (not found)",
    ]);
  });
});

Deno.test("validate's checks load no TensorFlow.js", async () => {
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "runtime/run/preflight.ts"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  const graph = JSON.parse(new TextDecoder().decode(stdout)) as {
    modules: { specifier: string }[];
  };
  const specifiers = graph.modules.map((m) => m.specifier);
  assert.ok(specifiers.some((s) => s.endsWith("runtime/rl/rewards/fn.ts")), "not the module graph");
  assert.deepEqual(specifiers.filter((s) => s.includes("tensorflow")), []);
});
