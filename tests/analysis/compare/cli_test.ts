/**
 * `giftwrap compare` as a user meets it: a subprocess in a temporary directory, its exit code,
 * its lines, and the `summary.json` and `report.html` it writes. Also `run --track`'s usage errors.
 */

import assert from "node:assert/strict";
import {
  assertNoStack,
  assertUsageError,
  giftwrap,
  lines,
  RUN_PERMISSIONS,
  withTempDir,
} from "../../_helpers.ts";
import { TINY } from "../../runtime/_tiny.ts";

// As deno.json's compare task: --allow-run in place of the runs' --allow-run=sh (of two, Deno
// takes the first).
const COMPARE_PERMISSIONS = [
  ...RUN_PERMISSIONS.filter((flag) => flag !== "--allow-run=sh"),
  "--allow-run",
];

/** Runs `giftwrap <args>` in `cwd` with the compare task's permissions (or `permissions`). */
function compareCli(args: readonly string[], cwd: string, permissions = COMPARE_PERMISSIONS) {
  return giftwrap(args, cwd, permissions);
}

Deno.test("giftwrap compare trains each seed, then writes summary.json and report.html", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/tiny.json`, JSON.stringify({ ...TINY, steps: 2 }));
    const run = await compareCli(
      ["compare", "tiny.json", "--objectives", "gift", "--seeds", "2", "--out", "out"],
      dir,
    );
    assert.equal(run.code, 0, run.stderr);
    assertNoStack(run.stderr);
    const out = lines(run.stdout);
    assert.match(out[0]!, /^compare tiny · gift × seeds 7, 8 · 2 runs, \d+ at a time → .*\/out$/);
    for (const name of ["tiny-gift-s7", "tiny-gift-s8"]) {
      assert.ok(out.includes(`start ${name}`), run.stdout);
      assert.ok(out.some((l) => l.startsWith(`done ${name} · eval `)), run.stdout);
    }
    assert.ok(out.some((l) => l.startsWith("compare: 1/2 runs done · step totals ")), run.stdout);
    assert.ok(out.some((l) => /^compare: 2\/2 runs done · step totals 4\/4 · ETA /.test(l)));
    assert.match(
      out.at(-3)!,
      /^objective\s+lr\s+@25% \(step 0\)\s+@50% \(step 0\)\s+@100% \(step 2\)\s+steps to /,
    );
    assert.match(out.at(-2)!, /^gift\s+0\.001\s+\d+\.\d% ± \d+\.\d\s+/);
    assert.match(out.at(-1)!, /^done · .*\/out\/summary\.json · .*\/out\/report\.html$/);

    // The generated recipes: the base recipe with the objective's preset and each seed.
    for (const seed of [7, 8]) {
      const recipe = JSON.parse(
        await Deno.readTextFile(`${dir}/out/recipes/tiny-gift-s${seed}.json`),
      );
      assert.deepEqual(recipe, {
        ...TINY,
        steps: 2,
        name: `tiny-gift-s${seed}`,
        seed,
        objective: { kind: "gift" },
      });
    }
    // One runs directory, one warm start per seed in its cache.
    const runDirs = (await Array.fromAsync(Deno.readDir(`${dir}/out/runs`))).map((e) => e.name)
      .sort();
    assert.equal(runDirs.length, 3, runDirs.join(", "));
    assert.equal(runDirs[0], ".cache");
    assert.match(runDirs[1]!, /^tiny-gift-s7-\d{8}-\d{6}$/);
    assert.match(runDirs[2]!, /^tiny-gift-s8-\d{8}-\d{6}$/);
    assert.equal(
      (await Array.fromAsync(Deno.readDir(`${dir}/out/runs/.cache/warm-start`))).length,
      2,
    );

    // summary.json
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/out/summary.json`));
    assert.equal(summary.format, "giftwrap.compare/1");
    assert.equal(summary.name, "tiny");
    assert.equal(summary.recipe, "tiny.json");
    assert.equal(summary.steps, 2);
    assert.deepEqual(summary.seeds, [7, 8]);
    assert.equal(summary.tuningSeed, null);
    assert.deepEqual(summary.budgets, [0.25, 0.5, 1]);
    assert.deepEqual(summary.failures, []);
    assert.equal(summary.objectives.length, 1);
    const gift = summary.objectives[0];
    assert.equal(gift.objective, "gift");
    assert.equal(gift.lr, 0.001);
    assert.equal(gift.lrSource, "recipe");
    assert.equal(gift.tuning, null);
    assert.deepEqual(gift.runs.map((r: { seed: number }) => r.seed), [7, 8]);
    const metrics: Record<string, unknown>[][] = [];
    for (const r of gift.runs) {
      assert.equal(r.error, null);
      assert.match(r.dir, /^runs\/tiny-gift-s\d-\d{8}-\d{6}$/);
      assert.deepEqual(r.eval.map((p: { step: number }) => p.step), [0, 2]);
      assert.equal(r.eval[0].tokens, 0);
      assert.ok(r.eval[1].tokens > 0 && r.eval[1].tokens <= 2 * 16 * 4, "tokens ≤ steps × B × new");
      assert.equal(r.finalAccuracy, r.eval[1].accuracy);
      assert.deepEqual(r.kl.map((p: { step: number }) => p.step), [1, 2]);
      const text = await Deno.readTextFile(`${dir}/out/${r.dir}/metrics.jsonl`);
      metrics.push(lines(text).map((l) => JSON.parse(l)));
    }
    // The gap and KL to the initial policy, as far as the runtime measured them (run --track).
    const tracked = metrics.flat();
    assert.equal(gift.aggregate.gap.length > 0, tracked.some((l) => "trainAccuracy" in l));
    assert.equal(gift.aggregate.klInitial.length > 0, tracked.some((l) => "klInitial" in l));
    const final = gift.aggregate.eval.at(-1);
    assert.equal(final.step, 2);
    assert.equal(final.n, 2);
    assert.equal(final.mean, (gift.runs[0].finalAccuracy + gift.runs[1].finalAccuracy) / 2);
    assert.ok(final.min <= final.mean && final.mean <= final.max);
    assert.equal(typeof final.std, "number");
    assert.equal(gift.budgets.length, 3);
    assert.equal(summary.target.source, "auto");
    assert.equal(summary.target.accuracy, gift.finalAccuracy.mean * 0.9);
    assert.equal(gift.stepsToTarget.n, 2);
    assert.deepEqual(summary.table.map((r: { objective: string }) => r.objective), ["gift"]);

    // report.html: self-contained, with the charts, the legend, the table and the lr.
    const html = await Deno.readTextFile(`${dir}/out/report.html`);
    assert.ok(html.startsWith("<!DOCTYPE html>"));
    assert.ok(!/<script|<link|src=/i.test(html), "a script or an external resource");
    assert.deepEqual(
      [...html.matchAll(/https?:\/\/[^"\s<]+/g)].map((m) => m[0]).filter((u) =>
        u !== "http://www.w3.org/2000/svg"
      ),
      [],
    );
    for (
      const title of [
        "eval accuracy vs step",
        "eval accuracy vs sampled tokens",
        "KL to the reference vs step",
      ]
    ) {
      assert.match(html, new RegExp(`<title>${title}</title>`), title);
    }
    const charts = [...html.matchAll(/<svg /g)].length;
    assert.equal(
      charts,
      3 + (gift.aggregate.klInitial.length > 0 ? 1 : 0) + (gift.aggregate.gap.length > 0 ? 1 : 0),
    );
    assert.match(html, /<text [^>]*>gift<\/text>/, "the legend");
    assert.match(html, /<th>steps to [\d.]+%<\/th>/);
    assert.match(html, /<tr><td>gift<\/td><td>0\.001<\/td><td>the recipe's<\/td>/);
  });
});

