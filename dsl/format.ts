/**
 * `formatPlan()`: the plan as text, stages in execution order with their shapes and budgets.
 * The output depends on nothing but the plan (no locale, no clock), so golden tests can pin it.
 * Lines are wrapped at 100 columns.
 *
 * @module
 */

import { LARGE_VOCAB, updateActivations } from "./budget.ts";
import { formatIssue } from "./issues.ts";
import { type Plan, planHash, type RewardSpec, type Stage } from "./plan.ts";

const WIDTH = 100;

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
  const { model, shapes, schedule, objective, optimizer, sampling, tokenizer, data } = plan;
  const lines: string[] = [`plan ${plan.name} · hash ${planHash(plan)}`];
  // A labelled row: the parts joined by " · ", wrapped under the label's column.
  const row = (label: string, parts: readonly string[]) =>
    lines.push(...wrap(parts.join(" · "), `  ${label.padEnd(11)} `, " ".repeat(14)));

  row("run", [`seed ${plan.seed}`, plural(schedule.steps, "step")]);
  row("backend", [plan.backend.name, plan.backend.reason]);
  if (model.kind === "hfModel") {
    row("model", [
      `'${model.path}'`,
      `${model.modelType} (${model.architectures.join(", ") || "no architectures"})`,
      `${model.dtype}, saved as ${model.saveDtype}`,
      `max positions ${model.maxPositions}`,
      ...(model.attentionBias ? ["q/k/v biases"] : []),
      ...(model.qkNorm ? ["q/k norms"] : []),
      ...(model.ropeScaling === null ? [] : [
        `rope scaling llama3 ×${model.ropeScaling.factor}`,
      ]),
      `sha256 ${model.sha256.slice(0, 16)}…`,
    ]);
  }
  row("policy", [
    model.kind,
    plural(model.layers, "layer"),
    `d ${model.dModel}`,
    `${model.heads} heads of width ${model.headDim}, ${model.kvHeads} for keys and values`,
    `ffn ${model.ffnDim}`,
    `context ${model.contextLength}`,
    `${model.tiedEmbeddings ? "tied" : "untied"} embeddings`,
    plural(model.params, "parameter"),
  ]);
  if (model.kind === "hfModel" && model.lora !== undefined) {
    const l = model.lora;
    const total = model.params + l.params;
    row("lora", [
      `rank ${l.rank}, alpha ${num(l.alpha)} (scale ${num(l.scale)})`,
      ...(l.dropout > 0 ? [`dropout ${num(l.dropout)}`] : []),
      l.targets.join(", "),
      `${count(l.params)} trained of ${count(total)} parameters ` +
      `(${percent(l.params / total)}); the base is frozen`,
      l.adapter === null
        ? "starts at B = 0 (the base model)"
        : `starts from the adapter '${l.adapter.path}' (sha256 ${l.adapter.sha256.slice(0, 16)}…)`,
      l.saveMerged ? "saves the adapter and the merged weights" : "saves the adapter",
    ]);
  }
  if (tokenizer.kind === "char") {
    row("tokenizer", [
      `${tokenizer.kind}, vocabulary ${tokenizer.vocab}: ${tokenizer.specials.join(" ")} and ` +
      plural(tokenizer.vocab - tokenizer.specials.length, "character"),
    ]);
  } else {
    const id = (v: number | null) => v === null ? "none" : String(v);
    row("tokenizer", [
      `tokenizer.json, vocabulary ${tokenizer.vocab}`,
      `bos ${id(tokenizer.bosId)}${tokenizer.addBos ? " (added)" : ""}`,
      `eos ${id(tokenizer.eosId)}`,
      `pad ${id(tokenizer.padId)}${tokenizer.padSource === "eos_token" ? " (the eos token)" : ""}`,
      `stops at ${tokenizer.stopIds.join(", ") || "nothing"}`,
      tokenizer.chatTemplate
        ? "chat template" + (tokenizer.system === null ? "" : ", system prompt") +
          (Object.keys(tokenizer.templateArgs).length === 0
            ? ""
            : `, ${JSON.stringify(tokenizer.templateArgs)}`)
        : "plain text prompts",
    ]);
    if (tokenizer.example !== null) {
      row("prompt", [
        `${JSON.stringify(excerptText(tokenizer.example.text, 160))}`,
        plural(tokenizer.example.tokens, "token"),
      ]);
    }
  }
  row("reference", [referenceText(plan)]);
  row("data", [
    data.description,
    data.train === null
      ? `${count(data.eval ?? 0)} rows held out for eval`
      : `${count(data.train)} train and ${count(data.eval ?? 0)} eval problems`,
  ]);
  // The files the plan names, by what is in them (absent from plans that name none).
  (plan.inputs ?? []).forEach((input, i) =>
    row(i === 0 ? "inputs" : "", [
      input.path,
      input.field,
      plural(input.bytes, "byte"),
      `sha256 ${input.sha256.slice(0, 16)}…`,
    ])
  );
  plan.rewards.forEach((r, i) => row(i === 0 ? "rewards" : "", rewardText(r)));
  row("objective", [objective.kind, ...options(objective.options)]);
  row("", [objective.formula]);
  row("shapes", [
    `P ${shapes.prompts} × G ${shapes.groupSize} = B ${shapes.rows} rows`,
    `T ${shapes.sequenceTokens} = ${shapes.promptTokens} prompt + ${shapes.newTokens} new tokens`,
    `V ${shapes.vocab}`,
  ]);
  row("updates", [
    `${plural(schedule.miniBatches, "mini-batch", "mini-batches")} × ` +
    `${plural(schedule.epochs, "epoch")} = ${
      plural(schedule.optimizerStepsPerBatch, "optimiser step")
    } ` +
    `per batch, each on ${plural(shapes.miniBatchRows, "row")} ` +
    `(${plural(shapes.miniBatchGroups, "group")})`,
    ...(plan.update === undefined ? [] : updateText(plan.update, shapes.groupSize)),
  ]);
  row("optimizer", [
    "AdamW",
    `lr ${num(optimizer.lr)}`,
    `betas ${optimizer.betas.map(num).join(", ")}`,
    `eps ${num(optimizer.eps)}`,
    `weight decay ${num(optimizer.weightDecay)}`,
    `clip grad norm ${optimizer.clipGradNorm === 0 ? "off" : num(optimizer.clipGradNorm)}`,
    optimizer.warmupSteps > 0
      ? `${optimizer.schedule} after ${plural(optimizer.warmupSteps, "warm-up update")}`
      : optimizer.schedule,
    `stop after ${plural(optimizer.maxSkippedUpdates, "non-finite update")} in a row`,
  ]);
  row("sampling", [
    `temperature ${num(sampling.temperature)}`,
    `top-p ${num(sampling.topP)}`,
    `top-k ${sampling.topK === 0 ? "off" : sampling.topK}`,
    `at most ${plural(sampling.maxNewTokens, "new token")}`,
    ...(sampling.stop.length > 0
      ? [`stop at ${sampling.stop.map((s) => JSON.stringify(s)).join(", ")}`]
      : []),
  ]);

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
    const indent = " ".repeat(27);
    lines.push(
      ...wrap(stage.detail, `${String(i + 1).padStart(4)}  ${stage.name.padEnd(20)} `, indent),
    );
    const extra = [
      ...Object.entries(stage.shapes).map(([name, s]) => `${name} [${s.join(", ")}]`),
      ...(stage.flops > 0 ? [flopsText(stage.flops)] : []),
    ];
    if (extra.length > 0) lines.push(...wrap(extra.join(" · "), indent, indent));
  });

  const { perStep, run } = plan.budget;
  const budget = (label: string, text: string) =>
    lines.push(...wrap(text, `  ${label.padEnd(16)} `, " ".repeat(19)));
  // A total and its non-zero parts: "5.65 GFLOP (sample 1.04 GFLOP, update 3.45 GFLOP)".
  const split = (total: string, parts: [string, number][], unit: (x: number) => string) => {
    const shown = parts.filter(([, x]) => x > 0).map(([name, x]) => `${name} ${unit(x)}`);
    return shown.length > 1 ? `${total} (${shown.join(", ")})` : total;
  };
  const rounds = objective.axes.dynamicSampling?.maxRounds;
  lines.push("", "budget per step");
  budget(
    "tokens sampled",
    rounds === undefined
      ? `${count(perStep.tokensSampled)} at most (B × new tokens)`
      : `${
        count(perStep.tokensSampled)
      } per sampling round (B × new tokens), up to ${rounds} rounds`,
  );
  budget(
    "passes",
    [
      plural(perStep.samplingCalls, "sampling call"),
      `${perStep.forwardPasses} forward`,
      `${perStep.backwardPasses} backward`,
      plural(perStep.optimizerSteps, "optimiser step"),
    ].join(" · "),
  );
  const f = perStep.flops;
  budget(
    "FLOPs",
    split(flopsText(f.total), [
      ["sample", f.sample],
      ["old log-probs", f.oldLogp],
      ["reference", f.reference],
      ["update", f.update],
    ], flopsText),
  );
  const m = perStep.peakBytes;
  const lora = model.kind === "hfModel" ? model.lora : undefined;
  const micro = (plan.update?.microBatches ?? 1) > 1;
  budget(
    "peak tensors",
    split(`≈ ${bytesText(m.total)}`, [
      ["weights", m.weights],
      [
        (lora ? "the adapters' gradients and AdamW" : "gradients and AdamW") +
        (micro ? ", with the micro-batches' gradient sum" : ""),
        m.optimizer,
      ],
      ["reference", m.reference],
      ["activations", m.activations],
    ], bytesText),
  );
  // The update's pass in parts, where the estimate has them (update options, LoRA, a large
  // vocabulary); it is the activations unless sampling's KV cache is larger.
  if (plan.update !== undefined || lora !== undefined || model.vocab >= LARGE_VOCAB) {
    const pass = updateActivations(model, {
      rows: plan.update?.microBatchRows ?? shapes.miniBatchRows,
      promptTokens: shapes.promptTokens,
      newTokens: shapes.newTokens,
      gradientCheckpointing: plan.update?.gradientCheckpointing ?? false,
      lora: lora ?? null,
    });
    const rows = plural(plan.update?.microBatchRows ?? shapes.miniBatchRows, "row");
    budget(
      "update pass",
      split(`${bytesText(pass.total)} over ${rows}`, [
        [pass.blockInputs > 0 ? "one block recomputed" : "blocks", pass.blocks],
        ["block inputs", pass.blockInputs],
        [`log-softmax over ${plural(shapes.newTokens, "position")}`, pass.logSoftmax],
      ], bytesText) + (pass.total < m.activations ? "; sampling's KV cache is larger" : ""),
    );
  }
  lines.push("", "budget for the run");
  budget("tokens sampled", `${count(run.tokensSampled)} at most`);
  budget("evaluations", `${schedule.evaluations} × ${plural(schedule.evalProblems, "problem")}`);
  budget(
    "FLOPs",
    split(flopsText(run.flops.total), [
      ["warm start", run.flops.warmStart],
      ["train", run.flops.train],
      ["eval", run.flops.eval],
    ], flopsText),
  );

  lines.push("", plan.warnings.length === 0 ? "warnings: none" : "warnings");
  for (const w of plan.warnings) lines.push(...wrap(formatIssue(w), "  - ", "    "));
  return lines.join("\n") + "\n";
}

