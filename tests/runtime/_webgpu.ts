/**
 * Whether Deno offers a WebGPU adapter here, for the optional webgpu test groups. On a machine
 * without a GPU, Debian's mesa-vulkan-drivers gives a CPU one (lavapipe); `.ci/run` installs it and
 * sets GIFTWRAP_REQUIRE_WEBGPU, so that in CI a missing adapter fails the tests instead of skipping
 * them.
 *
 * @module
 */

import { cpuAdapter } from "../../runtime/engine/kernels/matmul_webgpu.ts";
import { requires } from "../_requires.ts";
import { assertClose, type Tolerance } from "./_numeric.ts";

/** The adapter Deno offers, or null. */

const ADAPTER = await (async () => {
  // Vulkan's loader complains on every adapter request without a runtime directory.
  if (!Deno.env.get("XDG_RUNTIME_DIR")) {
    const dir = `${Deno.env.get("TMPDIR") ?? "/tmp"}/giftwrap-xdg`;
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  }
  const adapter = navigator.gpu ? await navigator.gpu.requestAdapter() : null;
  if (!adapter && Deno.env.get("GIFTWRAP_REQUIRE_WEBGPU")) {
    throw new Error("GIFTWRAP_REQUIRE_WEBGPU is set but navigator.gpu offers no adapter");
  }
  return adapter;
})();

/** Whether `navigator.gpu` offers an adapter (true or throws when GIFTWRAP_REQUIRE_WEBGPU is set). */
export const HAS_WEBGPU: boolean = ADAPTER !== null;

/**
 * Whether the adapter runs on the CPU (lavapipe in CI). There a fused WGSL kernel gives the bits of
 * the tfjs ops it replaces, and the tests hold it to that. A GPU's compiler may fuse a multiply and
 * an add, or take its own square root and division, so on an NVIDIA H200 the same kernels differ
 * from the ops by 1 or 2 units in the last place: there the tests hold them to `GPU_TOLERANCE`.
 */
export const CPU_ADAPTER: boolean = ADAPTER !== null && cpuAdapter(ADAPTER);

/** Fused kernels against the ops on a GPU: float32 rounding, a few units in the last place. */
export const GPU_TOLERANCE: Tolerance = { rtol: 1e-5, atol: 1e-7 };

/**
 * Asserts that a fused webgpu result equals the plain ops' result: bit for bit on a CPU adapter
 * (and wherever `exact` says so: the cpu backend), within `GPU_TOLERANCE` on a GPU.
 */
export function assertOpsBits(
  actual: unknown,
  expected: unknown,
  what: string,
  exact: boolean = CPU_ADAPTER,
): void {
  assertClose(actual, expected, what, exact ? { rtol: 0, atol: 0 } : GPU_TOLERANCE);
}

/** A test's name and `ignore` flag: skipped where no WebGPU adapter is offered, saying why. */
export const needsWebgpu = requires(
  HAS_WEBGPU,
  "no WebGPU adapter; Debian's mesa-vulkan-drivers provides one on a CPU",
);
