/**
 * Which backends this machine has beyond the npm packages, found without loading TensorFlow.js
 * (so that `plan` and `validate` stay fast): what `backend: "auto"` chooses from.
 *
 * - `tensorflow` is present when `@tensorflow/tfjs-node-gpu` or `@tensorflow/tfjs-node` is
 *   installed with its native library (its install step downloads libtensorflow).
 * - `webgpu` is never chosen by `auto`: on a machine without a GPU, Deno offers a CPU Vulkan
 *   adapter (lavapipe) that is slower than wasm, and asking for an adapter costs a fraction of a
 *   second; a GPU machine names `backend: "webgpu"`.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The tfjs-node packages that bring libtensorflow, preferred first. */
export const NATIVE_PACKAGES = ["tfjs-node-gpu", "tfjs-node"] as const;

/** The project's `node_modules/`, next to `deno.json` (`"nodeModulesDir": "auto"`). */
export function nodeModules(): string {
  return fileURLToPath(new URL("../../node_modules/", import.meta.url));
}

/**
 * The first tfjs-node package installed with its native library, or why none is: one reason per
 * package tried.
 */
export function nativeTensorflow(): { package: string; dir: string } | { tried: string[] } {
  const tried: string[] = [];
  for (const name of NATIVE_PACKAGES) {
    const dir = `${nodeModules()}@tensorflow/${name}/`;
    if (!existsSync(dir)) {
      tried.push(`@tensorflow/${name} is not installed`);
      continue;
    }
    const lib = `${dir}deps/lib/`;
    const hasLib = existsSync(lib) &&
      [...Deno.readDirSync(lib)].some((e) => e.name.startsWith("libtensorflow"));
    if (!hasLib) {
      tried.push(`@tensorflow/${name} has no native library libtensorflow in ${lib}`);
      continue;
    }
    return { package: name, dir };
  }
  return { tried };
}

/**
 * The backends present here, for `compile(recipe, { available })`: wasm and cpu always, and
 * tensorflow when its native library is installed.
 *
 * @example
 * ```ts
 * const plan = compile(recipe, { available: presentBackends() });
 * ```
 */
export function presentBackends(): ("tensorflow" | "wasm" | "cpu")[] {
  let native = false;
  try {
    native = "package" in nativeTensorflow();
  } catch {
    // no permission to look: not present
  }
  return native ? ["tensorflow", "wasm", "cpu"] : ["wasm", "cpu"];
}

/**
 * Bytes of memory on this machine, for the compiler's memory check (`CompileOptions`), or
 * undefined without the `sys` permission for it (`--allow-sys=systemMemoryInfo`), asked without
 * prompting.
 *
 * @example
 * ```ts
 * const memory = machineMemory();
 * const plan = compile(recipe, memory === undefined ? {} : { machineMemory: memory });
 * ```
 */
export function machineMemory(): number | undefined {
  const allowed = Deno.permissions.querySync({ name: "sys", kind: "systemMemoryInfo" });
  return allowed.state === "granted" ? Deno.systemMemoryInfo().total : undefined;
}
