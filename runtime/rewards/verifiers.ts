/**
 * Reward sources as functions of one sample. The built-in verifiers are pure and synchronous;
 * user code (`fn`) and remote scorers (`http`) arrive with the rewards issue and are refused here
 * with a clear message rather than guessed at.
 *
 * @module
 */

import type { RewardSpec } from "../../dsl/plan.ts";
import type { RewardSource, Verifier } from "../../dsl/schema.ts";
import type { Sample } from "./types.ts";

export type { Sample };

/** A scorer: one number per sample. */
export type Scorer = (sample: Sample) => number;

const NUMBER = /-?\d[\d,]*(?:\.\d+)?/g;

function parseNumber(text: string): number | null {
  const value = Number(text.replaceAll(",", ""));
  return Number.isFinite(value) ? value : null;
}

/**
 * The final answer of a completion as a number: the `#### n` marker, else `\boxed{n}`, else the
 * last number in the text; null when there is none.
 *
 * @example
 * ```ts
 * extractNumber("so 2+2 is 4"); // 4
 * extractNumber("#### 1,234"); // 1234
 * ```
 */
export function extractNumber(text: string): number | null {
  const marked = /####\s*(-?\d[\d,]*(?:\.\d+)?)/.exec(text);
  if (marked) return parseNumber(marked[1]!);
  const boxed = /\\boxed\{\s*(-?\d[\d,]*(?:\.\d+)?)\s*\}/.exec(text);
  if (boxed) return parseNumber(boxed[1]!);
  const all = text.match(NUMBER);
  return all ? parseNumber(all[all.length - 1]!) : null;
}

/** The scorer of a built-in verifier (schema defaults filled in). */
export function verifier(source: Verifier): Scorer {
  switch (source.kind) {
    case "numericAnswer": {
      const tolerance = source.tolerance ?? 0;
      return ({ completion, answer }) => {
        const got = extractNumber(completion);
        const want = extractNumber(answer);
        return got !== null && want !== null && Math.abs(got - want) <= tolerance ? 1 : 0;
      };
    }
    case "exactMatch": {
      const norm = (s: string) => {
        let t = source.trim ?? true ? s.trim() : s;
        if (source.collapseWhitespace) t = t.replace(/\s+/g, " ");
        return source.caseSensitive ?? true ? t : t.toLowerCase();
      };
      return ({ completion, answer }) => norm(completion) === norm(answer) ? 1 : 0;
    }
    case "regexFormat": {
      const re = new RegExp(source.pattern, source.flags ?? "");
      return ({ completion }) => re.test(completion) ? 1 : 0;
    }
  }
}

/** The scorer of one reward source; `maxNewTokens` is DAPO's L_max default. */
export function scorer(source: RewardSource, maxNewTokens: number): Scorer {
  switch (source.kind) {
    case "numericAnswer":
    case "exactMatch":
    case "regexFormat":
      return verifier(source);
    case "overlongPenalty": {
      const max = source.maxTokens ?? maxNewTokens;
      const soft = max - source.buffer;
      return ({ tokens }) =>
        tokens <= soft ? 0 : tokens > max ? -1 : (soft - tokens) / source.buffer;
    }
    case "fn":
    case "http":
      throw new Error(
        `Cannot run reward source '${source.kind}' yet: this runtime executes the built-in ` +
          "verifiers (numericAnswer, exactMatch, regexFormat, overlongPenalty)",
      );
  }
}

/** Per-source scores and their weighted sum for a batch of samples. */
export interface Scores {
  /** [B] the weighted sum. */
  total: Float32Array;
  /** By source name: [B] raw scores. */
  bySource: Record<string, Float32Array>;
  /** [B] the success signal (1 or 0), or null when no source is the success signal. */
  success: Float32Array | null;
}

/** Scores every sample with every source of the plan. */
export function scoreAll(specs: RewardSpec[], samples: Sample[], maxNewTokens: number): Scores {
  const total = new Float32Array(samples.length);
  const bySource: Record<string, Float32Array> = {};
  let success: Float32Array | null = null;
  for (const spec of specs) {
    const score = scorer(spec.source, maxNewTokens);
    const values = Float32Array.from(samples, score);
    bySource[spec.name] = values;
    for (let i = 0; i < values.length; i++) total[i] = total[i]! + spec.weight * values[i]!;
    if (spec.success) success = values;
  }
  return { total, bySource, success };
}
