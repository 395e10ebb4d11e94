// The files a recipe names are part of its plan: their SHA-256 hashes are in `plan.inputs`, so the
// plan hash changes when one is edited, and plan, validate, run and the library agree on it.

import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { compile, formatPlan, planHash, withInputs } from "../../mod.ts";
import frontDoor from "../../recipes/addition_gift.ts";
import { describeChange, inputChange } from "../../dsl/inputs.ts";
import { TINY } from "../runtime/_tiny.ts";
import { runMain, withTempDir } from "../_helpers.ts";

const ROOT = new URL("../../", import.meta.url);

/** The SHA-256 of `text`'s UTF-8 bytes, in hex. */
async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

const DATA = Array.from({ length: 12 }, (_, i) => JSON.stringify({ q: `${i % 7}+1=`, a: "1" }))
  .join("\n") + "\n";
const SCORE = 'import { same } from "./_helper.ts";\n' +
  '// import "./gone.ts"; (a file that is not there is not an input)\n' +
  "export function score(s: { completion: string; answer: string }): number {\n  return same(s.completion, s.answer) ? 1 : 0;\n}\n";
const OBJECTIVE = 'import { scale } from "../outside.ts";\nexport default { scale };\n';
const HELPER = "export function same(a: string, b: string): boolean {\n  return a === b;\n}\n";

/** A project in `dir/project`: a JSON Lines file, an `fn` reward with an import, a recipe. */
async function project(dir: string, objective = false): Promise<{ path: string; recipe: object }> {
  const root = `${dir}/project`;
  await Deno.mkdir(`${root}/data`, { recursive: true });
  await Deno.mkdir(`${root}/rewards`);
  await Deno.writeTextFile(`${root}/data/sums.jsonl`, DATA);
  await Deno.writeTextFile(`${root}/rewards/score.ts`, SCORE);
  await Deno.writeTextFile(`${root}/rewards/_helper.ts`, HELPER);
  // An import from outside the recipe's directory is not an input (nor what a sandboxed module
  // may load).
  await Deno.writeTextFile(`${dir}/outside.ts`, "export const scale = 1;\n");
  await Deno.writeTextFile(`${root}/objective.ts`, OBJECTIVE);
  const recipe = {
    ...TINY,
    data: { kind: "jsonl", path: "data/sums.jsonl", prompt: "q", answer: "a", eval: 2 },
    sampling: { maxNewTokens: 3 },
    rewards: [
      { source: { kind: "numericAnswer" } },
      { source: { kind: "fn", module: "./rewards/score.ts", export: "score" }, weight: 0 },
    ],
    eval: { every: 2, metric: { kind: "numericAnswer" } },
    ...(objective
      ? {
        objective: { kind: "custom", module: "./objective.ts", reads: { reference: false } },
        reference: "none",
      }
      : {}),
  };
  const path = `${root}/recipe.json`;
  await Deno.writeTextFile(path, JSON.stringify(recipe));
  return { path, recipe };
}

Deno.test("withInputs() records the SHA-256 of the data file, reward modules and their imports, and the objective", async () => {
  await withTempDir(async (dir) => {
    const { path, recipe } = await project(dir, true);
    const plan = await withInputs(compile(recipe as never), pathToFileURL(path));
    const bytes = (text: string) => new TextEncoder().encode(text).length;
    assert.deepEqual(plan.inputs, [
      {
        field: "data.path",
        path: "data/sums.jsonl",
        bytes: bytes(DATA),
        sha256: await sha256(DATA),
      },
      {
        field: "rewards[1].source.module",
        path: "./rewards/score.ts",
        bytes: bytes(SCORE),
        sha256: await sha256(SCORE),
      },
      {
        field: "rewards[1].source.module",
        path: "rewards/_helper.ts",
        bytes: bytes(HELPER),
        sha256: await sha256(HELPER),
      },
      {
        field: "objective.module",
        path: "./objective.ts",
        bytes: bytes(OBJECTIVE),
        sha256: await sha256(OBJECTIVE),
      },
    ]);
    // The plan prints them, after the data.
    const text = formatPlan(plan);
    assert.ok(
      text.includes(
        `\n  inputs      data/sums.jsonl · data.path · ${bytes(DATA)} bytes · sha256 ` +
          `${(await sha256(DATA)).slice(0, 16)}…\n              ./rewards/score.ts · `,
      ),
      text,
    );

    // An edit of any of them is another plan.
    const hash = planHash(plan);
    const again = async () =>
      planHash(await withInputs(compile(recipe as never), pathToFileURL(path)));
    assert.equal(await again(), hash);
    for (
      const file of ["data/sums.jsonl", "rewards/score.ts", "rewards/_helper.ts", "objective.ts"]
    ) {
      const at = `${dir}/project/${file}`;
      const before = await Deno.readTextFile(at);
      await Deno.writeTextFile(at, before + "\n");
      assert.notEqual(await again(), hash, file);
      await Deno.writeTextFile(at, before);
    }
    assert.equal(await again(), hash);
  });
});

Deno.test("withInputs() leaves a plan that names no files as it was, hash and all", async () => {
  const plan = compile(frontDoor);
  const stamped = await withInputs(plan, new URL("recipes/addition_gift.ts", ROOT));
  assert.deepEqual(stamped, plan);
  assert.ok(!("inputs" in stamped));
  assert.equal(planHash(stamped), "c7bc3fdac870be55");
});

