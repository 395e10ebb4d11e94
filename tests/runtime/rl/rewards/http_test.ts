import assert from "node:assert/strict";
import { httpScorer } from "../../../../runtime/rl/rewards/http.ts";
import type { Sample } from "../../../../runtime/rl/rewards/types.ts";
import { execute } from "../../../../runtime/run/execute.ts";
import { withTempDir } from "../../../_helpers.ts";
import { tinyPlan } from "../../_tiny.ts";

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

/** A server on a free port that counts the requests it gets and answers each with scores. */
function counting() {
  let hits = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    hits++;
    const body = await request.json() as Body;
    return Response.json({ scores: lengths(body) });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/score`,
    get hits() {
      return hits;
    },
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("httpScorer() does not follow a redirect: a 307 elsewhere is an error naming both", async () => {
  await using elsewhere = counting();
  await using server = serve(() =>
    new Response(null, { status: 307, headers: { location: elsewhere.url } })
  );
  const scores = await httpScorer({ url: server.url, retries: 2, backoffMs: 5 }).score(samples(3));
  const message = `${server.url}: redirected (status 307) to ${elsewhere.url}, which is not ` +
    "followed (followRedirects is false)";
  assert.deepEqual(messages(scores), Array(3).fill(message));
  assert.equal(elsewhere.hits, 0, "the redirect's target got a request");
  assert.equal(server.requests, 1, "a redirect is not retried");
});

Deno.test("httpScorer() with followRedirects follows a 307 on the same origin only", async () => {
  await using elsewhere = counting();
  let hops = 0;
  await using server = serve((body) => {
    hops++;
    if (hops === 1) return new Response(null, { status: 307, headers: { location: "/moved" } });
    if (hops === 3) {
      return new Response(null, { status: 308, headers: { location: elsewhere.url } });
    }
    return Response.json({ scores: lengths(body) });
  });
  const options = { url: server.url, followRedirects: true, retries: 0 };
  // The second request is the first re-posted to /moved, on the same origin: it is answered.
  assert.deepEqual(await httpScorer(options).score(samples(2)), [0, 1]);
  assert.equal(hops, 2);
  // The third is sent to another origin: an error, and that origin never hears of it.
  const second = await httpScorer(options).score(samples(2));
  assert.deepEqual(
    messages(second),
    Array(2).fill(
      `${server.url}: redirected (status 308) to ${elsewhere.url}, another origin, which is ` +
        "never followed",
    ),
  );
  assert.equal(elsewhere.hits, 0);
});

/**
 * A server on a free port whose every response is `chunks` chunks of 64 KiB of spaces, made as
 * the client reads them (nothing is held in memory): how many it made, and whether the client
 * hung up before the end.
 */
function streaming(chunks: number) {
  const seen = { made: 0, hungUp: false };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    await request.body?.cancel();
    return new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (seen.made === chunks) return controller.close();
          seen.made++;
          controller.enqueue(new Uint8Array(65_536).fill(0x20));
        },
        cancel() {
          seen.hungUp = true;
        },
      }, { highWaterMark: 1 }),
      { headers: { "content-type": "application/json" } },
    );
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/score`,
    seen,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("httpScorer() stops reading a response past maxResponseBytes", async () => {
  // 1 GiB offered; the client may take 1 MiB.
  await using server = streaming(16_384);
  const scorer = httpScorer({ url: server.url, maxResponseBytes: 1_048_576, retries: 2 });
  const scores = await scorer.score(samples(2));
  const message = `${server.url}: the response is over maxResponseBytes (1048576 bytes); ` +
    "stopped reading it";
  assert.deepEqual(messages(scores), [message, message]);
  // The server made what fits in the limit and the buffers on the way, then saw the client go.
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.ok(server.seen.made < 256, `made ${server.seen.made} chunks of 64 KiB`);
  assert.ok(server.seen.hungUp, "the client read to the end");
});

Deno.test("httpScorer() refuses a declared Content-Length over maxResponseBytes before reading", async () => {
  // A server that declares 1 GB and sends nothing: only the header can fail this request.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      held.push(conn);
      await conn.read(new Uint8Array(65_536));
      await conn.write(
        new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n"),
      );
    }
  })().catch(() => {});
  try {
    const url = `http://127.0.0.1:${listener.addr.port}/score`;
    const started = performance.now();
    const scores = await httpScorer({ url, timeoutMs: 20_000, retries: 0 }).score(samples(1));
    assert.deepEqual(messages(scores), [
      `${url}: the response declares 1000000000 bytes, over maxResponseBytes (16777216 bytes)`,
    ]);
    assert.ok(performance.now() - started < 10_000, "it waited for the body");
  } finally {
    listener.close();
    for (const conn of held) conn.close();
    await accepting;
  }
});

Deno.test("httpScorer() refuses a bad maxResponseBytes up front", () => {
  assert.throws(
    () => httpScorer({ url: "http://x", maxResponseBytes: 0 }),
    /'maxResponseBytes' must be an integer >= 1/,
  );
});

Deno.test("execute() warns once when an endpoint under onError 'zero' fails on every sample of a step", async () => {
  // The tiny plan's steps score 16 samples each; this endpoint fails them all, every step.
  await using server = serve(() => new Response("down for maintenance", { status: 503 }));
  await withTempDir(async (runsDir) => {
    const log: string[] = [];
    const plan = tinyPlan({
      rewards: [
        { source: { kind: "numericAnswer" }, success: true },
        { source: { kind: "http", url: server.url, retries: 0 }, name: "judge", onError: "zero" },
      ],
      steps: 3,
    });
    const result = await execute(plan, { runsDir, log: (line) => log.push(line) });
    assert.deepEqual(result.metrics.map((m) => m.rewardErrors), Array(3).fill({ judge: 16 }));
    const warnings = log.filter((line) => line.startsWith("warning: "));
    assert.deepEqual(warnings, [
      `warning: reward 'judge' failed on all 16 samples of step 1, which score 0 as its onError ` +
      `is "zero" (said once; metrics.jsonl counts rewardErrors every step): ${server.url}: ` +
      "status 503 after 1 attempt: down for maintenance",
    ]);
    // It comes before the step's progress line.
    assert.match(log[log.indexOf(warnings[0]!) + 1]!, /^step 1\/3 /);
  });
});
