// exportVerl() end to end on the stories front door (a real Hugging Face checkpoint, JSON Lines
// data, a sandboxed reward function): the files, their bytes twice over, the data read back by
// an independent reader, every objective preset exported or refused by field, the --out rules,
// and the command line.

import assert from "node:assert/strict";
import { join } from "node:path";
import { parquetReadObjects } from "hyparquet";
import {
  compile,
  customObjective,
  dapo,
  drGrpo,
  gift,
  grpo,
  gspo,
  onlineDpo,
  type Recipe,
  rloo,
  una,
  withInputs,
} from "../../../mod.ts";
import { type Plan, planHash } from "../../../dsl/plan.ts";
import stories from "../../../recipes/stories_gift.ts";
import { resolveModels } from "../../../runtime/resolve.ts";
import { checkVerlExport, ExportError, exportVerl } from "../../../runtime/export/verl.ts";
import { type Sample, scoreSources } from "../../../runtime/rl/rewards/mod.ts";
import { rewardSources } from "../../../runtime/run/setup.ts";
import { serveRewards } from "../../../runtime/serve/rewards.ts";
import { runMain, withTempDir } from "../../_helpers.ts";
import { PYTHON } from "../../_requires.ts";
import { verlKeys } from "./_verl_keys.ts";

const ROOT = new URL("../../../", import.meta.url);
const RECIPE_URL = new URL("recipes/stories_gift.ts", ROOT);

async function storiesPlan(changes: Partial<Recipe> = {}): Promise<Plan> {
  const recipe = { ...stories, ...changes };
  const resolved = await resolveModels(recipe, RECIPE_URL);
  assert.ok(resolved.ok);
  return await withInputs(compile(recipe, { models: resolved.models }), RECIPE_URL);
}

async function readDir(dir: string): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  for await (const entry of Deno.readDir(dir)) {
    files.set(entry.name, await Deno.readFile(join(dir, entry.name)));
  }
  return files;
}

