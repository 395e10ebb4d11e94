import assert from "node:assert/strict";
import {
  DataError,
  finalAnswer,
  type JsonlLoadOptions,
  loadJsonl,
  parseJsonl,
  parseJsonlLines,
} from "../../../runtime/data/jsonl.ts";
import { Rng } from "../../../runtime/engine/random.ts";

const PATH = "data/x.jsonl";
const QA: JsonlLoadOptions = { prompt: "question", answer: "answer", eval: 0 };

/** `n` lines `{"question": "q<i>", "answer": i}`. */
function numbered(n: number): string {
  return Array.from({ length: n }, (_, i) => JSON.stringify({ question: `q${i}`, answer: i }))
    .join("\n");
}

/** The one-line message `parseJsonl(text)` fails with; asserts that it is a DataError. */
function failure(text: string, options: JsonlLoadOptions = QA): string {
  try {
    parseJsonl(text, PATH, options, new Rng(1));
  } catch (error) {
    assert.ok(error instanceof DataError, `not a DataError: ${error}`);
    assert.ok(!error.message.includes("\n"), `a message over several lines: ${error.message}`);
    return error.message;
  }
  assert.fail("parseJsonl() did not throw");
}

Deno.test("parseJsonl() maps the named fields to prompt and answer and keeps the row", () => {
  const text = '{"question": "What is 2+3?", "answer": "5", "id": 7}\n';
  const { train, eval: held } = parseJsonl(text, PATH, QA, new Rng(1));
  assert.deepEqual(held, []);
  assert.deepEqual(train, [{
    prompt: "What is 2+3?",
    answer: "5",
    row: { question: "What is 2+3?", answer: "5", id: 7 },
  }]);
});

Deno.test("parseJsonl() writes numeric answers with String()", () => {
  const text = '{"q": "a", "a": 42}\n{"q": "b", "a": -1.5}\n{"q": "c", "a": 0}\n';
  const { train } = parseJsonl(text, PATH, { prompt: "q", answer: "a", eval: 0 }, new Rng(1));
  const answers = new Map(train.map((p) => [p.prompt, p.answer]));
  assert.deepEqual(answers, new Map([["a", "42"], ["b", "-1.5"], ["c", "0"]]));
});

Deno.test("parseJsonl() applies the template to every '{prompt}', taking '$' literally", () => {
  const text = '{"question": "cost of $& and $1?", "answer": "3"}';
  const options = { ...QA, template: "Q: {prompt}\nA ({prompt}):" };
  const [problem] = parseJsonl(text, PATH, options, new Rng(1)).train;
  assert.equal(problem?.prompt, "Q: cost of $& and $1?\nA (cost of $& and $1?):");
  assert.equal(problem?.row.question, "cost of $& and $1?", "the row keeps the raw field");
});

Deno.test("parseJsonl() refuses a template without '{prompt}'", () => {
  assert.throws(
    () => parseJsonl(numbered(3), PATH, { ...QA, template: "Q: {question}" }, new Rng(1)),
    /Cannot load data\/x\.jsonl as 'template' must contain '\{prompt\}'/,
  );
});

Deno.test("parseJsonl() keeps GSM8K worked answers whole", () => {
  const answer =
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nIn all 48+24 = <<48+24=72>>72.\n" +
    "#### 72";
  const text = JSON.stringify({ question: "How many clips?", answer });
  const [problem] = parseJsonl(text, PATH, QA, new Rng(1)).train;
  assert.equal(problem?.answer, answer);
  assert.equal(finalAnswer(problem!.answer), "72");
});

Deno.test("finalAnswer() returns the trimmed text after '####', else the whole text", () => {
  assert.equal(finalAnswer("so 3+4 = 7\n#### 7"), "7");
  assert.equal(finalAnswer("####  1,234 \n"), "1,234");
  assert.equal(finalAnswer("a #### b #### 9"), "9");
  assert.equal(finalAnswer(" 42 "), " 42 ");
  assert.equal(finalAnswer(""), "");
});

Deno.test("parseJsonl() skips blank lines, CRLF endings and a BOM", () => {
  const text =
    '\uFEFF{"question": "a", "answer": 1}\r\n\r\n   \n{"question": "b", "answer": 2}\r\n';
  const { train } = parseJsonl(text, PATH, QA, new Rng(1));
  assert.deepEqual(train.map((p) => p.prompt).sort(), ["a", "b"]);
});

