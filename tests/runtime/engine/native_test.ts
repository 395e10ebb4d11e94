import assert from "node:assert/strict";
import { nativeTensorflow, presentBackends } from "../../../runtime/engine/native.ts";
import { compile } from "../../../mod.ts";
import { tinyPlan } from "../_tiny.ts";
import { requires } from "../../_requires.ts";

const INSTALLED = "package" in nativeTensorflow();
const withoutTensorflow = requires(
  !INSTALLED,
  "@tensorflow/tfjs-node is installed here, so the tensorflow backend is present",
);

Deno.test({
  ...withoutTensorflow("presentBackends() offers wasm and cpu, and says why tensorflow is absent"),
  fn() {
    assert.deepEqual(presentBackends(), ["wasm", "cpu"]);
    const found = nativeTensorflow();
    assert.ok("tried" in found);
    assert.equal(found.tried.length, 2);
    assert.match(
      found.tried[0]!,
      /^@tensorflow\/tfjs-node-gpu (is not installed|has no native library)/,
    );
    assert.match(
      found.tried[1]!,
      /^@tensorflow\/tfjs-node (is not installed|has no native library)/,
    );
  },
});

Deno.test("compile() with the present backends picks the fastest for auto and says so", () => {
  const recipe = { ...tinyPlan().recipe, backend: "auto" as const };
  const plan = compile(recipe, { available: presentBackends() });
  assert.equal(plan.backend.name, INSTALLED ? "tensorflow" : "wasm");
  assert.match(plan.backend.reason, /^auto: the fastest present of /);
  // With a native TensorFlow present it would come first.
  assert.equal(
    compile(recipe, { available: ["tensorflow", "wasm", "cpu"] }).backend.name,
    "tensorflow",
  );
});
