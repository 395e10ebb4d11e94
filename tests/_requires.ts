/**
 * Tests that need something this machine may lack (OpenBLAS, a WebGPU adapter). Deno's `ignore`
 * shows an ignored test by its name alone, so a skipped test carries the reason in its name.
 *
 * @module
 */

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
