import assert from "node:assert/strict";
import { type Plan, planHash } from "../../../dsl/plan.ts";
import { type Sample, scoreSources } from "../../../runtime/rl/rewards/mod.ts";
import { rewardSources } from "../../../runtime/run/setup.ts";
import { type ScoreResponse, serveRewards } from "../../../runtime/serve/rewards.ts";
import { PYTHON } from "../../_requires.ts";
import { withTempDir } from "../../_helpers.ts";
import { tinyPlan } from "../_tiny.ts";

const REWARD_PY = decodeURIComponent(
  new URL("../../../runtime/export/reward.py", import.meta.url).pathname,
);

/** The fixture's rewards: each throws on a letter of its own, so a test picks who fails. */
const REWARDS_TS = [
  "type S = { completion: string; row: { a: number }; tokens: number; truncated: boolean };",
  "export const shape = ({ completion, tokens, truncated }: S) => {",
  '  if (completion.includes("F")) throw new Error("F is forbidden");',
  "  return tokens / 10 - (truncated ? 1 : 0);",
  "};",
  "export const zeroable = ({ completion, row }: S) => {",
  '  if (completion.includes("Z")) throw new Error("no Z");',
  "  return row.a;",
  "};",
  "export const skippable = ({ completion }: S) => {",
  '  if (completion.includes("S")) throw new Error("no S");',
  "  return 1;",
  "};",
  "",
].join("\n");

/** A verifier, a sandboxed fn ("fail"), an in-process fn with "zero", one with "skip-group". */
function severalSources(): Plan {
  return tinyPlan({
    rewards: [
      { source: { kind: "numericAnswer" }, success: true },
      {
        source: { kind: "fn", module: "./rewards.ts", export: "shape" },
        name: "shape",
        weight: 0.5,
        onError: "fail",
      },
      {
        source: { kind: "fn", module: "./rewards.ts", export: "zeroable", sandbox: false },
        name: "zeroable",
        weight: 0.25,
        onError: "zero",
      },
      {
        source: { kind: "fn", module: "./rewards.ts", export: "skippable", sandbox: false },
        name: "skippable",
        weight: 2,
        onError: "skip-group",
      },
    ],
  });
}

/** The samples as the test posts them: row 1 as a JSON string, without tokens. */
const POSTED = [
  { prompt: "1+2=", completion: "3", answer: "3", row: { a: 1, b: 2 }, tokens: 2 },
  { prompt: "2+1=", completion: "4", answer: "3", row: '{"a":2,"b":1}' },
  {
    prompt: "4+4=",
    completion: "8Z",
    answer: "8",
    row: { a: 4, b: 4 },
    tokens: 5,
    truncated: true,
  },
  { prompt: "0+1=", completion: "1S", answer: "1", row: { a: 0, b: 1 }, tokens: 3 },
];

/** The same samples as a run scores them: row parsed, tokens counted (characters + the end). */
const SAMPLES: Sample[] = [
  {
    prompt: "1+2=",
    completion: "3",
    answer: "3",
    row: { a: 1, b: 2 },
    tokens: 2,
    truncated: false,
  },
  {
    prompt: "2+1=",
    completion: "4",
    answer: "3",
    row: { a: 2, b: 1 },
    tokens: 2,
    truncated: false,
  },
  {
    prompt: "4+4=",
    completion: "8Z",
    answer: "8",
    row: { a: 4, b: 4 },
    tokens: 5,
    truncated: true,
  },
  {
    prompt: "0+1=",
    completion: "1S",
    answer: "1",
    row: { a: 0, b: 1 },
    tokens: 3,
    truncated: false,
  },
];

async function post(
  url: string,
  body: unknown,
): Promise<{ status: number; json: ScoreResponse & { error: string } }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

/** What the trainer's own code gives the samples: rewardSources() and scoreSources(). */
async function reference(plan: Plan, baseUrl: string, samples: Sample[]) {
  const sources = await rewardSources(plan, baseUrl, () => Promise.reject(new Error("no model")));
  try {
    return await scoreSources(sources, samples, 1);
  } finally {
    await Promise.all(sources.map((s) => s.scorer.close?.()));
  }
}

