/**
 * `formatPlan()`: the plan as text, stages in execution order with their shapes and budgets.
 * The output depends on nothing but the plan (no locale, no clock), so golden tests can pin it.
 *
 * @module
 */

import { formatIssue } from "./issues.ts";
import { type Plan, planHash, type RewardSpec, type Stage } from "./plan.ts";

/**
 * Prints a plan for people: the resolved recipe, the stages in execution order with their tensor
 * shapes and FLOPs, the budgets per step and per run, and the warnings.
 *
 * @example
 * ```ts
 * console.log(formatPlan(compile(recipe)));
 * ```
 */
export function formatPlan(plan: Plan): string {
  const lines: string[] = [];
  const row = (label: string, text: string) => lines.push(`  ${label.padEnd(11)} ${text}`);
  const { model, shapes, schedule, objective, optimizer } = plan;

  lines.push(`plan ${plan.name} · hash ${planHash(plan)}`);
  row(
    "run",
    `seed ${plan.seed} · ${
      count(schedule.steps)
    } steps · backend ${plan.backend.name} (${plan.backend.reason})`,
  );
  row(
    "policy",
    `${model.kind} · ${model.layers} layers · d ${model.dModel} · ${model.heads} heads ` +
      `(${model.kvHeads} kv, width ${model.headDim}) · ffn ${model.ffnDim} · context ${model.contextLength} · ` +
      `${model.tiedEmbeddings ? "tied" : "untied"} embeddings · ${count(model.params)} parameters`,
  );
  row(
    "tokenizer",
    `${plan.tokenizer.kind} · vocabulary ${plan.tokenizer.vocab} ` +
      `(${plan.tokenizer.specials.join(" ")} + ${
        plan.tokenizer.vocab - plan.tokenizer.specials.length
      } characters)`,
  );
  row("reference", referenceText(plan));
  const sizes = plan.data.train === null
    ? `${count(plan.data.eval ?? 0)} rows held out for eval`
    : `${count(plan.data.train)} train / ${count(plan.data.eval ?? 0)} eval problems`;
  row("data", `${plan.data.description} · ${sizes}`);
  plan.rewards.forEach((r, i) => row(i === 0 ? "rewards" : "", rewardText(r)));
  const options = Object.entries(objective.options).filter(([k]) => k !== "kind").map(([k, v]) =>
    `${k} ${v}`
  );
  row("objective", [objective.kind, ...options].join(" · "));
  row("", objective.formula);
  row(
    "shapes",
    `P ${shapes.prompts} × G ${shapes.groupSize} = B ${shapes.rows} rows · T ${shapes.sequenceTokens} = ` +
      `${shapes.promptTokens} prompt + ${shapes.newTokens} new tokens · V ${shapes.vocab}`,
  );
  row(
    "updates",
    `${schedule.miniBatches} mini-batch${
      schedule.miniBatches === 1 ? "" : "es"
    } × ${schedule.epochs} ` +
      `epoch${schedule.epochs === 1 ? "" : "s"} = ${schedule.optimizerStepsPerBatch} optimiser ` +
      `step${
        schedule.optimizerStepsPerBatch === 1 ? "" : "s"
      } per batch, ${shapes.miniBatchRows} rows ` +
      `(${shapes.miniBatchGroups} group${shapes.miniBatchGroups === 1 ? "" : "s"}) each`,
  );
  row(
    "optimizer",
    `AdamW · lr ${optimizer.lr} · betas ${optimizer.betas.join(", ")} · eps ${optimizer.eps} · ` +
      `weight decay ${optimizer.weightDecay} · clip grad norm ${
        optimizer.clipGradNorm || "off"
      } · ` +
      `${optimizer.schedule}${
        optimizer.warmupSteps > 0 ? ` after ${optimizer.warmupSteps} warm-up updates` : ""
      }`,
  );
  const sampling = plan.sampling;
  row(
    "sampling",
    `temperature ${sampling.temperature} · top-p ${sampling.topP} · top-k ${
      sampling.topK || "off"
    } · ` +
      `${sampling.maxNewTokens} new tokens at most` +
      (sampling.stop.length > 0
        ? ` · stop ${sampling.stop.map((s) => JSON.stringify(s)).join(", ")}`
        : ""),
  );

  lines.push("", "stages");
  const headings: Record<Stage["when"], string> = {
    setup: "before training",
    step: `every step (× ${count(schedule.steps)})`,
    periodic: "periodically",
    end: "at the end",
  };
  let last: Stage["when"] | undefined;
  plan.stages.forEach((stage, i) => {
    if (stage.when !== last) lines.push(`  ${headings[stage.when]}`);
    last = stage.when;
    const number = String(i + 1).padStart(4);
    lines.push(`${number}  ${stage.name.padEnd(20)} ${stage.detail}`);
    const shapes = Object.entries(stage.shapes).map(([name, s]) => `${name} [${s.join(", ")}]`);
    const extra = [
      ...shapes,
      ...(stage.flops > 0 ? [flopsText(stage.flops)] : []),
    ];
    if (extra.length > 0) lines.push(`${" ".repeat(27)}${extra.join(" · ")}`);
  });

  const b = plan.budget.perStep;
  const f = b.flops;
  const m = b.peakBytes;
  lines.push("", "budget per step");
  const budget = (label: string, text: string) => lines.push(`  ${label.padEnd(16)} ${text}`);
  const rounds = plan.objective.axes.dynamicSampling?.maxRounds;
  budget(
    "tokens sampled",
    rounds === undefined
      ? `${count(b.tokensSampled)} at most (B × new tokens)`
      : `${count(b.tokensSampled)} per sampling round (B × new tokens), up to ${rounds} rounds`,
  );
  budget(
    "passes",
    `${b.samplingCalls} sampling calls · ${b.forwardPasses} forward · ${b.backwardPasses} backward · ` +
      `${b.optimizerSteps} optimiser step${b.optimizerSteps === 1 ? "" : "s"}`,
  );
  budget(
    "FLOPs",
    `${flopsText(f.total)} (sample ${flopsText(f.sample)} · old ${flopsText(f.oldLogp)} · ` +
      `reference ${flopsText(f.reference)} · update ${flopsText(f.update)})`,
  );
  budget(
    "peak tensors",
    `≈ ${bytesText(m.total)} (weights ${bytesText(m.weights)} · gradients and AdamW ${
      bytesText(m.optimizer)
    } · ` +
      `reference ${bytesText(m.reference)} · activations ${bytesText(m.activations)})`,
  );
  const run = plan.budget.run;
  lines.push("", "budget for the run");
  budget("tokens sampled", `${count(run.tokensSampled)} at most`);
  budget("evaluations", `${schedule.evaluations} × ${count(schedule.evalProblems)} problems`);
  budget(
    "FLOPs",
    `${flopsText(run.flops.total)} (warm start ${flopsText(run.flops.warmStart)} · ` +
      `train ${flopsText(run.flops.train)} · eval ${flopsText(run.flops.eval)})`,
  );

  lines.push("", plan.warnings.length === 0 ? "warnings: none" : "warnings");
  for (const w of plan.warnings) lines.push(`  - ${formatIssue(w)}`);
  return lines.join("\n") + "\n";
}