Deno.test("parseJsonl() holds out `eval` rows and trains on the rest", () => {
  const { train, eval: held } = parseJsonl(numbered(100), PATH, { ...QA, eval: 30 }, new Rng(1));
  assert.equal(held.length, 30);
  assert.equal(train.length, 70);
  const all = [...train, ...held].map((p) => p.row.answer as number).sort((x, y) => x - y);
  assert.deepEqual(all, Array.from({ length: 100 }, (_, i) => i), "every row exactly once");
});

Deno.test("parseJsonl() shuffles the rows before holding out", () => {
  const { eval: held } = parseJsonl(numbered(100), PATH, { ...QA, eval: 30 }, new Rng(1));
  const firstRows = held.filter((p) => (p.row.answer as number) < 30).length;
  assert.ok(firstRows < 30, "the eval split is the file's first rows");
});

Deno.test("parseJsonl() never puts a problem in both splits", () => {
  const { train, eval: held } = parseJsonl(numbered(50), PATH, { ...QA, eval: 10 }, new Rng(2));
  const trainPrompts = new Set(train.map((p) => p.prompt));
  assert.ok(held.every((p) => !trainPrompts.has(p.prompt)), "an eval problem in train");
});

Deno.test("parseJsonl() drops train rows that repeat an eval prompt", () => {
  // Every prompt twice: whichever copies land in eval, their twins must leave train.
  const rows = Array.from({ length: 20 }, (_, i) => ({ question: `q${i % 10}`, answer: i % 10 }));
  const text = rows.map((r) => JSON.stringify(r)).join("\n");
  const { train, eval: held } = parseJsonl(text, PATH, { ...QA, eval: 5 }, new Rng(3));
  const heldPrompts = new Set(held.map((p) => p.prompt));
  assert.equal(held.length, 5);
  assert.ok(train.every((p) => !heldPrompts.has(p.prompt)), "an eval problem in train");
  const kept = rows.filter((r) => !heldPrompts.has(r.question)).length;
  assert.equal(train.length, kept, "train keeps every row whose prompt is not held out");
  assert.ok(kept < 15, "no train row repeated an eval prompt: the test tests nothing");
});

Deno.test("parseJsonl() is a function of the seed", () => {
  const options = { ...QA, eval: 10 };
  const text = numbered(40);
  assert.deepEqual(
    parseJsonl(text, PATH, options, new Rng(3)),
    parseJsonl(text, PATH, options, new Rng(3)),
  );
  assert.notDeepEqual(
    parseJsonl(text, PATH, options, new Rng(3)),
    parseJsonl(text, PATH, options, new Rng(4)),
  );
});

