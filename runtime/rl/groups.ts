/**
 * Sampling and scoring whole groups: P prompts × G completions, with DAPO's dynamic sampling when
 * the plan asks for it (groups whose success rewards are all equal carry no signal for a
 * group-relative advantage, so they are dropped and more prompts are sampled until P groups
 * remain, for at most `maxRounds` rounds).
 *
 * @module
 */

import type { Problem } from "../data/types.ts";
import type { Tokenizer } from "../engine/model/tokenizer.ts";
import type { ModelConfig, Params } from "../engine/model/transformer.ts";
import type { KernelSet } from "../engine/kernels/types.ts";
import type { Rng } from "../engine/random.ts";
import { type Scores, scoreSources, type SourceScorer } from "./rewards/mod.ts";
import type { Sample } from "./rewards/types.ts";
import { type Completions, sampleCompletions, type SampleOptions } from "./sample.ts";
import { encodePrompt } from "../data/task.ts";

/** A batch of whole groups with its problems, samples and scores (rows of a group consecutive). */
export interface ScoredGroups {
  problems: Problem[];
  batch: Completions;
  samples: Sample[];
  scores: Scores;
  /** Groups dropped for having no signal (DAPO), over all rounds. */
  groupsDropped: number;
  /** Prompts sampled beyond the first P (DAPO). */
  promptsResampled: number;
}

/**
 * DAPO ran out of rounds before finding P groups with a signal.
 *
 * @example
 * ```ts
 * try {
 *   await execute(compile({ ...base, objective: dapo({ maxSamplingRounds: 2 }) }));
 * } catch (e) {
 *   if (e instanceof DynamicSamplingError) console.error(e.message); // raise maxSamplingRounds
 * }
 * ```
 */
export class DynamicSamplingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DynamicSamplingError";
  }
}

/** What sampling a set of groups needs. */
export interface GroupSampler {
  /** The backend's kernel set (its decoder samples). */
  kernels: KernelSet;
  params: Params;
  config: ModelConfig;
  tokenizer: Tokenizer;
  sampling: SampleOptions;
  sources: SourceScorer[];
  rng: Rng;
  /** The next `count` train problems. */
  nextProblems(count: number): Problem[];
}

/** Samples and scores one group of G completions for each problem. */
async function sampleRound(s: GroupSampler, problems: Problem[], G: number) {
  const prompts = problems.flatMap((p) =>
    Array.from({ length: G }, () => encodePrompt(s.tokenizer, p))
  );
  const batch = await sampleCompletions(
    s.kernels,
    s.params,
    s.config,
    s.tokenizer,
    prompts,
    s.sampling,
    s.rng,
  );
  const samples: Sample[] = batch.texts.map((completion, i) => {
    const problem = problems[Math.floor(i / G)]!;
    return {
      prompt: problem.prompt,
      completion,
      answer: problem.answer,
      row: problem.row,
      tokens: batch.lengths[i]!,
      truncated: batch.truncated[i]!,
    };
  });
  const scores = await scoreSources(s.sources, samples, G);
  return { problems, batch, samples, scores };
}

/** Whether group g's success rewards (or total rewards, without a success source) are all equal. */
function flat(scores: Scores, g: number, G: number): boolean {
  const values = scores.success ?? scores.total;
  for (let i = 1; i < G; i++) if (values[g * G + i] !== values[g * G]) return false;
  return true;
}

type Round = Awaited<ReturnType<typeof sampleRound>>;

/** Groups `picks` ([round, group] pairs) of the rounds, as one batch. */
function gather(rounds: Round[], picks: [number, number][], G: number): Omit<
  ScoredGroups,
  "groupsDropped" | "promptsResampled"