Deno.test("plan, plan --json, validate and withInputs() agree on a recipe's hash, inputs included", async () => {
  await withTempDir(async (dir) => {
    const { path, recipe } = await project(dir);
    const library = planHash(await withInputs(compile(recipe as never), pathToFileURL(path)));
    assert.notEqual(library, planHash(compile(recipe as never)));

    const json = await runMain(["plan", "--json", path]);
    assert.equal(json.code, 0, json.stderr.join("\n"));
    const written = JSON.parse(json.stdout.join("\n"));
    assert.equal(written.hash, library);
    assert.equal(written.inputs[0].sha256, await sha256(DATA));

    const text = await runMain(["plan", path]);
    assert.equal(text.stdout[0], `plan tiny · hash ${library}`);

    const validated = await runMain(["validate", path]);
    assert.equal(validated.code, 0, validated.stderr.join("\n"));
    assert.deepEqual(validated.stdout, [`${path}: ok · plan ${library} · 0 warnings`]);

    // A plan file whose data changed since it was written says which file.
    const planFile = `${dir}/project/plan.json`;
    await Deno.writeTextFile(planFile, json.stdout.join("\n"));
    await Deno.writeTextFile(`${dir}/project/data/sums.jsonl`, DATA + '{"q": "9+9=", "a": "18"}\n');
    const edited = await runMain(["plan", planFile]);
    assert.equal(edited.code, 0);
    const now = await sha256(DATA + '{"q": "9+9=", "a": "18"}\n');
    assert.deepEqual(edited.stderr, [
      `${planFile}: warning: the plan file records hash ${library}, but its recipe compiles to ` +
      `${edited.stdout[0]!.split(" ").pop()} here: data/sums.jsonl changed since the plan was ` +
      `written (sha256 ${(await sha256(DATA)).slice(0, 12)}… then, ${now.slice(0, 12)}… now)`,
    ]);
  });
});

Deno.test("inputChange() and describeChange() name the first file whose content differs", () => {
  const a = { field: "data.path", path: "data/a.jsonl", bytes: 1, sha256: "a".repeat(64) };
  const b = { field: "objective.module", path: "./b.ts", bytes: 1, sha256: "b".repeat(64) };
  assert.equal(inputChange([a, b], [a, b]), null);
  assert.equal(inputChange(undefined, undefined), null);
  const edited = inputChange([a, b], [a, { ...b, sha256: "c".repeat(64) }]);
  assert.deepEqual(edited, { path: "./b.ts", then: "b".repeat(64), now: "c".repeat(64) });
  assert.equal(
    describeChange(edited!, "the run started"),
    "./b.ts changed since the run started (sha256 bbbbbbbbbbbb… then, cccccccccccc… now)",
  );
  const gone = inputChange([a, b], [b])!;
  assert.equal(
    describeChange(gone, "the plan was made"),
    "data/a.jsonl changed since the plan was made (sha256 aaaaaaaaaaaa… then, unreadable now)",
  );
  const added = inputChange([b], [a, b])!;
  assert.equal(
    describeChange(added, "the plan was written"),
    "data/a.jsonl changed since the plan was written (no file then, sha256 aaaaaaaaaaaa… now)",
  );
  // What a hand-edited plan file may hold instead of inputs counts as none.
  assert.deepEqual(inputChange([null, 3, { path: 1 }] as never, [a]), {
    path: "data/a.jsonl",
    then: null,
    now: "a".repeat(64),
  });
  assert.equal(inputChange({ not: "a list" } as never, undefined), null);
});

Deno.test("withInputs() records a checkpoint directory's model files, not its optimiser state", async () => {
  await withTempDir(async (dir) => {
    const files: Record<string, string> = {
      "config.json": '{"model_type": "llama"}',
      "model-00001-of-00002.safetensors": "weights one",
      "model-00002-of-00002.safetensors": "weights two",
      "model.safetensors.index.json": '{"weight_map": {}}',
      "tokenizer.json": "{}",
      "optimizer.safetensors": "moments",
      "metrics.jsonl": "{}",
      "notes.txt": "not the model",
    };
    await Deno.mkdir(`${dir}/ref`);
    await Deno.mkdir(`${dir}/rm`);
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/ref/${name}`, text);
    }
    await Deno.writeTextFile(`${dir}/rm/config.json`, "{}");
    await Deno.writeTextFile(`${dir}/rm/model.safetensors`, "rm weights");
    const recipe = {
      ...TINY,
      reference: { checkpoint: "ref/" },
      rewards: [
        { ...TINY.rewards[0]!, success: true },
        { source: { kind: "rewardModel", checkpoint: "./rm" } },
      ],
    };
    const base = pathToFileURL(`${dir}/recipe.json`);
    const plan = await withInputs(compile(recipe as never), base);
    const expected = [
      ["reference.checkpoint", "ref/config.json"],
      ["reference.checkpoint", "ref/model-00001-of-00002.safetensors"],
      ["reference.checkpoint", "ref/model-00002-of-00002.safetensors"],
      ["reference.checkpoint", "ref/model.safetensors.index.json"],
      ["reference.checkpoint", "ref/tokenizer.json"],
      ["rewards[1].source.checkpoint", "./rm/config.json"],
      ["rewards[1].source.checkpoint", "./rm/model.safetensors"],
    ];
    assert.deepEqual(plan.inputs!.map((i) => [i.field, i.path]), expected);
    const shard = plan.inputs!.find((i) => i.path === "ref/model-00002-of-00002.safetensors")!;
    assert.equal(shard.sha256, await sha256("weights two"));
    // A changed weight is another plan; the optimiser state and other files are not the model.
    const hash = planHash(plan);
    const again = async () => planHash(await withInputs(compile(recipe as never), base));
    await Deno.writeTextFile(`${dir}/ref/optimizer.safetensors`, "other moments");
    await Deno.writeTextFile(`${dir}/ref/notes.txt`, "other notes");
    assert.equal(await again(), hash);
    await Deno.writeTextFile(`${dir}/ref/model-00002-of-00002.safetensors`, "weights 2");
    assert.notEqual(await again(), hash);
  });
});
