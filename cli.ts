/**
 * The giftwrap command line.
 *
 *   deno task plan <recipe> [--json]        print the plan (stages, shapes, budgets, warnings)
 *   deno task validate <recipe> [--strict]  check the schema, every compiler rule, reward modules and
 *                                           data files, run nothing
 *   deno task schema [--out FILE]           write the recipe's JSON Schema
 *   deno task run <recipe> [--resume DIR]   train (or continue a run from its last checkpoint)
 *   deno task run <recipe> --restart DIR    start a run over in its directory (earlier files kept
 *                                           in DIR/previous-<time>/)
 *   deno task runs [--json]                 list the run directories: recipe, status, metrics
 *   deno task report <run dir>              write a run's report.html again
 *   deno task compare <recipe>              train it under several objectives and seeds, and
 *                                           compare them (summary.json, report.html)
 *   deno task export <recipe> --to verl --out DIR
 *                                           write DIR: run.sh, the verl plugin, the data as
 *                                           Parquet and the reward hook, to train on verl (Ray)
 *   deno task generate <dir> --prompt TEXT  generate text from a model directory, a checkpoint or
 *                                           a run directory's final checkpoint (greedy unless
 *                                           --temperature; --chat, --json)
 *   deno task serve-rewards <recipe>        serve the recipe's rewards over HTTP (POST /score,
 *     [--port P] [--host H]                 GET /health) for another trainer (verl's reward.py),
 *     [--concurrency N]                     until Ctrl-C (or SIGTERM), which ends it with exit 0
 *
 * A recipe is a .ts or .js module (its default export, or an export named `recipe`), a .json
 * recipe, a plan written by `plan --json`, or a URL to one of them.
 *
 * Exit codes: 0 success; 2 an invalid recipe or invalid usage, one line per problem on stderr and
 * never a stack trace (a recipe that is not a regular file, a recipe URL that does not answer in
 * full within GIFTWRAP_FETCH_TIMEOUT seconds, an export whose getter throws included); 1 a run
 * that failed (a reward source, a full disk, non-finite updates: one line) or an internal error
 * (a reward server's sources that cannot load, or a port in use, are invalid input: exit 2);
 * 130 a run stopped by Ctrl-C (or SIGTERM) after writing a checkpoint, or a comparison stopped by
 * it after summarising its finished runs.
 *
 * @module
 */

