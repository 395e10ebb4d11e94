/**
 * The exported `run.sh`: `python3 -m verl.trainer.main_ppo` with the plan's overrides, one per
 * line under a comment naming the recipe field it comes from. Nodes, GPUs per node, the rollout
 * engine and its tensor parallelism, and the model's (and adapter's) path on the cluster are its
 * arguments; anything after `--` is passed to verl as further overrides. With `RAY_ADDRESS` set
 * it submits a Ray job whose working directory is the export (uploaded to every node, so the
 * plugin and the reward hook import there); without it, verl starts Ray on this machine.
 *
 * Before launching, it checks the arithmetic verl asserts later (rows per step over the GPUs,
 * whole groups in each micro-batch) and asks the reward server's `/health` whether it is up and
 * serving this plan, each failure one line and exit 2.
 *
 * @module
 */

import { hydraText, type Override, VERL_COMMIT } from "./verl_config.ts";

/** What `run.sh` needs besides the overrides. */
export interface RunScriptOptions {
  /** The recipe's name and plan hash, for the header and the reward server check. */
  name: string;
  planHash: string;
  /** The model directory `--model` defaults to. */
  modelPath: string;
  /** The PEFT adapter `--adapter` defaults to, when the recipe starts from one. */
  adapterPath: string | null;
  /** Rows of one optimiser step (mini-batch prompts × group size). */
  miniBatchRows: number;
  /** Rows of one micro-batch on one GPU, whole groups. */
  microBatchRows: number;
  /** Rows of one group. */
  groupSize: number;
  /** The recipe as the user names it, for the reward server command in the header. */
  recipe: string;
}