Deno.test("exportVerl writes the stories recipe's directory, the same bytes twice", async () => {
  const plan = await storiesPlan();
  await withTempDir(async (dir) => {
    const a = await exportVerl(plan, { out: join(dir, "a"), baseUrl: RECIPE_URL });
    const b = await exportVerl(plan, { out: join(dir, "b"), baseUrl: RECIPE_URL });
    assert.deepEqual(a.files, [
      "README.md",
      "eval.parquet",
      "giftwrap_verl.json",
      "giftwrap_verl.py",
      "plan.json",
      "reward.py",
      "run.sh",
      "train.parquet",
    ]);
    assert.equal(a.planHash, planHash(plan));
    const first = await readDir(a.dir);
    const second = await readDir(b.dir);
    assert.deepEqual([...first.keys()].sort(), [...second.keys()].sort());
    for (const [name, bytes] of first) assert.deepEqual(second.get(name), bytes, name);

    // The plan, its hash first; the plugin's settings name it.
    const planJson = JSON.parse(new TextDecoder().decode(first.get("plan.json")));
    assert.equal(planJson.hash, planHash(plan));
    const settings = JSON.parse(new TextDecoder().decode(first.get("giftwrap_verl.json")));
    assert.equal(settings.plan, planHash(plan));
    assert.equal(settings.reference, "rollout");
    assert.equal(settings.groupSize, 8);

    // run.sh: every key is verl's, GIFT is the plugin's, the data is the export's.
    const script = new TextDecoder().decode(first.get("run.sh"));
    const keys = verlKeys();
    const words = [...script.matchAll(/^ {2}['"]([a-z_.]+)=/gm)].map((m) => m[1]!);
    assert.ok(words.length > 40, `${words.length} overrides`);
    for (const key of words) assert.ok(keys.has(key), `unknown verl key ${key}`);
    assert.equal(new Set(words).size, words.length, "a key set twice");
    for (
      const line of [
        "'algorithm.adv_estimator=gift'",
        "'actor_rollout_ref.actor.policy_loss.loss_mode=gift'",
        "'actor_rollout_ref.model.external_lib=giftwrap_verl'",
        "'actor_rollout_ref.rollout.n=8'",
        "'data.train_batch_size=8'",
        `"data.train_files='$DATA/train.parquet'"`,
        `"data.val_files='$DATA/eval.parquet'"`,
        "'trainer.total_training_steps=40'",
        "'trainer.balance_batch=false'",
      ]
    ) assert.ok(script.includes(`  ${line}\n`), line);
    assert.ok(script.includes(`MODEL='${new URL("models/stories260K", ROOT).pathname}'`));

    // The data, read back by an independent reader: the run's 64 held-out problems and the rest.
    const train = await parquetReadObjects({
      file: first.get("train.parquet")!.buffer as ArrayBuffer,
    });
    const evalRows = await parquetReadObjects({
      file: first.get("eval.parquet")!.buffer as ArrayBuffer,
    });
    assert.equal(evalRows.length, 64);
    const lines = (await Deno.readTextFile(new URL("recipes/data/stories.jsonl", ROOT)))
      .split("\n").filter((l) => l.trim() !== "");
    assert.equal(train.length, lines.length - 64);
    const row = train[0] as {
      data_source: string;
      prompt: { role: string; content: string }[];
      reward_model: { ground_truth: string };
      extra_info: { prompt: string; answer: string; split: string };
    };
    assert.equal(row.data_source, "giftwrap/stories-gift");
    assert.equal(row.prompt.at(-1)!.content, row.extra_info.prompt);
    assert.equal(row.reward_model.ground_truth, row.extra_info.answer);
    assert.equal(row.extra_info.split, "train");
  });
});

Deno.test("every objective preset exports completely or is refused by field", async () => {
  const presets: [string, Recipe["objective"], string | null][] = [
    ["gift", gift(), null],
    ["grpo", grpo(), null],
    ["drGrpo", drGrpo(), null],
    ["dapo", dapo(), null],
    ["gspo", gspo(), null],
    ["rloo", rloo(), null],
    ["onlineDpo", onlineDpo(), null],
    ["una", una(), null],
    ["custom", customObjective("./objectives/reinforce.ts"), "objective"],
  ];
  const keys = verlKeys();
  for (const [name, objective, field] of presets) {
    const recipe = { ...stories, objective, reference: undefined } as unknown as Recipe;
    delete (recipe as { reference?: unknown }).reference;
    const resolved = await resolveModels(recipe, RECIPE_URL);
    assert.ok(resolved.ok);
    const plan = compile(recipe, { models: resolved.models });
    if (field !== null) {
      assert.throws(() => checkVerlExport(plan), (e) => {
        assert.ok(e instanceof ExportError, String(e));
        assert.equal(e.field, field, name);
        return true;
      });
      continue;
    }
    checkVerlExport(plan);
    await withTempDir(async (dir) => {
      const result = await exportVerl(plan, { out: join(dir, name), baseUrl: RECIPE_URL });
      for (const { key } of result.overrides) assert.ok(keys.has(key), `${name}: ${key}`);
      assert.ok(result.files.includes("run.sh"), name);
    });
  }
});

Deno.test("exportVerl replaces an earlier export but nothing else", async () => {
  const plan = await storiesPlan();
  await withTempDir(async (dir) => {
    const out = join(dir, "out");
    await exportVerl(plan, { out, baseUrl: RECIPE_URL });
    // Again over the earlier export: fine.
    await exportVerl(plan, { out, baseUrl: RECIPE_URL });
    // A directory of the user's: refused, untouched, no staging left behind.
    const mine = join(dir, "mine");
    await Deno.mkdir(mine);
    await Deno.writeTextFile(join(mine, "notes.txt"), "keep me");
    await assert.rejects(() => exportVerl(plan, { out: mine, baseUrl: RECIPE_URL }), (e) => {
      assert.ok(e instanceof ExportError);
      assert.equal(e.field, "--out");
      return true;
    });
    assert.equal(await Deno.readTextFile(join(mine, "notes.txt")), "keep me");
    // An earlier export with a file of the user's added: refused too.
    await Deno.writeTextFile(join(out, "notes.txt"), "mine");
    await assert.rejects(() => exportVerl(plan, { out, baseUrl: RECIPE_URL }), ExportError);
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names.sort(), ["mine", "out"]);
  });
});

Deno.test("deno task export: the stories recipe exports; tinyGpt and bad usage exit 2 in one line", async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, "verl");
    const ok = await runMain([
      "export",
      new URL("recipes/stories_gift.ts", ROOT).pathname,
      "--to",
      "verl",
      "--out",
      out,
    ]);
    assert.equal(ok.code, 0, ok.stderr.join("\n"));
    assert.match(
      ok.stdout.join("\n"),
      /wrote .*verl\/ \(README\.md, eval\.parquet, .*\) for plan [0-9a-f]{16}/,
    );
    const refused = await runMain([
      "export",
      new URL("recipes/addition_gift.ts", ROOT).pathname,
      "--to",
      "verl",
      "--out",
      join(dir, "x"),
    ]);
    assert.equal(refused.code, 2);
    const lines = refused.stderr.filter((l) => l !== "");
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(
      lines[0]!,
      /addition_gift\.ts: policy\.warmStart: the warm start .* no verl equivalent/,
    );
    await assert.rejects(Deno.stat(join(dir, "x")), Deno.errors.NotFound);
    const usage = await runMain(["export", "recipes/stories_gift.ts", "--to", "trl", "--out", out]);
    assert.equal(usage.code, 2);
  });
});