/** Runs reward.py's hook in Debian's python3 on `calls`; what it returned and printed on stderr. */
async function python(
  url: string,
  calls: unknown[],
): Promise<{ results: unknown[]; stderr: string }> {
  const driver = [
    "import json, sys",
    `sys.path.insert(0, ${JSON.stringify(REWARD_PY.replace(/\/[^/]*$/, ""))})`,
    "import reward",
    "out = []",
    "for call in json.load(sys.stdin):",
    "    try:",
    "        if call['kind'] == 'single':",
    "            out.append(reward.compute_score(**call['kwargs']))",
    "        elif call['kind'] == 'batch':",
    "            out.append(reward.compute_score(**call['kwargs']))",
    "        else:",
    "            out.append(reward.compute_score_batch(*call['args']))",
    "    except RuntimeError as error:",
    "        out.append({'error': str(error)})",
    "print(json.dumps(out))",
  ].join("\n");
  const child = new Deno.Command(PYTHON, {
    args: ["-c", driver],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { GIFTWRAP_REWARD_URL: url, GIFTWRAP_REWARD_BATCH: "3" },
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(calls)));
  await writer.close();
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `reward.py failed: ${stderr}`);
  return { results: JSON.parse(new TextDecoder().decode(out.stdout)), stderr };
}

/** The verl form of a posted sample: extra_info carries prompt, answer and row (a string). */
function verl(sample: (typeof POSTED)[number]) {
  return {
    data_source: "giftwrap",
    solution_str: sample.completion,
    ground_truth: sample.answer,
    extra_info: {
      prompt: sample.prompt,
      answer: sample.answer,
      row: typeof sample.row === "string" ? sample.row : JSON.stringify(sample.row),
    },
  };
}

Deno.test("serveRewards() scores as a run does, with the onError policies, for giftwrap and reward.py", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/rewards.ts`, REWARDS_TS);
    const baseUrl = `file://${dir}/recipe.json`;
    const plan = severalSources();
    const expected = await reference(plan, baseUrl, SAMPLES);
    const server = await serveRewards(plan, { baseUrl, port: 0 });
    try {
      // 1) POST /score: the run's totals and components, the skipped sample null
      const { status, json } = await post(server.url, { samples: POSTED });
      assert.equal(status, 200, JSON.stringify(json));
      assert.deepEqual(json.scores, [
        expected.total[0],
        expected.total[1],
        expected.total[2],
        null,
      ]);
      assert.deepEqual(json.skipped, [3]);
      assert.equal(json.success, "numericAnswer");
      for (const name of ["numericAnswer", "shape", "zeroable", "skippable"]) {
        assert.deepEqual(json.components[name], Array.from(expected.bySource[name]!), name);
      }
      // by hand: 1·1 + 0.5·(2/10) + 0.25·1 + 2·1; the counted tokens of "4": 1 + <eos>
      assert.ok(Math.abs(json.scores[0]! - 3.35) < 1e-6);
      assert.equal(json.components.shape![1], Math.fround(0.2));
      assert.equal(json.components.shape![2], Math.fround(0.5 - 1)); // truncated
      assert.equal(json.components.zeroable![2], 0); // "zero"
      assert.deepEqual(Object.keys(json.errors).sort(), ["skippable", "zeroable"]);
      assert.match(json.errors.zeroable!.first, /no Z$/);
      // the alias
      assert.deepEqual(
        (await post(server.url.replace(/score$/, ""), { samples: POSTED })).json,
        json,
      );

      // 2) "fail": 422, one line naming the source, the sample and why
      const failed = await post(server.url, {
        samples: [POSTED[0], { ...POSTED[1], completion: "F" }],
      });
      assert.equal(failed.status, 422);
      assert.match(
        failed.json.error,
        /^reward 'shape' failed on sample 1 \(1 of 2 samples failed; its onError is "fail"\): .*threw Error: F is forbidden$/,
      );

      // 3) reward.py, one sample at a time (verl's naive manager) and batched (its batch manager)
      const single = POSTED.map((s) => ({ kind: "single", kwargs: verl(s) }));
      const batched = {
        kind: "batch",
        kwargs: {
          data_sources: POSTED.map(() => "giftwrap"),
          solution_strs: POSTED.map((s) => s.completion),
          ground_truths: POSTED.map((s) => s.answer),
          extra_infos: POSTED.map((s) => verl(s).extra_info),
        },
      };
      const positional = {
        kind: "positional",
        args: [["x"], ["F"], ["3"], [verl(POSTED[0]!).extra_info]],
      };
      const { results, stderr } = await python(server.url, [...single, batched, positional]);
      // verl passes neither tokens nor truncated: the server counts them, not truncated
      const counted = SAMPLES.map((s) => ({
        ...s,
        tokens: s.completion.length + 1,
        truncated: false,
      }));
      const viaVerl = await reference(plan, baseUrl, counted);
      const totals = [viaVerl.total[0], viaVerl.total[1], viaVerl.total[2], 0];
      assert.equal(totals[2], Math.fround(1 + Math.fround(0.5 * Math.fround(0.3)) + 2));
      // The success reward (numericAnswer) rides along as "acc", for DAPO's filter and validation.
      const scores = totals.map((score, i) => ({
        score,
        acc: viaVerl.bySource.numericAnswer![i]!,
      }));
      assert.deepEqual(scores.map((s) => s.acc), [1, 0, 1, 1]);
      assert.deepEqual(results.slice(0, 4), scores);
      assert.deepEqual(results[4], scores); // in chunks of 3: two requests
      assert.match(
        (results[5] as { error: string }).error,
        /^giftwrap reward server http:\/\/127\.0\.0\.1:\d+\/score: status 422: reward 'shape' failed on sample 0 /,
      );
      const warnings = stderr.trim().split("\n");
      assert.equal(warnings.length, 2, stderr); // the single call and the batch's second chunk
      assert.match(warnings[0]!, /^giftwrap reward: warning: 1 of 1 samples .* score 0\.0 /);
    } finally {
      await server.close();
    }
  });
});

