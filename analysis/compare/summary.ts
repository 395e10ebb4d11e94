/**
 * `summarize()`: what a comparison measured, as the plain data of `summary.json`. For each
 * objective: the lr it used (and the tuning table), each seed's curves, the mean and spread over
 * seeds at each evaluation step, the accuracy at fixed budgets, and the steps to a target
 * accuracy. `formatTable()` prints the table at the end of a comparison.
 *
 * @module
 */

import type { ObjectiveLabel } from "./options.ts";
import type { EvalPoint, GapPoint, RunCurves, StepPoint } from "./metrics.ts";
import { accuracyAt, type Spread, spread, stepsToTarget } from "./stats.ts";

/** The format tag of `summary.json`. */
export const SUMMARY_FORMAT = "giftwrap.compare/1";

/** The fractions of the steps the table reports accuracy at. */
export const DEFAULT_BUDGETS: readonly number[] = [0.25, 0.5, 1];

/** The default target is this fraction of the best objective's final accuracy. */
export const TARGET_FRACTION = 0.9;

/** One finished (or failed) run, as `summarize()` reads it. */
export interface RunRecord {
  /** The run's name, `<name>-<objective>-s<seed>[-lr<lr>]`. */
  run: string;
  objective: ObjectiveLabel;
  seed: number;
  lr: number;
  /** Its run directory, relative to the comparison's directory; null when it made none. */
  dir: string | null;
  /** Its one-line error; null when it finished. */
  error: string | null;
  /** Its curves (what it wrote before failing, for a failed run). */
  curves: RunCurves;
}

/** A learning rate tried in the tuning phase. */
export interface TuningTrial {
  lr: number;
  run: string;
  /** Mean eval accuracy over the run's last 3 evaluations; null when it failed. */
  score: number | null;
  finalAccuracy: number | null;
  error: string | null;
}

/** How an objective took part. */
export interface ObjectiveSetup {
  objective: ObjectiveLabel;
  /** The lr its comparison runs used; null when its tuning failed, so none ran. */
  lr: number | null;
  lrSource: "recipe" | "tuned";
  /** Whether the base recipe's reference was dropped for it (the compiler picked the default). */
  referenceDropped: boolean;
  /** The tuning table, or null without `--lr`. */
  tuning: TuningTrial[] | null;
}

/** What `summarize()` reads. */
export interface SummaryInput {
  /** The base recipe's name, and the recipe as given on the command line. */
  name: string;
  recipe: string;
  /** When the comparison started (ISO 8601). */
  createdAt: string;
  steps: number;
  seeds: readonly number[];
  /** The seed of the tuning phase; null without one. */
  tuningSeed: number | null;
  objectives: readonly ObjectiveSetup[];
  /** The comparison phase's runs (not the tuning runs). */
  runs: readonly RunRecord[];
  /** The target accuracy. @default 0.9 × the best objective's mean final accuracy */
  target?: number;
  /** Fractions of the steps for the table. @default [0.25, 0.5, 1] */
  budgets?: readonly number[];
}

/** A point of an eval curve over seeds: mean and spread, at the seeds' mean token count. */
export type EvalAggregate = { step: number; tokens: number } & Spread;

/** A point of a per-step curve over seeds. */
export type StepAggregate = { step: number } & Spread;

/** One seed's run in the summary. */
export interface SeedRun {
  seed: number;
  run: string;
  dir: string | null;
  error: string | null;
  finalAccuracy: number | null;
  stepsToTarget: number | null;
  eval: EvalPoint[];
  kl: StepPoint[];
  klInitial: StepPoint[];
  gap: GapPoint[];
}

/** Accuracy over seeds with a budget of `fraction` of the steps. */
export type BudgetStat = {
  fraction: number;
  /** ⌊fraction · steps⌋, and the last evaluated step at or before it (null without one). */
  budgetStep: number;
  evalStep: number | null;
} & Spread;

/** Steps to the target accuracy over seeds. */
export interface TargetStat {
  /** Mean over the seeds that reached it; null when none did. */
  mean: number | null;
  reached: number;
  /** Seeds that finished. */
  n: number;
  /** Per seed, in seed order (null: not reached, or failed). */
  perSeed: (number | null)[];
}

