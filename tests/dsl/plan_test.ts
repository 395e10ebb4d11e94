import assert from "node:assert/strict";
import { canonicalJson, compile, formatPlan, planHash, safeCompile } from "../../mod.ts";
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
