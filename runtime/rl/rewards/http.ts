/**
 * A remote scorer: samples go to an HTTP endpoint in batched JSON POSTs and scores come back.
 *
 * Protocol: `POST <url>` with `content-type: application/json` and the body
 * `{ "samples": [{ "prompt", "completion", "answer", "row" }, …] }`, at most `batchSize` samples
 * per request; the response is `{ "scores": [number, …] }` (or the bare array), one score per
 * sample, in order. At most `concurrency` requests are in flight. Each attempt is aborted after
 * `timeoutMs`; network errors, timeouts, 5xx and 429 are retried `retries` times after
 * `backoffMs · 2^k`; other 4xx are not. A chunk that fails gives an Error for each of its samples
 * (the other chunks still score); a score that is not a finite number gives an Error for its
 * sample only. The scorer never throws on the endpoint's account: `onError` decides.
 *
 * @module
 */

import type { BatchScorer, Sample } from "./types.ts";

/** Options of `httpScorer()`. */
export interface HttpScorerOptions {
  /** The endpoint, `http://` or `https://`. */
  url: string;
  /** Per attempt, in milliseconds. @default {30000} */
  timeoutMs?: number;
  /** Attempts after the first one, for network errors, timeouts, 5xx and 429. @default {2} */
  retries?: number;
  /** Samples per request. @default {64} */
  batchSize?: number;
  /** Requests in flight at once. @default {4} */
  concurrency?: number;
  /** The first retry waits this long, the k-th `backoffMs · 2^k`. @default {100} */
  backoffMs?: number;
}

/** What one request gave: a value per sample of its chunk, or one message for all of them. */
type ChunkResult = (number | Error)[] | string;

/** The outcome of one attempt: done, or worth another try (with what went wrong). */
type Attempt =
  | { done: true; result: ChunkResult }
  | { done: false; status: number | null; problem: string };

function oneLine(text: string, max = 200): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

function describe(value: unknown): string {
  return typeof value === "number" ? String(value) : oneLine(JSON.stringify(value) ?? "undefined");
}

/** The scores in a response body, checked against the chunk's size. */
function readScores(url: string, body: string, expected: number): ChunkResult {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return `${url}: malformed JSON in the response`;
  }
  const scores = Array.isArray(json) ? json : (json as { scores?: unknown } | null)?.scores;
  if (!Array.isArray(scores)) {
    return `${url}: the response has no 'scores' array`;
  }
  if (scores.length !== expected) {
    return `${url}: ${scores.length} scores for ${expected} samples`;
  }
  return scores.map((value, i) =>
    typeof value === "number" && Number.isFinite(value)
      ? value
      : new Error(`${url}: score ${i} is not a finite number (${describe(value)})`)
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function attempt(
  url: string,
  body: string,
  timeoutMs: number,
  expected: number,
): Promise<Attempt> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const timedOut = error instanceof DOMException && error.name === "TimeoutError";
    const problem = timedOut ? "timeout" : oneLine(String((error as Error)?.message ?? error));
    return { done: false, status: null, problem };
  }
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    const timedOut = error instanceof DOMException && error.name === "TimeoutError";
    const problem = timedOut ? "timeout" : oneLine(String((error as Error)?.message ?? error));
    return { done: false, status: null, problem };
  }
  const status = response.status;
  if (response.ok) return { done: true, result: readScores(url, text, expected) };
  const detail = text.trim() === "" ? "" : `: ${oneLine(text)}`;
  if (status >= 500 || status === 429) {
    return { done: false, status, problem: detail };
  }
  return { done: true, result: `${url}: status ${status}${detail}` };
}

/** Posts one chunk, retrying what is worth retrying. */
async function postChunk(
  url: string,
  samples: readonly Sample[],
  options: Required<Omit<HttpScorerOptions, "url">>,
): Promise<(number | Error)[]> {
  const body = JSON.stringify({
    samples: samples.map(({ prompt, completion, answer, row }) => ({
      prompt,
      completion,
      answer,
      row,
    })),
  });
  const attempts = options.retries + 1;
  let last: Extract<Attempt, { done: false }> | null = null;
  for (let k = 0; k < attempts; k++) {
    if (k > 0) await sleep(options.backoffMs * 2 ** (k - 1));
    const outcome: Attempt = await attempt(url, body, options.timeoutMs, samples.length);
    if (outcome.done) {
      const { result } = outcome;
      return typeof result === "string" ? samples.map(() => new Error(result)) : result;
    }
    last = outcome;
  }
  const tries = `${attempts} attempt${attempts === 1 ? "" : "s"}`;
  const message = last!.status !== null
    ? `${url}: status ${last!.status} after ${tries}${last!.problem}`
    : last!.problem === "timeout"
    ? `${url}: no response within ${options.timeoutMs} ms (${tries})`
    : `${url}: network error after ${tries}: ${last!.problem}`;
  return samples.map(() => new Error(message));
}

/**
 * A batch scorer that posts samples to `url` in chunks of `batchSize`, `concurrency` at a time.
 *
 * @example
 * ```ts
 * const scorer = httpScorer({ url: "http://127.0.0.1:8123/score", timeoutMs: 5000 });
 * const scores = await scorer.score(samples); // (number | Error)[]
 * ```
 */
export function httpScorer(options: HttpScorerOptions): BatchScorer {
  const url = options.url;
  const resolved = {
    timeoutMs: options.timeoutMs ?? 30_000,
    retries: options.retries ?? 2,
    batchSize: options.batchSize ?? 64,
    concurrency: options.concurrency ?? 4,
    backoffMs: options.backoffMs ?? 100,
  };
  if (!/^https?:\/\//.test(url)) {
    throw new Error(`Cannot score with '${url}' as the url must start with http:// or https://`);
  }
  for (const key of ["timeoutMs", "batchSize", "concurrency"] as const) {
    if (!Number.isInteger(resolved[key]) || resolved[key] < 1) {
      throw new Error(`Cannot score with ${url} as '${key}' must be an integer >= 1`);
    }
  }
  if (!Number.isInteger(resolved.retries) || resolved.retries < 0) {
    throw new Error(`Cannot score with ${url} as 'retries' must be an integer >= 0`);
  }
  return {
    async score(samples) {
      const out: (number | Error)[] = new Array(samples.length);
      let next = 0; // the start of the next chunk to post
      async function lane(): Promise<void> {
        while (next < samples.length) {
          const start = next;
          next += resolved.batchSize;
          const chunk = samples.slice(start, start + resolved.batchSize);
          const scores = await postChunk(url, chunk, resolved);
          scores.forEach((score, i) => out[start + i] = score);
        }
      }
      const lanes = Math.min(resolved.concurrency, Math.ceil(samples.length / resolved.batchSize));
      await Promise.all(Array.from({ length: lanes }, lane));
      return out;
    },
  };
}
