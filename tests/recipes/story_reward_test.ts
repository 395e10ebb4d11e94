import assert from "node:assert/strict";
import mentionsDefault, { mentionsAnswer } from "../../recipes/rewards/story.ts";
import { fnScorer } from "../../runtime/rl/rewards/fn.ts";
import type { Sample } from "../../mod.ts";

function sample(completion: string, answer: string): Sample {
  return {
    prompt: "Tom had a little boat. It was Tom's favorite thing. One day,",
    completion,
    answer,
    row: { answer },
    tokens: 12,
    truncated: true,
  };
}

Deno.test("mentionsAnswer() is 1 when the story names the thing again, singular or plural", () => {
  const cases: [string, string, number][] = [
    [" Tom took his boat to the lake.", "boat", 1],
    [" Boats were everywhere.", "boat", 1], // any case, plural
    [" the boat's sail was red.", "boat", 1], // an apostrophe ends the word
    [" all the boxes were open.", "box", 1], // -es
    [" he saw two puppies.", "puppy", 1], // -y → -ies
    [" the puppys ran.", "puppy", 1],
    [' "Cat!" said Lily.', "cat", 1],
    [" they went to the boathouse.", "boat", 0], // part of another word
    [" the ball began to scatter.", "cat", 0],
    [" a bobcat came.", "cat", 0],
    [" Tom was happy.", "boat", 0],
    ["", "boat", 0],
  ];
  for (const [completion, answer, want] of cases) {
    assert.equal(mentionsAnswer(sample(completion, answer)), want, `${answer} in ${completion}`);
  }
  assert.equal(mentionsDefault, mentionsAnswer);
});

Deno.test("mentionsAnswer() throws for an answer that is not one word of letters", () => {
  for (const answer of ["", "teddy bear", "c.t", "a|b"]) {
    assert.throws(
      () => mentionsAnswer(sample(" a teddy bear, a cat.", answer)),
      new RegExp(
        `^Error: answer: expected one word of letters, got ${
          JSON.stringify(answer).replace(/[.|]/g, "\\$&")
        }$`,
      ),
    );
  }
});

Deno.test("the story reward loads and scores in the reward sandbox", async () => {
  const scorer = await fnScorer({
    module: new URL("../../recipes/rewards/story.ts", import.meta.url).href,
    export: "mentionsAnswer",
    sandbox: true,
  });
  try {
    const scores = await scorer.score([
      sample(" Tom sailed his boat.", "boat"),
      sample(" Tom was happy.", "boat"),
      sample(" Tom was happy.", "two words"),
    ]);
    assert.deepEqual(scores.slice(0, 2), [1, 0]);
    assert.ok(scores[2] instanceof Error);
    assert.match(scores[2].message, /answer: expected one word of letters, got "two words"$/);
  } finally {
    await scorer.close?.();
  }
});
