// runtime/engine/kernels/simd_wasm.ts must be what simd.wat assembles to (`deno task wasm`), and the
// module's exponential, seen through SwiGLU's silu(gate) · up, must hold to float32 precision over
// the whole range, extremes included.

import assert from "node:assert/strict";
import { assemble, moduleText } from "../../../../scripts/build_wasm.ts";
import { decodeBase64 } from "../../../../runtime/engine/kernels/base64.ts";
import { SIMD_WASM } from "../../../../runtime/engine/kernels/simd_wasm.ts";

Deno.test("simd_wasm.ts is simd.wat assembled: run `deno task wasm` after editing it", async () => {
  const bytes = await assemble();
  assert.deepEqual(decodeBase64(SIMD_WASM), bytes);
  const file = await Deno.readTextFile(
    new URL("../../../../runtime/engine/kernels/simd_wasm.ts", import.meta.url),
  );
  assert.equal(file, moduleText(bytes));
});

Deno.test("simd.wat's siluTimes is x·sigmoid(x)·up to 1e-6 relative, from −200 to 200", () => {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const module = new WebAssembly.Module(decodeBase64(SIMD_WASM) as Uint8Array<ArrayBuffer>);
  const { siluTimes } = new WebAssembly.Instance(module, { env: { memory } }).exports as {
    siluTimes(gate: number, up: number, n: number): void;
  };
  const n = 4003; // 4 lanes at a time, then 3 one by one
  const heap = new Float32Array(memory.buffer);
  const gate = Float32Array.from({ length: n }, (_, i) => -200 + (400 * i) / (n - 1));
  gate[1000] = 0;
  const up = Float32Array.from({ length: n }, (_, i) => 1 + (i % 7) / 7);
  heap.set(gate, 0);
  heap.set(up, n);
  siluTimes(0, 4 * n, n);
  for (let i = 0; i < n; i++) {
    const g = gate[i]!;
    const expected = (g / (1 + Math.exp(-g))) * up[i]!;
    const got = heap[i]!;
    const error = Math.abs(got - expected);
    assert.ok(
      error <= 1e-6 * Math.abs(expected) || error < 1e-30,
      `silu(${g}) · ${up[i]}: ${got}, expected ${expected}`,
    );
  }
});
