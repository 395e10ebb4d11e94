import assert from "node:assert/strict";
import {
  atRollout,
  defaultMiniBatches,
  objectiveAxes,
  resolveObjective,
} from "../../dsl/objectives.ts";
import { type Objective, ObjectiveSchema } from "../../dsl/schema.ts";
import { compile, customObjective, recipe } from "../../mod.ts";
import { base } from "./_fixtures.ts";

const ROOT = new URL("../../", import.meta.url);

/** Each preset's variant of the schema, by kind. */
const VARIANTS = (ObjectiveSchema as unknown as {
  oneOf: { properties: Record<string, { const?: string; default?: unknown }> }[];
}).oneOf;

function schemaDefaults(kind: string): Record<string, unknown> {
  const variant = VARIANTS.find((v) => v.properties["kind"]?.const === kind)!;
  return Object.fromEntries(
    Object.entries(variant.properties).flatMap(([key, p]) =>
      p.default === undefined ? [] : [[key, p.default]]
    ),
  );
}

const PRESETS = ["gift", "grpo", "drGrpo", "dapo", "gspo", "rloo", "onlineDpo", "una"] as const;

Deno.test("resolveObjective() fills each preset's defaults from the schema alone", () => {
  for (const kind of PRESETS) {
    const resolved = resolveObjective({ kind }) as Record<string, unknown>;
    const expected: Record<string, unknown> = { kind, ...schemaDefaults(kind) };
    // The one default no annotation states: an unset upper clip is the lower one.
    if (kind === "grpo" || kind === "drGrpo") expected.epsilonHigh = expected.epsilon;
    assert.deepEqual(resolved, expected, kind);
  }
  assert.deepEqual(resolveObjective({ kind: "una" }), { kind: "una", beta: 0.03 });
});

Deno.test("resolveObjective() keeps given options, completes from them, and drops unknown ones", () => {
  assert.deepEqual(resolveObjective({ kind: "grpo", epsilon: 0.3 }), {
    kind: "grpo",
    beta: 0.04,
    epsilon: 0.3,
    epsilonHigh: 0.3,
  });
  assert.deepEqual(resolveObjective({ kind: "drGrpo", epsilon: 0.1, epsilonHigh: 0.5 }), {
    kind: "drGrpo",
    beta: 0,
    epsilon: 0.1,
    epsilonHigh: 0.5,
  });
  // What a runtime objective is handed may carry fields of no objective: they are left out.
  const extra = { kind: "gift", betaC: 2, note: "x" } as unknown as Objective;
  assert.deepEqual(resolveObjective(extra), { kind: "gift", betaC: 2, stdEpsilon: 1e-6 });
  assert.deepEqual(resolveObjective({ kind: "custom", module: "./m.ts" }), {
    kind: "custom",
    module: "./m.ts",
    export: "default",
    options: {},
    reads: { reference: true, old: false },
  });
});

Deno.test("resolveObjective() gives a plan's resolved options back unchanged", () => {
  for (const kind of PRESETS) {
    const plan = compile(recipe({ ...base, objective: { kind } as Objective }));
    assert.deepEqual(resolveObjective(plan.objective.options), plan.objective.options, kind);
    assert.deepEqual(objectiveAxes(resolveObjective(plan.objective.options)), plan.objective.axes);
  }
});

Deno.test("defaultMiniBatches() is 1, and for GIFT the smallest divisor of the prompts above 1", () => {
  assert.equal(defaultMiniBatches({ kind: "gift" }, 16), 2);
  assert.equal(defaultMiniBatches({ kind: "gift" }, 15), 3);
  assert.equal(defaultMiniBatches({ kind: "gift" }, 7), 7);
  assert.equal(defaultMiniBatches({ kind: "gift" }, 1), 1);
  for (const kind of [...PRESETS.filter((k) => k !== "gift"), "custom"] as const) {
    assert.equal(defaultMiniBatches({ kind }, 16), 1, kind);
  }
});

Deno.test("atRollout() says what stays 0 with reference 'rollout' and one update per batch", () => {
  assert.equal(
    atRollout({ kind: "gift" }),
    "the implicit reward is always 0 and GIFT reduces to normalised REINFORCE",
  );
  assert.equal(atRollout({ kind: "una" }), "the implicit reward is always 0");
  assert.equal(atRollout({ kind: "onlineDpo" }), "the implicit reward is always 0");
  assert.equal(
    atRollout(customObjective("./m.ts")),
    "refLogp is logp detached, so log π/π_ref is always 0",
  );
});

// Sources that must hold no objective default and no branch on a preset's name (the preset table
// in dsl/objectives.ts and the schema are where those live).

const PRESET_NAME = new RegExp(`kind === "(${PRESETS.join("|")})"`);

Deno.test("compile.ts branches on no preset's name", async () => {
  const source = await Deno.readTextFile(new URL("dsl/compile.ts", ROOT));
  const branches = source.split("\n").filter((line) => PRESET_NAME.test(line));
  assert.deepEqual(branches, []);
  assert.match('objective.kind === "gift"', PRESET_NAME); // the scan sees one
});

Deno.test("the runtime's objectives write no default of their own", async () => {
  const dir = new URL("runtime/rl/objectives/", ROOT);
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.endsWith(".ts")) continue;
    const source = await Deno.readTextFile(new URL(entry.name, dir));
    source.split("\n").forEach((line, i) => {
      // `options.beta ?? 0.04`, or a default stated in a field's doc (`@default {0.2}`)
      if (/options\.\w+ \?\?|@default \{-?[\d.]/.test(line)) found.push(`${entry.name}:${i + 1}`);
    });
  }
  assert.deepEqual(found, []);
});
