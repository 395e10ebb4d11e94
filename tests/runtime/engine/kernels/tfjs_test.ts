// The plain tfjs kernel set (runtime/engine/kernels/tfjs.ts) on webgpu against the same set on
// cpu, the exactness reference (on a machine without a GPU, WebGPU is lavapipe: see _webgpu.ts).

import { needsWebgpu } from "../../_webgpu.ts";
import { runKernelConformance } from "./_conformance.ts";

runKernelConformance("webgpu", {
  against: "cpu",
  expect: { name: "tfjs", blas: false },
  requirement: needsWebgpu,
});