> {
  const first = rounds[0]!.batch;
  const width = first.promptLength + first.newTokens;
  const C = first.newTokens;
  const rows = picks.length * G;
  const ids = new Int32Array(rows * width);
  const mask = new Float32Array(rows * C);
  const logp = new Float32Array(rows * C);
  const entropy = new Float32Array(rows * C);
  const total = new Float32Array(rows);
  const bySource: Record<string, Float32Array> = {};
  for (const name of Object.keys(rounds[0]!.scores.bySource)) {
    bySource[name] = new Float32Array(rows);
  }
  const success = rounds[0]!.scores.success ? new Float32Array(rows) : null;
  const out = {
    problems: [] as Problem[],
    samples: [] as Sample[],
    texts: [] as string[],
    lengths: [] as number[],
    truncated: [] as boolean[],
    padding: [] as number[],
    skippedGroups: [] as boolean[],
  };
  const errors: Scores["errors"] = {};
  picks.forEach(([r, g], k) => {
    const { batch, scores, samples, problems } = rounds[r]!;
    const [from, to] = [g * G, (g + 1) * G];
    ids.set(batch.ids.subarray(from * width, to * width), k * G * width);
    mask.set(batch.mask.subarray(from * C, to * C), k * G * C);
    logp.set(batch.logp.subarray(from * C, to * C), k * G * C);
    entropy.set(batch.entropy.subarray(from * C, to * C), k * G * C);
    total.set(scores.total.subarray(from, to), k * G);
    for (const [name, values] of Object.entries(scores.bySource)) {
      bySource[name]!.set(values.subarray(from, to), k * G);
    }
    success?.set(scores.success!.subarray(from, to), k * G);
    out.problems.push(problems[g]!);
    out.samples.push(...samples.slice(from, to));
    out.texts.push(...batch.texts.slice(from, to));
    out.lengths.push(...batch.lengths.slice(from, to));
    out.truncated.push(...batch.truncated.slice(from, to));
    out.padding.push(...batch.padding.slice(from, to));
    out.skippedGroups.push(scores.skippedGroups[g]!);
  });
  for (const { scores } of rounds) {
    for (const [name, e] of Object.entries(scores.errors)) {
      const seen = errors[name];
      errors[name] = seen ? { count: seen.count + e.count, first: seen.first } : { ...e };
    }
  }
  return {
    problems: out.problems,
    samples: out.samples,
    batch: {
      rows,
      promptLength: first.promptLength,
      padding: out.padding,
      newTokens: C,
      ids,
      mask,
      logp,
      texts: out.texts,
      lengths: out.lengths,
      truncated: out.truncated,
      entropy,
    },
    scores: { total, bySource, success, skippedGroups: out.skippedGroups, errors },
  };
}

/**
 * P groups of G scored completions. With `dynamic` (DAPO), groups without signal are dropped and
 * more generation batches of P prompts are sampled until P groups have a signal, at most
 * `dynamic.maxRounds` rounds in all.
 *
 * @throws {DynamicSamplingError} when the rounds run out before P groups with a signal are found.
 */
export async function sampleGroups(
  s: GroupSampler,
  P: number,
  G: number,
  dynamic: { maxRounds: number } | null,
): Promise<ScoredGroups> {
  const first = await sampleRound(s, s.nextProblems(P), G);
  if (!dynamic) return { ...first, groupsDropped: 0, promptsResampled: 0 };
  const rounds: Round[] = [first];
  const picks: [number, number][] = [];
  let dropped = 0;
  let resampled = 0;
  for (let r = 0;; r++) {
    const round = rounds[r]!;
    for (let g = 0; g < round.problems.length && picks.length < P; g++) {
      if (flat(round.scores, g, G)) dropped++;
      else picks.push([r, g]);
    }
    if (picks.length === P) break;
    if (rounds.length >= dynamic.maxRounds) {
      throw new DynamicSamplingError(
        `DAPO's dynamic sampling found ${picks.length} of ${P} groups whose success rewards ` +
          `differ after ${rounds.length} rounds (${dropped} groups dropped); raise ` +
          "objective.maxSamplingRounds, or use data where the policy is sometimes right",
      );
    }
    // Each refill round samples a whole generation batch of P prompts, as DAPO does; groups beyond
    // the P needed are discarded.
    resampled += P;
    rounds.push(await sampleRound(s, s.nextProblems(P), G));
  }
  return { ...gather(rounds, picks, G), groupsDropped: dropped, promptsResampled: resampled };
}
