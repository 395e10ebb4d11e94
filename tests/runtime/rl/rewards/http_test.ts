import assert from "node:assert/strict";
import { httpScorer } from "../../../../runtime/rl/rewards/http.ts";
import type { Sample } from "../../../../runtime/rl/rewards/types.ts";

function samples(n: number): Sample[] {
  return Array.from({ length: n }, (_, i) => ({
    prompt: `p${i}`,
    completion: "x".repeat(i),
    answer: String(i),
    row: { id: i },
    tokens: i + 1,
    truncated: false,
  }));
}

/** Resolves after `ms`, or at once when `signal` aborts; leaves no timer behind. */
function wait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

type Body = { samples: { prompt: string; completion: string; answer: string; row: unknown }[] };

/** A scoring server on a free port; disposing it ends slow handlers and shuts it down. */
function serve(
  handler: (body: Body, n: number, stop: AbortSignal) => Response | Promise<Response>,
) {
  const stop = new AbortController();
  let requests = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => handler(await request.json() as Body, requests++, stop.signal),
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/score`,
    get requests() {
      return requests;
    },
    async [Symbol.asyncDispose]() {
      stop.abort();
      await server.shutdown();
    },
  };
}

/** Scores are completion lengths. */
function lengths(body: Body): number[] {
  return body.samples.map((s) => s.completion.length);
}

function messages(scores: (number | Error)[]): (number | string)[] {
  return scores.map((s) => s instanceof Error ? s.message : s);
}

Deno.test("httpScorer() posts chunks of batchSize, at most concurrency in flight", async () => {
  let inFlight = 0;
  let most = 0;
  const sizes: number[] = [];
  let first: Body["samples"][number] | undefined;
  await using server = serve(async (body, _n, stop) => {
    inFlight++;
    most = Math.max(most, inFlight);
    sizes.push(body.samples.length);
    first ??= body.samples.find((s) => s.prompt === "p0");
    await wait(30, stop);
    inFlight--;
    return Response.json({ scores: lengths(body) });
  });
  const scorer = httpScorer({
    url: server.url,
    timeoutMs: 5000,
    retries: 0,
    batchSize: 3,
    concurrency: 2,
  });
  const scores = await scorer.score(samples(10));
  assert.deepEqual(scores, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(sizes.toSorted(), [1, 3, 3, 3]);
  assert.equal(most, 2);
  assert.deepEqual(first, { prompt: "p0", completion: "", answer: "0", row: { id: 0 } });
});

Deno.test("httpScorer() accepts a bare array of scores", async () => {
  await using server = serve((body) => Response.json(lengths(body)));
  const scores = await httpScorer({ url: server.url }).score(samples(3));
  assert.deepEqual(scores, [0, 1, 2]);
});

Deno.test("httpScorer() gives an Error per sample when every attempt times out", async () => {
  await using server = serve(async (body, _n, stop) => {
    await wait(2000, stop);
    return Response.json(lengths(body));
  });
  const scorer = httpScorer({ url: server.url, timeoutMs: 100, retries: 1, backoffMs: 5 });
  const scores = await scorer.score(samples(2));
  const message = `${server.url}: no response within 100 ms (2 attempts)`;
  assert.deepEqual(messages(scores), [message, message]);
  assert.equal(server.requests, 2);
});

Deno.test("httpScorer() retries a timeout and takes the retry's scores", async () => {
  await using server = serve(async (body, n, stop) => {
    if (n === 0) await wait(2000, stop);
    return Response.json({ scores: lengths(body) });
  });
  const scorer = httpScorer({ url: server.url, timeoutMs: 100, retries: 1, backoffMs: 5 });
  assert.deepEqual(await scorer.score(samples(2)), [0, 1]);
  assert.equal(server.requests, 2);
});

Deno.test("httpScorer() retries 5xx up to its limit, then names the status", async () => {
  await using server = serve(() => new Response("", { status: 500 }));
  const scorer = httpScorer({ url: server.url, retries: 2, backoffMs: 5 });
  const scores = await scorer.score(samples(2));
  assert.deepEqual(messages(scores), Array(2).fill(`${server.url}: status 500 after 3 attempts`));
  assert.equal(server.requests, 3);
});

Deno.test("httpScorer() recovers when a 500 and a 429 are followed by scores", async () => {
  await using server = serve((body, n) =>
    n === 0
      ? new Response("down", { status: 500 })
      : n === 1
      ? new Response("slow down", { status: 429 })
      : Response.json({ scores: lengths(body) })
  );
  const scorer = httpScorer({ url: server.url, retries: 2, backoffMs: 5 });
  assert.deepEqual(await scorer.score(samples(3)), [0, 1, 2]);
  assert.equal(server.requests, 3);
});

Deno.test("httpScorer() does not retry a 404 and shows the response's text", async () => {
  await using server = serve(() => new Response("no such\nroute", { status: 404 }));
  const scores = await httpScorer({ url: server.url, retries: 3, backoffMs: 5 }).score(samples(1));
  assert.deepEqual(messages(scores), [`${server.url}: status 404: no such route`]);
  assert.equal(server.requests, 1);
});

Deno.test("httpScorer() refuses malformed JSON and a wrong number of scores", async () => {
  await using bad = serve(() => new Response("{scores: [1,", { status: 200 }));
  const malformed = await httpScorer({ url: bad.url }).score(samples(2));
  assert.deepEqual(
    messages(malformed),
    Array(2).fill(`${bad.url}: malformed JSON in the response`),
  );
  await using short = serve(() => Response.json({ scores: [1, 1, 1] }));
  const count = await httpScorer({ url: short.url }).score(samples(4));
  assert.deepEqual(messages(count), Array(4).fill(`${short.url}: 3 scores for 4 samples`));
  await using shapeless = serve(() => Response.json({ rewards: [1] }));
  const shape = await httpScorer({ url: shapeless.url }).score(samples(1));
  assert.deepEqual(messages(shape), [`${shapeless.url}: the response has no 'scores' array`]);
});

Deno.test("httpScorer() gives an Error only to a sample whose score is not finite", async () => {
  await using server = serve(() =>
    new Response('{"scores": [0.5, null, 1e999, "1"]}', {
      headers: { "content-type": "application/json" },
    })
  );
  const scores = await httpScorer({ url: server.url }).score(samples(4));
  assert.deepEqual(messages(scores), [
    0.5,
    `${server.url}: score 1 is not a finite number (null)`,
    `${server.url}: score 2 is not a finite number (Infinity)`,
    `${server.url}: score 3 is not a finite number ("1")`,
  ]);
});

Deno.test("httpScorer() fails a chunk alone: the batch's other chunks still score", async () => {
  await using server = serve((body) =>
    body.samples.some((s) => s.prompt === "p4")
      ? new Response("cannot score p4", { status: 400 })
      : Response.json({ scores: lengths(body) })
  );
  const scorer = httpScorer({ url: server.url, batchSize: 2, concurrency: 3 });
  const failed = `${server.url}: status 400: cannot score p4`;
  assert.deepEqual(messages(await scorer.score(samples(6))), [0, 1, 2, 3, failed, failed]);
});

Deno.test("httpScorer() names a network error after its attempts", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${listener.addr.port}/score`;
  listener.close(); // nothing listens there now
  const scores = await httpScorer({ url, retries: 1, backoffMs: 5 }).score(samples(1));
  assert.match(
    String(messages(scores)[0]),
    /^http:\/\/127\.0\.0\.1:\d+\/score: network error after 2 attempts: /,
  );
});

Deno.test("httpScorer() refuses a bad url or size up front", () => {
  assert.throws(() => httpScorer({ url: "ftp://x" }), /must start with http/);
  assert.throws(() => httpScorer({ url: "http://x", batchSize: 0 }), /'batchSize' must be/);
});
