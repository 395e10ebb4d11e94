/**
 * `exportVerl()`: a plan as a directory a verl user takes to a Ray cluster, the recipe's rewards
 * staying giftwrap's (its reward server).
 *
 *   run.sh               python3 -m verl.trainer.main_ppo with the plan's overrides
 *   giftwrap_verl.py     the plugin registering GIFT and what else verl lacks, with verl's registries
 *   giftwrap_verl.json   the plugin's settings (objective options, reference, group size)
 *   reward.py            verl's compute_score hook, batching samples to the reward server
 *   train.parquet        the train split in verl's RL dataset layout
 *   eval.parquet         the held-out split, when the recipe holds problems out
 *   plan.json            the plan, its hash first
 *   README.md            the overrides, each with the recipe field it comes from, and the warnings
 *
 * The same plan exports the same bytes. The directory is written beside its destination and
 * renamed into place: an export that fails leaves nothing behind, and one that replaces an earlier
 * export replaces only a directory that holds an export's files and nothing else.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { basename, dirname, join, resolve } from "node:path";
import { canonicalJson, type Plan, planHash } from "../../dsl/plan.ts";
import { type Override, type Refusal, VERL_COMMIT, verlConfig } from "./verl_config.ts";
import { verlObjective } from "./verl_objective.ts";
import { verlRows, writeVerlData } from "./verl_data.ts";
import { runScript } from "./run_script.ts";

/**
 * A recipe that cannot be exported: the field and why, as one line.
 *
 * @example
 * ```ts
 * try {
 *   await exportVerl(plan, { out: "verl-run", baseUrl: recipeUrl });
 * } catch (e) {
 *   if (e instanceof ExportError) console.error(`${e.field}: ${e.reason}`);
 * }
 * ```
 */
export class ExportError extends Error {
  /**
   * @param field The recipe's field (`policy`, `objective.kind`, …), or `--out`.
   * @param reason What was expected and what was given.
   */
  constructor(readonly field: string, readonly reason: string) {
    super(`${field}: ${reason}`);
    this.name = "ExportError";
  }
}

/**
 * Options of `exportVerl()`.
 *
 * @example
 * ```ts
 * const options: VerlExportOptions = {
 *   out: "verl-stories",
 *   baseUrl: new URL("recipes/stories_gift.ts", `file://${Deno.cwd()}/`),
 *   recipe: "recipes/stories_gift.ts",
 * };
 * ```
 */
export interface VerlExportOptions {
  /** The directory to write. It must not exist, or hold an earlier export and nothing else. */
  out: string;
  /** What the recipe's relative paths (data, reward modules, model) are relative to. */
  baseUrl: string | URL;
  /** The recipe as the user names it, quoted in run.sh's reward server command. */
  recipe?: string;
}

/**
 * What `exportVerl()` wrote.
 *
 * @example
 * ```ts
 * const written: VerlExport = await exportVerl(plan, options);
 * console.log(written.dir, written.files, written.planHash, written.overrides.length);
 * ```
 */
export interface VerlExport {
  /** The directory, absolute. */
  dir: string;
  /** The files written, by name, sorted. */
  files: string[];
  planHash: string;
  /** Every override run.sh passes (its arguments aside). */
  overrides: Override[];
  /** Where verl computes something differently, each naming both. */
  warnings: string[];
}

/** The files an export writes; a directory holding only these may be replaced. */
const EXPORT_FILES = new Set([
  "run.sh",
  "giftwrap_verl.py",
  "giftwrap_verl.json",
  "reward.py",
  "train.parquet",
  "eval.parquet",
  "plan.json",
  "README.md",
]);

function refuse(refusal: Refusal): never {
  throw new ExportError(refusal.field, refusal.reason);
}

/**
 * Refuses a plan verl cannot run, before anything is read or written: the checks of
 * `verlObjective()` and `verlConfig()`, with the objective's first.
 *
 * @example
 * ```ts
 * checkVerlExport(plan); // throws ExportError("policy", "tinyGpt is giftwrap's own model, …")
 * ```
 */
export function checkVerlExport(plan: Plan): void {
  const objective = verlObjective(plan);
  if (!objective.ok) refuse(objective);
  const config = verlConfig(plan, {
    paths: { train: "train.parquet", eval: "eval.parquet", reward: "reward.py" },
    trainRows: 1,
  });
  if (!config.ok) refuse(config);
}

