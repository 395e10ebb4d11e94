/**
 * A recipe's rewards as an HTTP service: the reward sources a run scores with, served to another
 * trainer (verl's reward hook, `runtime/export/reward.py`, or a giftwrap recipe's `http()` source).
 *
 * The sources are built by the run's own code (`rewardSources()` of runtime/run/setup.ts:
 * verifiers, sandboxed `fn` modules in their subprocess, `http` endpoints, reward models) and a
 * request is scored by the run's own `scoreSources()`, so a sample's reward is the one a run
 * gives it: r = Σ_k w_k · score_k in float32, each source's `onError` applied.
 *
 * Protocol, the one `http()` sources speak (runtime/rl/rewards/http.ts), with more in the answer:
 *
 *   POST /score (or POST /)  {"samples": [{"prompt", "completion", "answer", "row"?, "tokens"?,
 *                             "truncated"?}, …]}
 *     200 {"scores": [r | null, …], "components": {<source>: [score, …]}, "skipped": [i, …],
 *          "errors": {<source>: {"count", "first"}}, "success": <source> | null}
 *
 *   - `prompt`, `completion` and `answer` are strings. `row` is the dataset row, an object or a
 *     JSON string of one (verl's Parquet stores it as a string); missing, it is `{}`. `tokens` is
 *     the completion's length in tokens with its end token; missing, it is counted with the plan's
 *     tokenizer (the completion's tokens, plus 1 for the end token unless truncated: a character
 *     tokenizer counts characters, a Hugging Face one encodes the text again, which may differ
 *     from the ids sampled by a token or two). `truncated` is false when missing.
 *   - `components` holds each source's unweighted scores, 0 where it could not score; `success`
 *     names the recipe's success reward among them (null without one).
 *   - onError, per source, as in a run: "zero" scores the sample 0 for that source; "skip-group"
 *     makes the sample's score `null` and lists its index in `skipped` (the server sees no groups:
 *     the client decides what a skipped sample means); "fail" answers the whole request
 *     422 {"error": "<one line: the source, the sample index, what went wrong>"} (422, not 500:
 *     the request is well formed but cannot be scored, and retrying it will not help; `http()`
 *     sources and reward.py retry 5xx).
 *   - Nothing else a run adds is applied: the trainer zeroes a skipped group's rewards and DAPO
 *     may mask truncated completions, both outside the reward. DAPO's overlong penalty is a
 *     reward source (`overlongPenalty`), so it is in the total, computed from `tokens`.
 *
 *   GET /health  200 {"ok": true, "plan": <planHash>, "rewards": [names], "inFlight": n,
 *                     "queued": m}
 *
 * At most `concurrency` requests are scored at once; up to `queue` more wait their turn; beyond
 * that a request is answered 503 with `Retry-After: 1`. A body over `maxBodyBytes` or with more
 * than `maxSamples` samples is answered 413; malformed JSON or a malformed body 400, with one line
 * naming the JSON path of the problem (`samples[3].completion: expected a string, got 12`). Every
 * error answer is `{"error": "<one line>"}`.
 *
 * @module
 */

import { readBody } from "../../dsl/_body.ts";
import { type Plan, planHash } from "../../dsl/plan.ts";
import { RewardError, scoreSources, type SourceScorer } from "../rl/rewards/mod.ts";
import type { BatchScorer, Sample } from "../rl/rewards/types.ts";
import { rewardSources } from "../run/setup.ts";

/** Options of `serveRewards()`. */
export interface ServeRewardsOptions {
  /** The recipe's location: `fn` modules, reward model checkpoints and tokenizers resolve from it. */
  baseUrl: string | URL;
  /** The address to listen on. @default {"127.0.0.1"} */
  hostname?: string;
  /** The port to listen on; 0 picks a free one (`RewardServer.url` says which). @default {8787} */
  port?: number;
  /** Requests scored at once. @default {4} */
  concurrency?: number;
  /** Requests waiting for their turn beyond `concurrency`; more are answered 503. @default {64} */
  queue?: number;
  /** Samples in one request; more are answered 413. @default {4096} */
  maxSamples?: number;
  /** Bytes of one request's body; more are answered 413. @default {67108864} (64 MiB) */
  maxBodyBytes?: number;
  /** Closes the server when aborted. */
  signal?: AbortSignal;
}

