// The sandbox of `fn` rewards against hostile modules: every way of loading a module or a file
// outside the reward's directory is refused, and a reward that takes too much memory loses that
// call, not the trainer.

import assert from "node:assert/strict";
import { fnScorer } from "../../../../runtime/rl/rewards/fn.ts";
import type { Sample } from "../../../../runtime/rl/rewards/types.ts";

function sample(completion: string): Sample {
  return { prompt: "", completion, answer: "", row: { id: 1 }, tokens: 1, truncated: false };
}

/** The reward's directory, and beside it a directory the sandbox must not read. */
const ROOT = Deno.makeTempDirSync({ prefix: "giftwrap_fn_sandbox_" });
const DIR = `${ROOT}/recipe`;
const OUTSIDE = `${ROOT}/private`;
Deno.mkdirSync(DIR);
Deno.mkdirSync(OUTSIDE);
Deno.writeTextFileSync(`${OUTSIDE}/secret.txt`, "secret");
Deno.writeTextFileSync(`${OUTSIDE}/secret.json`, `{ "length": 6 }`);
Deno.writeTextFileSync(`${OUTSIDE}/secret.ts`, `export const length = 6;`);
globalThis.addEventListener("unload", () => Deno.removeSync(ROOT, { recursive: true }));

/** A loopback server that counts the requests it gets; the sandbox must send none. */
let requests = 0;
const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
  requests++;
  return new Response("export default 6;", {
    headers: { "content-type": "application/javascript" },
  });
});
const REMOTE = `http://127.0.0.1:${server.addr.port}/secret.js`;

/** Writes `source` as `<name>.ts` in the reward's directory and returns its URL. */
function module(name: string, source: string): string {
  Deno.writeTextFileSync(`${DIR}/${name}.ts`, source);
  return new URL(`file://${DIR}/${name}.ts`).href;
}

const denied = (path: string) => `permission denied: Requires read access to "${path}"`;

Deno.test("fnScorer() sandboxed: a module that imports a file or URL outside its directory does not load", async () => {
  const cases: [string, string, string][] = [
    [
      "static_text",
      `import s from "../private/secret.txt" with { type: "text" };\nexport default () => s.length;`,
      denied(`${OUTSIDE}/secret.txt`),
    ],
    [
      "static_json",
      `import s from "../private/secret.json" with { type: "json" };\n` +
      `export default () => s.length;`,
      denied(`${OUTSIDE}/secret.json`),
    ],
    [
      "static_module",
      `import { length } from "../private/secret.ts";\nexport default () => length;`,
      denied(`${OUTSIDE}/secret.ts`),
    ],
    [
      "static_absolute",
      `import s from ${JSON.stringify(`${OUTSIDE}/secret.txt`)} with { type: "text" };\n` +
      `export default () => s.length;`,
      denied(`${OUTSIDE}/secret.txt`),
    ],
    [
      "top_level_import",
      `const s = await import("../private/secret.json", { with: { type: "json" } });\n` +
      `export default () => s.default.length;`,
      denied(`${OUTSIDE}/secret.json`),
    ],
    [
      "static_url",
      `import n from ${JSON.stringify(REMOTE)};\nexport default () => n;`,
      `permission denied: Requires import access to "127.0.0.1:${server.addr.port}"`,
    ],
  ];
  for (const [name, source, why] of cases) {
    const url = module(name, source);
    await assert.rejects(
      fnScorer({ module: url, sandbox: true, timeoutMs: 5000 }),
      { message: `Cannot load reward ${url}#default: ${why}` },
      name,
    );
  }
  assert.equal(requests, 0);
});

