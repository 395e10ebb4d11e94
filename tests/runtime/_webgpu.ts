/**
 * Whether Deno offers a WebGPU adapter here, for the optional webgpu test groups. On a machine
 * without a GPU, Debian's mesa-vulkan-drivers gives a CPU one (lavapipe); `.ci/run` installs it and
 * sets GIFTWRAP_REQUIRE_WEBGPU, so that in CI a missing adapter fails the tests instead of skipping
 * them.
 *
 * @module
 */

import { requires } from "../_requires.ts";

/** Whether `navigator.gpu` offers an adapter (true or throws when GIFTWRAP_REQUIRE_WEBGPU is set). */
export const HAS_WEBGPU: boolean = await (async () => {
  // Vulkan's loader complains on every adapter request without a runtime directory.
  if (!Deno.env.get("XDG_RUNTIME_DIR")) {
    const dir = `${Deno.env.get("TMPDIR") ?? "/tmp"}/giftwrap-xdg`;
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  }
  const gpu = (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  const adapter = gpu ? await gpu.requestAdapter() : null;
  if (!adapter && Deno.env.get("GIFTWRAP_REQUIRE_WEBGPU")) {
    throw new Error("GIFTWRAP_REQUIRE_WEBGPU is set but navigator.gpu offers no adapter");
  }
  return adapter !== null;
})();

/** A test's name and `ignore` flag: skipped where no WebGPU adapter is offered, saying why. */
export const needsWebgpu = requires(
  HAS_WEBGPU,
  "no WebGPU adapter; Debian's mesa-vulkan-drivers provides one on a CPU",
);
