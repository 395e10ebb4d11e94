/**
 * The reward sources of the runtime and the per-batch scoring with their error policies.
 *
 * A source becomes a `BatchScorer` through `createScorer()`: the built-in verifiers and the length
 * penalty by mapping over the samples, user code through `fnScorer()`, endpoints through
 * `httpScorer()` and reward models through the loader the context brings. `scoreSources()` runs
 * every source of a batch concurrently, applies each one's `onError` policy to the samples it
 * could not score, and sums the weighted scores:
 *
 *   - `"fail"`: the step fails with a `RewardError` naming the source and the first problem;
 *   - `"zero"`: the sample scores 0 for that source;
 *   - `"skip-group"`: the sample's whole group is marked skipped (its rows score 0 for that source
 *     and the trainer leaves the group out of the update).
 *
 * The option types here are this module's own, with the defaults resolved; they match the
 * recipe's reward sources structurally.
 *
 * @module
 */

import { fnScorer } from "./fn.ts";
import { httpScorer } from "./http.ts";
import type { BatchScorer, Sample } from "./types.ts";
import { overlongPenalty, type Scorer, verifier } from "./verifiers.ts";

export * from "./countdown.ts";
export * from "./fn.ts";
export * from "./http.ts";
export * from "./types.ts";
export * from "./verifiers.ts";

/** What to do with a sample a source could not score. */
export type OnError = "fail" | "zero" | "skip-group";

/** One reward source of a plan, ready to score. */
export interface SourceScorer {
  /** Its name in the logs and in `Scores.bySource`. */
  name: string;
  weight: number;
  /** Whether this is the success signal (accuracy, DAPO's filtering); at most one source is. */
  success: boolean;
  onError: OnError;
  scorer: BatchScorer;
}

/** The scores of a batch of B samples in groups of G. */
export interface Scores {
  /** [B] the weighted sum of the sources. */
  total: Float32Array;
  /** By source name: [B] its scores, 0 where it could not score. */
  bySource: Record<string, Float32Array>;
  /** [B] the success signal's scores, or null when no source is the success signal. */
  success: Float32Array | null;
  /** [B / G] whether a `"skip-group"` source could not score some sample of the group. */
  skippedGroups: boolean[];
  /** By source name, for the sources that could not score some sample: how many, the first why. */
  errors: Record<string, { count: number; first: string }>;
}

/**
 * A reward source with a `"fail"` policy could not score some samples.
 *
 * @example
 * ```ts
 * try {
 *   await scoreSources(sources, samples, 4);
 * } catch (error) {
 *   if (error instanceof RewardError) console.error(error.message);
 * }
 * ```
 */
export class RewardError extends Error {
  /** The source's name. */
  readonly source: string;
  /** How many samples it could not score. */
  readonly failed: number;
  /** The batch size. */
  readonly samples: number;

  constructor(source: string, failed: number, samples: number, first: string) {
    super(`reward '${source}' failed on ${failed} of ${samples} samples: ${first}`);
    this.name = "RewardError";
    this.source = source;
    this.failed = failed;
    this.samples = samples;
  }
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}

/** The scorer's values, one per sample, numbers finite; what it throws becomes Errors. */
async function run(scorer: BatchScorer, samples: readonly Sample[]): Promise<(number | Error)[]> {
  let values: (number | Error)[];
  try {
    values = await scorer.score(samples);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return samples.map(() => new Error(oneLine(message)));
  }
  if (!Array.isArray(values) || values.length !== samples.length) {
    const got = Array.isArray(values) ? `${values.length} scores` : "no array";
    return samples.map(() => new Error(`the scorer returned ${got} for ${samples.length} samples`));
  }
  return values.map((value) =>
    value instanceof Error || (typeof value === "number" && Number.isFinite(value))
      ? value
      : new Error(`score ${String(value)} is not a finite number`)
  );
}

/**
 * Scores a batch with every source, concurrently, and applies each source's `onError` policy.
 * `samples` are in whole groups of `groupSize` (group g is rows g·G … g·G + G − 1). Throws a
 * `RewardError` for the first `"fail"` source, in order, that could not score some sample.
 *
 * @example
 * ```ts
 * const scores = await scoreSources([
 *   { name: "right", weight: 1, success: true, onError: "fail", scorer: right },
 *   { name: "judge", weight: 0.5, success: false, onError: "skip-group", scorer: judge },
 * ], samples, 8);
 * scores.total; // [B] Float32Array
 * scores.skippedGroups; // [B / 8] boolean[]
 * ```
 */
