/**
 * The contract of reward sources: a scorer takes a batch of samples and returns one score per
 * sample, or an `Error` for a sample it could not score. The trainer applies the source's
 * `onError` policy to those errors; a scorer never decides policy itself.
 *
 * @module
 */

/**
 * What a reward sees of one completion. `Row` is the dataset's row type.
 *
 * @example
 * ```ts
 * // Penalise completions cut at maxNewTokens.
 * export function finished(sample: Sample): number {
 *   return sample.truncated ? -1 : 0;
 * }
 * ```
 */
export interface Sample<Row = Record<string, unknown>> {
  prompt: string;
  completion: string;
  /** The reference answer of the problem. */
  answer: string;
  /** The dataset row the problem came from. */
  row: Row;
  /** Completion length in tokens, `<eos>` included. */
  tokens: number;
  /** Whether the completion hit `maxNewTokens` without `<eos>` or a stop string. */
  truncated: boolean;
}

/**
 * A reward function written by a user: `(sample) => number | Promise<number>`. A recipe names it
 * by module and export: `fn("./my_reward.ts", "exact")`.
 *
 * @example
 * ```ts
 * import type { AdditionRow, RewardFn } from "../mod.ts";
 *
 * export const exact: RewardFn<AdditionRow> = ({ completion, row }) =>
 *   Number(completion.trim()) === row.a + row.b ? 1 : 0;
 * ```
 */
export type RewardFn<Row = Record<string, unknown>> = (
  sample: Sample<Row>,
) => number | Promise<number>;

/** One reward source, ready to score. */
export interface BatchScorer {
  /** Scores a batch: one finite number per sample, or an Error naming what went wrong. */
  score(samples: readonly Sample[]): Promise<(number | Error)[]>;
  /** Releases what the scorer holds (a worker, a model). */
  close?(): void | Promise<void>;
}
