/**
 * Writes recipes/data/stories.jsonl, the problems of the stories260K front door: story openings
 * that introduce a thing (a ball, a puppy, a boat, …), for the model to continue. The reward
 * (recipes/rewards/story.ts) asks that the story comes back to that thing: the completion names it
 * again. Every line is generated here from a seed, so the file is reproducible and its rows are
 * plain TinyStories-style text (stories260K has no chat template; it continues plain text).
 *
 *   deno run --allow-read --allow-write scripts/make_stories_data.ts           # write the file
 *   deno run --allow-read scripts/make_stories_data.ts --check                 # exit 1 if it differs
 *
 * A row is `{ "prompt", "answer", "name", "template" }`: `answer` is the thing's word (singular,
 * lower case) and appears in the prompt; `name` is the child the opening names; `template` the
 * index of the opening's template in {@linkcode TEMPLATES}. Rows are distinct prompts; which are
 * held out is the recipe's choice (`data.eval`, after the loader's seeded shuffle).
 *
 * The words were chosen by sampling stories260K (bench/stories_rewards.ts): each is one the model
 * writes back on its own after some of its openings; words it wrote back never or almost never
 * ("balloon", "sandwich", "necklace", "doll") were left out. Every word tokenizes without byte
 * fallback (tests/recipes/stories_data_test.ts checks it).
 *
 * @module
 */

import { Rng } from "../runtime/engine/random.ts";

/** The seed of the committed file. */
export const SEED = 16;

/** Rows in the committed file. */
export const ROWS = 320;

/** The things an opening introduces: TinyStories words the model writes on its own. */
export const WORDS = [
  "ball",
  "cat",
  "dog",
  "cake",
  "box",
  "hat",
  "car",
  "boat",
  "flower",
  "tree",
  "bird",
  "fish",
  "apple",
  "toy",
  "bike",
  "book",
  "cookie",
  "bunny",
  "puppy",
  "teddy",
  "truck",
  "train",
  "frog",
  "rock",
  "bear",
  "duck",
] as const;

/** Names as TinyStories uses them, by the pronoun an opening gives them. */
export const NAMES = {
  she: ["Lily", "Sue", "Mia", "Lucy", "Anna", "Amy", "Sara", "Jane", "Kate", "Emma"],
  he: ["Tom", "Ben", "Max", "Timmy", "Sam", "Jack", "Tim", "Bob", "Joe", "Leo"],
} as const;

/** An opening: its text with `{name}`, `{a}` (the article) and `{word}`, and whose name it takes. */
export interface Template {
  text: string;
  who: "she" | "he" | "any";
}

/** The openings, in the tense and vocabulary of TinyStories. */
export const TEMPLATES: readonly Template[] = [
  {
    text:
      "Once upon a time, there was a little girl named {name}. She had {a} {word}. One day, she",
    who: "she",
  },
  { text: "{name} was playing in the garden when she found {a} {word}. She", who: "she" },
  { text: "Once upon a time, {name} wanted {a} {word}. {name} asked her mom,", who: "she" },
  { text: "{name} and her mom went to the park. {name} saw {a} {word} near the pond.", who: "she" },
  {
    text: "Once upon a time, there was a boy named {name}. He loved his {word} very much. " +
      "Every day, he",
    who: "he",
  },
  { text: "{name} and his friend went to the park. They found {a} {word}. {name}", who: "he" },
  { text: "{name} went to the store with his dad. He saw {a} {word}.", who: "he" },
  { text: "One day, {name} saw a big {word}. {name} was very happy.", who: "any" },
  { text: "{name} had a little {word}. It was {name}'s favorite thing. One day,", who: "any" },
  { text: "There once was {a} {word} that lived in a small house. One day, {name}", who: "any" },
];

/** One problem of the file. */
export interface StoryRow {
  prompt: string;
  answer: string;
  name: string;
  template: number;
}

/** "an" before a vowel sound (the words here start with a vowel letter only when they have one). */
function article(word: string): string {
  return /^[aeiou]/.test(word) ? "an" : "a";
}

/** The opening `template` with `name` and `word` filled in. */
export function opening(template: Template, name: string, word: string): string {
  return template.text
    .replaceAll("{name}", name)
    .replaceAll("{a}", article(word))
    .replaceAll("{word}", word);
}

/**
 * `rows` distinct problems from `seed`: the templates in turn, each word as often as the others
 * (up to one), each word's turn and each name drawn from `seed`'s generator.
 */
export function storyRows(seed: number = SEED, rows: number = ROWS): StoryRow[] {
  const capacity = TEMPLATES.reduce(
    (sum, t) => sum + WORDS.length * (t.who === "any" ? 20 : 10),
    0,
  );
  if (!Number.isSafeInteger(rows) || rows < 0 || rows > capacity) {
    throw new RangeError(`rows: expected a whole number from 0 to ${capacity}, got ${rows}`);
  }
  const rng = new Rng(seed).fork("stories");
  const out: StoryRow[] = [];
  const seen = new Set<string>();
  let words: string[] = [];
  for (let i = 0; out.length < rows; i++) {
    if (words.length === 0) words = shuffled([...WORDS], rng); // a fresh round of every word
    const template = i % TEMPLATES.length;
    const { who } = TEMPLATES[template]!;
    const names: readonly string[] = who === "any" ? [...NAMES.she, ...NAMES.he] : NAMES[who];
    const word = words[words.length - 1]!;
    const name = names[rng.int(names.length)]!;
    const prompt = opening(TEMPLATES[template]!, name, word);
    if (seen.has(prompt)) continue; // drawn again: another name next time
    seen.add(prompt);
    words.pop();
    out.push({ prompt, answer: word, name, template });
  }
  return out;
}

/** `items` in a random order (Fisher–Yates), in place. */
function shuffled<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** The file's text: one JSON object per line. */
export function storiesJsonl(rows: readonly StoryRow[]): string {
  return rows.map((row) => JSON.stringify(row)).join("\n") + "\n";
}

/** Where the committed file lives. */
export const PATH = new URL("../recipes/data/stories.jsonl", import.meta.url);

if (import.meta.main) {
  const text = storiesJsonl(storyRows());
  if (Deno.args.includes("--check")) {
    const current = await Deno.readTextFile(PATH).catch(() => "");
    if (current !== text) {
      console.error(`${PATH.pathname} is not what this script writes: run it without --check`);
      Deno.exit(1);
    }
    console.log(`${PATH.pathname} is up to date (${ROWS} rows)`);
  } else {
    await Deno.mkdir(new URL(".", PATH), { recursive: true });
    await Deno.writeTextFile(PATH, text);
    console.log(`wrote ${PATH.pathname} (${ROWS} rows)`);
  }
}
