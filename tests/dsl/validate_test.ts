import assert from "node:assert/strict";
import { formatIssue, gift, grpo, recipe, validateRecipe } from "../../mod.ts";
import { runMain, STACK, withTempDir, writeRecipeModule } from "../_helpers.ts";
import { base, plain } from "./_fixtures.ts";

/** One bad recipe: the problem validateRecipe() must report, at `path`, saying `message`. */
interface BadCase {
  name: string;
  input: unknown;
  path: string;
  message: RegExp;
}

const b = plain(base) as Record<string, unknown>;

const BAD: BadCase[] = [
  {
    name: "an unknown key close to a known one",
    input: { ...b, group: { szie: 8, prompts: 16 } },
    path: "group.szie",
    message: /^unknown key \(did you mean 'group\.size'\?\)$/,
  },
  {
    name: "an unknown top-level key",
    input: { ...b, frobnicate: 1 },
    path: "frobnicate",
    message: /^unknown key; expected one of '\$schema', 'name', .*'backend'$/,
  },
  {
    name: "a misspelt section",
    input: { ...b, optimiser: { lr: 1e-3 } },
    path: "optimiser",
    message: /did you mean 'optimizer'/,
  },
  {
    name: "an option of another objective",
    input: { ...b, objective: { kind: "gift", epsilon: 0.2 } },
    path: "objective.epsilon",
    message:
      /^'epsilon' is not an option of gift but of grpo, drGrpo, dapo, gspo, rloo; it takes 'betaC' or 'stdEpsilon'$/,
  },
  {
    name: "an option of another node kind",
    input: { ...b, data: { kind: "addition", layers: 2 } },
    path: "data.layers",
    message: /^unknown key; it takes one of 'digits', 'train', 'eval'$/,
  },
  {
    name: "an unknown objective kind",
    input: { ...b, objective: { kind: "ppo" } },
    path: "objective.kind",
    message:
      /^expected one of 'gift', 'grpo', 'drGrpo', 'dapo', 'gspo', 'rloo', 'onlineDpo', 'una', 'custom', got 'ppo'$/,
  },
  {
    name: "a misspelt objective kind",
    input: { ...b, objective: { kind: "grop" } },
    path: "objective.kind",
    message: /got 'grop' \(did you mean 'grpo'\?\)$/,
  },
  {
    name: "an objective without a kind",
    input: { ...b, objective: { beta: 0.1 } },
    path: "objective.kind",
    message: /^missing; expected one of 'gift'/,
  },
  {
    name: "an objective given as its name",
    input: { ...b, objective: "grpo" },
    path: "objective",
    message: /^expected an object with kind one of .*, got 'grpo'$/,
  },
  {
    name: "a custom objective without a module",
    input: { ...b, objective: { kind: "custom", export: "loss" } },
    path: "objective.module",
    message: /^missing; expected a non-empty string$/,
  },
  {
    name: "a custom objective's reads that is not an object",
    input: { ...b, objective: { kind: "custom", module: "./l.ts", reads: true } },
    path: "objective.reads",
    message: /^expected an object \{ reference, old \}, got true$/,
  },
  {
    name: "a custom objective's reads.old that is not a boolean",
    input: { ...b, objective: { kind: "custom", module: "./l.ts", reads: { old: "yes" } } },
    path: "objective.reads.old",
    message: /^expected true or false, got 'yes'$/,
  },
  {
    name: "an unknown key in a custom objective's reads",
    input: { ...b, objective: { kind: "custom", module: "./l.ts", reads: { ref: true } } },
    path: "objective.reads.ref",
    message: /^unknown key; expected 'reference' or 'old'$/,
  },
  {
    name: "an option of a preset given to a custom objective",
    input: { ...b, objective: { kind: "custom", module: "./l.ts", beta: 0.1 } },
    path: "objective.beta",
    message:
      /^'beta' is not an option of custom but of grpo, drGrpo, dapo, gspo, rloo, onlineDpo, una; it takes one of 'module', 'export', 'options', 'reads'$/,
  },
  {
    name: "a misspelt custom option",
    input: { ...b, objective: { kind: "custom", module: "./l.ts", option: { clip: 0.2 } } },
    path: "objective.option",
    message: /^unknown key \(did you mean 'objective\.options'\?\)$/,
  },
  {
    name: "custom options that are not a JSON object",
    input: { ...b, objective: { kind: "custom", module: "./l.ts", options: [0.2] } },
    path: "objective.options",
    message: /^expected an object, got \[0\.2\]$/,
  },
  {
    name: "a module given to a preset",
    input: { ...b, objective: { kind: "grpo", module: "./l.ts" } },
    path: "objective.module",
    message: /^'module' is not an option of grpo but of custom; it takes one of 'beta'/,
  },
  {
    name: "a missing required field",
    input: Object.fromEntries(Object.entries(b).filter(([k]) => k !== "steps")),
    path: "steps",
    message: /^missing; expected an integer between 1 and 10000000$/,
  },
  {
    name: "a missing nested field",
    input: { ...b, optimizer: { weightDecay: 0.1 } },
    path: "optimizer.lr",
    message: /^missing; expected a number in \(0, 1\]$/,
  },
  {
    name: "a wrong type",
    input: { ...b, policy: { kind: "tinyGpt", layers: "2" } },
    path: "policy.layers",
    message: /^expected an integer between 1 and 128, got '2'$/,
  },
  {
    name: "a number above its range",
    input: { ...b, sampling: { topP: 1.5 } },
    path: "sampling.topP",
    message: /^expected a number in \(0, 1\], got 1\.5$/,
  },
  {
    name: "a number below its range",
    input: { ...b, steps: 0 },
    path: "steps",
    message: /^expected an integer between 1 and 10000000, got 0$/,
  },
  {
    name: "a fraction where an integer is expected",
    input: { ...b, group: { size: 8, prompts: 2.5 } },
    path: "group.prompts",
    message: /^expected an integer between 1 and 65536, got 2\.5$/,
  },
  {
    name: "NaN",
    input: { ...b, optimizer: { lr: NaN } },
    path: "optimizer.lr",
    message: /got NaN$/,
  },
  {
    name: "a misspelt enum value",
    input: { ...b, reference: "intial" },
    path: "reference",
    message:
      /^expected one of 'initial', 'rollout', 'none', got 'intial' \(did you mean 'initial'\?\)$/,
  },
  {
    name: "a reference of neither form",
    input: { ...b, reference: 5 },
    path: "reference",
    message: /^expected one of 'initial', 'rollout', 'none', or an object \{ checkpoint \}, got 5$/,
  },
  {
    name: "a reference checkpoint of the wrong type",
    input: { ...b, reference: { checkpoint: 5 } },
    path: "reference.checkpoint",
    message: /^expected a non-empty string, got 5$/,
  },
  {
    name: "an empty reward list",
    input: { ...b, rewards: [] },
    path: "rewards",
    message:
      /^expected a list of 1 to 32 items, each an object \{ source, weight, success, name, onError \}, got \[\]$/,
  },
  {
    name: "an unknown reward source",
    input: { ...b, rewards: [{ source: { kind: "bleu" } }] },
    path: "rewards[0].source.kind",
    message:
      /^expected one of 'exactMatch', 'numericAnswer', 'regexFormat', 'countdown', 'overlongPenalty', 'fn', 'http', 'rewardModel', got 'bleu'$/,
  },
  {
    name: "an endpoint that is not http",
    input: { ...b, rewards: [{ source: { kind: "http", url: "ftp://example" } }] },
    path: "rewards[0].source.url",
    message: /^expected a string matching \/\^https\?:\/\/\/, got 'ftp:\/\/example'$/,
  },
  {
    name: "a pair of the wrong length",
    input: { ...b, optimizer: { lr: 1e-3, betas: [0.9] } },
    path: "optimizer.betas",
    message: /^expected a pair \[number, number\], got \[0\.9\]$/,
  },
  {
    name: "a name unfit for a directory",
    input: { ...b, name: "my run" },
    path: "name",
    message: /got 'my run'$/,
  },
  {
    name: "an eval metric that is not a verifier",
    input: { ...b, eval: { metric: { kind: "http", url: "http://127.0.0.1:1" } } },
    path: "eval.metric.kind",
    message:
      /^expected one of 'exactMatch', 'numericAnswer', 'regexFormat', 'countdown', got 'http'$/,
  },
  {
    name: "a reward model as the eval metric (it is not a verifier)",
    input: { ...b, eval: { metric: { kind: "rewardModel", checkpoint: "rm" } } },
    path: "eval.metric.kind",
    message: /got 'rewardModel'$/,
  },
  {
    name: "a misspelt onError policy",
    input: { ...b, rewards: [{ source: { kind: "numericAnswer" }, onError: "skip_group" }] },
    path: "rewards[0].onError",
    message:
      /^expected one of 'fail', 'zero', 'skip-group', got 'skip_group' \(did you mean 'skip-group'\?\)$/,
  },
  {
    name: "an onError policy that is not one",
    input: { ...b, rewards: [{ source: { kind: "numericAnswer" }, onError: "ignore" }] },
    path: "rewards[0].onError",
    message: /^expected one of 'fail', 'zero', 'skip-group', got 'ignore'$/,
  },
  {
    name: "a sandbox flag that is not a boolean",
    input: { ...b, rewards: [{ source: { kind: "fn", module: "./r.ts", sandbox: "no" } }] },
    path: "rewards[0].source.sandbox",
    message: /^expected true or false, got 'no'$/,
  },
  {
    name: "a timeout of 0",
    input: { ...b, rewards: [{ source: { kind: "fn", module: "./r.ts", timeoutMs: 0 } }] },
    path: "rewards[0].source.timeoutMs",
    message: /^expected an integer between 1 and 3600000, got 0$/,
  },
  {
    name: "a misspelt fn option",
    input: { ...b, rewards: [{ source: { kind: "fn", module: "./r.ts", sandboxed: false } }] },
    path: "rewards[0].source.sandboxed",
    message: /^unknown key \(did you mean 'rewards\[0\]\.source\.sandbox'\?\)$/,
  },
  {
    name: "a reward model without a checkpoint",
    input: { ...b, rewards: [{ source: { kind: "rewardModel", batchSize: 8 } }] },
    path: "rewards[0].source.checkpoint",
    message: /^missing; expected a non-empty string$/,
  },
  {
    name: "a reward model batch of 0",
    input: { ...b, rewards: [{ source: { kind: "rewardModel", checkpoint: "rm", batchSize: 0 } }] },
    path: "rewards[0].source.batchSize",
    message: /^expected an integer between 1 and 65536, got 0$/,
  },
  {
    name: "an option given to the countdown verifier",
    input: { ...b, rewards: [{ source: { kind: "countdown", tolerance: 0 } }] },
    path: "rewards[0].source.tolerance",
    message:
      /^'tolerance' is not an option of countdown but of numericAnswer; it takes no options$/,
  },
  {
    name: "an unknown eval split",
    input: { ...b, eval: { split: "test" } },
    path: "eval.split",
    message: /^expected 'eval' or 'train', got 'test'$/,
  },
  {
    name: "multiplication with too many digits",
    input: { ...b, data: { kind: "multiplication", digits: 7 } },
    path: "data.digits",
    message: /^expected an integer between 1 and 6, got 7$/,
  },
  {
    name: "sorting a list of one",
    input: { ...b, data: { kind: "sorting", length: 1 } },
    path: "data.length",
    message: /^expected an integer between 2 and 20, got 1$/,
  },
  {
    name: "sorting values above 999",
    input: { ...b, data: { kind: "sorting", maxValue: 1000 } },
    path: "data.maxValue",
    message: /^expected an integer between 1 and 999, got 1000$/,
  },
  {
    name: "countdown with one number",
    input: { ...b, data: { kind: "countdown", numbers: 1 } },
    path: "data.numbers",
    message: /^expected an integer between 2 and 6, got 1$/,
  },
  {
    name: "a countdown target above its range",
    input: { ...b, data: { kind: "countdown", maxTarget: 100_001 } },
    path: "data.maxTarget",
    message: /^expected an integer between 1 and 100000, got 100001$/,
  },
  {
    name: "a misspelt countdown option",
    input: { ...b, data: { kind: "countdown", maxNumbers: 25 } },
    path: "data.maxNumbers",
    message: /^unknown key \(did you mean 'data\.maxNumber'\?\)$/,
  },
  {
    name: "an unknown task",
    input: { ...b, data: { kind: "subtraction" } },
    path: "data.kind",
    message:
      /^expected one of 'addition', 'multiplication', 'sorting', 'countdown', 'jsonl', got 'subtraction'$/,
  },
  {
    name: "an unknown backend",
    input: { ...b, backend: "gpu" },
    path: "backend",
    message: /got 'gpu' \(did you mean 'cpu'\?\)$/,
  },
  {
    name: "something that is not a recipe",
    input: 42,
    path: "",
    message:
      /^expected an object with name, policy, data, rewards, group, objective, optimizer, steps, got 42$/,
  },
];