Deno.test("parseJsonl() names the file and line of invalid JSON", () => {
  const text = `${numbered(6)}\n{"question": "q6", answer: 6}\n`;
  assert.match(failure(text), /^data\/x\.jsonl:7: invalid JSON \(.+\)$/);
  assert.match(failure('{"question": "a", "answer": 1'), /^data\/x\.jsonl:1: invalid JSON \(/);
  assert.doesNotMatch(failure('{"question": 1'), /line 1 column/, "V8's in-line position");
});

Deno.test("parseJsonl() counts blank lines in line numbers", () => {
  const text = '{"question": "a", "answer": 1}\n\n{"answer": 2}\n';
  assert.equal(failure(text), "data/x.jsonl:3: missing field 'question'");
});

Deno.test("parseJsonl() refuses a missing field", () => {
  assert.equal(failure('{"question": "a"}'), "data/x.jsonl:1: missing field 'answer'");
  assert.equal(failure('{"answer": "a"}'), "data/x.jsonl:1: missing field 'question'");
});

Deno.test("parseJsonl() refuses a prompt that is not a string", () => {
  const text = `${numbered(2)}\n{"question": 12, "answer": "a"}`;
  assert.equal(
    failure(text),
    "data/x.jsonl:3: field 'question' is not a string or a list of messages (got number)",
  );
  assert.equal(
    failure('{"question": null, "answer": "a"}'),
    "data/x.jsonl:1: field 'question' is not a string or a list of messages (got null)",
  );
  assert.equal(
    failure('{"question": ["a"], "answer": "a"}'),
    "data/x.jsonl:1: field 'question'[0] is not a message object (got string)",
  );
});

Deno.test("parseJsonl() refuses an answer that is neither a string nor a number", () => {
  assert.equal(
    failure('{"question": "a", "answer": true}'),
    "data/x.jsonl:1: field 'answer' is not a string or number (got boolean)",
  );
  assert.equal(
    failure('{"question": "a", "answer": {"n": 1}}'),
    "data/x.jsonl:1: field 'answer' is not a string or number (got object)",
  );
});

Deno.test("parseJsonl() refuses a line that is not a JSON object", () => {
  const text = `${numbered(4)}\n["question", "answer"]\n`;
  assert.equal(failure(text), "data/x.jsonl:5: a line must be a JSON object, got an array");
  assert.equal(failure("42"), "data/x.jsonl:1: a line must be a JSON object, got a number");
  assert.equal(failure('"q"'), "data/x.jsonl:1: a line must be a JSON object, got a string");
  assert.equal(failure("null"), "data/x.jsonl:1: a line must be a JSON object, got null");
});

Deno.test("parseJsonl() refuses a file without problems", () => {
  assert.equal(failure(""), "data/x.jsonl: empty file (no problems)");
  assert.equal(failure("\n  \n\r\n"), "data/x.jsonl: empty file (no problems)");
});

Deno.test("parseJsonl() refuses to hold out every row", () => {
  assert.equal(
    failure(numbered(10), { ...QA, eval: 10 }),
    "data/x.jsonl: 10 rows but eval holds out 10, leaving no train problems",
  );
  assert.equal(
    failure(numbered(1), { ...QA, eval: 3 }),
    "data/x.jsonl: 1 row but eval holds out 3, leaving no train problems",
  );
  const twice = '{"question": "a", "answer": 1}\n{"question": "a", "answer": 1}';
  assert.match(failure(twice, { ...QA, eval: 1 }), /^data\/x\.jsonl: 2 rows but .*no train/);
});

Deno.test("parseJsonl() refuses an eval count that is not an integer >= 0", () => {
  assert.throws(
    () => parseJsonl(numbered(3), PATH, { ...QA, eval: -1 }, new Rng(1)),
    /Cannot load data\/x\.jsonl as 'eval' must be an integer >= 0: current value is -1/,
  );
});

Deno.test("loadJsonl() reads a file and splits it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/sums.jsonl`;
    await Deno.writeTextFile(path, `${numbered(12)}\n`);
    const splits = await loadJsonl(path, { ...QA, eval: 2 }, new Rng(5));
    assert.deepEqual(splits, parseJsonl(numbered(12), path, { ...QA, eval: 2 }, new Rng(5)));
    await Deno.writeTextFile(path, '{"question": "a"}\n');
    await assert.rejects(
      () => loadJsonl(path, QA, new Rng(5)),
      (e: unknown) => e instanceof DataError && e.message === `${path}:1: missing field 'answer'`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadJsonl() names a file it cannot read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = `${dir}/nope.jsonl`;
    await assert.rejects(
      () => loadJsonl(missing, QA, new Rng(1)),
      (e: unknown) =>
        e instanceof DataError && e.message === `${missing}: cannot read: not found` &&
        e.path === missing && e.line === undefined,
    );
    await assert.rejects(
      () => loadJsonl(dir, QA, new Rng(1)),
      (e: unknown) => e instanceof DataError && e.message === `${dir}: cannot read: is a directory`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("DataError keeps its parts as data", () => {
  const error = new DataError("data/x.jsonl", 3, "missing field 'question'");
  assert.equal(error.message, "data/x.jsonl:3: missing field 'question'");
  assert.equal(error.name, "DataError");
  assert.deepEqual([error.path, error.line, error.reason], [
    "data/x.jsonl",
    3,
    "missing field 'question'",
  ]);
});

Deno.test("parseJsonlLines() numbers each problem by its line, blank lines counted, as parseJsonl() splits", () => {
  const rows = numbered(12).split("\n");
  const text = ["", ...rows.slice(0, 5), "  ", ...rows.slice(5)].join("\n");
  const options = { ...QA, eval: 3 };
  const numberedSplits = parseJsonlLines(text, PATH, options, new Rng(4));
  const plain = parseJsonl(text, PATH, options, new Rng(4));
  assert.deepEqual(numberedSplits.train.map((p) => p.problem), plain.train);
  assert.deepEqual(numberedSplits.eval.map((p) => p.problem), plain.eval);
  // q0..q4 are on lines 2..6; q5..q11 follow the blank line 7, on lines 8..14.
  for (const { problem, line } of [...numberedSplits.train, ...numberedSplits.eval]) {
    const i = Number(problem.prompt.slice(1));
    assert.equal(line, i < 5 ? i + 2 : i + 3, problem.prompt);
  }
});