export async function scoreSources(
  sources: readonly SourceScorer[],
  samples: readonly Sample[],
  groupSize: number,
): Promise<Scores> {
  const B = samples.length;
  if (!Number.isInteger(groupSize) || groupSize < 1 || B % groupSize !== 0) {
    throw new Error(
      `Cannot score the batch as ${B} samples are not whole groups of ${groupSize}`,
    );
  }
  const names = new Set<string>();
  for (const { name } of sources) {
    if (names.has(name)) throw new Error(`Cannot score the batch as '${name}' names two sources`);
    names.add(name);
  }
  if (sources.filter((s) => s.success).length > 1) {
    throw new Error("Cannot score the batch as more than one source is the success signal");
  }

  // 1) every source at once; a scorer that throws gives an Error for each sample
  const results = await Promise.all(sources.map((source) => run(source.scorer, samples)));

  // 2) the policies
  const total = new Float32Array(B); // [B]
  const bySource: Record<string, Float32Array> = {};
  const skippedGroups = new Array<boolean>(B / groupSize).fill(false); // [B / G]
  const errors: Record<string, { count: number; first: string }> = {};
  let success: Float32Array | null = null;
  sources.forEach((source, s) => {
    const values = new Float32Array(B); // [B]
    let count = 0;
    let first = "";
    results[s]!.forEach((value, i) => {
      if (value instanceof Error) {
        if (count++ === 0) first = oneLine(value.message);
        if (source.onError === "skip-group") skippedGroups[Math.floor(i / groupSize)] = true;
      } else {
        values[i] = value;
      }
    });
    if (count > 0 && source.onError === "fail") {
      throw new RewardError(source.name, count, B, first);
    }
    if (count > 0) errors[source.name] = { count, first };
    bySource[source.name] = values;
    for (let i = 0; i < B; i++) total[i] = total[i]! + source.weight * values[i]!;
    if (source.success) success = values;
  });
  return { total, bySource, success, skippedGroups, errors };
}

/**
 * The warning lines for the sources that failed on every sample of a step while their `onError`
 * (`"zero"` or `"skip-group"`) kept the run going: such a source adds a constant (or removes every
 * group) and teaches nothing, which the step's reward alone does not show. `scored` is how many
 * samples the step scored (every round of DAPO's dynamic sampling included); `errors` is
 * `Scores.errors` summed over those rounds.
 *
 * @example
 * ```ts
 * const lines = unscoredWarnings(
 *   [{ name: "judge", onError: "zero" }],
 *   { judge: { count: 16, first: "http://127.0.0.1:8123/score: status 503 after 3 attempts" } },
 *   16,
 *   1,
 * );
 * // ["warning: reward 'judge' failed on all 16 samples of step 1, which score 0 as …"]
 * ```
 */
export function unscoredWarnings(
  sources: readonly Pick<SourceScorer, "name" | "onError">[],
  errors: Scores["errors"],
  scored: number,
  step: number,
): string[] {
  return sources.flatMap(({ name, onError }) => {
    const failed = errors[name];
    if (onError === "fail" || failed === undefined || failed.count < scored) return [];
    const outcome = onError === "zero" ? "score 0" : "leave their groups out of the update";
    return [
      `warning: reward '${name}' failed on all ${scored} samples of step ${step}, which ` +
      `${outcome} as its onError is "${onError}" (said once; metrics.jsonl counts rewardErrors ` +
      `every step): ${failed.first}`,
    ];
  });
}