for (const bad of BAD) {
  Deno.test(`validateRecipe() reports ${bad.name} at '${bad.path || "(root)"}'`, () => {
    const result = validateRecipe(bad.input);
    assert.equal(result.ok, false);
    if (result.ok) return;
    const issue = result.issues.find((i) => i.path === bad.path);
    assert.ok(
      issue,
      `no issue at '${bad.path}'; got ${result.issues.map(formatIssue).join(" | ")}`,
    );
    assert.match(issue.message, bad.message);
  });
}

Deno.test("validateRecipe() accepts a valid recipe and returns a plain-data copy", () => {
  const result = validateRecipe(base);
  assert.ok(result.ok);
  assert.deepEqual(result.recipe, plain(base));
  assert.notEqual(result.recipe, base);
});

Deno.test("validateRecipe() reports every problem, and a misspelt key once", () => {
  const result = validateRecipe({ ...b, steps: 0, seed: -1, group: { szie: 8, prompts: 16 } });
  assert.equal(result.ok, false);
  if (result.ok) return;
  assert.deepEqual(result.issues.map((i) => i.path).sort(), [
    "group.szie",
    "seed",
    "steps",
  ]);
});

Deno.test("validateRecipe() gives a JSON round trip the same answer as the recipe", () => {
  const composed = recipe({ ...base, objective: grpo({ beta: 0.01 }) });
  const direct = validateRecipe(composed);
  const roundTrip = validateRecipe(JSON.parse(JSON.stringify(composed)));
  assert.ok(direct.ok && roundTrip.ok);
  assert.deepEqual(direct.recipe, roundTrip.recipe);
});