/** The update's micro-batches and activation checkpointing, as parts of the updates row. */
function updateText(update: NonNullable<Plan["update"]>, groupSize: number): string[] {
  return [
    update.microBatches > 1
      ? `${plural(update.microBatches, "micro-batch", "micro-batches")} of ` +
        `${plural(update.microBatchRows, "row")} (${
          plural(update.microBatchRows / groupSize, "group")
        }), gradients summed`
      : "one pass over the mini-batch",
    update.gradientCheckpointing
      ? "activation checkpointing (each block recomputed in the backward pass)"
      : "every activation kept",
  ];
}

function referenceText(plan: Plan): string {
  const { kind, checkpoint, used } = plan.reference;
  if (kind === "none") return `none (${plan.objective.kind} reads no reference)`;
  const warm = plan.model.warmStart !== null && plan.model.warmStart.sftSteps > 0;
  const adapted = plan.model.kind === "hfModel" && plan.model.lora !== undefined;
  const what = {
    initial: adapted
      ? "the base model with the adapters off (no copy)"
      : `a frozen copy of the policy${warm ? " after the warm start" : ""}`,
    rollout: "the policy that sampled the batch",
    checkpoint: `loaded from '${checkpoint}'`,
  }[kind];
  return `${kind}: ${what}${
    used ? "" : `, not read by ${plan.objective.kind} (the KL metric only)`
  }`;
}

