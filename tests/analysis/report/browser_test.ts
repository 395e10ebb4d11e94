/**
 * The report in a real browser: headless Chromium loads report.html without an exception, a
 * console or log error or a failed request, and lays out every chart. Skipped without Chromium,
 * unless GIFTWRAP_REQUIRE_CHROMIUM=1 (CI sets it where it installed Chromium).
 */

import assert from "node:assert/strict";
import { writeReport } from "../../../analysis/report/mod.ts";
import { findChromium, launchChromium, loadPage } from "../../../scripts/_chromium.ts";
import { withTempDir } from "../../_helpers.ts";
import { syntheticRun, writeRun } from "./_fixture.ts";
import { requires } from "../../_requires.ts";

const chromium = findChromium();
const required = Deno.env.get("GIFTWRAP_REQUIRE_CHROMIUM") === "1";

/** Runs where Chromium is (or must be, in CI), skipped elsewhere saying why. */
const needsChromium = requires(
  chromium !== null || required,
  "no Chromium; Debian's chromium package provides it",
);

Deno.test({
  ...needsChromium(
    "writeReport() writes a page headless Chromium loads cleanly, with every chart laid out",
  ),
  async fn() {
    assert.ok(chromium !== null, "GIFTWRAP_REQUIRE_CHROMIUM=1 but no Chromium binary on PATH");
    await withTempDir(async (dir) => {
      await writeRun(dir, syntheticRun({ kl: true }));
      const path = await writeReport(dir);
      const svgs = [...(await Deno.readTextFile(path)).matchAll(/<svg\b/g)].length;
      assert.equal(svgs, 7);

      const browser = await launchChromium({ binary: chromium });
      try {
        const page = await loadPage(browser, await Deno.realPath(path));
        assert.deepEqual(page.problems, []);
        const layout = await page.evaluate(`(() => {
          const svgs = [...document.querySelectorAll("svg")];
          return {
            title: document.title,
            svgs: svgs.length,
            drawn: svgs.filter((s) => s.getBoundingClientRect().width > 600 &&
              s.getBoundingClientRect().height > 150 && s.querySelector("path") !== null).length,
            scripts: document.scripts.length,
            overflows: document.documentElement.scrollWidth > document.documentElement.clientWidth,
            tables: document.querySelectorAll("table.samples").length,
          };
        })()`);
        assert.deepEqual(layout, {
          title: "run addition-grpo",
          svgs,
          drawn: svgs,
          scripts: 0,
          overflows: false,
          tables: 6,
        });
        const png = await page.screenshot();
        assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
      } finally {
        await browser.close();
      }
    });
  },
});
