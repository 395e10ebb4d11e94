/**
 * Tests that need something this machine may lack (OpenBLAS, a WebGPU adapter). Deno's `ignore`
 * shows an ignored test by its name alone, so a skipped test carries the reason in its name.
 *
 * @module
 */

import assert from "node:assert/strict";

/** What `Deno.test` takes to run a test only where `available`, named with why it is skipped. */
export interface Requirement {
  (name: string): { name: string; ignore: boolean };
}

/**
 * A requirement: tests named through it run where `available` and are skipped elsewhere, their
 * names ending in `(skipped: <reason>)`.
 *
 * @example
 * ```ts
 * const needsBlas = requires(loadBlas().ok, "OpenBLAS not found");
 * Deno.test({ ...needsBlas("blasDecoder() gives forward()'s logits"), fn() {} });
 * ```
 */
export function requires(available: boolean, reason: string): Requirement {
  return (name) => ({
    name: available ? name : `${name} (skipped: ${reason})`,
    ignore: !available,
  });
}

/** Debian's interpreter, whose python3-torch (1.13) loads in no other. */
export const PYTHON = "/usr/bin/python3";

/**
 * Runs the Python `script` with `args` under `PYTHON` (one thread), `input` written to it as
 * JSON, and returns what it printed, read as JSON; a failed script fails the test with its
 * stderr.
 */
export async function pythonJson(script: string, args: string[], input: unknown): Promise<unknown> {
  const child = new Deno.Command(PYTHON, {
    args: [script, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { OMP_NUM_THREADS: "1" },
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(input)));
  await writer.close();
  const out = await child.output();
  const name = script.split("/").at(-1);
  assert.ok(out.success, `${name} failed: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** Whether `PYTHON` imports torch here, or why not. */
function probeTorch(): { ok: true } | { ok: false; reason: string } {
  try {
    const out = new Deno.Command(PYTHON, { args: ["-c", "import torch"], stderr: "piped" })
      .outputSync();
    if (out.success) return { ok: true };
    const last = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "";
    return { ok: false, reason: `${PYTHON} cannot import torch (${last})` };
  } catch (e) {
    return { ok: false, reason: `${PYTHON} does not run (${(e as Error).message})` };
  }
}

/** Whether Debian's python3 imports torch, probed once when a test module first asks. */
export const TORCH: { ok: true } | { ok: false; reason: string } = probeTorch();

/**
 * Tests against PyTorch: skipped, saying why, where `PYTHON` cannot import torch, unless
 * `GIFTWRAP_REQUIRE_TORCH=1` (as `.ci/run` sets where python3-torch is installed), which makes
 * them run and fail.
 *
 * @example
 * ```ts
 * Deno.test({ ...needsTorch("the forward pass agrees with PyTorch's"), async fn() {} });
 * ```
 */
export const needsTorch: Requirement = requires(
  TORCH.ok || Deno.env.get("GIFTWRAP_REQUIRE_TORCH") === "1",
  `${!TORCH.ok ? TORCH.reason : ""}; sudo apt-get install python3-torch`,
);
