/**
 * Evaluation: greedy decoding (temperature 0, so no random draw) of held-out problems, scored by a
 * verifier. Accuracy is the fraction of problems the verifier scores 1: exactly correct answers.
 *
 * @module
 */

import type { Verifier } from "../../dsl/schema.ts";
import type { Problem } from "../data/types.ts";
import type { Tokenizer } from "../engine/model/tokenizer.ts";
import type { ModelConfig, Params } from "../engine/model/transformer.ts";
import type { KernelSet } from "../engine/kernels/types.ts";
import { verifier } from "./rewards/verifiers.ts";
import type { BatchScorer, Sample } from "./rewards/types.ts";
import { Rng } from "../engine/random.ts";
import { sampleCompletions } from "./sample.ts";
import { encodePrompt } from "../data/task.ts";
// Rows decoded per model call sequence: it bounds activation memory on long eval sets, and the
// compiler's memory estimate reads the same constant.
import { EVAL_BATCH as EVAL_CHUNK } from "../../dsl/budget.ts";

/**
 * What one evaluation measured.
 *
 * @example
 * ```ts
 * const { accuracy, correct, total }: EvalResult = await evaluate(kernels, params, config, tok,
 *   problems, { kind: "exactMatch" }, { promptTokens: 7, newTokens: 4 });
 * ```
 */
export interface EvalResult {
  /** Fraction of problems answered exactly right, in [0, 1]. */
  accuracy: number;
  correct: number;
  total: number;
  /** Mean completion length in tokens. */
  meanLength: number;
}

/**
 * Greedy accuracy of the model on `problems`, sampled with the kernel set's decoder.
 *
 * @example
 * ```ts
 * const { accuracy } = await evaluate(kernels, params, config, tok, splits.eval, { kind: "numericAnswer" }, {
 *   promptTokens: 7,
 *   newTokens: 4,
 * });
 * ```
 */
export async function evaluate(
  kernels: KernelSet,
  params: Params,
  config: ModelConfig,
  tokenizer: Tokenizer,
  problems: readonly Problem[],
  metric: Verifier | BatchScorer,
  shapes: { promptTokens: number; newTokens: number },
  onProgress?: (done: number, total: number, correct: number) => void,
): Promise<EvalResult> {
  // A verifier scores one sample at a time; a reward source (a function, an endpoint) a batch,
  // where an error is no success.
  const score: (samples: Sample[]) => Promise<(number | Error)[]> = "kind" in metric
    ? ((check) => (samples) => Promise.resolve(samples.map(check)))(verifier(metric))
    : (samples) => metric.score(samples);
  const greedy = {
    temperature: 0,
    topK: 0,
    topP: 1,
    maxNewTokens: shapes.newTokens,
    promptLength: shapes.promptTokens,
  };
  const unused = new Rng(0); // greedy decoding draws nothing
  let correct = 0;
  let tokens = 0;
  for (let start = 0; start < problems.length; start += EVAL_CHUNK) {
    const chunk = problems.slice(start, start + EVAL_CHUNK);
    const prompts = chunk.map((p) => encodePrompt(tokenizer, p));
    const out = await sampleCompletions(
      kernels,
      params,
      config,
      tokenizer,
      prompts,
      greedy,
      unused,
    );
    const samples: Sample[] = chunk.map((problem, i) => ({
      prompt: problem.prompt,
      completion: out.texts[i]!,
      answer: problem.answer,
      row: problem.row,
      tokens: out.lengths[i]!,
      truncated: out.truncated[i]!,
    }));
    const scores = await score(samples);
    scores.forEach((s, i) => {
      correct += s === 1 ? 1 : 0;
      tokens += out.lengths[i]!;
    });
    onProgress?.(start + chunk.length, problems.length, correct);
  }
  const total = problems.length;
  return {
    accuracy: total === 0 ? 0 : correct / total,
    correct,
    total,
    meanLength: total === 0 ? 0 : tokens / total,
  };
}
