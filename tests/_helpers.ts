/** Helpers shared by the tests: the CLI run in-process, temporary directories. */

import assert from "node:assert/strict";
import { main } from "../cli.ts";
import { RUN_PERMISSIONS } from "../analysis/compare/compare.ts";

/** What one in-process run of the CLI returned and printed. */
export interface Ran {
  code: number;
  stdout: string[];
  stderr: string[];
}

/** Runs `main(args)` with console.log and console.error captured. */
export async function runMain(args: string[]): Promise<Ran> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const { log, error } = console;
  console.log = (...parts: unknown[]) => stdout.push(...parts.join(" ").split("\n"));
  console.error = (...parts: unknown[]) => stderr.push(...parts.join(" ").split("\n"));
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** Writes `value` as a TypeScript recipe module (NaN and Infinity survive) and returns its path. */
export async function writeRecipeModule(
  dir: string,
  name: string,
  value: unknown,
): Promise<string> {
  const source = JSON.stringify(value, (_k, v) => {
    if (typeof v === "number" && !Number.isFinite(v)) return `__${v}__`;
    return v;
  }).replace(/"__(NaN|Infinity|-Infinity)__"/g, "$1");
  const path = `${dir}/${name}.ts`;
  await Deno.writeTextFile(path, `export default ${source};\n`);
  return path;
}

/** A stack trace line, or Deno's uncaught-error banner. */
export const STACK = /^\s+at |Uncaught|error: Uncaught/;

/** Runs `body` with a fresh temporary directory, removed afterwards. */
export async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "giftwrap_test_" });
  try {
    return await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The permissions of `deno task run` (what `compare` gives each run). */
export { RUN_PERMISSIONS };

/** What one subprocess run of the command line gave. */
export interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `giftwrap <args>` as a subprocess in `cwd`, with `permissions` (the run task's) and `env`
 * added to this process's environment.
 */
export async function giftwrap(
  args: readonly string[],
  cwd: string | URL = new URL("../", import.meta.url),
  permissions: readonly string[] = RUN_PERMISSIONS,
  env: Record<string, string> = {},
): Promise<Outcome> {
  const cli = decodeURIComponent(new URL("../cli.ts", import.meta.url).pathname);
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, cli, ...args],
    cwd,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  // Deno's own note when several processes start on one node_modules/ at once; not giftwrap's.
  const ours = text.decode(stderr).replace(/^Blocking waiting for file lock on .*\n/gm, "");
  return { code, stdout: text.decode(stdout), stderr: ours };
}

/** The lines of `text`, without the final newline. */
export function lines(text: string): string[] {
  const trimmed = text.trimEnd();
  return trimmed === "" ? [] : trimmed.split("\n");
}

/** Asserts that `stderr` holds no stack trace. */
export function assertNoStack(stderr: string): void {
  for (const line of lines(stderr)) assert.doesNotMatch(line, /^\s+at /, `a stack frame: ${line}`);
  assert.ok(!stderr.includes("Uncaught"), `an uncaught error:\n${stderr}`);
}

/** Asserts that `outcome` is a usage error: exit 2, one line on stderr, nothing on stdout. */
export function assertUsageError(outcome: Outcome, what: string): void {
  assert.equal(outcome.code, 2, `${what}: exit code\n${outcome.stderr}`);
  assert.equal(lines(outcome.stderr).length, 1, `${what}: not one line:\n${outcome.stderr}`);
  assert.equal(outcome.stdout, "", `${what}: stdout`);
  assertNoStack(outcome.stderr);
}