/** `text` as one bash word in single quotes. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** One override as a bash word: `$DATA` stays a variable, everything else is literal. */
function word(override: Override): string {
  const text = `${override.key}=${hydraText(override.value)}`;
  if (!text.includes("$DATA")) return shellQuote(text);
  const [before, ...rest] = text.split("$DATA");
  // Double quotes, so that $DATA expands; nothing else may.
  const escape = (s: string) => s.replace(/["\\$`]/g, (c) => `\\${c}`);
  return `"${escape(before!)}${rest.map((part) => `$DATA${escape(part)}`).join("")}"`;
}

/**
 * The text of `run.sh` for `overrides`.
 *
 * @example
 * ```ts
 * const text = runScript(overrides, {
 *   name: "stories-gift", planHash: planHash(plan), modelPath: "/models/stories260K",
 *   adapterPath: null, miniBatchRows: 32, microBatchRows: 8, groupSize: 8,
 *   recipe: "recipes/stories_gift.ts",
 * });
 * ```
 */
export function runScript(overrides: readonly Override[], options: RunScriptOptions): string {
  const lines: string[] = [];
  let from = "";
  for (const override of overrides) {
    if (override.from !== from) {
      lines.push(`  # ${override.from}`);
      from = override.from;
    }
    lines.push(`  ${word(override)}`);
  }
  const adapter = options.adapterPath === null ? "" : options.adapterPath;
  return `#!/usr/bin/env bash
# verl run of the giftwrap recipe '${options.name}' (plan ${options.planHash}), for verl ${VERL_COMMIT}.
# Every override below is preceded by the recipe field it comes from.
#
#   bash run.sh [--nodes N] [--gpus-per-node K] [--rollout vllm|sglang] [--rollout-tp T]
#               [--model PATH] [--adapter PATH] [-- HYDRA_OVERRIDE ...]
#
# The rewards are giftwrap's: start its reward server where every node can reach it, first:
#   deno task serve-rewards ${options.recipe} --host 0.0.0.0 --port 8787
#   export GIFTWRAP_REWARD_URL=http://<that host>:8787/score
# With RAY_ADDRESS set (a running Ray cluster), the job is submitted there, this directory its
# working_dir; without it, verl starts Ray on this machine. GIFTWRAP_SKIP_REWARD_CHECK=1 skips the
# reward server check.
set -euo pipefail

die() { echo "run.sh: $*" >&2; exit 2; }

NODES=1
GPUS_PER_NODE=8
ROLLOUT=vllm
ROLLOUT_TP=1
MODEL=${shellQuote(options.modelPath)}
ADAPTER=${shellQuote(adapter)}
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes | --gpus-per-node | --rollout | --rollout-tp | --model | --adapter)
      [ $# -ge 2 ] || die "$1: expected a value"
      case "$1" in
        --nodes) NODES=$2 ;;
        --gpus-per-node) GPUS_PER_NODE=$2 ;;
        --rollout) ROLLOUT=$2 ;;
        --rollout-tp) ROLLOUT_TP=$2 ;;
        --model) MODEL=$2 ;;
        --adapter) ADAPTER=$2 ;;
      esac
      shift 2 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \\{0,1\\}//'; exit 0 ;;
    --) shift; break ;;
    *) die "unknown argument '$1' (verl overrides go after --)" ;;
  esac
done
for pair in "--nodes=$NODES" "--gpus-per-node=$GPUS_PER_NODE" "--rollout-tp=$ROLLOUT_TP"; do
  [[ \${pair#*=} =~ ^[1-9][0-9]*$ ]] || die "\${pair%%=*}: expected a positive integer, got '\${pair#*=}'"
done
case "$ROLLOUT" in vllm | sglang) ;; *) die "--rollout: expected vllm or sglang, got '$ROLLOUT'" ;; esac

# verl splits each optimiser step's rows over the GPUs, then into micro-batches of whole groups.
WORLD=$((NODES * GPUS_PER_NODE))
MINI_ROWS=${options.miniBatchRows}
MICRO_ROWS=${options.microBatchRows}
((MINI_ROWS % WORLD == 0)) ||
  die "--nodes × --gpus-per-node = $WORLD GPUs must divide the $MINI_ROWS rows of an optimiser step"
(((MINI_ROWS / WORLD) % MICRO_ROWS == 0)) ||
  die "each GPU's $((MINI_ROWS / WORLD)) rows must be whole micro-batches of $MICRO_ROWS rows (groups of ${options.groupSize}); use fewer GPUs"
((GPUS_PER_NODE % ROLLOUT_TP == 0)) ||
  die "--rollout-tp $ROLLOUT_TP must divide --gpus-per-node $GPUS_PER_NODE"

HERE=$(cd "$(dirname "\${BASH_SOURCE[0]}")" && pwd)
REWARD_URL=\${GIFTWRAP_REWARD_URL:-http://127.0.0.1:8787/score}
if [ -n "\${RAY_ADDRESS:-}" ]; then DATA=.; else DATA=$HERE; fi

if [ "\${GIFTWRAP_SKIP_REWARD_CHECK:-}" != 1 ]; then
  python3 - "$REWARD_URL" ${options.planHash} <<'PY' || die "the reward server at $REWARD_URL does not answer: start it (see the top of run.sh) or set GIFTWRAP_REWARD_URL"
import json, sys, urllib.request
url, plan = sys.argv[1], sys.argv[2]
base = url[: -len("/score")] if url.endswith("/score") else url.rstrip("/")
try:
    with urllib.request.urlopen(base + "/health", timeout=10) as response:
        health = json.load(response)
except Exception:
    sys.exit(1)
if health.get("plan") != plan:
    print(f"run.sh: warning: the reward server serves plan {health.get('plan')}, this export is plan {plan}", file=sys.stderr)
PY
fi

ARGS=(
${lines.join("\n")}
  # run.sh's arguments
  "trainer.nnodes=$NODES"
  "trainer.n_gpus_per_node=$GPUS_PER_NODE"
  "actor_rollout_ref.rollout.name=$ROLLOUT"
  "actor_rollout_ref.rollout.tensor_model_parallel_size=$ROLLOUT_TP"
  "actor_rollout_ref.model.path='$MODEL'"
)
if [ -n "$ADAPTER" ]; then ARGS+=("actor_rollout_ref.model.lora_adapter_path='$ADAPTER'"); fi

if [ -n "\${RAY_ADDRESS:-}" ]; then
  case "$REWARD_URL" in
    *://127.* | *://localhost* | *://\\[::1\\]*)
      echo "run.sh: warning: GIFTWRAP_REWARD_URL is $REWARD_URL, which the cluster's nodes reach only if the server runs on each of them" >&2 ;;
  esac
  # Ray joins the entrypoint's words with spaces for a shell: quote each one.
  ENTRY=()
  for arg in python3 -m verl.trainer.main_ppo "\${ARGS[@]}" "$@"; do ENTRY+=("$(printf '%q' "$arg")"); done
  exec ray job submit --address "$RAY_ADDRESS" --working-dir "$HERE" \\
    --runtime-env-json "{\\"env_vars\\": {\\"GIFTWRAP_REWARD_URL\\": \\"$REWARD_URL\\", \\"VERL_USE_EXTERNAL_MODULES\\": \\"giftwrap_verl\\"}}" \\
    -- "\${ENTRY[@]}"
fi
cd "$HERE"
# Every process that imports verl imports the plugin too: verl reads VERL_USE_EXTERNAL_MODULES.
export PYTHONPATH="$HERE\${PYTHONPATH:+:$PYTHONPATH}" GIFTWRAP_REWARD_URL="$REWARD_URL"
export VERL_USE_EXTERNAL_MODULES=giftwrap_verl
exec python3 -m verl.trainer.main_ppo "\${ARGS[@]}" "$@"
`;
}
