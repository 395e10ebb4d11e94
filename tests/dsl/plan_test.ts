import assert from "node:assert/strict";
import {
  compile,
  customObjective,
  formatPlan,
  gift,
  grpo,
  planHash,
  recipe,
  rloo,
  safeCompile,
  una,
} from "../../mod.ts";
import { canonicalJson, logProbPasses } from "../../dsl/plan.ts";
import frontDoor from "../../recipes/addition_gift.ts";
import { base } from "./_fixtures.ts";

const ROOT = new URL("../../", import.meta.url);

Deno.test("planHash() is the same for the front door and its JSON twin", async () => {
  const twin = JSON.parse(await Deno.readTextFile(new URL("recipes/addition_gift.json", ROOT)));
  const result = safeCompile(twin);
  assert.ok(result.ok);
  assert.deepEqual(result.plan, compile(frontDoor));
  assert.equal(planHash(result.plan), planHash(compile(frontDoor)));
});

Deno.test("planHash() is 16 hex digits, independent of key order, and survives JSON", () => {
  const plan = compile(base);
  const hash = planHash(plan);
  assert.match(hash, /^[0-9a-f]{16}$/);
  const reversed = JSON.parse(
    JSON.stringify(plan),
    (_k, v) =>
      v !== null && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).reverse())
        : v,
  );
  assert.notEqual(JSON.stringify(reversed), JSON.stringify(plan));
  assert.equal(planHash(reversed), hash);
  assert.equal(planHash(JSON.parse(JSON.stringify(plan))), hash);
});

Deno.test("planHash() changes with any field of the recipe", () => {
  const hash = planHash(compile(base));
  assert.notEqual(planHash(compile({ ...base, seed: 8 })), hash);
  assert.notEqual(planHash(compile({ ...base, optimizer: { lr: 3.1e-4 } })), hash);
  assert.notEqual(planHash(compile({ ...base, sampling: { temperature: 0.9 } })), hash);
  assert.notEqual(planHash(compile(base, { backend: "cpu" })), hash);
  // Spelling out a default does not change the plan.
  assert.equal(planHash(compile({ ...base, optimizer: { lr: 3e-4, clipGradNorm: 1 } })), hash);
});

Deno.test("canonicalJson() sorts keys at every depth and keeps array order", () => {
  assert.equal(
    canonicalJson({ b: 1, a: { d: [3, 1], c: null } }),
    '{"a":{"c":null,"d":[3,1]},"b":1}',
  );
});

Deno.test("formatPlan() prints the hash planHash() computes", () => {
  const plan = compile(frontDoor);
  assert.ok(formatPlan(plan).startsWith(`plan addition-gift · hash ${planHash(plan)}\n`));
});

Deno.test("logProbPasses() is the passes the printed stages show", () => {
  const cases: [string, Parameters<typeof recipe>[0], { old: boolean; reference: boolean }][] = [
    // A ratio with one optimiser step per batch: π_old is π detached, no pass of its own.
    ["grpo, 1 step", { ...base, objective: grpo() }, { old: false, reference: true }],
    ["grpo, 2 steps", { ...base, objective: grpo(), miniBatches: 2 }, {
      old: true,
      reference: true,
    }],
    ["grpo β 0", { ...base, objective: grpo({ beta: 0 }), epochs: 2 }, {
      old: true,
      reference: false,
    }],
    // No ratio: π_old is not read, unless it is the reference (rollout).
    ["gift", { ...base, objective: gift(), miniBatches: 2 }, { old: false, reference: true }],
    ["gift rollout", { ...base, objective: gift(), reference: "rollout", miniBatches: 2 }, {
      old: true,
      reference: false,
    }],
    ["una checkpoint", { ...base, objective: una(), reference: { checkpoint: "ck" } }, {
      old: false,
      reference: true,
    }],
    ["rloo", { ...base, objective: rloo(), epochs: 3 }, { old: true, reference: true }],
    ["custom reads old", {
      ...base,
      objective: customObjective("./m.ts", { reads: { reference: false, old: true } }),
      miniBatches: 2,
    }, { old: true, reference: false }],
  ];
  for (const [name, r, expected] of cases) {
    const plan = compile(r);
    const stages = plan.stages.map((s) => s.name);
    assert.deepEqual(logProbPasses(plan), expected, name);
    assert.equal(stages.includes("old log-probs"), expected.old, name);
    assert.equal(stages.includes("reference log-probs"), expected.reference, name);
  }
});
