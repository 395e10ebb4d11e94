// The wasm kernel set (runtime/engine/kernels/wasm.ts) against the plain tfjs ops, with OpenBLAS
// running the products and without it: simd.wat's RoPE fused with the split into heads, and its
// AdamW update, give the tfjs ops' bits.

import { needsBlas } from "../../_blas.ts";
import { runKernelConformance } from "./_conformance.ts";

runKernelConformance("wasm", {
  expect: { name: "wasm", blas: true },
  requirement: needsBlas,
  exact: ["ropeHeads", "adamW"],
});

runKernelConformance("wasm", {
  blas: false,
  expect: { name: "wasm", blas: false },
  exact: ["ropeHeads", "adamW"],
});