/** Everything about one objective. */
export interface ObjectiveSummary extends ObjectiveSetup {
  runs: SeedRun[];
  /** Mean and spread over the finished seeds at each step. */
  aggregate: {
    eval: EvalAggregate[];
    kl: StepAggregate[];
    klInitial: StepAggregate[];
    /** Train accuracy minus eval accuracy; empty without `trainAccuracy` in the metrics. */
    gap: StepAggregate[];
  };
  finalAccuracy: Spread;
  budgets: BudgetStat[];
  stepsToTarget: TargetStat;
}

/** A row of the summary table. */
export interface TableRow {
  objective: ObjectiveLabel;
  lr: number | null;
  budgets: { fraction: number; evalStep: number | null; mean: number | null; std: number | null }[];
  stepsToTarget: { mean: number | null; reached: number; n: number };
}

/** The content of `summary.json`. */
export interface Summary {
  format: typeof SUMMARY_FORMAT;
  name: string;
  recipe: string;
  createdAt: string;
  steps: number;
  seeds: number[];
  tuningSeed: number | null;
  target: {
    accuracy: number | null;
    /** `given` (`--target`), or `auto`: 0.9 × the best objective's mean final accuracy. */
    source: "given" | "auto";
  };
  budgets: number[];
  objectives: ObjectiveSummary[];
  table: TableRow[];
  /** Every run that failed, tuning runs included. */
  failures: { run: string; error: string }[];
}

/** Mean and spread at each step that any series has. */
function aggregateBy<P extends { step: number }>(
  series: readonly (readonly P[])[],
  value: (point: P) => number,
): ({ step: number; points: P[] } & Spread)[] {
  const byStep = new Map<number, P[]>();
  for (const points of series) {
    for (const point of points) byStep.set(point.step, [...(byStep.get(point.step) ?? []), point]);
  }
  return [...byStep.entries()].sort(([a], [b]) => a - b).map(([step, points]) => ({
    step,
    points,
    ...spread(points.map(value)),
  }));
}

function stepAggregate(series: readonly (readonly StepPoint[])[]): StepAggregate[] {
  return aggregateBy(series, (p) => p.value).map(({ points: _, ...rest }) => rest);
}

/**
 * Summarizes a comparison.
 *
 * @example
 * ```ts
 * const summary = summarize({ name: "tiny", recipe: "tiny.json", createdAt, steps: 10,
 *   seeds: [7, 8], tuningSeed: null, objectives, runs });
 * summary.table[0]; // { objective: "gift", lr: 0.001, budgets: [...], stepsToTarget: {...} }
 * ```
 */
