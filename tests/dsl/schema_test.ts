import assert from "node:assert/strict";
import { Ajv2020 } from "ajv/dist/2020";
import {
  compile,
  customObjective,
  fn,
  type Recipe,
  recipeJsonSchema,
  rewardModel,
  rewards,
  tasks,
} from "../../mod.ts";
import {
  AdditionSchema,
  CountdownSchema,
  CustomReadsSchema,
  CustomSchema,
  EvalSchema,
  FnSchema,
  MultiplicationSchema,
  ObjectiveSchema,
  OptimizerSchema,
  RecipeSchema,
  RewardModelSchema,
  RewardSchema,
  SamplingSchema,
  SortingSchema,
  TinyGptSchema,
  WarmStartSchema,
} from "../../dsl/schema.ts";
import { base } from "./_fixtures.ts";

const ROOT = new URL("../../", import.meta.url);

Deno.test("recipe.schema.json is what `deno task schema` writes from the TypeBox schema", async () => {
  const committed = await Deno.readTextFile(new URL("recipe.schema.json", ROOT));
  assert.equal(committed, JSON.stringify(recipeJsonSchema(), null, 2) + "\n");
});

Deno.test("recipeJsonSchema() is a valid draft 2020-12 schema that validates the JSON twin by itself", async () => {
  const schema = recipeJsonSchema();
  assert.equal(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
  const ajv = new Ajv2020({ strict: true, discriminator: true });
  assert.equal(ajv.validateSchema(schema), true, JSON.stringify(ajv.errors));
  const validate = ajv.compile(schema);
  const twin = JSON.parse(await Deno.readTextFile(new URL("recipes/addition_gift.json", ROOT)));
  assert.equal(validate(twin), true, JSON.stringify(validate.errors));
  assert.equal(validate({ ...twin, group: { szie: 8, prompts: 16 } }), false);
});

Deno.test("compile() takes the objectives' defaults from the schema's annotations", () => {
  // The defaults are written once, in dsl/schema.ts; the resolved options must equal them.
  const variants = (ObjectiveSchema as unknown as {
    oneOf: { properties: Record<string, { const?: string; default?: unknown }> }[];
  }).oneOf;
  assert.equal(variants.length, 9);
  // The one option without a default: a custom objective's module.
  const required: Record<string, Record<string, unknown>> = { custom: { module: "./loss.ts" } };
  for (const variant of variants) {
    const kind = variant.properties["kind"]!.const!;
    const objective = { kind, ...required[kind] } as Recipe["objective"];
    const options = compile({ ...base, objective, reference: "initial" }).objective
      .options as Record<string, unknown>;
    for (const [key, property] of Object.entries(variant.properties)) {
      if (key === "kind" || key in (required[kind] ?? {})) continue;
      if (property.default !== undefined) {
        assert.deepEqual(options[key], property.default, `${kind}.${key}`);
      } else if (key === "reads") {
        assert.deepEqual(options[key], Object.fromEntries(defaultsOf(property)), `${kind}.${key}`);
      } else assert.equal(options[key], options["epsilon"], `${kind}.${key} defaults to epsilon`);
    }
    assert.deepEqual(Object.keys(options).sort(), Object.keys(variant.properties).sort(), kind);
  }
});

Deno.test("compile() resolves a custom objective's export, options and reads from the schema", () => {
  const options = (objective: Recipe["objective"]) =>
    compile({ ...base, objective }).objective.options;
  assert.deepEqual(CustomSchema.properties.export.default, "default");
  assert.deepEqual(CustomReadsSchema.properties.reference.default, true);
  assert.deepEqual(CustomReadsSchema.properties.old.default, false);
  assert.deepEqual(options(customObjective("./loss.ts")), {
    kind: "custom",
    module: "./loss.ts",
    export: "default",
    options: {},
    reads: { reference: true, old: false },
  });
  // A partial reads is completed field by field, and the options are passed through as given.
  assert.deepEqual(
    options(customObjective("./loss.ts", {
      export: "clipped",
      options: { clip: 0.2, modes: ["token"] },
      reads: { old: true },
    })),
    {
      kind: "custom",
      module: "./loss.ts",
      export: "clipped",
      options: { clip: 0.2, modes: ["token"] },
      reads: { reference: true, old: true },
    },
  );
});

/** The `default` annotations of an object schema, by key. */
function defaultsOf(schema: unknown): [string, unknown][] {
  const properties = (schema as { properties: Record<string, { default?: unknown }> }).properties;
  return Object.entries(properties).flatMap(([k, p]) =>
    p.default === undefined ? [] : [[k, p.default]]
  );
}

Deno.test("compile() resolves the policy, data, sampling and optimizer from the schema's annotations", () => {
  const { seed: _seed, ...unseeded } = base;
  const minimal = {
    ...unseeded,
    policy: { kind: "tinyGpt", warmStart: { sftSteps: 1 } },
    data: { kind: "addition" },
  } as Recipe;
  const plan = compile(minimal);
  const sections: [unknown, Record<string, unknown>][] = [
    [TinyGptSchema, plan.model as unknown as Record<string, unknown>],
    [WarmStartSchema, plan.model.warmStart as unknown as Record<string, unknown>],
    [AdditionSchema, plan.recipe.data as Record<string, unknown>],
    [SamplingSchema, plan.sampling as Record<string, unknown>],
    [OptimizerSchema, plan.optimizer as Record<string, unknown>],
    [RecipeSchema, plan.recipe as Record<string, unknown>],
  ];
  let checked = 0;
  for (const [schema, resolved] of sections) {
    for (const [key, value] of defaultsOf(schema)) {
      assert.deepEqual(resolved[key], value, key);
      checked++;
    }
  }
  assert.ok(checked >= 20, `only ${checked} defaults checked`);
  assert.equal(plan.data.train, 5000);
  assert.equal(plan.data.eval, 500);
  assert.equal(plan.seed, 0);
});

Deno.test("compile() resolves the new tasks, reward fields, sources and eval split from the schema's annotations", () => {
  const plan = (data: Recipe["data"], extra: Partial<Recipe> = {}) =>
    compile({ ...base, data, ...extra } as Recipe);
  const sections: [unknown, Record<string, unknown>][] = [
    [MultiplicationSchema, plan({ kind: "multiplication" }).recipe.data],
    [
      SortingSchema,
      plan({ kind: "sorting" }, { rewards: [{ source: rewards.exactMatch() }] })
        .recipe.data,
    ],
  ];
  const countdown = plan({ kind: "countdown" }, {
    rewards: [
      { source: rewards.countdown(), success: true },
      { source: fn("./r.ts"), weight: 0.1 },
      { source: rewardModel("rm"), weight: 0.1 },
    ],
  });
  sections.push(
    [CountdownSchema, countdown.recipe.data],
    [RewardSchema, countdown.recipe.rewards[0]!],
    [FnSchema, countdown.rewards[1]!.source],
    [RewardModelSchema, countdown.rewards[2]!.source],
    [EvalSchema, countdown.recipe.eval!],
  );
  let checked = 0;
  for (const [schema, resolved] of sections) {
    for (const [key, value] of defaultsOf(schema)) {
      assert.deepEqual(resolved[key], value, key);
      checked++;
    }
  }
  assert.equal(checked, 19);
  assert.deepEqual(countdown.rewards.map((r) => r.onError), ["fail", "fail", "fail"]);
  assert.equal(countdown.schedule.evalSplit, "eval");
  assert.equal(
    countdown.rewards[1]!.source.kind === "fn" && countdown.rewards[1]!.source.sandbox,
    true,
  );
  assert.equal(
    countdown.rewards[1]!.source.kind === "fn" && countdown.rewards[1]!.source.timeoutMs,
    10_000,
  );
  assert.deepEqual(
    [plan(tasks.multiplication()).data.train, plan(tasks.multiplication()).data.eval],
    [5000, 500],
  );
});
