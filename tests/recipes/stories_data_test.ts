import assert from "node:assert/strict";
import {
  NAMES,
  PATH,
  ROWS,
  SEED,
  storiesJsonl,
  storyRows,
  TEMPLATES,
  WORDS,
} from "../../scripts/make_stories_data.ts";
import { mentionsAnswer } from "../../recipes/rewards/story.ts";
import { loadJsonl } from "../../runtime/data/jsonl.ts";
import { loadHfTokenizer } from "../../runtime/engine/model/hf_tokenizer.ts";
import { Rng } from "../../runtime/engine/random.ts";

const STORIES = new URL("../../models/stories260K", import.meta.url).pathname;

Deno.test("recipes/data/stories.jsonl is what scripts/make_stories_data.ts writes", async () => {
  assert.equal(await Deno.readTextFile(PATH), storiesJsonl(storyRows(SEED, ROWS)));
  assert.deepEqual(storyRows(SEED, 40), storyRows(SEED, ROWS).slice(0, 40)); // a prefix
  assert.notDeepEqual(storyRows(SEED + 1, 40), storyRows(SEED, 40));
});

Deno.test("the stories' rows are distinct openings that name their answer, words balanced", () => {
  const rows = storyRows();
  assert.equal(rows.length, ROWS);
  assert.equal(new Set(rows.map((r) => r.prompt)).size, ROWS);
  const perWord = new Map<string, number>();
  for (const row of rows) {
    assert.ok((WORDS as readonly string[]).includes(row.answer), row.answer);
    const template = TEMPLATES[row.template]!;
    const names: readonly string[] = template.who === "any"
      ? [...NAMES.she, ...NAMES.he]
      : NAMES[template.who];
    assert.ok(names.includes(row.name), `${row.name} in template ${row.template}`);
    assert.ok(row.prompt.includes(row.name));
    // The opening names its thing, so the reward would give it 1 for repeating the opening.
    assert.equal(mentionsAnswer({ completion: row.prompt, answer: row.answer }), 1, row.prompt);
    assert.doesNotMatch(row.prompt, /[{}]/);
    assert.doesNotMatch(row.prompt, /\ba [aeiou]/); // "an apple"
    perWord.set(row.answer, (perWord.get(row.answer) ?? 0) + 1);
  }
  assert.equal(perWord.size, WORDS.length);
  const counts = [...perWord.values()];
  assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, counts.join(","));
  assert.throws(() => storyRows(SEED, 100_000), /^RangeError: rows: expected a whole number/);
});

Deno.test("every story word tokenizes in stories260K without byte fallback", async () => {
  const tok = await loadHfTokenizer(STORIES);
  // Ids 3–258 are the byte fallback <0x00>–<0xFF>: a word spelled in bytes is one the
  // tokenizer (and so the model's training text) never had as text.
  const isByte = (id: number) => id >= 3 && id <= 258;
  for (const word of WORDS) {
    const ids = tok.encode(`a ${word}`);
    assert.ok(!ids.some(isByte), `${word}: ${ids}`);
    assert.equal(tok.decode(ids), `a ${word}`);
  }
  const lengths = storyRows().map((r) => tok.encode(r.prompt, { addSpecialTokens: true }).length);
  assert.ok(Math.max(...lengths) <= 40, `longest prompt ${Math.max(...lengths)} tokens`);
});

Deno.test("the JSON Lines loader reads recipes/data/stories.jsonl", async () => {
  const { train, eval: held } = await loadJsonl(
    PATH.pathname,
    { prompt: "prompt", answer: "answer", eval: 64 },
    new Rng(1),
  );
  assert.equal(held.length, 64);
  assert.equal(train.length, ROWS - 64);
  const rows = new Map(storyRows().map((r) => [r.prompt, r]));
  for (const problem of [...train, ...held]) {
    const row = rows.get(problem.prompt)!;
    assert.equal(problem.answer, row.answer);
    assert.deepEqual(problem.row, row);
  }
});
