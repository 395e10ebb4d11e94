/** Helpers shared by the tests: the CLI run in-process, temporary directories. */

import { main } from "../cli.ts";

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
