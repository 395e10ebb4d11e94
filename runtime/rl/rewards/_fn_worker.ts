/**
 * The inside of the sandbox of `fn.ts`: the main module of a `deno run` subprocess that may read
 * only the reward module's directory (or import only from its host), loads the module with a
 * computed `import()` (so Deno checks every module of its graph, import attributes included,
 * against that permission), then revokes the permission and answers one call at a time.
 *
 * Arguments: the module's URL and the export to call. Lines in (stdin): `{ id, sample }`. Lines out
 * (stdout): `{ type: "loaded", kind }` or `{ type: "loadError", error }` once, then
 * `{ type: "result", id, ... }` per call with `value` (a number), `returned` (the type of anything
 * else) or `error` (`{ name, message }`). What the module logs goes to stderr, so that it cannot
 * mix with the replies; the parent drops stdout lines that are not replies.
 *
 * @module
 */

function errorOf(error: unknown): { name: string; message: string } {
  return error instanceof Error
    ? { name: error.name, message: error.message }
    : { name: "Error", message: String(error) };
}

const encoder = new TextEncoder();
const stdout = Deno.stdout;

function reply(message: unknown): void {
  // Synchronous and whole: a reply is small and the parent reads every line.
  const bytes = encoder.encode(JSON.stringify(message) + "\n");
  for (let at = 0; at < bytes.length;) at += stdout.writeSync(bytes.subarray(at));
}

/** The module's console output goes where it cannot be taken for a reply. */
function logToStderr(): void {
  const toStderr = console.error.bind(console);
  for (const name of ["log", "info", "debug", "dir", "table", "trace"] as const) {
    (console as unknown as Record<string, unknown>)[name] = toStderr;
  }
}

/**
 * Ends this process when the trainer is gone (killed outright, or quit on a second Ctrl-C) even
 * while a call computes without yielding: a worker thread checks the parent's pid.
 */
function watchParent(): void {
  const watch = `const parent = Deno.ppid;
setInterval(() => { if (Deno.ppid !== parent) Deno.kill(Deno.pid, "SIGKILL"); }, 250);`;
  new Worker(`data:text/javascript,${encodeURIComponent(watch)}`, { type: "module" });
}

async function main(): Promise<void> {
  const [module, name] = Deno.args as [string, string];
  // Errors the module raises outside a call (a throwing timer, an unhandled rejection) are
  // dropped so that the subprocess lives on; Ctrl-C at a terminal reaches the whole process group,
  // and the trainer, not this process, decides what it means.
  globalThis.addEventListener("error", (event) => event.preventDefault());
  globalThis.addEventListener("unhandledrejection", (event) => event.preventDefault());
  Deno.addSignalListener("SIGINT", () => {});
  watchParent();
  logToStderr();

  let fn: (sample: unknown) => unknown;
  try {
    // A computed specifier: Deno loads this graph under the permissions of the moment.
    const namespace = await import(module) as Record<string, unknown>;
    await Deno.permissions.revoke({ name: "read" });
    await Deno.permissions.revoke({ name: "import" });
    const kind = name in namespace ? typeof namespace[name] : "missing";
    reply({ type: "loaded", kind });
    if (kind !== "function") return;
    fn = namespace[name] as (sample: unknown) => unknown;
  } catch (error) {
    reply({ type: "loadError", error: errorOf(error) });
    return;
  }

  let pending = "";
  for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    pending += text;
    let end: number;
    while ((end = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      const { id, sample } = JSON.parse(line) as { id: number; sample: unknown };
      try {
        const value = await fn(sample);
        reply(
          typeof value === "number" && Number.isFinite(value)
            ? { type: "result", id, value }
            : typeof value === "number" // NaN and the infinities have no JSON
            ? { type: "result", id, returned: String(value) }
            : { type: "result", id, returned: value === null ? "null" : typeof value },
        );
      } catch (error) {
        reply({ type: "result", id, error: errorOf(error) });
      }
    }
  }
}

await main();
// Loaded no function, or stdin closed (the scorer is done): timers the module left, and the
// watching worker, must not hold the process.
Deno.exit(0);
