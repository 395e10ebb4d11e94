// The plain tfjs kernel set (runtime/engine/kernels/tfjs.ts) on webgpu against the same set on
// cpu, the exactness reference (on a machine without a GPU, WebGPU is lavapipe: see _webgpu.ts).
// useBackend("webgpu") chooses the webgpu set (webgpu_test.ts); the plain set is what the
// tensorflow backend runs, and the reference of every other set.

import { needsWebgpu } from "../../_webgpu.ts";
import { runKernelConformance } from "./_conformance.ts";
import { tfjsKernels } from "../../../../runtime/engine/kernels/tfjs.ts";

runKernelConformance("webgpu", {
  against: "cpu",
  kernels: () => tfjsKernels(),
  expect: { name: "tfjs", blas: false },
  requirement: needsWebgpu,
});
