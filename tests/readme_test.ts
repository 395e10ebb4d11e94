// The README shows real output; these tests keep it real. When a change to the compiler changes
// what the README shows, they fail: run the commands the README shows and paste their output.

import assert from "node:assert/strict";
import { compile, formatPlan, loadRecipe, planHash, withInputs } from "../mod.ts";
import frontDoor from "../recipes/addition_gift.ts";
import stories from "../recipes/stories_gift.ts";
import { resolveModels } from "../runtime/resolve.ts";
import { runMain, withTempDir } from "./_helpers.ts";

const ROOT = new URL("../", import.meta.url);
const README = await Deno.readTextFile(new URL("README.md", ROOT));

/** The fenced block that follows the first line containing `marker`. */
function blockAfter(marker: string): string {
  const at = README.indexOf(marker);
  assert.ok(at >= 0, `README has no '${marker}'`);
  const open = README.indexOf("```", at);
  const start = README.indexOf("\n", open) + 1;
  return README.slice(start, README.indexOf("```", start));
}

/** The lines after the line containing `command`, up to the end of its fenced block. */
function outputOf(command: string): string[] {
  const at = README.indexOf(command);
  assert.ok(at >= 0, `README has no '${command}'`);
  const start = README.indexOf("\n", at) + 1;
  return README.slice(start, README.indexOf("```", start)).split("\n").filter((l) => l !== "");
}

/**
 * Writes a README snippet to a temporary file, its imports of the two entry points ("./mod.ts",
 * "./runtime/mod.ts") and of "./recipes/" pointed at this checkout.
 */
async function writeSnippet(dir: string, name: string, text: string): Promise<string> {
  const path = `${dir}/${name}`;
  const fixed = text.replaceAll('"./mod.ts"', JSON.stringify(new URL("mod.ts", ROOT).href))
    .replaceAll('"./runtime/mod.ts"', JSON.stringify(new URL("runtime/mod.ts", ROOT).href))
    .replaceAll('"./recipes/', `"${new URL("recipes/", ROOT).href}`);
  await Deno.writeTextFile(path, fixed);
  return path;
}

Deno.test("README: the first recipe compiles to the plan excerpt shown", async () => {
  await withTempDir(async (dir) => {
    const file = await writeSnippet(dir, "my_recipe.ts", blockAfter("Save this as `my_recipe.ts`"));
    const plan = compile((await loadRecipe(file)).input as typeof frontDoor);
    // The excerpt: runs of lines, cut where the README writes "…", each found whole and in order
    // in what `deno task plan` prints (the CLI's `available` is the compiler's default here).
    const shown = outputOf("$ deno task -q plan my_recipe.ts");
    const runs: string[][] = [[]];
    for (const line of shown) {
      if (line.trim() === "…") runs.push([]);
      else runs.at(-1)!.push(line);
    }
    assert.ok(runs.length > 1 && runs[0]!.length > 3, "the README shows no plan excerpt");
    const printed = formatPlan(plan).trimEnd().split("\n").filter((l) => l !== "");
    let from = 0;
    for (const run of runs.filter((r) => r.length > 0)) {
      const at = printed.findIndex((_, i) =>
        i >= from && run.every((line, j) => printed[i + j] === line)
      );
      assert.ok(at >= 0, `the plan does not print, in this order:\n${run.join("\n")}`);
      from = at + run.length;
    }
    assert.ok(shown[0]!.includes(`hash ${planHash(plan)}`));
    // The run shown is a run of this plan.
    const ran = outputOf("$ deno task run my_recipe.ts");
    assert.ok(ran[0]!.startsWith(`run my-first-gift · plan ${planHash(plan)} · `), ran[0]);
    assert.match(ran.at(-1)!, /^accuracy \d+\.\d% → \d+\.\d% \(\+\d+\.\d points\) after 150 steps/);
  });
});

Deno.test("README: the error examples print exactly the lines shown", async () => {
  await withTempDir(async (dir) => {
    const examples: [string, string][] = [
      ["broken.json", "Here is `broken.json`"],
      ["broken_grpo.ts", "`broken_grpo.ts`:"],
    ];
    for (const [file, marker] of examples) {
      const path = await writeSnippet(dir, file, blockAfter(marker));
      const shown = outputOf(`$ deno task -q validate ${file}`).filter((l) =>
        l.startsWith(`${file}: `)
      );
      assert.ok(shown.length > 0, `no output shown for ${file}`);
      const ran = await runMain(["validate", path]);
      assert.equal(ran.code, 2);
      assert.deepEqual(ran.stderr.map((l) => l.replace(`${dir}/`, "")), shown);
    }
  });
});

Deno.test("README: the run output shows the front door's plan hash", () => {
  assert.ok(README.includes(`run addition-gift · plan ${planHash(compile(frontDoor))} · wasm`));
});

Deno.test("README: the stories front door's output and plan rows are its plan's", async () => {
  const url = new URL("recipes/stories_gift.ts", ROOT);
  const resolved = await resolveModels(stories, url);
  assert.ok(resolved.ok);
  // As the CLI makes it: the model read first, the files the recipe names hashed after.
  const plan = await withInputs(compile(stories, { models: resolved.models }), url);
  assert.ok(README.includes(`run stories-gift · plan ${planHash(plan)} · wasm`));
  // The plan rows the README quotes: model, policy, tokenizer and the rendered prompt.
  const printed = formatPlan(plan).split("\n");
  const rows = printed.slice(
    printed.findIndex((l) => l.startsWith("  model ")),
    printed.findIndex((l) => l.startsWith("  reference ")),
  );
  // The README's block is not indented as the plan's rows are.
  const shown = rows.map((l) => l.slice(2)).join("\n");
  assert.ok(README.includes(shown), shown);
});

Deno.test("README: the objectives snippet prints the loss its comment states", async () => {
  await withTempDir(async (dir) => {
    const block = blockAfter("The objectives are plain functions of tensors");
    const stated = /console\.log\(.*\); \/\/ (\d+\.\d+) =/.exec(block);
    assert.ok(stated, "the snippet states no value");
    const path = await writeSnippet(dir, "objectives.ts", block);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", new URL("deno.json", ROOT).pathname, path],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(stdout.trim().split("\n").pop(), stated[1]);
  });
});