Deno.test("README: the export's output is the command's", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const at = readme.indexOf("## Beyond one machine");
  // The block after the commands' block.
  const commandsEnd = readme.indexOf("\n```\n", readme.indexOf("```sh", at)) + 5;
  const open = readme.indexOf("```\n", commandsEnd);
  const shown = readme.slice(open + 4, readme.indexOf("```", open + 4)).trim().split("\n");
  await withTempDir(async (dir) => {
    const cwd = Deno.cwd();
    Deno.chdir(ROOT);
    try {
      const out = join(dir, "verl-stories");
      const ran = await runMain([
        "export",
        "recipes/stories_gift.ts",
        "--to",
        "verl",
        "--out",
        out,
      ]);
      assert.equal(ran.code, 0, ran.stderr.join("\n"));
      const lines = [...ran.stderr, ...ran.stdout].filter((l) => l !== "")
        .map((l) => l.replaceAll(out, "verl-stories"));
      assert.deepEqual(lines, shown);
    } finally {
      Deno.chdir(cwd);
    }
  });
});

Deno.test("the exported data, reward.py and serve-rewards agree: verl's batch call scores as a run does", async () => {
  const plan = await storiesPlan();
  await withTempDir(async (dir) => {
    const result = await exportVerl(plan, { out: join(dir, "verl"), baseUrl: RECIPE_URL });
    const file = await Deno.readFile(join(result.dir, "train.parquet"));
    const rows = (await parquetReadObjects({ file: file.buffer as ArrayBuffer })).slice(0, 12) as {
      data_source: string;
      reward_model: { ground_truth: string };
      extra_info: Record<string, unknown>;
    }[];
    // Completions: half name the story's answer, half do not.
    const completions = rows.map((r, i) =>
      i % 2 === 0 ? ` and the ${r.reward_model.ground_truth} was there.` : " and that was that."
    );
    // What the run's own scoring gives these samples (tokens counted as the server counts them).
    const sources = await rewardSources(plan, RECIPE_URL.href, () => Promise.reject(new Error()));
    let expected: number[];
    try {
      const samples: Sample[] = rows.map((r, i) => ({
        prompt: String(r.extra_info.prompt),
        completion: completions[i]!,
        answer: String(r.extra_info.answer),
        row: JSON.parse(String(r.extra_info.row)),
        tokens: 0,
        truncated: false,
      }));
      expected = Array.from((await scoreSources(sources, samples, 1)).total);
    } finally {
      await Promise.all(sources.map((s) => s.scorer.close?.()));
    }
    assert.ok(expected.includes(1) && expected.includes(0), JSON.stringify(expected));
    const server = await serveRewards(plan, { baseUrl: RECIPE_URL, port: 0 });
    try {
      // verl's batch reward manager, with the exported reward.py and the Parquet rows' fields.
      const driver = [
        "import json, sys",
        `sys.path.insert(0, ${JSON.stringify(result.dir)})`,
        "import reward",
        "call = json.load(sys.stdin)",
        "print(json.dumps(reward.compute_score(**call)))",
      ].join("\n");
      const child = new Deno.Command(PYTHON, {
        args: ["-c", driver],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        env: { GIFTWRAP_REWARD_URL: server.url },
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(JSON.stringify({
        data_sources: rows.map((r) => r.data_source),
        solution_strs: completions,
        ground_truths: rows.map((r) => r.reward_model.ground_truth),
        // int64 reads back as a BigInt here; verl hands pyarrow's ints to Python as int.
        extra_infos: rows.map((r) => ({ ...r.extra_info, index: Number(r.extra_info.index) })),
      })));
      await writer.close();
      const out = await child.output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const results = JSON.parse(new TextDecoder().decode(out.stdout)) as {
        score: number;
        acc: number;
      }[];
      assert.deepEqual(results.map((r) => r.score), expected);
      // The recipe's one reward is its success reward: "acc" is the same score.
      assert.deepEqual(results.map((r) => r.acc), expected);
    } finally {
      await server.close();
    }
  });
});