Deno.test("validateRecipe() hints at the object form when an objective is given by name", () => {
  const result = validateRecipe({ ...b, objective: "gift" });
  assert.equal(result.ok, false);
  if (result.ok) return;
  assert.equal(result.issues[0]!.hint, `write { "kind": "gift" }, or gift() in TypeScript`);
});

Deno.test("validateRecipe() accepts any JSON object as a custom objective's options", () => {
  const options = { clip: 0.2, modes: ["a", "b"], nested: { deep: [{ x: null }] }, on: false };
  const result = validateRecipe({ ...b, objective: { kind: "custom", module: "./l.ts", options } });
  assert.ok(result.ok, result.ok ? "" : result.issues.map(formatIssue).join(" | "));
  assert.deepEqual(result.recipe.objective, { kind: "custom", module: "./l.ts", options });
  assert.ok(
    validateRecipe({ ...b, objective: { kind: "custom", module: "./l.ts", options: {} } }).ok,
  );
});

Deno.test("validateRecipe() hints at customObjective() and its module when custom is given by name", () => {
  const result = validateRecipe({ ...b, objective: "custom" });
  assert.equal(result.ok, false);
  if (result.ok) return;
  assert.equal(
    result.issues[0]!.hint,
    `write { "kind": "custom", "module": "./my_objective.ts" }, or ` +
      `customObjective("./my_objective.ts") in TypeScript`,
  );
});

Deno.test("validateRecipe() accepts a $schema key, for editors", () => {
  assert.ok(validateRecipe({ ...b, $schema: "../recipe.schema.json" }).ok);
  assert.ok(validateRecipe({ ...b, objective: gift({ betaC: 2 }) }).ok);
});

Deno.test("cli validate exits 2 on each bad recipe, one line per issue naming the path, no stack trace", async () => {
  await withTempDir(async (dir) => {
    for (const [i, bad] of BAD.entries()) {
      const file = await writeRecipeModule(dir, `bad_${i}`, bad.input);
      const ran = await runMain(["validate", file]);
      assert.equal(ran.code, 2, bad.name);
      assert.deepEqual(ran.stdout, [], bad.name);
      assert.ok(ran.stderr.length >= 1, bad.name);
      for (const line of ran.stderr) {
        assert.ok(line.startsWith(`${file}: `), line);
        assert.doesNotMatch(line, STACK);
      }
      const where = bad.path === "" ? "recipe" : bad.path;
      assert.ok(
        ran.stderr.some((line) => line.startsWith(`${file}: ${where}: `)),
        ran.stderr.join("\n"),
      );
    }
  });
});
