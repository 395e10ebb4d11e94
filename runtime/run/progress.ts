/**
 * How a run shows its progress. `execute()` reports three phases (the warm start, training and
 * evaluation) to a {@linkcode Progress}; {@linkcode lineProgress} prints a plain line per step
 * (what CI logs and tests read), and the command line draws bars instead when stdout is a
 * terminal (`barProgress` in `progress_bar.ts`).
 *
 * @module
 */

/** The phases of a run that report progress. */
export type Phase = "warm start" | "train" | "eval";

/** Where a phase stands; every field but `done` is optional. */
export interface ProgressUpdate {
  /** Units of the phase done: steps (warm start, train) or problems decoded (eval). */
  done: number;
  /** The warm start's supervised loss. */
  loss?: number;
  /** Train: mean and standard deviation of the step's total reward. */
  reward?: number;
  rewardStd?: number;
  /** Eval accuracy, on a train step that evaluated, or so far in an eval phase. */
  accuracy?: number;
  /** Completion tokens sampled per second of the step. */
  tokensPerSecond?: number;
  /** Seconds left in the phase, as the run estimates it. */
  etaSeconds?: number;
}

/**
 * Receives a run's progress.
 *
 * @example
 * ```ts
 * const quiet: Progress = { start() {}, update() {}, stop() {}, log: (line) => console.log(line) };
 * await execute(plan, { progress: quiet });
 * ```
 */
export interface Progress {
  /** A phase begins: `total` units, of which `done` are already done (a resumed run). */
  start(phase: Phase, total: number, done?: number): void;
  /** The current phase moved on. */
  update(update: ProgressUpdate): void;
  /** The current phase ended. */
  stop(): void;
  /** A line to print as it is (above a bar, where one is drawn). */
  log(line: string): void;
}

/** Seconds as `1m05s` or `42s`. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/** A fraction as a percentage with one decimal: `0.6` → `60.0%`. */
export function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

/**
 * Progress as plain lines, one per train step and one per 50 warm-start steps; evaluation prints
 * nothing until its result (which `execute()` logs).
 *
 * @example
 * ```ts
 * const progress = lineProgress((line) => console.log(line));
 * progress.start("train", 150);
 * progress.update({ done: 1, reward: 0.375, rewardStd: 0.484, tokensPerSecond: 860, etaSeconds: 74 });
 * // step 1/150 · reward 0.375 ± 0.484 · 860 tok/s · ETA 1m14s
 * ```
 */
export function lineProgress(write: (line: string) => void): Progress {
  let phase: Phase = "train";
  let total = 0;
  return {
    start(next, count) {
      phase = next;
      total = count;
    },
    update(u) {
      if (phase === "warm start") {
        if (u.done % 50 === 0 || u.done === total) {
          write(`warm start ${u.done}/${total} · loss ${(u.loss ?? NaN).toFixed(4)}`);
        }
      } else if (phase === "train") {
        write(
          `step ${u.done}/${total} · reward ${(u.reward ?? NaN).toFixed(3)} ± ` +
            `${(u.rewardStd ?? NaN).toFixed(3)}` +
            (u.accuracy === undefined ? "" : ` · eval ${pct(u.accuracy)}`) +
            ` · ${Math.round(u.tokensPerSecond ?? 0).toLocaleString("en-US")} tok/s · ` +
            `ETA ${duration(u.etaSeconds ?? 0)}`,
        );
      }
    },
    stop() {},
    log: write,
  };
}
