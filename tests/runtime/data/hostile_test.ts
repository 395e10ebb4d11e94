// Hostile data: a line too long to hold, a prompt too long to quote, bytes that are not UTF-8 and
// a file too large to read are each refused in one short line naming the file, before any of it
// is tokenized.

import assert from "node:assert/strict";
import { DataError, loadJsonlLines } from "../../../runtime/data/jsonl.ts";
import { loadTask, supervisedExample } from "../../../runtime/data/task.ts";
import { charTokenizer } from "../../../runtime/engine/model/tokenizer.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { PRINTABLE_ASCII } from "../../../dsl/tasks.ts";
import { assertNoStack, giftwrap, lines, withTempDir } from "../../_helpers.ts";
import { TINY, tinyPlan } from "../_tiny.ts";

const encoder = new TextEncoder();

/** `n` rows `{"q": "a+b=", "a": "sum"}`, one per line. */
function sums(n: number): string[] {
  return Array.from({ length: n }, (_, i) => JSON.stringify({ q: `${i % 7}+${i % 3}=`, a: "1" }));
}

/** The tiny recipe on `data.jsonl` (fields q and a, 8 prompt tokens), with `data` changes. */
function jsonlRecipe(data: Record<string, unknown> = {}) {
  return {
    ...TINY,
    data: {
      kind: "jsonl",
      path: "data.jsonl",
      prompt: "q",
      answer: "a",
      eval: 2,
      maxPromptTokens: 8,
      ...data,
    },
    sampling: { maxNewTokens: 3 },
  } as const;
}

Deno.test("validate refuses a 200 MB line in one line, without holding it", async () => {
  await withTempDir(async (dir) => {
    // Line 3 is a 200 MB prompt; written in 1 MiB pieces, so the test holds 1 MiB of it.
    const file = await Deno.open(`${dir}/data.jsonl`, { write: true, create: true });
    await file.write(encoder.encode(sums(2).join("\n") + '\n{"q": "'));
    const piece = encoder.encode("1+".repeat(512 * 1024));
    for (let i = 0; i < 200; i++) await file.write(piece);
    await file.write(encoder.encode('1=", "a": "2"}\n' + sums(10).join("\n") + "\n"));
    file.close();
    await Deno.writeTextFile(`${dir}/big.json`, JSON.stringify(jsonlRecipe()));
    const ran = await giftwrap(["validate", "big.json"], dir);
    assert.equal(ran.code, 2, ran.stderr.slice(0, 2000));
    assertNoStack(ran.stderr);
    const data = `${await Deno.realPath(dir)}/data.jsonl`;
    assert.deepEqual(lines(ran.stderr), [
      `${data}:3: expected a line of at most 1,048,576 bytes, got a longer one`,
    ]);
  });
});

Deno.test("supervisedExample() and loadTask() quote at most 40 characters of an over-long prompt", async () => {
  const long = "1+".repeat(50_000) + "=";
  const tokenizer = charTokenizer("0123456789+=");
  const excerpt = `"${"1+".repeat(20)}"… (100,001 characters)`;
  assert.throws(
    () => supervisedExample(tokenizer, { prompt: long, answer: "2", row: {} }, 5, 3),
    (e: Error) => {
      assert.equal(
        e.message,
        `Cannot train on prompt ${excerpt}: 100002 tokens with <bos>, more than the plan's 5`,
      );
      return true;
    },
  );
  assert.throws(
    () => supervisedExample(tokenizer, { prompt: "1=", answer: long, row: {} }, 5, 3),
    (e: Error) => e.message.length < 200 && e.message.includes(excerpt),
  );
  // A JSON Lines row: the message names the line and counts, quoting nothing.
  await withTempDir(async (dir) => {
    const rows = sums(10);
    rows[4] = JSON.stringify({ q: long, a: "2" });
    await Deno.writeTextFile(`${dir}/data.jsonl`, rows.join("\n") + "\n");
    const plan = tinyPlan(jsonlRecipe() as never);
    await assert.rejects(
      () => loadTask(plan, new Rng(1), new URL(`file://${dir}/`)),
      (e: Error) => {
        assert.ok(e instanceof DataError);
        assert.equal(
          e.message,
          `${dir}/data.jsonl:5: prompt: expected at most 8 tokens with <bos> ` +
            "(data.maxPromptTokens), got 100002",
        );
        return true;
      },
    );
  });
});