Deno.test("giftwrap compare reports each failed run in one line, finishes the others, exits 1", async () => {
  await withTempDir(async (dir) => {
    // No completion ever matches: GIFT trains on zero advantages; DAPO's dynamic sampling,
    // which needs groups whose success rewards differ, gives up.
    const recipe = {
      ...TINY,
      steps: 2,
      rewards: [{ source: { kind: "regexFormat", pattern: "^never$" } }],
      eval: { every: 2, metric: { kind: "numericAnswer" } },
    };
    await Deno.writeTextFile(`${dir}/tiny.json`, JSON.stringify(recipe));
    const run = await compareCli(
      ["compare", "tiny.json", "--objectives", "dapo,gift", "--seeds", "1", "--out", "out"],
      dir,
    );
    assert.equal(run.code, 1, run.stderr);
    assertNoStack(run.stderr);
    const failures = lines(run.stderr).filter((l) => !l.includes(": warning: "));
    assert.equal(failures.length, 1, run.stderr);
    assert.match(failures[0]!, /^tiny-dapo-s7: .*dynamic sampling/);
    assert.ok(lines(run.stdout).some((l) => l.startsWith("done tiny-gift-s7 · ")), run.stdout);
    assert.match(lines(run.stdout).at(-1)!, /^1 of 2 runs failed · /);

    const summary = JSON.parse(await Deno.readTextFile(`${dir}/out/summary.json`));
    assert.deepEqual(summary.failures.map((f: { run: string }) => f.run), ["tiny-dapo-s7"]);
    const [dapo, gift] = summary.objectives;
    assert.match(dapo.runs[0].error, /dynamic sampling/);
    assert.equal(dapo.finalAccuracy.n, 0);
    assert.equal(gift.runs[0].error, null);
    assert.equal(gift.finalAccuracy.n, 1);
    const html = await Deno.readTextFile(`${dir}/out/report.html`);
    assert.match(html, /<h2>Failed runs<\/h2>\n<ul>\n<li>tiny-dapo-s7: /);
  });
});

