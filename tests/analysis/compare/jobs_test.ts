/** Scheduling a comparison's runs, their one-line errors and the progress line. */

import assert from "node:assert/strict";
import { duration, errorLine, progressLine, runPool } from "../../../analysis/compare/jobs.ts";

/** A job that records when it starts, says "warm" after `warmAfter` ms and ends after `ms`. */
interface FakeJob {
  name: string;
  group: string;
  ms: number;
  warmAfter?: number;
  fail?: boolean;
}

async function simulate(jobs: FakeJob[], concurrency: number): Promise<string[]> {
  const events: string[] = [];
  const results = await runPool(jobs, {
    concurrency,
    start: async (job, warm) => {
      events.push(`start ${job.name}`);
      if (job.warmAfter !== undefined) {
        await new Promise((r) => setTimeout(r, job.warmAfter));
        if (!job.fail) {
          events.push(`warm ${job.name}`);
          warm();
        }
      }
      await new Promise((r) => setTimeout(r, job.ms));
      events.push(`end ${job.name}`);
      if (!job.fail) warm();
      return job.fail ? `${job.name} failed` : job.name;
    },
  });
  assert.deepEqual(results, jobs.map((j) => j.fail ? `${j.name} failed` : j.name));
  return events;
}

Deno.test("runPool() runs a seed's first job alone until its warm start is done", async () => {
  const events = await simulate([
    { name: "gift-s1", group: "1", ms: 40, warmAfter: 20 },
    { name: "gift-s2", group: "2", ms: 40, warmAfter: 20 },
    { name: "grpo-s1", group: "1", ms: 10 },
    { name: "grpo-s2", group: "2", ms: 10 },
  ], 4);
  // Four slots, but grpo-s1 waits for gift-s1's warm start (and grpo-s2 for gift-s2's).
  assert.deepEqual(events.slice(0, 2), ["start gift-s1", "start gift-s2"]);
  assert.ok(events.indexOf("start grpo-s1") > events.indexOf("warm gift-s1"), events.join(", "));
  assert.ok(events.indexOf("start grpo-s2") > events.indexOf("warm gift-s2"), events.join(", "));
  // Once warm, the group runs in parallel: grpo-s1 starts before gift-s1 ends.
  assert.ok(events.indexOf("start grpo-s1") < events.indexOf("end gift-s1"), events.join(", "));
});

Deno.test("runPool() holds at most `concurrency` jobs, and a failed first job hands on", async () => {
  let running = 0;
  let most = 0;
  await runPool(
    Array.from({ length: 6 }, (_, i) => ({ group: String(i % 3) })),
    {
      concurrency: 2,
      start: async (_job, warm) => {
        most = Math.max(most, ++running);
        warm();
        await new Promise((r) => setTimeout(r, 5));
        running--;
      },
    },
  );
  assert.equal(most, 2);

  // gift-s1 fails before its warm start: grpo-s1 then runs, alone in its group, to the end.
  const events = await simulate([
    { name: "gift-s1", group: "1", ms: 10, warmAfter: 5, fail: true },
    { name: "grpo-s1", group: "1", ms: 10, warmAfter: 5 },
    { name: "dapo-s1", group: "1", ms: 10 },
  ], 3);
  assert.deepEqual(events.slice(0, 3), ["start gift-s1", "end gift-s1", "start grpo-s1"]);
  assert.ok(events.indexOf("start dapo-s1") > events.indexOf("warm grpo-s1"));
  assert.deepEqual(await runPool([], { concurrency: 2, start: () => Promise.resolve(0) }), []);
});

Deno.test("errorLine() finds a failed run's one-line error in its stderr", () => {
  assert.equal(
    errorLine(
      "tiny.json: warning: reference: dapo without a KL term …\n" +
        "giftwrap: Cannot run objective 'grpo': this runtime implements gift\n",
      2,
    ),
    "Cannot run objective 'grpo': this runtime implements gift",
  );
  assert.equal(
    errorLine("giftwrap: internal error: boom\ngiftwrap: set GIFTWRAP_DEBUG=1 to see where\n", 1),
    "internal error: boom",
  );
  assert.equal(
    errorLine("\x1b[1merror\x1b[0m: Uncaught (in promise) Error: x\n    at f (a.ts:1:1)\n", 1),
    "error: Uncaught (in promise) Error: x",
  );
  assert.equal(
    errorLine("tiny.json: group.size: expected …\n", 2),
    "tiny.json: group.size: expected …",
  );
  assert.equal(errorLine("", 137), "exited with code 137 and printed no error");
});

Deno.test("progressLine() counts runs and steps and estimates the time left", () => {
  assert.equal(
    progressLine({ runsDone: 7, runs: 24, stepsDone: 1234, steps: 3600, seconds: 372 }),
    "compare: 7/24 runs done · step totals 1,234/3,600 · ETA 12m",
  );
  assert.equal(
    progressLine({ runsDone: 0, runs: 4, stepsDone: 0, steps: 8, seconds: 3 }),
    "compare: 0/4 runs done · step totals 0/8 · ETA ?",
  );
  assert.equal(duration(42), "42s");
  assert.equal(duration(3900), "1h05m");
});