/** A reward source with its defaults resolved, as `createScorer()` takes it. */
export type SourceOptions =
  | { kind: "exactMatch"; trim: boolean; caseSensitive: boolean; collapseWhitespace: boolean }
  | { kind: "numericAnswer"; tolerance: number }
  | { kind: "regexFormat"; pattern: string; flags: string }
  | { kind: "countdown" }
  | { kind: "overlongPenalty"; buffer: number; maxTokens?: number }
  | {
    kind: "fn";
    /** Resolved against `context.baseUrl`. */
    module: string;
    export: string;
    sandbox: boolean;
    timeoutMs: number;
    range?: readonly [number, number];
  }
  | {
    kind: "http";
    url: string;
    timeoutMs: number;
    retries: number;
    batchSize: number;
    concurrency: number;
    maxResponseBytes: number;
    followRedirects: boolean;
    range?: readonly [number, number];
  }
  | {
    kind: "rewardModel";
    checkpoint: string;
    batchSize: number;
    range?: readonly [number, number];
  };

/** What `createScorer()` needs besides the source. */
export interface ScorerContext {
  /**
   * The recipe's location, a URL (`file:///work/recipes/gsm8k.ts`, or a directory URL ending in
   * `/`): `fn` modules are resolved against it.
   */
  baseUrl: string;
  /** DAPO's L_max default of `overlongPenalty`. */
  maxNewTokens: number;
  /** Loads a reward model checkpoint as a scorer; without it a `rewardModel` source is refused. */
  rewardModel?: (checkpoint: string, batchSize: number) => Promise<BatchScorer>;
}

/**
 * A per-sample scorer as a batch scorer: what it throws for a sample becomes that sample's Error.
 *
 * @example
 * ```ts
 * const scorer = perSample(verifier({ kind: "countdown" }));
 * ```
 */
export function perSample(score: Scorer): BatchScorer {
  return {
    score(samples) {
      return Promise.resolve(samples.map((sample) => {
        try {
          return score(sample);
        } catch (error) {
          return error instanceof Error ? error : new Error(String(error));
        }
      }));
    },
  };
}

/** The scorer with its scores outside `[low, high]` turned into Errors. */
function inRange(scorer: BatchScorer, range: readonly [number, number]): BatchScorer {
  const [low, high] = range;
  const wrapped: BatchScorer = {
    async score(samples) {
      const values = await scorer.score(samples);
      return values.map((value) =>
        typeof value === "number" && (value < low || value > high)
          ? new Error(`score ${value} is outside the declared range [${low}, ${high}]`)
          : value
      );
    },
  };
  if (scorer.close) wrapped.close = () => scorer.close!();
  return wrapped;
}

/**
 * The batch scorer of one reward source. Loading problems (a missing `fn` module, a reward model
 * without a loader) reject with a one-line Error. For `fn`, `http` and `rewardModel` a declared
 * `range` is enforced: a score outside it is an Error for its sample. Close the scorer when done.
 *
 * @example
 * ```ts
 * const scorer = await createScorer(
 *   { kind: "fn", module: "./reward.ts", export: "default", sandbox: true, timeoutMs: 5000 },
 *   { baseUrl: import.meta.url, maxNewTokens: 256 },
 * );
 * ```
 */
export async function createScorer(
  source: SourceOptions,
  context: ScorerContext,
): Promise<BatchScorer> {
  let scorer: BatchScorer;
  switch (source.kind) {
    case "exactMatch":
    case "numericAnswer":
    case "regexFormat":
    case "countdown":
      return perSample(verifier(source));
    case "overlongPenalty": {
      const { buffer } = source;
      const max = source.maxTokens ?? context.maxNewTokens;
      return perSample(({ tokens }) => overlongPenalty(tokens, buffer, max));
    }
    case "fn": {
      let module: string;
      try {
        module = new URL(source.module, context.baseUrl).href;
      } catch {
        throw new Error(
          `Cannot load reward '${source.module}' as it does not resolve against '${context.baseUrl}'`,
        );
      }
      scorer = await fnScorer({
        module,
        export: source.export,
        sandbox: source.sandbox,
        timeoutMs: source.timeoutMs,
      });
      break;
    }
    case "http":
      scorer = httpScorer(source);
      break;
    case "rewardModel":
      if (!context.rewardModel) {
        throw new Error(
          `Cannot score with reward model '${source.checkpoint}' as no reward model loader was ` +
            "given (context.rewardModel)",
        );
      }
      scorer = await context.rewardModel(source.checkpoint, source.batchSize);
      break;
  }
  return source.range ? inRange(scorer, source.range) : scorer;
}