export function summarize(input: SummaryInput): Summary {
  const budgets = [...(input.budgets ?? DEFAULT_BUDGETS)];
  const finished = (o: ObjectiveLabel) =>
    input.runs.filter((r) => r.objective === o && r.error === null);
  const finals = (o: ObjectiveLabel) =>
    finished(o).map((r) => r.curves.eval.at(-1)?.accuracy).filter((a) => a !== undefined);

  const bestFinal = Math.max(
    ...input.objectives.map((o) => spread(finals(o.objective)).mean ?? -Infinity),
  );
  const target = input.target ??
    (Number.isFinite(bestFinal) ? bestFinal * TARGET_FRACTION : null);

  const objectives = input.objectives.map((setup): ObjectiveSummary => {
    const runs = input.runs.filter((r) => r.objective === setup.objective).sort((a, b) =>
      a.seed - b.seed
    );
    const ok = runs.filter((r) => r.error === null);
    const seedRuns = runs.map((r): SeedRun => ({
      seed: r.seed,
      run: r.run,
      dir: r.dir,
      error: r.error,
      finalAccuracy: r.error === null ? r.curves.eval.at(-1)?.accuracy ?? null : null,
      stepsToTarget: r.error === null && target !== null
        ? stepsToTarget(r.curves.eval, target)
        : null,
      ...r.curves,
    }));
    const evalAggregate = aggregateBy(ok.map((r) => r.curves.eval), (p) => p.accuracy).map((
      { step, points, ...s },
    ) => ({ step, tokens: spread(points.map((p) => p.tokens)).mean ?? 0, ...s }));
    const perSeed = seedRuns.filter((r) => r.error === null).map((r) => r.stepsToTarget);
    const reachedSteps = perSeed.filter((s) => s !== null);
    return {
      ...setup,
      runs: seedRuns,
      aggregate: {
        eval: evalAggregate,
        kl: stepAggregate(ok.map((r) => r.curves.kl)),
        klInitial: stepAggregate(ok.map((r) => r.curves.klInitial)),
        gap: aggregateBy(ok.map((r) => r.curves.gap), (p) => p.gap).map((
          { points: _, ...rest },
        ) => rest),
      },
      finalAccuracy: spread(finals(setup.objective)),
      budgets: budgets.map((fraction): BudgetStat => {
        const budgetStep = Math.floor(fraction * input.steps);
        const points = ok.map((r) => accuracyAt(r.curves.eval, budgetStep)).filter((p) =>
          p !== null
        );
        const evalStep = points.length === 0 ? null : Math.max(...points.map((p) => p.step));
        return { fraction, budgetStep, evalStep, ...spread(points.map((p) => p.accuracy)) };
      }),
      stepsToTarget: {
        mean: spread(reachedSteps).mean,
        reached: reachedSteps.length,
        n: perSeed.length,
        perSeed,
      },
    };
  });

  const failures = [
    ...input.objectives.flatMap((o) =>
      (o.tuning ?? []).filter((t) => t.error !== null).map((t) => ({
        run: t.run,
        error: t.error!,
      }))
    ),
    ...input.runs.filter((r) => r.error !== null).map((r) => ({ run: r.run, error: r.error! })),
  ];

  return {
    format: SUMMARY_FORMAT,
    name: input.name,
    recipe: input.recipe,
    createdAt: input.createdAt,
    steps: input.steps,
    seeds: [...input.seeds],
    tuningSeed: input.tuningSeed,
    target: { accuracy: target, source: input.target === undefined ? "auto" : "given" },
    budgets,
    objectives,
    table: objectives.map((o) => ({
      objective: o.objective,
      lr: o.lr,
      budgets: o.budgets.map(({ fraction, evalStep, mean, std }) => ({
        fraction,
        evalStep,
        mean,
        std,
      })),
      stepsToTarget: {
        mean: o.stepsToTarget.mean,
        reached: o.stepsToTarget.reached,
        n: o.stepsToTarget.n,
      },
    })),
    failures,
  };
}

/**
 * An accuracy as a percentage with one decimal: `0.4567` → `45.7%`.
 *
 * @example
 * ```ts
 * percent(0.4567); // "45.7%"
 * ```
 */
export function percent(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

/** `45.7% ± 2.1` (the ± in percentage points, left out for one seed), or `—`. */
function meanStd(mean: number | null, std: number | null): string {
  if (mean === null) return "—";
  return std === null ? percent(mean) : `${percent(mean)} ± ${(100 * std).toFixed(1)}`;
}

/**
 * The summary table as cells, the header first: for each objective its lr, the accuracy at each
 * budget (mean ± std over seeds, in points) and the steps to the target (mean over the seeds that
 * reached it, and how many did).
 *
 * @example
 * ```ts
 * tableCells(summary)[0]; // ["objective", "lr", "@25% (step 30)", …, "steps to 72.0%"]
 * ```
 */
export function tableCells(summary: Summary): string[][] {
  const evalStep = (fraction: number) =>
    summary.table.map((r) => r.budgets.find((b) => b.fraction === fraction)?.evalStep)
      .find((s) => s !== null && s !== undefined);
  const target = summary.target.accuracy;
  const header = [
    "objective",
    "lr",
    ...summary.budgets.map((f) => {
      const step = evalStep(f);
      return `@${Math.round(100 * f)}%${step === undefined ? "" : ` (step ${step})`}`;
    }),
    target === null ? "steps to target" : `steps to ${percent(target)}`,
  ];
  const rows = summary.table.map((row) => {
    const { mean, reached, n } = row.stepsToTarget;
    return [
      row.objective,
      row.lr === null ? "—" : String(row.lr),
      ...row.budgets.map((b) => meanStd(b.mean, b.std)),
      n === 0 ? "—" : `${mean === null ? "—" : Math.round(mean)} (${reached}/${n} seeds)`,
    ];
  });
  return [header, ...rows];
}

/**
 * The summary table as aligned text lines (`tableCells()` padded to columns).
 *
 * @example
 * ```ts
 * console.log(formatTable(summary).join("\n"));
 * // objective  lr      @25% (step 30)  @50% (step 70)  @100% (step 150)  steps to 72.0%
 * // gift       0.0003  61.2% ± 1.4     …
 * ```
 */
export function formatTable(summary: Summary): string[] {
  const cells = tableCells(summary);
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells.map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
}
