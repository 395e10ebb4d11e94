// The cpu kernel set (runtime/engine/kernels/cpu.ts) against the plain tfjs ops: with OpenBLAS
// running the products (its attention, rotation, matmul gradient and decoder) and without it.

import { needsBlas } from "../../_blas.ts";
import { runKernelConformance } from "./_conformance.ts";

runKernelConformance("cpu", {
  expect: { name: "cpu", blas: true },
  requirement: needsBlas,
  exact: ["adamW"],
});

runKernelConformance("cpu", {
  blas: false,
  expect: { name: "cpu", blas: false },
  exact: ["adamW"],
});