function referenceText(plan: Plan): string {
  const { kind, checkpoint, used } = plan.reference;
  const what = {
    initial: `a frozen copy of the policy${
      plan.model.warmStart !== null && plan.model.warmStart.sftSteps > 0
        ? " after the warm start"
        : ""
    }`,
    rollout: "the policy that sampled the batch",
    none: "no reference",
    checkpoint: `loaded from '${checkpoint}'`,
  }[kind];
  if (kind === "none") return `none (${plan.objective.kind} reads no reference)`;
  return `${kind}: ${what}${
    used ? "" : ` (not read by ${plan.objective.kind}; the KL metric only)`
  }`;
}

function rewardText(r: RewardSpec): string {
  const options = Object.entries(r.source).filter(([k]) => k !== "kind").map(([k, v]) =>
    `${k} ${Array.isArray(v) ? `[${v.join(", ")}]` : typeof v === "string" ? JSON.stringify(v) : v}`
  );
  const source = [r.source.kind, ...options].join(" ");
  const range = r.range === null ? "range undeclared" : `range [${r.range.join(", ")}]`;
  return `${r.name}: ${source} · weight ${r.weight}${r.success ? " · success" : ""} · ${range}`;
}

/** 1234567 → "1,234,567" (no locale). */
export function count(n: number): string {
  const s = String(Math.round(n));
  return s.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** FLOPs with an SI prefix and three significant digits: "1.23 GFLOP". */
export function flopsText(flops: number): string {
  if (flops === 0) return "0 FLOP";
  const units = ["", "k", "M", "G", "T", "P", "E"];
  let i = 0;
  let x = flops;
  while (x >= 1000 && i < units.length - 1) {
    x /= 1000;
    i++;
  }
  return `${Number(x.toPrecision(3))} ${units[i]}FLOP`;
}

/** Bytes with a binary prefix: "12.3 MiB". */
export function bytesText(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let x = bytes;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${Number(x.toPrecision(3))} ${units[i]}`;
}