Deno.test("giftwrap compare reports bad options and recipes in one line, exit 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/tiny.json`, JSON.stringify({ ...TINY, steps: 2 }));
    await Deno.writeTextFile(
      `${dir}/last_seed.json`,
      JSON.stringify({ ...TINY, steps: 2, seed: 4_294_967_295 }),
    );
    const [typo, unknown, seeds, lr, target, jobs, badSeed, noRun, track] = await Promise.all([
      compareCli(["compare", "tiny.json", "--objectives", "gift,gfit"], dir),
      compareCli(["compare", "tiny.json", "--objectives", "ppo"], dir),
      compareCli(["compare", "tiny.json", "--seeds", "0"], dir),
      compareCli(["compare", "tiny.json", "--lr", "1e-4,2"], dir),
      compareCli(["compare", "tiny.json", "--target", "120%"], dir),
      compareCli(["compare", "tiny.json", "--jobs", "two"], dir),
      compareCli(["compare", "last_seed.json", "--objectives", "gift,grpo", "--seeds", "2"], dir),
      compareCli(
        ["compare", "tiny.json", "--objectives", "gift"],
        dir,
        COMPARE_PERMISSIONS.slice(0, -1),
      ),
      compareCli(["run", "tiny.json", "--track", "kl-intial"], dir),
    ]);
    assertUsageError(typo, "--objectives gfit");
    assert.equal(
      typo.stderr,
      "error: option '--objectives <list>' argument 'gift,gfit' is invalid. " +
        "unknown objective 'gfit' (did you mean gift?)\n",
    );
    assertUsageError(unknown, "--objectives ppo");
    assert.match(unknown.stderr, /unknown objective 'ppo': expected some of gift, grpo, /);
    assertUsageError(seeds, "--seeds 0");
    assert.match(
      seeds.stderr,
      /'--seeds <n>' argument '0' is invalid\. expected a whole number >= 1/,
    );
    assertUsageError(lr, "--lr 2");
    assert.match(lr.stderr, /expected learning rates in \(0, 1\], got '2'/);
    assertUsageError(target, "--target 120%");
    assertUsageError(jobs, "--jobs two");
    assertUsageError(badSeed, "a seed past the last");
    assert.equal(
      badSeed.stderr,
      "last_seed.json: objectives gift, grpo: seed: expected an integer between 0 and 4294967295, " +
        "got 4294967296\n",
    );
    assertUsageError(noRun, "without --allow-run");
    assert.match(
      noRun.stderr,
      /^giftwrap: compare starts each run as a subprocess: it needs --allow-run/,
    );
    assertUsageError(track, "run --track kl-intial");
    assert.match(track.stderr, /unknown measurement 'kl-intial' \(did you mean kl-initial\?\)/);
    // Nothing was written.
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort(), [
      "last_seed.json",
      "tiny.json",
    ]);
  });
});

