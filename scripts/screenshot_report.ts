/**
 * Takes a full-page screenshot of a run's `report.html` in headless Chromium, to look at the page
 * as a reader will:
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-run --allow-env --allow-net \
 *   scripts/screenshot_report.ts <run dir or report.html> <out.png>
 * ```
 *
 * Given a run directory, it (re)writes the directory's `report.html` first. Prints any problem the
 * page had while loading (an exception, a console error, a failed request) and exits 1 on one.
 *
 * @module
 */

import { writeReport } from "../analysis/report/mod.ts";
import { launchChromium, loadPage } from "./_chromium.ts";

/**
 * Writes a PNG of the whole page `target` (a run directory or an HTML file) to `out`; returns the
 * problems the page had while loading.
 *
 * @example
 * ```ts
 * const problems = await screenshotReport("runs/addition-gift-20261126-162023", "report.png");
 * ```
 */
export async function screenshotReport(target: string, out: string): Promise<string[]> {
  const page = (await Deno.stat(target)).isDirectory ? await writeReport(target) : target;
  const browser = await launchChromium();
  try {
    const loaded = await loadPage(browser, await Deno.realPath(page));
    await Deno.writeFile(out, await loaded.screenshot());
    return loaded.problems;
  } finally {
    await browser.close();
  }
}

if (import.meta.main) {
  const [target, out] = Deno.args;
  if (target === undefined || out === undefined || Deno.args.length !== 2) {
    console.error("usage: scripts/screenshot_report.ts <run dir or report.html> <out.png>");
    Deno.exit(2);
  }
  const problems = await screenshotReport(target, out);
  for (const p of problems) console.error(`${target}: ${p}`);
  console.log(`wrote ${out}`);
  if (problems.length > 0) Deno.exit(1);
}
