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
 * The endpoint is not trusted with the trainer's resources. A redirect is an error naming where
 * it pointed (a 307 would re-post every sample there, and the run's network permission reaches
 * any host); with `followRedirects`, 307 and 308 on the endpoint's own origin are followed, at
 * most 5 in a row, and nothing else. A response is read as it arrives, at most
 * `maxResponseBytes` of it: a declared `Content-Length` over the limit is refused before the body
 * is read, and a body that grows past it is cancelled at once. Neither is retried.
 *
 * @module
 */

import { readBody } from "../../../dsl/_body.ts";
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
  /** The most bytes of a response read; a longer one is an error. @default {16777216} (16 MiB) */
  maxResponseBytes?: number;
  /** Follow 307 and 308 redirects to the endpoint's own origin (never another one). @default {false} */
  followRedirects?: boolean;
}

/** Redirects followed in a row, with `followRedirects`, before giving up. */
const MAX_REDIRECTS = 5;

/** How much of an error response's body is read, to quote its start. */
const ERROR_TEXT_BYTES = 4096;

/** The options with their defaults. */
type Resolved = Required<Omit<HttpScorerOptions, "url">>;

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

/** Why an attempt failed before a response came: a timeout, or the network error's first line. */
function failure(error: unknown): string {
  const timedOut = error instanceof DOMException && error.name === "TimeoutError";
  return timedOut ? "timeout" : oneLine(String((error as Error)?.message ?? error));
}

/** Posts `body` to `url` without following redirects, or following those `followRedirects` allows. */
async function post(
  url: string,
  body: string,
  signal: AbortSignal,
  options: Resolved,
): Promise<Response | string> {
  let target = url;
  for (let hops = 0;; hops++) {
    const response = await fetch(target, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      redirect: "manual",
      signal,
    });
    if (response.status < 300 || response.status >= 400) return response;
    await response.body?.cancel();
    const header = response.headers.get("location");
    const status = response.status;
    let next: URL | null = null;
    try {
      next = header === null ? null : new URL(header, target);
    } catch {
      // an unparsable Location is reported as it is
    }
    // Quoted on one line, and shortened: the Location is the endpoint's to choose.
    const where = next !== null
      ? oneLine(next.href)
      : header === null
      ? "nowhere (no Location)"
      : `'${oneLine(header)}'`;
    if (!options.followRedirects) {
      return `${url}: redirected (status ${status}) to ${where}, which is not followed ` +
        "(followRedirects is false)";
    }
    if (next === null || next.origin !== new URL(url).origin) {
      return `${url}: redirected (status ${status}) to ${where}, another origin, which is never ` +
        "followed";
    }
    if (status !== 307 && status !== 308) {
      return `${url}: redirected (status ${status}) to ${where}; only 307 and 308 keep the POST, ` +
        "so only they are followed";
    }
    if (hops === MAX_REDIRECTS) {
      return `${url}: more than ${MAX_REDIRECTS} redirects in a row (the last to ${where})`;
    }
    target = next.href;
  }
}

async function attempt(
  url: string,
  body: string,
  expected: number,
  options: Resolved,
): Promise<Attempt> {
  const signal = AbortSignal.timeout(options.timeoutMs);
  let response: Response | string;
  try {
    response = await post(url, body, signal, options);
  } catch (error) {
    return { done: false, status: null, problem: failure(error) };
  }
  if (typeof response === "string") return { done: true, result: response };
  const status = response.status;
  const limit = options.maxResponseBytes;
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (response.ok && declared > limit) {
    await response.body?.cancel();
    return {
      done: true,
      result: `${url}: the response declares ${declared} bytes, over maxResponseBytes ` +
        `(${limit} bytes)`,
    };
  }
  let text: string | null;
  try {
    // An error's body is only quoted: its start is enough.
    text = response.ok
      ? await readBody(response, limit, false)
      : await readBody(response, Math.min(limit, ERROR_TEXT_BYTES), true);
  } catch (error) {
    return { done: false, status: null, problem: failure(error) };
  }
  if (text === null) {
    return {
      done: true,
      result: `${url}: the response is over maxResponseBytes (${limit} bytes); stopped reading it`,
    };
  }
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
  options: Resolved,
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
    const outcome: Attempt = await attempt(url, body, samples.length, options);
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
  const resolved: Resolved = {
    timeoutMs: options.timeoutMs ?? 30_000,
    retries: options.retries ?? 2,
    batchSize: options.batchSize ?? 64,
    concurrency: options.concurrency ?? 4,
    backoffMs: options.backoffMs ?? 100,
    maxResponseBytes: options.maxResponseBytes ?? 16_777_216,
    followRedirects: options.followRedirects ?? false,
  };
  if (!/^https?:\/\//.test(url)) {
    throw new Error(`Cannot score with '${url}' as the url must start with http:// or https://`);
  }
  for (const key of ["timeoutMs", "batchSize", "concurrency", "maxResponseBytes"] as const) {
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