Deno.test("loadJsonlLines() refuses bytes that are not UTF-8, naming the file, line and byte", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/data.jsonl`;
    const head = encoder.encode(sums(3).join("\n") + '\n{"q": "1+1=", "a": "2');
    // 0xFF never occurs in UTF-8; the answer's byte 18 of line 4.
    const line4 = encoder.encode('{"q": "1+1=", "a": "2').length + 1;
    await Deno.writeFile(path, new Uint8Array([...head, 0xff, ...encoder.encode('"}\n')]));
    const options = { prompt: "q", answer: "a", eval: 1 };
    await assert.rejects(
      () => loadJsonlLines(path, options, new Rng(1)),
      (e: Error) => {
        assert.ok(e instanceof DataError);
        assert.equal(e.message, `${path}:4: invalid UTF-8 at byte ${line4} of the line (0xFF)`);
        return true;
      },
    );
    // A sequence cut short (the first two bytes of '€', then a quote) is invalid at its start.
    const euro = [0xe2, 0x82];
    const at = encoder.encode('{"q": "').length + 1;
    await Deno.writeFile(
      path,
      new Uint8Array([...encoder.encode('{"q": "'), ...euro, ...encoder.encode('", "a": "1"}\n')]),
    );
    await assert.rejects(
      () => loadJsonlLines(path, options, new Rng(1)),
      new RegExp(
        `^DataError: .*data\\.jsonl:1: invalid UTF-8 at byte ${at} of the line \\(0xE2\\)$`,
      ),
    );
    // Valid multi-byte UTF-8 and a leading byte-order mark still read.
    await Deno.writeFile(
      path,
      encoder.encode("\uFEFF" + JSON.stringify({ q: "é€😀", a: "1" }) + "\n" + sums(2).join("\n")),
    );
    const { train, eval: held } = await loadJsonlLines(path, options, new Rng(1));
    assert.deepEqual(
      [...train, ...held].map((p) => p.problem.prompt).sort(),
      ["0+0=", "1+1=", "é€😀"],
    );
  });
});

Deno.test("loadTask() refuses a file larger than data.maxBytes before reading it", async () => {
  await withTempDir(async (dir) => {
    const text = sums(20).join("\n") + "\n";
    await Deno.writeTextFile(`${dir}/data.jsonl`, text);
    const base = new URL(`file://${dir}/`);
    const bytes = encoder.encode(text).length;
    const small = tinyPlan(jsonlRecipe({ maxBytes: 100 }) as never);
    await assert.rejects(
      () => loadTask(small, new Rng(1), base),
      (e: Error) => {
        assert.ok(e instanceof DataError);
        assert.equal(
          e.message,
          `${dir}/data.jsonl: expected at most 100 bytes (data.maxBytes), got ${bytes}`,
        );
        return true;
      },
    );
    const enough = tinyPlan(jsonlRecipe({ maxBytes: bytes }) as never);
    assert.equal((await loadTask(enough, new Rng(1), base)).splits.eval.length, 2);
  });
});

Deno.test("problemFit() counts an over-long prompt before reading its characters", async () => {
  // 50,000 characters outside the alphabet: the length is the problem named, found first.
  const { problemFit } = await import("../../../runtime/data/task.ts");
  const plan = tinyPlan(jsonlRecipe() as never);
  const tokenizer = charTokenizer(PRINTABLE_ASCII);
  assert.equal(
    problemFit(tokenizer, { prompt: "é".repeat(50_000), answer: "1", row: {} }, "eval", plan),
    "prompt: expected at most 8 tokens with <bos> (data.maxPromptTokens), got 50001",
  );
});