Deno.test("giftwrap compare --lr tunes each objective on seed + 1000, then compares", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/tiny.json`, JSON.stringify({ ...TINY, steps: 2 }));
    const run = await compareCli(
      ["compare", "tiny.json", "--objectives", "gift", "--seeds", "1", "--lr", "2e-3,1e-3"],
      dir,
    );
    assert.equal(run.code, 0, run.stderr);
    const out = lines(run.stdout);
    assert.match(
      out[0]!,
      /^compare tiny · gift × seeds 7 after tuning lr over 0\.002, 0\.001 on seed 1007 · 3 runs/,
    );
    // The default output directory.
    const [outDir] = (await Array.fromAsync(Deno.readDir(`${dir}/compare`))).map((e) => e.name);
    assert.match(outDir!, /^tiny-\d{8}-\d{6}$/);
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/compare/${outDir}/summary.json`));
    assert.equal(summary.tuningSeed, 1007);
    const [gift] = summary.objectives;
    assert.equal(gift.lrSource, "tuned");
    assert.deepEqual(gift.tuning.map((t: { run: string }) => t.run), [
      "tiny-gift-s1007-lr0.002",
      "tiny-gift-s1007-lr0.001",
    ]);
    // The highest mean of the last evaluations; a tie goes to the smaller lr.
    const [a, b] = gift.tuning;
    const best = a.score > b.score ? a.lr : b.score > a.score ? b.lr : Math.min(a.lr, b.lr);
    assert.equal(gift.lr, best);
    assert.ok(
      out.includes(
        `tuned gift: lr ${best} (mean of the last 3 evals: ` +
          `0.002 ${(100 * a.score).toFixed(1)}%, 0.001 ${(100 * b.score).toFixed(1)}%)`,
      ),
      run.stdout,
    );
    assert.deepEqual(gift.runs.map((r: { run: string }) => r.run), [`tiny-gift-s7-lr${best}`]);
    const recipe = JSON.parse(
      await Deno.readTextFile(`${dir}/compare/${outDir}/recipes/tiny-gift-s7-lr${best}.json`),
    );
    assert.deepEqual(recipe.optimizer, { lr: best });
    assert.match(
      await Deno.readTextFile(`${dir}/compare/${outDir}/report.html`),
      /<h3>Tuning gift on seed 1007<\/h3>/,
    );
  });
});

Deno.test("giftwrap compare refuses a --seeds count out of range in one line, exit 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/tiny.json`, JSON.stringify({ ...TINY, steps: 2 }));
    const [huge, many] = await Promise.all([
      compareCli(["compare", "tiny.json", "--seeds", "4294967296"], dir),
      compareCli(["compare", "tiny.json", "--seeds", "1001"], dir),
    ]);
    assertUsageError(huge, "--seeds 4294967296");
    assert.equal(
      huge.stderr,
      "error: option '--seeds <n>' argument '4294967296' is invalid. expected a whole number " +
        ">= 1 and <= 1000, got '4294967296'\n",
    );
    assertUsageError(many, "--seeds 1001");
    assert.match(many.stderr, /expected a whole number >= 1 and <= 1000, got '1001'/);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), ["tiny.json"]);
  });
});

Deno.test("giftwrap compare stopped by Ctrl-C says so, summarises the finished runs, exits 130", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/tiny.json`, JSON.stringify({ ...TINY, steps: 2 }));
    const cli = decodeURIComponent(new URL("../../../cli.ts", import.meta.url).pathname);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...COMPARE_PERMISSIONS,
        cli,
        "compare",
        "tiny.json",
        ...["--objectives", "gift", "--seeds", "2", "--jobs", "1", "--out", "out"],
      ],
      cwd: dir,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const watchdog = setTimeout(() => child.kill("SIGKILL"), 120_000);
    let stdout = "";
    const stderr = new Response(child.stderr).text();
    try {
      // Ctrl-C once the first seed's run is done and the second's has started.
      for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
        const before = stdout;
        stdout += text;
        if (
          !before.includes("\nstart tiny-gift-s8\n") && stdout.includes("\nstart tiny-gift-s8\n")
        ) {
          child.kill("SIGINT");
        }
      }
      const { code } = await child.status;
      assert.equal(code, 130, `${stdout}\n${await stderr}`);
    } finally {
      clearTimeout(watchdog);
    }
    assertNoStack(await stderr);
    const out = lines(stdout);
    assert.ok(out.some((l) => l.startsWith("done tiny-gift-s7 · ")), stdout);
    assert.equal(
      out.filter((l) => l.startsWith("compare: interrupted")).length,
      1,
      stdout,
    );
    assert.match(out.at(-2)!, /^gift\s+0\.001\s+\d+\.\d%\s+/, "the table row of the finished run");
    assert.match(
      out.at(-1)!,
      /^interrupted: 1 of 2 runs finished · .*\/out\/summary\.json · .*\/out\/report\.html$/,
    );
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/out/summary.json`));
    assert.deepEqual(summary.failures, []);
    assert.deepEqual(summary.objectives[0].runs.map((r: { run: string }) => r.run), [
      "tiny-gift-s7",
    ]);
  });
});
