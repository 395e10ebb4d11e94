// useBackend() (runtime/engine/backend.ts): the kernel set it chooses, the one line that says
// where matrix products run (and how to install OpenBLAS when tfjs's kernels run them), which the
// run prints first, and the one line naming how to install the tensorflow backend.

import assert from "node:assert/strict";
import { BackendUnavailableError, useBackend } from "../../../runtime/engine/backend.ts";
import { nativeTensorflow } from "../../../runtime/engine/native.ts";
import { execute } from "../../../runtime/run/execute.ts";
import { withTempDir } from "../../_helpers.ts";
import { requires } from "../../_requires.ts";
import { needsBlas } from "../_blas.ts";
import { tinyPlan } from "../_tiny.ts";

/** Runs `body` with GIFTWRAP_BLAS set to `value`, then puts the variable back. */
async function withBlasVariable<T>(value: string, body: () => Promise<T>): Promise<T> {
  const before = Deno.env.get("GIFTWRAP_BLAS");
  Deno.env.set("GIFTWRAP_BLAS", value);
  try {
    return await body();
  } finally {
    if (before === undefined) Deno.env.delete("GIFTWRAP_BLAS");
    else Deno.env.set("GIFTWRAP_BLAS", before);
  }
}

Deno.test("useBackend() without OpenBLAS says tfjs's kernels run the products and how to install it", async () => {
  for (const backend of ["wasm", "cpu"] as const) {
    const info = await useBackend(backend, { blasLibraries: ["libgiftwrap-no-such-blas.so.0"] });
    const name = backend === "wasm" ? "wasm (SIMD, 1 thread)" : "cpu (tfjs JavaScript kernels)";
    assert.equal(
      info.description,
      `${name} · matmul: tfjs's kernels, several times slower (OpenBLAS not found; install it: ` +
        "sudo apt-get install libopenblas0-pthread, or your distribution's openblas package)",
    );
    assert.match(info.matmul.reason, /^no OpenBLAS library loads \(tried libgiftwrap-no-such/);
    assert.deepEqual([info.matmul.blas, info.kernels.name, info.kernels.blas], [
      null,
      backend,
      false,
    ]);
  }
  await useBackend("wasm");
});

Deno.test("useBackend() with GIFTWRAP_BLAS=0 says the variable turned OpenBLAS off", async () => {
  const info = await withBlasVariable("0", () => useBackend("cpu"));
  assert.equal(
    info.description,
    "cpu (tfjs JavaScript kernels) · matmul: tfjs's kernels (GIFTWRAP_BLAS=0 turns OpenBLAS off)",
  );
  assert.deepEqual(info.matmul, { blas: null, reason: "GIFTWRAP_BLAS=0" });
  assert.equal(info.kernels.blas, false);
});

Deno.test({
  ...needsBlas("useBackend() with OpenBLAS names it, and its kernel set runs products through it"),
  async fn() {
    for (const backend of ["wasm", "cpu"] as const) {
      const info = await useBackend(backend);
      assert.match(info.description, / · matmul: OpenBLAS \w+, \d+ threads?$/);
      assert.deepEqual([info.kernels.name, info.kernels.blas], [backend, true]);
    }
  },
});

Deno.test("execute() prints first where matrix products run (GIFTWRAP_BLAS=0: tfjs's kernels)", async () => {
  const log: string[] = [];
  await withTempDir((runsDir) =>
    withBlasVariable(
      "0",
      () =>
        execute(tinyPlan({ steps: 1 }), { runsDir, log: (line) => log.push(line), report: false }),
    )
  );
  assert.match(
    log[0]!,
    /^run tiny · plan [0-9a-f]{16} · wasm \(SIMD, 1 thread\) · matmul: tfjs's kernels \(GIFTWRAP_BLAS=0 turns OpenBLAS off\) · [\d,]+ parameters → /,
  );
});

const tensorflowAbsent = requires(
  !("package" in nativeTensorflow()),
  "@tensorflow/tfjs-node is installed here",
);

Deno.test({
  ...tensorflowAbsent(
    "useBackend('tensorflow'), absent, names the command that installs it in one line",
  ),
  async fn() {
    const error = await useBackend("tensorflow").then(() => null, (e) => e);
    assert.ok(error instanceof BackendUnavailableError, String(error));
    assert.equal(error.message.split("\n").length, 1);
    assert.match(error.message, /^backend 'tensorflow' needs the native library libtensorflow /);
    assert.ok(
      error.message.includes(
        "install one with `deno add --allow-scripts=npm:@tensorflow/tfjs-node " +
          "npm:@tensorflow/tfjs-node` (tfjs-node-gpu for CUDA), whose install step downloads " +
          "libtensorflow",
      ),
      error.message,
    );
  },
});