Deno.test("fnScorer() sandboxed: a call that imports a file or URL, literally or computed, is that sample's error", async () => {
  module("beside", "export const one = 1;");
  module("unnamed", "export const one = 1;");
  const url = module(
    "calls",
    `
const parts = ["..", "private", "secret"];
export async function literalText() {
  return (await import("../private/secret.txt", { with: { type: "text" } })).default.length;
}
export async function literalJson() {
  return (await import("../private/secret.json", { with: { type: "json" } })).default.length;
}
export async function computedJson() {
  const path = parts.join("/") + ".json";
  return (await import(path, { with: { type: "json" } })).default.length;
}
export async function computedModule() {
  return (await import(parts.join("/") + ".ts")).length;
}
export async function literalUrl() {
  return (await import(${JSON.stringify(REMOTE)})).default;
}
export async function computedUrl() {
  return (await import(${JSON.stringify(REMOTE.slice(0, -3))} + ".js")).default;
}
export async function literalBeside() {
  // a literal import under the directory is loaded with the module, before the calls
  return (await import("./beside.ts")).one;
}
export async function computedBeside() {
  // one the module does not name literally is not: a call runs with no permission at all
  return (await import(["./unnamed", "ts"].join("."))).one;
}
`,
  );
  const label = `reward ${url}`;
  const expected: Record<string, string> = {
    literalText: denied(`${OUTSIDE}/secret.txt`),
    literalJson: denied(`${OUTSIDE}/secret.json`),
    computedJson: denied(`${OUTSIDE}/secret.json`),
    computedModule: denied(`${OUTSIDE}/secret.ts`),
    literalUrl: `permission denied: Requires import access to "127.0.0.1:${server.addr.port}"`,
    computedUrl: `permission denied: Requires import access to "127.0.0.1:${server.addr.port}"`,
    computedBeside: denied(`${DIR}/unnamed.ts`),
  };
  const got: Record<string, string> = {};
  for (const name of [...Object.keys(expected), "literalBeside"]) {
    const scorer = await fnScorer({ module: url, export: name, sandbox: true, timeoutMs: 5000 });
    try {
      const [score] = await scorer.score([sample("x")]);
      got[name] = score instanceof Error ? score.message : `scored ${score}`;
    } finally {
      await scorer.close?.();
    }
  }
  assert.equal(got.literalBeside, "scored 1");
  delete got.literalBeside;
  assert.deepEqual(
    got,
    Object.fromEntries(
      Object.entries(expected).map(([name, why]) => [name, `${label}#${name}: ${why}`]),
    ),
  );
  assert.equal(requests, 0);
});

Deno.test("fnScorer() sandboxed: a reward that fills its heap loses that call, and the next call works", async () => {
  const url = module(
    "hungry",
    `
export default function (sample: { completion: string }): number {
  if (sample.completion !== "grow") return 1;
  const hoard: number[][] = [];
  for (;;) hoard.push(new Array(100_000).fill(1));
}
`,
  );
  const scorer = await fnScorer({ module: url, sandbox: true, timeoutMs: 30_000, memoryMb: 64 });
  try {
    const scores = await scorer.score([sample("ok"), sample("grow"), sample("ok")]);
    assert.deepEqual(scores.map((s) => s instanceof Error ? s.message : s), [
      1,
      `reward ${url}#default: ran out of memory (the sandbox's limit is 64 MiB of heap)`,
      1,
    ]);
  } finally {
    await scorer.close?.();
  }
});

Deno.test({
  name: "fnScorer() sandboxed: an allocation past the data limit is that call's error (Linux)",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const url = module(
      "buffer",
      `export default (s: { completion: string }) => new Uint8Array(Number(s.completion)).length;`,
    );
    const scorer = await fnScorer({ module: url, sandbox: true, timeoutMs: 30_000, memoryMb: 64 });
    try {
      // 64 MiB of heap + 1024 MiB for Deno: 1 MiB fits, 4 GiB does not.
      const scores = await scorer.score([sample(String(2 ** 20)), sample(String(2 ** 32))]);
      assert.deepEqual(scores.map((s) => s instanceof Error ? s.message : s), [
        2 ** 20,
        `reward ${url}#default: threw RangeError: Array buffer allocation failed`,
      ]);
    } finally {
      await scorer.close?.();
    }
  },
});