/** The bytes of a file shipped beside this module. */
async function shipped(name: string): Promise<Uint8Array> {
  const url = new URL(`./${name}`, import.meta.url);
  if (url.protocol === "file:") return await Deno.readFile(url);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** A local directory the recipe names, absolute. */
function localPath(path: string, baseUrl: string | URL): string {
  const url = new URL(path, baseUrl);
  return url.protocol === "file:" ? fileURLToPath(url) : path;
}

/** The export's README: how to run it, the overrides with their fields, the warnings. */
function readme(plan: Plan, hash: string, overrides: readonly Override[], warnings: string[]) {
  const rows = overrides.map((o) =>
    `| \`${o.key}\` | \`${JSON.stringify(o.value)}\` | ${o.from} |`
  );
  return [
    `# ${plan.name} on verl`,
    "",
    `The giftwrap recipe \`${plan.name}\` (plan \`${hash}\`), exported for verl ${VERL_COMMIT}.`,
    "",
    "```sh",
    "deno task serve-rewards <recipe> --host 0.0.0.0   # on a machine the cluster reaches",
    "export GIFTWRAP_REWARD_URL=http://<that host>:8787/score",
    "export RAY_ADDRESS=http://<head node>:8265        # or leave unset: Ray on this machine",
    "bash run.sh --nodes 2 --gpus-per-node 8",
    "```",
    "",
    "| verl key | value | recipe field |",
    "| --- | --- | --- |",
    ...rows,
    "",
    ...(warnings.length === 0 ? [] : ["Where verl differs:", "", ...warnings.map((w) => `- ${w}`)]),
    "",
  ].join("\n");
}

/** Whether `dir` may be replaced: absent, or an earlier export's files and nothing else. */
async function replaceable(dir: string): Promise<boolean> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.lstat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return true;
    throw e;
  }
  if (!stat.isDirectory) return false;
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.length === 0 ||
    (names.includes("giftwrap_verl.json") && names.every((n) => EXPORT_FILES.has(n)));
}

/**
 * Exports `plan` for verl into `options.out`. Throws `ExportError` (one line naming the field)
 * for what verl has no equivalent of, or for an `--out` that holds something else.
 *
 * @example
 * ```ts
 * const result = await exportVerl(plan, { out: "verl-run", baseUrl: recipeUrl });
 * for (const warning of result.warnings) console.error(`warning: ${warning}`);
 * ```
 */
export async function exportVerl(plan: Plan, options: VerlExportOptions): Promise<VerlExport> {
  const objective = verlObjective(plan);
  if (!objective.ok) refuse(objective);
  const dir = resolve(options.out);
  if (!(await replaceable(dir))) {
    throw new ExportError(
      "--out",
      `expected a new directory or an earlier export, got '${options.out}', which holds other files`,
    );
  }
  const rows = await verlRows(plan, options.baseUrl);
  if (rows.train.length === 0) {
    throw new ExportError(
      "data",
      "expected train problems, got none: verl has nothing to train on",
    );
  }
  const hasEval = rows.eval.length > 0;
  const config = verlConfig(plan, {
    paths: {
      train: "$DATA/train.parquet",
      eval: hasEval ? "$DATA/eval.parquet" : null,
      reward: "$DATA/reward.py",
    },
    trainRows: rows.train.length,
  });
  if (!config.ok) refuse(config);
  if (plan.model.kind !== "hfModel") throw new ExportError("policy", "expected an hfModel");

  const hash = planHash(plan);
  // The objective's first. Where both set a key (the micro-batches, in rows), the rest of the
  // plan's value is the one: whole groups either way.
  const configKeys = new Set(config.overrides.map((o) => o.key));
  const overrides: Override[] = [
    ...objective.overrides.filter(([key]) => !configKeys.has(key))
      .map(([key, value]): Override => ({ key, value, from: "objective" })),
    ...config.overrides,
  ];
  const warnings = [...objective.warnings, ...config.warnings];
  const lora = plan.model.lora;
  const script = runScript(overrides, {
    name: plan.name,
    planHash: hash,
    modelPath: localPath(plan.model.path, options.baseUrl),
    adapterPath: lora?.adapter ? localPath(lora.adapter.path, options.baseUrl) : null,
    miniBatchRows: plan.shapes.miniBatchRows,
    microBatchRows: plan.update?.microBatchRows ?? plan.shapes.groupSize,
    groupSize: plan.shapes.groupSize,
    recipe: options.recipe ?? "<recipe>",
  });
  const settings = { ...objective.settings, plan: hash };

  // Written beside the destination, then renamed into place.
  const parent = dirname(dir);
  await Deno.mkdir(parent, { recursive: true });
  const staging = join(parent, `.${basename(dir)}.${Deno.pid}.tmp`);
  await Deno.remove(staging, { recursive: true }).catch(() => {});
  await Deno.mkdir(staging);
  try {
    const encoder = new TextEncoder();
    const text = (name: string, content: string) =>
      Deno.writeFile(join(staging, name), encoder.encode(content));
    await text("run.sh", script);
    await Deno.chmod(join(staging, "run.sh"), 0o755);
    await Deno.writeFile(join(staging, "giftwrap_verl.py"), await shipped("giftwrap_verl.py"));
    await Deno.writeFile(join(staging, "reward.py"), await shipped("reward.py"));
    await text("giftwrap_verl.json", JSON.stringify(JSON.parse(canonicalJson(settings)), null, 2));
    await text("plan.json", JSON.stringify({ hash, ...plan }, null, 2) + "\n");
    await text("README.md", readme(plan, hash, overrides, warnings));
    await writeVerlData(hasEval ? rows : { train: rows.train, eval: [] }, staging);
    if (!(await replaceable(dir))) {
      throw new ExportError("--out", `'${options.out}' changed while exporting`);
    }
    await Deno.remove(dir, { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
    await Deno.rename(staging, dir);
  } catch (e) {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    throw e;
  }
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) files.push(entry.name);
  return { dir, files: files.sort(), planHash: hash, overrides, warnings };
}