function rewardText(r: RewardSpec): string[] {
  const source = [r.source.kind, ...options(r.source)].join(" ");
  return [
    r.name === r.source.kind ? source : `${r.name}: ${source}`,
    `weight ${num(r.weight)}`,
    ...(r.success ? ["success"] : []),
    r.range === null ? "range undeclared" : `range [${r.range.map(num).join(", ")}]`,
    ...(r.onError === "fail" ? [] : [`onError ${r.onError}`]),
  ];
}

/** `key value` for each field of a node but its kind; an object value is printed as JSON. */
function options(node: object): string[] {
  return Object.entries(node).filter(([k]) => k !== "kind").map(([k, v]) => {
    const value = Array.isArray(v)
      ? `[${v.map((x) => typeof x === "number" ? num(x) : String(x)).join(", ")}]`
      : typeof v === "number"
      ? num(v)
      : typeof v === "string" || (typeof v === "object" && v !== null)
      ? JSON.stringify(v)
      : String(v);
    return `${k} ${value}`;
  });
}

/** Breaks `text` at spaces so that no line passes `WIDTH` columns (a longer word stays whole). */
function wrap(text: string, first: string, rest: string): string[] {
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const word of text.split(" ")) {
    if (!empty && line.length + 1 + word.length > WIDTH) {
      lines.push(line);
      line = rest + word;
    } else {
      line += (empty ? "" : " ") + word;
    }
    empty = false;
  }
  lines.push(line);
  return lines;
}

/** A number as people write it: 0.0003, 1e-6, 10000 (small magnitudes in exponent form). */
export function num(x: number): string {
  if (x !== 0 && Math.abs(x) < 1e-3) return x.toExponential();
  return String(x);
}

/** "1 step", "3 steps", "1,024 rows". */
export function plural(k: number, word: string, words = `${word}s`): string {
  return `${count(k)} ${k === 1 ? word : words}`;
}

/** 1234567 → "1,234,567" (no locale). */
export function count(n: number): string {
  const s = String(Math.round(n));
  return s.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** A share as a percentage with up to three significant digits: "0.437%". */
function percent(share: number): string {
  return `${Number((100 * share).toPrecision(3))}%`;
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

/** `text` cut to about `max` characters in the middle, for one line of the plan. */
function excerptText(text: string, max: number): string {
  const chars = [...text];
  if (chars.length <= max) return text;
  const half = Math.floor((max - 1) / 2);
  return chars.slice(0, half).join("") + "…" + chars.slice(chars.length - half).join("");
}
