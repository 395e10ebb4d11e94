import assert from "node:assert/strict";
import { assertNoStack, withTempDir } from "../../_helpers.ts";

const ROOT = new URL("../../../", import.meta.url);
const CLI = decodeURIComponent(new URL("cli.ts", ROOT).pathname);

/** The permissions of deno.json's `serve-rewards` task, so the test runs what the task runs. */
async function taskPermissions(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  return (config.tasks["serve-rewards"] as string).split(/\s+/).filter((a) =>
    a.startsWith("--allow")
  );
}

Deno.test("serve-rewards exits 2 with one line on a bad recipe", async () => {
  await withTempDir(async (dir) => {
    const text = await Deno.readTextFile(new URL("recipes/addition_gift.json", ROOT));
    const recipe = JSON.parse(text);
    recipe.group.size = 1;
    await Deno.writeTextFile(`${dir}/bad.json`, JSON.stringify(recipe));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...await taskPermissions(), CLI, "serve-rewards", `${dir}/bad.json`],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr).trim();
    assert.equal(out.code, 2);
    assert.equal(stderr.split("\n").length, 1, stderr);
    assert.match(stderr, /bad\.json: .*group\.size/);
    assertNoStack(stderr);
  });
});

Deno.test("serve-rewards prints where it serves, answers /health, and stops on SIGINT", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...await taskPermissions(),
      CLI,
      "serve-rewards",
      "recipes/addition_gift.ts",
      "--port",
      "0",
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  try {
    while (!stdout.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += value;
    }
    const match =
      /^serving 1 reward source of addition-gift \(plan ([0-9a-f]{16})\) at (http:\/\/127\.0\.0\.1:\d+\/score)\n$/
        .exec(stdout);
    assert.ok(match, stdout);
    const health = await (await fetch(match[2]!.replace(/score$/, "health"))).json();
    assert.deepEqual(health, {
      ok: true,
      plan: match[1],
      rewards: ["numericAnswer"],
      inFlight: 0,
      queued: 0,
    });
    const scored = await fetch(match[2]!, {
      method: "POST",
      body: JSON.stringify({ samples: [{ prompt: "12+30=", completion: "42", answer: "42" }] }),
    });
    assert.deepEqual((await scored.json()).scores, [1]);
  } finally {
    child.kill("SIGINT");
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
  }
  const status = await child.status;
  assert.equal(status.code, 0, await stderr);
  assert.match(await stderr, /serve-rewards: stopping/);
});
