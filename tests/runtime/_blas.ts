/**
 * Whether OpenBLAS loads here, for the tests of what runs through it. Without the library they are
 * skipped, saying so in their names, unless GIFTWRAP_REQUIRE_BLAS=1 (`.ci/run` sets it, and
 * installs Debian's libopenblas0-pthread): then they run, and fail.
 *
 * @module
 */

import { loadBlas } from "../../runtime/engine/blas.ts";
import { requires } from "../_requires.ts";

/** What loading OpenBLAS gave: the library, or why not. */
export const BLAS_PROBE = loadBlas();

/** Whether the tests that need OpenBLAS run: it loads, or GIFTWRAP_REQUIRE_BLAS=1 asks for it. */
export const HAS_BLAS: boolean = BLAS_PROBE.ok || Deno.env.get("GIFTWRAP_REQUIRE_BLAS") === "1";

/** A test's name and `ignore` flag: skipped where OpenBLAS is not found, saying why. */
export const needsBlas = requires(
  HAS_BLAS,
  "OpenBLAS not found; sudo apt-get install libopenblas0-pthread",
);
