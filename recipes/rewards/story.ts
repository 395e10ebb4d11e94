/**
 * The stories front door's reward, written as a user writes one: a function of one sample that
 * returns a number (`fn("./rewards/story.ts", "mentionsAnswer")` in a recipe). It imports only
 * types, which are not loaded, so it runs in the reward sandbox, where a module may read nothing
 * outside its own directory.
 *
 * A story opening introduces a thing (recipes/data/stories.jsonl: "Tom had a little boat. …", with
 * `answer` "boat"); the story the model writes scores 1 when it comes back to that thing: the
 * completion names it again as a whole word, in any case, singular or plural ("boat", "Boats",
 * "boat's"; "puppy" also as "puppies"), and 0 otherwise. A word that merely contains it does not
 * count ("boathouse" for "boat", "scatter" for "cat").
 *
 * @module
 */

import type { Sample } from "../../mod.ts";

/** What the reward reads of a sample: the completion, and the thing's word as the answer. */
export type StorySample = Pick<Sample, "completion" | "answer">;

/** The forms of `word` that count: itself and its plurals (`-s`, `-es`, and `-y` → `-ies`). */
function forms(word: string): string[] {
  const out = [word, `${word}s`, `${word}es`];
  if (/[^aeiou]y$/i.test(word)) out.push(`${word.slice(0, -1)}ies`);
  return out;
}

/**
 * 1 when `completion` names `answer` again (a whole word, any case, singular or plural), else 0.
 * Throws for an answer that is not one word of letters, as the reward cannot be meant for it.
 *
 * @example
 * ```ts
 * mentionsAnswer({ completion: " went to sail her boats.", answer: "boat" }); // 1
 * mentionsAnswer({ completion: " went to the boathouse.", answer: "boat" }); // 0
 * ```
 */
export function mentionsAnswer(sample: StorySample): number {
  const { completion, answer } = sample;
  if (typeof answer !== "string" || !/^\p{L}+$/u.test(answer)) {
    throw new Error(`answer: expected one word of letters, got ${JSON.stringify(answer)}`);
  }
  if (typeof completion !== "string") return 0;
  // Letters around the match would make it part of another word; an apostrophe does not.
  const pattern = new RegExp(`(?<!\\p{L})(?:${forms(answer).join("|")})(?!\\p{L})`, "iu");
  return pattern.test(completion) ? 1 : 0;
}

export default mentionsAnswer;