import { Command, CommanderError, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { type Backend, BACKENDS, recipeJsonSchema } from "./dsl/schema.ts";
import { type CompileOptions, safeCompile } from "./dsl/compile.ts";
import { formatPlan } from "./dsl/format.ts";
import { formatIssue } from "./dsl/issues.ts";
import { describeChange, inputChange, withInputs } from "./dsl/inputs.ts";
import {
  type LoadedRecipe,
  loadRecipe,
  type LoadRecipeOptions,
  RecipeLoadError,
} from "./dsl/load.ts";
import { type Plan, planHash } from "./dsl/plan.ts";
import { validateRecipe } from "./dsl/validate.ts";
import { machineMemory, presentBackends } from "./runtime/engine/native.ts";
import {
  DEFAULT_OBJECTIVES,
  MAX_SEEDS,
  parseAccuracy,
  parseCount,
  parseLrs,
  parseObjectives,
  parseTrack,
} from "./analysis/compare/options.ts";

/** Exit codes of the command line. */
export const EXIT = { ok: 0, internal: 1, invalid: 2, interrupted: 130 } as const;

/** A user mistake already reported on stderr: exit 2 without another word. */
class Reported extends Error {}

function backendOption() {
  return new Option("--backend <name>", "override the recipe's backend").choices(BACKENDS);
}

/** A commander argument parser from a parser that throws an `Error` with a one-line message. */
function parser<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

/**
 * `text` as a number in [min, max] (above `min` when `openMin`), or an error saying `want`.
 */
function parseNumber(text: string, min: number, max: number, want: string, openMin = false) {
  const n = Number(text.trim());
  if (text.trim() === "" || !Number.isFinite(n) || n < min || n > max || (openMin && n === min)) {
    throw new Error(`expected ${want}, got '${text}'`);
  }
  return n;
}

/**
 * How a recipe is loaded: `GIFTWRAP_FETCH_TIMEOUT` (seconds) bounds fetching a recipe URL, where
 * the `env` permission lets it be read; a bad value is a usage error.
 */
function loadOptions(): LoadRecipeOptions {
  const name = "GIFTWRAP_FETCH_TIMEOUT";
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") return {};
  const text = Deno.env.get(name);
  if (text === undefined) return {};
  const seconds = Number(text);
  if (text.trim() === "" || !Number.isFinite(seconds) || seconds <= 0) {
    console.error(`giftwrap: ${name}: expected seconds > 0, got '${text}'`);
    throw new Reported();
  }
  return { timeoutMs: Math.min(seconds * 1000, 2 ** 31 - 1) };
}

/** Loads and compiles a recipe, printing every problem as one line on stderr. */
async function compileFile(
  specifier: string,
  options: CompileOptions,
): Promise<{ loaded: LoadedRecipe; plan: Plan }> {
  const loaded = await loadRecipe(specifier, loadOptions());
  const models = await resolvedModels(specifier, loaded);
  const result = safeCompile(loaded.input, { ...options, models });
  if (!result.ok) {
    for (const issue of result.issues) console.error(`${specifier}: ${formatIssue(issue)}`);
    throw new Reported();
  }
  // The files it names, hashed: the plan `run` records, so plan, validate and run agree.
  const plan = await withInputs(result.plan, loaded.url);
  if (loaded.planHash !== undefined && loaded.planHash !== planHash(plan)) {
    const change = inputChange(loaded.planInputs, plan.inputs);
    console.error(
      `${specifier}: warning: the plan file records hash ${loaded.planHash}, ` +
        `but its recipe compiles to ${planHash(plan)} here` +
        (change === null
          ? " (another giftwrap version?)"
          : `: ${describeChange(change, "the plan was written")}`),
    );
  }
  return { loaded, plan };
}

/**
 * What the recipe's Hugging Face model directory holds, read before compiling (the compiler does
 * no I/O); nothing for a recipe without one, which keeps `plan` and `validate` light.
 */
async function resolvedModels(
  specifier: string,
  loaded: LoadedRecipe,
): Promise<NonNullable<CompileOptions["models"]>> {
  const policy = (loaded.input as { policy?: { kind?: unknown } } | null)?.policy;
  if (policy?.kind !== "hfModel") return {};
  const { resolveModels } = await import("./runtime/resolve.ts");
  const resolved = await resolveModels(loaded.input, loaded.url);
  if (!resolved.ok) {
    for (const issue of resolved.issues) console.error(`${specifier}: ${formatIssue(issue)}`);
    throw new Reported();
  }
  return resolved.models;
}

function printWarnings(specifier: string, plan: Plan): void {
  for (const w of plan.warnings) console.error(`${specifier}: warning: ${formatIssue(w)}`);
}

/**
 * The caller's backend override, the backends present here for `auto` to choose from, and the
 * machine's memory for the memory check.
 */
function compileOptions(options: { backend?: Backend }): CompileOptions {
  const available = presentBackends();
  return {
    ...(options.backend === undefined ? {} : { backend: options.backend }),
    available,
    ...memoryOption(),
  };
}

/** The machine's memory as a compile option, when the `sys` permission allows reading it. */
function memoryOption(): Pick<CompileOptions, "machineMemory"> {
  const memory = machineMemory();
  return memory === undefined ? {} : { machineMemory: memory };
}

/** Writes `text` to `path` through a temporary file and a rename, so a crash leaves no half file. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const temporary = `${path}.${Deno.pid}.tmp`;
  try {
    await Deno.writeTextFile(temporary, text);
    await Deno.rename(temporary, path);
  } catch (e) {
    await Deno.remove(temporary).catch(() => {});
    const reason = e instanceof Deno.errors.NotFound
      ? "its directory does not exist"
      : e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : e instanceof Deno.errors.IsADirectory
      ? "it is a directory"
      : (e instanceof Error ? e.message.split("\n")[0]! : String(e)).replaceAll(temporary, path);
    console.error(`${path}: cannot write: ${reason}`);
    throw new Reported();
  }
}

/** The commands; an action that ends without throwing but must not exit 0 calls `fail(code)`. */
function program(fail: (code: number) => void) {
  const cli = new Command()
    .name("giftwrap")
    .description("On-policy RL fine-tuning of language models: GIFT, GRPO, DAPO, GSPO and more.")
    .exitOverride()
    // Commander puts "(Did you mean …?)" on a line of its own; keep one line per problem.
    .configureOutput({
      outputError: (text, write) =>
        write(text.replace(/\n\(Did you mean (.*)\?\)\n/, " (did you mean $1?)\n")),
    });

  cli.command("plan")
    .description("compile a recipe and print its plan")
    .argument("<recipe>", "a .ts or .json recipe, a plan file, or a URL")
    .option("--json", "print the plan as JSON (what to share)")
    .addOption(backendOption())
    .action(async (specifier, options) => {
      const { plan } = await compileFile(specifier, compileOptions(options));
      if (options.json) {
        console.log(JSON.stringify({ hash: planHash(plan), ...plan }, null, 2));
        printWarnings(specifier, plan);
      } else {
        console.log(formatPlan(plan).trimEnd());
      }
    });

  cli.command("validate")
    .description("check a recipe against the schema and every compiler rule, without running it")
    .argument("<recipe>", "a .ts or .json recipe, a plan file, or a URL")
    .addOption(
      new Option("--format <format>", "text, or json to print the recipe as JSON").choices(
        ["text", "json"] as const,
      ).default("text" as const),
    )
    .option("--strict", "treat warnings as errors")
    .action(async (specifier, options) => {
      const { loaded, plan } = await compileFile(specifier, memoryOption());
      printWarnings(specifier, plan);
      // What a run would meet before its first step: reward modules, data files, checkpoints.
      const { preflight } = await import("./runtime/run/preflight.ts");
      const problems = await preflight(plan, { baseUrl: loaded.url, recipe: specifier });
      for (const line of problems) console.error(line);
      if (problems.length > 0) throw new Reported();
      if (options.strict && plan.warnings.length > 0) throw new Reported();
      if (options.format === "json") {
        const validated = validateRecipe(loaded.input);
        if (validated.ok) console.log(JSON.stringify(validated.recipe, null, 2));
      } else {
        const warnings = plan.warnings.length;
        console.log(
          `${specifier}: ok · plan ${planHash(plan)} · ${warnings} warning${
            warnings === 1 ? "" : "s"
          }`,
        );
      }
    });

  cli.command("schema")
    .description("write the recipe's JSON Schema (draft 2020-12)")
    .option("--out <file>", "where to write it; - for stdout", "recipe.schema.json")
    .action(async (options) => {
      const text = JSON.stringify(recipeJsonSchema(), null, 2) + "\n";
      if (options.out === "-") {
        await Deno.stdout.write(new TextEncoder().encode(text));
        return;
      }
      await writeAtomically(options.out, text);
      console.log(`wrote ${options.out}`);
    });

  cli.command("run")
    .description("train: execute a recipe's plan")
    .argument("<recipe>", "a .ts or .json recipe, a plan file, or a URL")
    .addOption(backendOption())
    .option("--runs-dir <dir>", "where run directories go", "runs")
    .addOption(
      new Option("--resume <dir>", "continue a run from its last complete checkpoint")
        .conflicts("restart"),
    )
    .option(
      "--restart <dir>",
      "start a run over from step 0 in its directory, its earlier files moved to previous-<time>/",
    )
    .option(
      "--track <metrics>",
      "extra measurements, comma-separated: train-accuracy (the train–eval gap), kl-initial",
      parser(parseTrack),
    )
    .action(async (specifier, options) => {
      const { plan } = await compileFile(specifier, compileOptions(options));
      printWarnings(specifier, plan);
      // Loaded here, not at the top: plan, validate and schema never load TensorFlow.js.
      const runtime = await import("./runtime/mod.ts");
      // Bars on a terminal, a plain line per step otherwise (CI logs, pipes).
      const { barProgress } = await import("./runtime/run/progress_bar.ts");
      const progress = barProgress();
      // Ctrl-C (or SIGTERM) once: finish the step, write a checkpoint, exit 130. Twice: exit now,
      // even in the middle of a long step (the signals are taken off the thread that trains).
      const { stopOnSignals } = await import("./runtime/run/interrupt.ts");
      using stop = await stopOnSignals(() =>
        progress.log("stopping after this step to write a checkpoint (Ctrl-C again to quit now)")
      );
      const executeOptions = {
        progress,
        runsDir: options.runsDir,
        // Data paths and reward modules are relative to the recipe.
        baseUrl: new URL(specifier, new URL(`file://${Deno.cwd()}/`)),
        source: specifier,
        signal: stop.signal,
        ...(options.resume === undefined ? {} : { resume: options.resume }),
        ...(options.restart === undefined ? {} : { resume: options.restart, restart: true }),
        ...(options.track === undefined ? {} : { track: options.track }),
      };
      try {
        const result = await runtime.execute(plan, executeOptions);
        if (result.status === "interrupted") fail(EXIT.interrupted);
      } catch (e) {
        // Bad input exits 2; a run that stopped mid-way exits 1, its directory keeping every step
        // written so far; either says why in one line.
        const known: [new (...args: never[]) => Error, number][] = [
          [runtime.BackendUnavailableError, EXIT.invalid],
          [runtime.RunSetupError, EXIT.invalid],
          [runtime.TaskError, EXIT.invalid],
          [runtime.DataError, EXIT.invalid],
          [runtime.RewardError, EXIT.internal],
          [runtime.DynamicSamplingError, EXIT.internal],
          [runtime.NonFiniteUpdateError, EXIT.internal],
          [runtime.OutOfMemoryError, EXIT.internal],
          [runtime.RunWriteError, EXIT.internal],
        ];
        const code = known.find(([kind]) => e instanceof kind)?.[1];
        if (code !== undefined) {
          console.error(`giftwrap: ${(e as Error).message}`);
          fail(code);
          return;
        }
        throw e;
      }
    });

  cli.command("export")
    .description("write a directory that trains the recipe on another engine: verl, on Ray")
    .argument("<recipe>", "a .ts or .json recipe, a plan file, or a URL")
    .addOption(
      new Option("--to <engine>", "the engine").choices(["verl"] as const).makeOptionMandatory(),
    )
    .requiredOption("--out <dir>", "the directory to write (new, or an earlier export)")
    .action(async (specifier, options) => {
      // No memory check: the recipe runs on the cluster's GPUs, not on this machine. Otherwise
      // compiled as plan and serve-rewards compile it, so that the three agree on its hash.
      const { loaded, plan } = await compileFile(specifier, {
        ...compileOptions({}),
        checkMemory: false,
      });
      const { exportVerl, ExportError } = await import("./runtime/export/verl.ts");
      const { TaskError } = await import("./runtime/data/task.ts");
      const { DataError } = await import("./runtime/data/jsonl.ts");
      try {
        const result = await exportVerl(plan, {
          out: options.out,
          baseUrl: loaded.url,
          recipe: specifier,
        });
        for (const w of result.warnings) console.error(`${specifier}: warning: ${w}`);
        console.log(
          `wrote ${options.out}/ (${result.files.join(", ")}) for plan ${result.planHash}; ` +
            `start the reward server (deno task serve-rewards ${specifier}), then ` +
            `bash ${options.out}/run.sh --nodes N --gpus-per-node K`,
        );
      } catch (e) {
        if (e instanceof ExportError || e instanceof DataError || e instanceof TaskError) {
          console.error(`${specifier}: ${e.message}`);
          throw new Reported();
        }
        throw e;
      }
    });

  cli.command("serve-rewards")
    .description("serve a recipe's rewards over HTTP (POST /score, GET /health) until Ctrl-C")
    .argument("<recipe>", "a .ts or .json recipe, a plan file, or a URL")
    .option(
      "--port <port>",
      "the port to listen on (0: a free one)",
      parser((t) => parseNumber(t, 0, 65535, "a port from 0 to 65535")),
      8787,
    )
    .option("--host <host>", "the address to listen on (0.0.0.0: every interface)", "127.0.0.1")
    .option(
      "--concurrency <n>",
      "requests scored at once (more wait in a queue, then get 503)",
      parser((t) => parseNumber(t, 1, 1024, "an integer from 1 to 1024")),
      4,
    )
    .action(async (specifier, options) => {
      for (
        const [flag, value] of [["--port", options.port], [
          "--concurrency",
          options.concurrency,
        ]] as const
      ) {
        if (!Number.isInteger(value)) {
          console.error(`giftwrap: ${flag}: expected an integer, got '${value}'`);
          throw new Reported();
        }
      }
      // No memory check: serving rewards trains nothing (export compiles it the same way).
      const { loaded, plan } = await compileFile(specifier, {
        ...compileOptions({}),
        checkMemory: false,
      });
      printWarnings(specifier, plan);
      // Loaded here, not at the top: plan, validate and schema never load the runtime.
      const { serveRewards } = await import("./runtime/serve/rewards.ts");
      const { RunSetupError } = await import("./runtime/run/setup.ts");
      let server;
      try {
        server = await serveRewards(plan, {
          // fn modules and checkpoints are relative to the recipe.
          baseUrl: loaded.url,
          hostname: options.host,
          port: options.port,
          concurrency: options.concurrency,
        });
      } catch (e) {
        const known = e instanceof RunSetupError ||
          (e instanceof Error && e.message.startsWith("Cannot serve rewards"));
        if (!known) throw e;
        console.error(`giftwrap: ${(e as Error).message}`);
        fail(EXIT.invalid);
        return;
      }
      const n = plan.rewards.length;
      console.log(
        `serving ${n} reward source${n === 1 ? "" : "s"} of ${plan.name} (plan ${
          planHash(plan)
        }) at ${server.url}`,
      );
      // Ctrl-C (or SIGTERM): stop taking requests, finish those in progress, close the sources
      // (sandbox subprocesses end), exit 0. Twice: exit now.
      const signals = ["SIGINT", "SIGTERM"] as const;
      let stopping = false;
      const onSignal = () => {
        if (stopping) Deno.exit(EXIT.interrupted);
        stopping = true;
        console.error("serve-rewards: stopping (Ctrl-C again to quit now)");
        void server.close();
      };
      for (const name of signals) Deno.addSignalListener(name, onSignal);
      try {
        await server.finished;
      } finally {
        for (const name of signals) Deno.removeSignalListener(name, onSignal);
      }
    });

  cli.command("generate")
    .description("generate text from a model: try it before and after training (greedy by default)")
    .argument("<dir>", "a Hugging Face model directory, a checkpoint, or a run directory")
    .requiredOption("--prompt <text>", "the prompt (plain text, or the user's message with --chat)")
    .option("--chat", "render the prompt through the model's chat template")
    .option("--system <text>", "a system prompt for the chat template (with --chat)")
    .option(
      "--max-new-tokens <n>",
      "the most tokens to generate (default: 256)",
      parser((t) => parseCount(t, 1)),
    )
    .option(
      "--temperature <t>",
      "0 is greedy; above 0 samples (default: 0)",
      parser((t) => parseNumber(t, 0, Infinity, "a number >= 0")),
    )
    .option(
      "--top-p <p>",
      "sample from the smallest set of tokens with probability >= p (default: 1, off)",
      parser((t) => parseNumber(t, 0, 1, "a number in (0, 1]", true)),
    )
    .option(
      "--top-k <k>",
      "sample from the k most likely tokens (default: 0, off)",
      parser((t) => parseCount(t, 0)),
    )
    .option("--seed <n>", "the sampler's seed (default: 0)", parser((t) => parseCount(t, 0)))
    .option("--json", "print { promptIds, completionIds, text, stopped } as JSON")
    .action(async (dir, options) => {
      if (options.system !== undefined && !options.chat) {
        console.error("giftwrap: --system needs --chat: a system prompt goes through the template");
        throw new Reported();
      }
      // Loaded here, not at the top: plan, validate and schema never load TensorFlow.js.
      const { generate, GenerateError } = await import("./runtime/generate.ts");
      const { BackendUnavailableError } = await import("./runtime/engine/backend.ts");
      try {
        const out = await generate(dir, {
          prompt: options.prompt,
          ...(options.chat ? { chat: true } : {}),
          ...(options.system === undefined ? {} : { system: options.system }),
          ...(options.maxNewTokens === undefined ? {} : { maxNewTokens: options.maxNewTokens }),
          ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
          ...(options.topP === undefined ? {} : { topP: options.topP }),
          ...(options.topK === undefined ? {} : { topK: options.topK }),
          ...(options.seed === undefined ? {} : { seed: options.seed }),
        });
        console.log(options.json ? JSON.stringify(out) : out.text);
      } catch (e) {
        if (!(e instanceof GenerateError || e instanceof BackendUnavailableError)) throw e;
        console.error(`giftwrap: ${e.message}`);
        throw new Reported();
      }
    });

  cli.command("runs")
    .description("list the run directories: recipe, status, steps, accuracy, reward")
    .option("--runs-dir <dir>", "where run directories are", "runs")
    .option("--json", "print the list as JSON")
    .action(async (options) => {
      const { formatRuns, listRuns } = await import("./analysis/runs.ts");
      const runs = await listRuns(options.runsDir);
      if (options.json) console.log(JSON.stringify(runs, null, 2));
      else if (runs.length === 0) console.log(`no runs in ${options.runsDir}`);
      else console.log(formatRuns(runs));
    });

  cli.command("report")
    .description("write a run directory's report.html from its files")
    .argument("<dir>", "a run directory")
    .action(async (dir) => {
      const { readRunFiles, writeReport } = await import("./analysis/report/mod.ts");
      const files = await readRunFiles(dir).catch((e) => {
        console.error(`giftwrap: Cannot read run directory '${dir}': ${(e as Error).message}`);
        throw new Reported();
      });
      if (files.info === null && files.plan === null) {
        console.error(`giftwrap: Cannot report on '${dir}': it has no run.json or plan.json`);
        throw new Reported();
      }
      console.log(`wrote ${await writeReport(dir)}`);
    });

  cli.command("compare")
    .description(
      "train a recipe once per objective and seed, in parallel, and compare them: " +
        "compare/<name>-<time>/ with summary.json and report.html",
    )
    .argument("<recipe>", "a .ts or .json recipe, a plan file, or a URL")
    .addOption(
      new Option(
        "--objectives <list>",
        "comma-separated objectives, each with its preset's defaults; name@rollout (or @initial, @none) sets its reference",
      )
        .argParser(parser(parseObjectives))
        .default([...DEFAULT_OBJECTIVES], DEFAULT_OBJECTIVES.join(",")),
    )
    .option(
      "--seeds <n>",
      `seeds per objective, at most ${MAX_SEEDS}: the recipe's seed and the next`,
      parser((t) => parseCount(t, 1, MAX_SEEDS)),
      3,
    )
    .option(
      "--lr <list>",
      "tune the learning rate among these on seed + 1000 first (default: the recipe's lr)",
      parser(parseLrs),
    )
    .addOption(
      new Option("--jobs <n>", "runs at once (wasm uses one thread per run)")
        .argParser(parser((t) => parseCount(t, 1)))
        .default(navigator.hardwareConcurrency, "the number of CPUs"),
    )
    .option("--out <dir>", "the output directory (default: compare/<name>-<YYYYMMDD-HHMMSS>)")
    .option(
      "--target <accuracy>",
      "the accuracy for 'steps to target' (default: 0.9 × the best final accuracy)",
      parser(parseAccuracy),
    )
    .addOption(
      new Option("--track <metrics>", "what each run measures besides eval accuracy and KL")
        .argParser(parser(parseTrack))
        .default({ trainAccuracy: true, klInitial: true }, "train-accuracy,kl-initial; or none"),
    )
    .addOption(backendOption())
    .action(async (specifier, options) => {
      const loaded = await loadRecipe(specifier, loadOptions());
      const validated = validateRecipe(loaded.input);
      if (!validated.ok) {
        for (const issue of validated.issues) console.error(`${specifier}: ${formatIssue(issue)}`);
        throw new Reported();
      }
      const compare = await import("./analysis/compare/mod.ts");
      // The runs' recipes are written elsewhere: their relative paths start from this recipe.
      const base = compare.withAbsolutePaths(validated.recipe, loaded.url);
      const models = await resolvedModels(specifier, { ...loaded, input: base });
      const planned = compare.planComparison(base, {
        models,
        objectives: options.objectives,
        seeds: options.seeds,
        ...(options.lr === undefined ? {} : { lrs: options.lr }),
        ...(options.backend === undefined ? {} : { backend: options.backend }),
      });
      if (!planned.ok) {
        for (const line of planned.issues) console.error(`${specifier}: ${line}`);
        throw new Reported();
      }
      for (const line of planned.plan.warnings) console.error(`${specifier}: ${line}`);
      const run = await Deno.permissions.query({ name: "run", command: Deno.execPath() });
      if (run.state !== "granted") {
        console.error("giftwrap: compare starts each run as a subprocess: it needs --allow-run");
        throw new Reported();
      }
      // Ctrl-C (or SIGTERM) once: no run starts, the running ones stop after their step, the
      // finished ones are summarised, exit 130. Twice: exit now. (This thread only waits on the
      // runs, so a listener here always gets its turn.)
      const stop = new AbortController();
      const onSignal = () => {
        if (stop.signal.aborted) Deno.exit(EXIT.interrupted);
        stop.abort();
        console.log(
          "compare: interrupted; running runs stop after their step, then the finished ones " +
            "are summarised (Ctrl-C again to quit now)",
        );
      };
      const signals = ["SIGINT", "SIGTERM"] as const;
      for (const name of signals) Deno.addSignalListener(name, onSignal);
      try {
        const result = await compare.runComparison(planned.plan, {
          recipe: specifier,
          jobs: options.jobs,
          track: options.track,
          signal: stop.signal,
          ...(options.out === undefined ? {} : { out: options.out }),
          ...(options.target === undefined ? {} : { target: options.target }),
        });
        if (result.interrupted) fail(EXIT.interrupted);
        else if (result.failed > 0) fail(EXIT.internal);
      } catch (e) {
        if (!(e instanceof compare.CompareSetupError)) throw e;
        console.error(`giftwrap: ${e.message}`);
        fail(EXIT.invalid);
      } finally {
        for (const name of signals) Deno.removeSignalListener(name, onSignal);
      }
    });

  return cli;
}

/** Runs the command line on `args` and returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  let code: number = EXIT.ok;
  try {
    await program((c) => code = c).parseAsync([...args], { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.invalid;
    if (e instanceof Reported) return EXIT.invalid;
    if (e instanceof RecipeLoadError) {
      console.error(e.message);
      return EXIT.invalid;
    }
    const message = e instanceof Error ? e.message.split("\n")[0] : String(e);
    console.error(`giftwrap: internal error: ${message}`);
    if (Deno.env.get("GIFTWRAP_DEBUG") && e instanceof Error) console.error(e.stack);
    else console.error("giftwrap: set GIFTWRAP_DEBUG=1 to see where");
    return EXIT.internal;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