Deno.test("fnScorer() sandboxed: without run permission it says which flag to add", async () => {
  const url = module("plain", `export default () => 1;`);
  const fn = new URL("../../../../runtime/rl/rewards/fn.ts", import.meta.url).href;
  Deno.writeTextFileSync(
    `${ROOT}/load.ts`,
    `import { fnScorer } from ${JSON.stringify(fn)};\n` +
      `await fnScorer({ module: ${JSON.stringify(url)} }).catch((e) => console.log(e.message));\n`,
  );
  // Only read permission; no configuration file, whose npm packages this does not need.
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", "--no-prompt", "--allow-read", `${ROOT}/load.ts`],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(
    new TextDecoder().decode(stdout).trim(),
    `Cannot load reward ${url}#default: the sandbox runs it in a subprocess, which needs ` +
      "--allow-run=sh (deno task run has it), or set sandbox: false",
  );
});

globalThis.addEventListener("unload", () => server.shutdown());

Deno.test({
  name:
    "fnScorer() sandboxed: a call stuck in a loop does not outlive a trainer killed outright (Linux)",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const url = module(
      "stuck",
      `export default () => { console.error("stuck"); for (;;) {} };`,
    );
    const fn = new URL("../../../../runtime/rl/rewards/fn.ts", import.meta.url).href;
    Deno.writeTextFileSync(
      `${ROOT}/trainer.ts`,
      `import { fnScorer } from ${JSON.stringify(fn)};\n` +
        `const scorer = await fnScorer({ module: ${JSON.stringify(url)}, timeoutMs: 600_000 });\n` +
        `await scorer.score([{ prompt: "", completion: "", answer: "", row: {}, tokens: 1, ` +
        `truncated: false }]);\n`,
    );
    const trainer = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-config",
        "--no-prompt",
        "--allow-read",
        "--allow-run=sh",
        `${ROOT}/trainer.ts`,
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const reader = trainer.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let stderr = "";
    while (!stderr.includes("stuck")) {
      const { value, done } = await reader.read();
      assert.ok(!done, stderr);
      stderr += value;
    }
    const found = await new Deno.Command("pgrep", { args: ["-P", String(trainer.pid)] }).output();
    const children = new TextDecoder().decode(found.stdout).trim().split("\n").map(Number);
    assert.equal(children.length, 1);
    const alive = () => {
      try {
        Deno.kill(children[0]!, "SIGCONT"); // a no-op for a running process; throws once it is gone
        return true;
      } catch {
        return false;
      }
    };
    assert.ok(alive());
    trainer.kill("SIGKILL");
    await trainer.status;
    await reader.cancel();
    const until = performance.now() + 5000;
    while (alive() && performance.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const left = alive();
    if (left) Deno.kill(children[0]!, "SIGKILL");
    assert.ok(!left, "the reward's process outlived the trainer by 5 s");
  },
});

Deno.test("fnScorer() sandboxed: a module in a directory whose path has a comma is refused", async () => {
  // --allow-read=a,b grants a and b: the sandbox would read more than the module's directory.
  Deno.mkdirSync(`${ROOT}/a,b`);
  Deno.writeTextFileSync(`${ROOT}/a,b/reward.ts`, "export default () => 1;");
  const url = new URL(`file://${ROOT}/a,b/reward.ts`).href;
  await assert.rejects(fnScorer({ module: url, sandbox: true }), {
    message:
      `Cannot load reward ${url}#default: the sandbox cannot grant reading '${ROOT}/a,b/', ` +
      "as its path has a comma; move the module or set sandbox: false",
  });
  const scorer = await fnScorer({ module: url, sandbox: false });
  assert.deepEqual(await scorer.score([sample("x")]), [1]);
});