Deno.test("serveRewards() answers malformed requests 400 naming the path, 413 over its limits, 404 and 405", async () => {
  const plan = tinyPlan();
  const server = await serveRewards(plan, { baseUrl: "file:///", port: 0, maxSamples: 2 });
  try {
    const sample = { prompt: "1+1=", completion: "2", answer: "2", row: { a: 1, b: 1 } };
    const cases: [unknown, number, string][] = [
      ["{", 400, "body: malformed JSON ("],
      [[], 400, "body: expected an object with a 'samples' array, got []"],
      [{ samples: "x" }, 400, 'samples: expected an array, got "x"'],
      [{ samples: [sample, 7] }, 400, "samples[1]: expected an object, got 7"],
      [
        { samples: [sample, { ...sample, completion: 12 }] },
        400,
        "samples[1].completion: expected a string, got 12",
      ],
      [{ samples: [{ ...sample, row: "{" }] }, 400, "samples[0].row: expected a JSON object, got"],
      [{ samples: [{ ...sample, row: "[1]" }] }, 400, "samples[0].row: expected an object"],
      [
        { samples: [{ ...sample, tokens: -1 }] },
        400,
        "samples[0].tokens: expected an integer >= 0",
      ],
      [{ samples: [{ ...sample, truncated: 1 }] }, 400, "samples[0].truncated: expected a boolean"],
      [{ samples: [sample, sample, sample] }, 413, "samples: expected at most 2 samples, got 3"],
    ];
    for (const [body, status, start] of cases) {
      const answer = await post(server.url, typeof body === "string" ? body : JSON.stringify(body));
      assert.equal(answer.status, status, JSON.stringify(body));
      assert.ok(answer.json.error.startsWith(start), `${answer.json.error} / ${start}`);
      assert.ok(!answer.json.error.includes("\n"));
    }
    const ok = await post(server.url, { samples: [sample, { ...sample, completion: "3" }] });
    assert.deepEqual(ok.json.scores, [1, 0]);
    const base = server.url.replace(/\/score$/, "");
    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const get = await fetch(server.url);
    assert.equal(get.status, 405);
    assert.equal(get.headers.get("allow"), "POST");
    await get.body?.cancel();
    const health = await fetch(`${base}/health`);
    assert.deepEqual(await health.json(), {
      ok: true,
      plan: planHash(plan),
      rewards: ["numericAnswer"],
      inFlight: 0,
      queued: 0,
    });
  } finally {
    await server.close();
  }
});