/** A running reward server. */
export interface RewardServer {
  /** Where to post samples: `http://<host>:<port>/score`. */
  url: string;
  /** Settles when the server has stopped and its reward sources are closed. */
  finished: Promise<void>;
  /** Stops listening, lets the requests in progress finish, closes the sources. */
  close(): Promise<void>;
}

/** The answer to a scored request. */
export interface ScoreResponse {
  /** Per sample: the weighted total, or null when a "skip-group" source could not score it. */
  scores: (number | null)[];
  /** By source name, per sample: its unweighted score, 0 where it could not score. */
  components: Record<string, number[]>;
  /** The indices of the samples whose score is null. */
  skipped: number[];
  /** By source name, for the sources that could not score some sample: how many, the first why. */
  errors: Record<string, { count: number; first: string }>;
  /**
   * The name of the success reward (accuracy, DAPO's dynamic sampling) among `components`, or
   * null when the recipe has none.
   */
  success: string | null;
}

/** An answer other than 200: its status and its one line. */
class Refusal extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

function oneLine(text: string, max = 300): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/** A value as a message shows it: JSON, shortened. */
function shown(value: unknown): string {
  return value === undefined ? "nothing" : oneLine(JSON.stringify(value) ?? String(value), 60);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A request's samples, checked; `count` counts a completion's tokens when `tokens` is missing. */
async function readSamples(
  body: unknown,
  maxSamples: number,
  count: (completion: string) => Promise<number>,
): Promise<Sample[]> {
  const bad = (path: string, want: string, got: unknown) =>
    new Refusal(400, `${path}: expected ${want}, got ${shown(got)}`);
  if (!isObject(body)) throw bad("body", "an object with a 'samples' array", body);
  const list = body.samples;
  if (!Array.isArray(list)) throw bad("samples", "an array", list);
  if (list.length > maxSamples) {
    throw new Refusal(413, `samples: expected at most ${maxSamples} samples, got ${list.length}`);
  }
  const samples: Sample[] = [];
  for (const [i, item] of list.entries()) {
    const at = `samples[${i}]`;
    if (!isObject(item)) throw bad(at, "an object", item);
    for (const key of ["prompt", "completion", "answer"] as const) {
      if (typeof item[key] !== "string") throw bad(`${at}.${key}`, "a string", item[key]);
    }
    let row: unknown = item.row ?? {};
    if (typeof row === "string") {
      try {
        row = JSON.parse(row);
      } catch (e) {
        throw new Refusal(
          400,
          `${at}.row: expected a JSON object, got malformed JSON (${
            oneLine((e as Error).message)
          })`,
        );
      }
    }
    if (!isObject(row)) throw bad(`${at}.row`, "an object or a JSON string of one", item.row);
    const truncated = item.truncated ?? false;
    if (typeof truncated !== "boolean") throw bad(`${at}.truncated`, "a boolean", truncated);
    const tokens = item.tokens;
    if (tokens !== undefined && !(Number.isInteger(tokens) && (tokens as number) >= 0)) {
      throw bad(`${at}.tokens`, "an integer >= 0", tokens);
    }
    const completion = item.completion as string;
    samples.push({
      prompt: item.prompt as string,
      completion,
      answer: item.answer as string,
      row,
      tokens: (tokens as number | undefined) ?? (await count(completion)) + (truncated ? 0 : 1),
      truncated,
    });
  }
  return samples;
}

/** What a source's scorer gave this request: its values, or what it threw. */
type Recorded = { values: readonly unknown[] } | { threw: unknown } | null;

/** `source` with a scorer that remembers what it gave, to name the sample a "fail" source failed. */
function recording(source: SourceScorer): { source: SourceScorer; recorded: () => Recorded } {
  let recorded: Recorded = null;
  const scorer: BatchScorer = {
    async score(samples) {
      try {
        const values = await source.scorer.score(samples);
        recorded = { values };
        return values;
      } catch (error) {
        recorded = { threw: error };
        throw error;
      }
    },
  };
  return { source: { ...source, scorer }, recorded: () => recorded };
}

/** The first sample a source could not score and why, as `scoreSources()` judges it. */
function firstFailure(recorded: Recorded): { index: number; why: string } {
  const message = (e: unknown) => oneLine(e instanceof Error ? e.message : String(e));
  if (recorded === null) return { index: 0, why: "the scorer gave nothing" };
  if ("threw" in recorded) return { index: 0, why: message(recorded.threw) };
  const index = recorded.values.findIndex((v) => !(typeof v === "number" && Number.isFinite(v)));
  const value = recorded.values[index];
  return index < 0 ? { index: 0, why: "the scorer returned the wrong number of scores" } : {
    index,
    why: value instanceof Error ? message(value) : `score ${String(value)} is not a finite number`,
  };
}

/**
 * Scores `samples` as a run scores a batch (`scoreSources()`, each sample a group of its own).
 * @throws {Refusal} 422 naming the source, the sample and the problem, for a "fail" source.
 */
async function scoreRequest(
  sources: readonly SourceScorer[],
  samples: readonly Sample[],
  success: string | null,
): Promise<ScoreResponse> {
  const recorders = sources.map(recording);
  let scores;
  try {
    scores = await scoreSources(recorders.map((r) => r.source), samples, 1);
  } catch (e) {
    if (!(e instanceof RewardError)) throw e;
    const at = sources.findIndex((s) => s.name === e.source);
    const { index, why } = firstFailure(recorders[at]!.recorded());
    throw new Refusal(
      422,
      `reward '${e.source}' failed on sample ${index} (${e.failed} of ${e.samples} samples ` +
        `failed; its onError is "fail"): ${why}`,
    );
  }
  const skipped = scores.skippedGroups.flatMap((skip, i) => skip ? [i] : []);
  return {
    scores: Array.from(scores.total, (r, i) => scores.skippedGroups[i] ? null : r),
    components: Object.fromEntries(
      Object.entries(scores.bySource).map(([name, values]) => [name, Array.from(values)]),
    ),
    skipped,
    errors: scores.errors,
    success,
  };
}

/** A bounded number of holders at once, a bounded line of waiters, refusal beyond. */
class Gate {
  active = 0;
  readonly waiting: (() => void)[] = [];
  constructor(readonly limit: number, readonly queue: number) {}

  /** Resolves when it is the caller's turn; null when the line is full. */
  enter(): Promise<void> | null {
    if (this.active < this.limit) {
      this.active++;
      return Promise.resolve();
    }
    if (this.waiting.length >= this.queue) return null;
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Hands the turn to the next waiter, or frees it. */
  leave(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** Counts a completion's tokens with the plan's tokenizer, loaded when first needed. */
function tokenCounter(plan: Plan, baseUrl: string): (completion: string) => Promise<number> {
  if (plan.tokenizer.kind === "char") {
    // One id per character.
    return (completion) => Promise.resolve([...completion].length);
  }
  let tokenizer: Promise<{ encode(text: string): number[] }> | null = null;
  return async (completion) => {
    tokenizer ??= (async () => {
      const model = plan.model as { kind: string; path?: string };
      if (model.kind !== "hfModel" || model.path === undefined) {
        throw new Error("the plan's tokenizer has no model directory to load it from");
      }
      const { modelDir } = await import("../resolve.ts");
      const { loadHfTokenizer } = await import("../engine/model/hf_tokenizer.ts");
      return loadHfTokenizer(modelDir(model.path, baseUrl));
    })();
    const loaded = await tokenizer.catch((e: Error) => {
      throw new Refusal(
        500,
        `samples: 'tokens' is missing and the plan's tokenizer cannot count it: ${
          oneLine(e.message)
        }`,
      );
    });
    return loaded.encode(completion).length;
  };
}

/**
 * Serves the plan's reward sources over HTTP (see the module doc for the protocol) until closed.
 * The sources are built as a run builds them; one that cannot load rejects with the run's
 * one-line `RunSetupError` (the others closed), and a port in use rejects with one line too.
 *
 * @example
 * ```ts
 * const server = await serveRewards(plan, { baseUrl: "file:///work/recipes/", port: 0 });
 * const response = await fetch(server.url, {
 *   method: "POST",
 *   body: JSON.stringify({ samples: [{ prompt: "1+2=", completion: "3", answer: "3", row: {} }] }),
 * });
 * (await response.json()).scores; // [1]
 * await server.close();
 * ```
 */
export async function serveRewards(
  plan: Plan,
  options: ServeRewardsOptions,
): Promise<RewardServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 8787;
  const concurrency = options.concurrency ?? 4;
  const queue = options.queue ?? 64;
  const maxSamples = options.maxSamples ?? 4096;
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 2 ** 20;
  const checks: [string, number, number][] = [
    ["port", port, 0],
    ["concurrency", concurrency, 1],
    ["queue", queue, 0],
    ["maxSamples", maxSamples, 1],
    ["maxBodyBytes", maxBodyBytes, 1],
  ];
  for (const [name, value, min] of checks) {
    if (!Number.isInteger(value) || value < min || (name === "port" && value > 65535)) {
      const range = name === "port" ? "an integer from 0 to 65535" : `an integer >= ${min}`;
      throw new Error(
        `Cannot serve rewards as '${name}' must be ${range}: current value is ${value}`,
      );
    }
  }
  const baseUrl = String(options.baseUrl);
  const hash = planHash(plan);
  const success = plan.rewards.find((r) => r.success)?.name ?? null;

  // 1) the sources, as a run builds them (a reward model's backend only when one asks for it)
  const sources = await rewardSources(plan, baseUrl, async () => {
    const { useBackend } = await import("../engine/backend.ts");
    return (await useBackend(plan.backend.name)).kernels;
  });
  const names = sources.map((s) => s.name);
  const count = tokenCounter(plan, baseUrl);
  const gate = new Gate(concurrency, queue);
  let closing: Promise<void> | null = null;
  let sourcesClosed: Promise<void> | null = null;
  const closeSources = () =>
    sourcesClosed ??= Promise.all(sources.map((s) => s.scorer.close?.())).then(() => {});

  // 2) a request: read and check it, wait for a turn, score
  async function score(request: Request): Promise<Response> {
    const declared = Number(request.headers.get("content-length") ?? NaN);
    if (declared > maxBodyBytes) {
      await request.body?.cancel();
      throw new Refusal(413, `body: expected at most ${maxBodyBytes} bytes, got ${declared}`);
    }
    const text = await readBody(new Response(request.body), maxBodyBytes, false);
    if (text === null) throw new Refusal(413, `body: expected at most ${maxBodyBytes} bytes`);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (e) {
      throw new Refusal(400, `body: malformed JSON (${oneLine((e as Error).message)})`);
    }
    const samples = await readSamples(body, maxSamples, count);
    const turn = gate.enter();
    if (turn === null) {
      throw new Refusal(
        503,
        `busy: ${gate.active} requests scoring and ${gate.waiting.length} waiting ` +
          `(concurrency ${concurrency}, queue ${queue}); retry later`,
        { "retry-after": "1" },
      );
    }
    await turn;
    try {
      return json(200, await scoreRequest(sources, samples, success));
    } finally {
      gate.leave();
    }
  }

  async function handle(request: Request): Promise<Response> {
    const { pathname } = new URL(request.url);
    try {
      if (pathname === "/health") {
        if (request.method !== "GET") {
          throw new Refusal(405, `${request.method} /health: expected GET`, { allow: "GET" });
        }
        return json(200, {
          ok: true,
          plan: hash,
          rewards: names,
          inFlight: gate.active,
          queued: gate.waiting.length,
        });
      }
      if (pathname === "/score" || pathname === "/") {
        if (request.method !== "POST") {
          throw new Refusal(405, `${request.method} ${pathname}: expected POST`, { allow: "POST" });
        }
        return await score(request);
      }
      throw new Refusal(404, `${pathname}: not found (POST /score, GET /health)`);
    } catch (e) {
      if (e instanceof Refusal) return json(e.status, { error: e.message }, e.headers);
      const why = oneLine(e instanceof Error ? e.message : String(e));
      return json(500, { error: `internal error: ${why}` });
    }
  }

  // 3) listen
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname, port, onListen() {} }, handle);
  } catch (e) {
    await closeSources();
    const why = e instanceof Deno.errors.AddrInUse
      ? "the address is in use"
      : oneLine(e instanceof Error ? e.message : String(e));
    throw new Error(`Cannot serve rewards on ${hostname}:${port}: ${why}`);
  }
  const address = server.addr;
  const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
  const finished = server.finished.then(closeSources);
  function close(): Promise<void> {
    closing ??= server.shutdown().then(() => finished);
    return closing;
  }
  if (options.signal) {
    if (options.signal.aborted) await close();
    else options.signal.addEventListener("abort", () => void close(), { once: true });
  }
  return { url: `http://${host}:${address.port}/score`, finished, close };
}