Deno.test("serveRewards() scores at most `concurrency` requests at once, queues `queue`, answers 503 beyond", async () => {
  // The recipe's source is an endpoint that holds every request until released and counts them.
  let active = 0;
  let peak = 0;
  let release!: () => void;
  const released = new Promise<void>((resolve) => release = resolve);
  const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const { samples } = await req.json();
    active++;
    peak = Math.max(peak, active);
    await released;
    active--;
    return Response.json({ scores: samples.map(() => 0.5) });
  });
  const url = `http://127.0.0.1:${upstream.addr.port}/score`;
  const plan = tinyPlan({
    rewards: [{ source: { kind: "http", url, retries: 0 }, name: "held" }],
  });
  const server = await serveRewards(plan, {
    baseUrl: "file:///",
    port: 0,
    concurrency: 2,
    queue: 1,
  });
  const health = async () => await (await fetch(server.url.replace(/score$/, "health"))).json();
  try {
    const sample = { prompt: "1+1=", completion: "2", answer: "2" };
    const requests = Array.from(
      { length: 5 },
      () => fetch(server.url, { method: "POST", body: JSON.stringify({ samples: [sample] }) }),
    );
    // two scoring, one waiting: the other two are refused at once
    const refused: number[] = [];
    while (refused.length < 2) {
      const done = await Promise.race(
        requests.map((r, i) => r.then(() => i)).filter((_, i) => !refused.includes(i)),
      );
      refused.push(done);
    }
    for (const i of refused) {
      const response = await requests[i]!;
      assert.equal(response.status, 503);
      assert.equal(response.headers.get("retry-after"), "1");
      assert.match((await response.json()).error, /^busy: 2 requests scoring and 1 waiting/);
    }
    while (active < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    const during = await health();
    assert.equal(during.inFlight, 2);
    assert.equal(during.queued, 1);
    release();
    const rest = requests.filter((_, i) => !refused.includes(i));
    for (const response of await Promise.all(rest)) {
      assert.equal(response.status, 200);
      assert.deepEqual((await response.json()).scores, [0.5]);
    }
    assert.equal(peak, 2);
    assert.equal((await health()).inFlight, 0);
  } finally {
    release();
    await server.close();
    await upstream.shutdown();
  }
});

Deno.test("serveRewards() refuses a bad option and a source that cannot load, in one line", async () => {
  await assert.rejects(
    () => serveRewards(tinyPlan(), { baseUrl: "file:///", port: 0, concurrency: 0 }),
    {
      message: "Cannot serve rewards as 'concurrency' must be an integer >= 1: current value is 0",
    },
  );
  const plan = tinyPlan({
    rewards: [{ source: { kind: "fn", module: "./missing.ts", export: "x" }, name: "gone" }],
  });
  await assert.rejects(
    () => serveRewards(plan, { baseUrl: "file:///nowhere/recipe.json", port: 0 }),
    (e: Error) =>
      /^rewards\[0\] \('gone'\): Cannot load reward .*module not found$/.test(e.message),
  );
});

Deno.test("serveRewards() closes when its signal aborts, and reward.py retries a busy server", async () => {
  const stop = new AbortController();
  const server = await serveRewards(tinyPlan(), {
    baseUrl: "file:///",
    port: 0,
    signal: stop.signal,
  });
  stop.abort();
  await server.finished;
  await assert.rejects(() => fetch(server.url.replace(/score$/, "health")));

  // A stand-in answers 503 once, then scores.
  let calls = 0;
  const busy = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.body?.cancel();
    return calls++ === 0
      ? Response.json({ error: "busy" }, { status: 503, headers: { "retry-after": "0" } })
      : Response.json({ scores: [0.75] });
  });
  try {
    const { results } = await python(`http://127.0.0.1:${busy.addr.port}`, [
      { kind: "single", kwargs: verl(POSTED[0]!) },
    ]);
    assert.deepEqual(results, [0.75]);
    assert.equal(calls, 2);
  } finally {
    await busy.shutdown();
  }
});
