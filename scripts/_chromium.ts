/**
 * A small client of the Chrome DevTools Protocol, enough to load a page in headless Chromium,
 * collect what went wrong while it loaded, evaluate expressions in it and take a screenshot. Used
 * by the report's browser test and by `scripts/screenshot_report.ts`.
 *
 * One WebSocket to the browser, with the page's session multiplexed on it ("flatten" mode).
 *
 * @module
 */

import { pathToFileURL } from "node:url";

/** Binaries tried on PATH, in order, when `GIFTWRAP_CHROMIUM` does not name one. */
const NAMES = ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"];

/**
 * The Chromium binary: `GIFTWRAP_CHROMIUM` when set, else the first of `chromium`,
 * `chromium-browser`, `google-chrome-stable`, `google-chrome` on PATH; null when none is found.
 *
 * @example
 * ```ts
 * const binary = findChromium(); // "/usr/bin/chromium"
 * ```
 */
export function findChromium(): string | null {
  const given = Deno.env.get("GIFTWRAP_CHROMIUM");
  if (given) return given;
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "");
  for (const name of NAMES) {
    for (const dir of dirs) {
      try {
        const info = Deno.statSync(`${dir}/${name}`);
        if (info.isFile && (info.mode === null || (info.mode & 0o111) !== 0)) {
          return `${dir}/${name}`;
        }
      } catch {
        // not in this directory
      }
    }
  }
  return null;
}

/** A protocol message from the browser: a reply (with `id`) or an event (with `method`). */
interface Message {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { code: number; message: string };
  sessionId?: string;
}

/** A running headless Chromium and its DevTools connection. */
export interface Chromium {
  /** Sends a command (to the page's session when `sessionId` is given) and returns its result. */
  send(
    method: string,
    params?: Record<string, unknown>,
    sessionId?: string,
  ): Promise<Record<string, unknown>>;
  /** Calls `listener` with every event; returns a function that removes it. */
  on(
    listener: (method: string, params: Record<string, unknown>, sessionId?: string) => void,
  ): () => void;
  /** Closes the browser, waits for it to exit and removes its temporary profile. */
  close(): Promise<void>;
}

/** Options of {@linkcode launchChromium}. */
export interface LaunchOptions {
  /** The binary. @default findChromium() */
  binary?: string;
  /** The window's size in CSS pixels. @default [1280, 900] */
  windowSize?: readonly [number, number];
  /** How long to wait for the browser's DevTools endpoint, in ms. @default 30000 */
  timeoutMs?: number;
}

/** Rejects after `ms` with `message`, unless `promise` settles first. */
function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Starts headless Chromium with a fresh temporary profile and connects to its DevTools endpoint.
 * Call `close()` when done, also on failure.
 *
 * @example
 * ```ts
 * const browser = await launchChromium();
 * try {
 *   const page = await loadPage(browser, "report.html");
 *   console.log(page.problems);
 * } finally {
 *   await browser.close();
 * }
 * ```
 */
export async function launchChromium(options: LaunchOptions = {}): Promise<Chromium> {
  const binary = options.binary ?? findChromium();
  if (binary === null) throw new Error("Cannot launch Chromium as no binary was found on PATH");
  const [width, height] = options.windowSize ?? [1280, 900];
  const profile = await Deno.makeTempDir({ prefix: "giftwrap_chromium_" });
  const child = new Deno.Command(binary, {
    args: [
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-extensions",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--hide-scrollbars",
      "--mute-audio",
      `--window-size=${width},${height}`,
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();

  // Reads stderr to its end (a full pipe would stall the browser), resolving the endpoint from
  // the line "DevTools listening on ws://…".
  let log = "";
  let found: (url: string) => void = () => {};
  const endpoint = new Promise<string>((resolve) => found = resolve);
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const drained = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      log += value;
      const match = /DevTools listening on (ws:\/\/\S+)/.exec(log);
      if (match) found(match[1]!);
    }
  })().catch(() => {});
  const exited = child.status;

  let ws: WebSocket | null = null;
  async function stop(): Promise<void> {
    if (ws !== null && ws.readyState === WebSocket.OPEN) {
      const closed = new Promise((resolve) => ws!.addEventListener("close", resolve));
      ws.close();
      await within(closed, 5000, "").catch(() => {});
    }
    const status = await within(exited, 5000, "").catch(() => null);
    if (status === null) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await exited;
    }
    // Helper processes may hold stderr open a moment after the browser exits.
    await within(drained, 5000, "").catch(() => reader.cancel().catch(() => {}));
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }

  let url: string;
  try {
    url = await within(
      Promise.race([
        endpoint,
        exited.then((s) => {
          throw new Error(`Chromium exited with code ${s.code} before listening:\n${log}`);
        }),
      ]),
      options.timeoutMs ?? 30000,
      `Chromium did not open its DevTools endpoint in time:\n${log}`,
    );
    ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws!.addEventListener("open", resolve, { once: true });
      ws!.addEventListener("error", () => reject(new Error(`Cannot connect to ${url}`)), {
        once: true,
      });
    });
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await stop();
    throw e;
  }

  const socket = ws;
  let next = 1;
  const pending = new Map<
    number,
    { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }
  >();
  const listeners = new Set<
    (method: string, params: Record<string, unknown>, sessionId?: string) => void
  >();
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data)) as Message;
    if (message.id !== undefined) {
      const waiter = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) waiter?.reject(new Error(`CDP error: ${message.error.message}`));
      else waiter?.resolve(message.result ?? {});
    } else if (message.method !== undefined) {
      for (const l of listeners) l(message.method, message.params ?? {}, message.sessionId);
    }
  });
  socket.addEventListener("close", () => {
    for (const waiter of pending.values()) waiter.reject(new Error("DevTools connection closed"));
    pending.clear();
  });

  function send(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<Record<string, unknown>> {
    const id = next++;
    const promise = new Promise<Record<string, unknown>>((resolve, reject) => {
      pending.set(id, { resolve, reject });
    });
    socket.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return promise;
  }

  return {
    send,
    on(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      if (socket.readyState === WebSocket.OPEN) {
        // The browser closes the connection as it exits.
        const closing = new Promise((resolve) => socket.addEventListener("close", resolve));
        send("Browser.close").catch(() => {});
        await within(closing, 5000, "").catch(() => {});
      }
      await stop();
    },
  };
}

/** A page loaded by {@linkcode loadPage}. */
export interface Page {
  /** The page's session, for {@linkcode Chromium.send}. */
  sessionId: string;
  /** What went wrong while loading: exceptions, console and log errors, failed requests. */
  problems: string[];
  /** Evaluates `expression` in the page and returns its value (JSON-serialisable). */
  evaluate(expression: string): Promise<unknown>;
  /** A PNG of the whole page (not just the window). */
  screenshot(): Promise<Uint8Array>;
}

/** `path` (a file) or `url` as a URL. */
function toUrl(target: string): string {
  return /^[a-z][a-z0-9+.-]*:/i.test(target) ? target : pathToFileURL(target).href;
}

function describe(x: unknown): string {
  if (typeof x !== "object" || x === null) return String(x);
  const o = x as Record<string, unknown>;
  return String(o.description ?? o.value ?? o.unserializableValue ?? o.type ?? "?");
}

/**
 * Opens `target` (a file path or a URL) in a new tab and waits for its load event, collecting
 * uncaught exceptions, console errors, log entries of level error and failed requests.
 *
 * @example
 * ```ts
 * const page = await loadPage(browser, "runs/x/report.html");
 * console.log(page.problems, await page.evaluate("document.querySelectorAll('svg').length"));
 * ```
 */
export async function loadPage(
  browser: Chromium,
  target: string,
  options: { timeoutMs?: number } = {},
): Promise<Page> {
  const url = toUrl(target);
  const { targetId } = await browser.send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await browser.send("Target.attachToTarget", {
    targetId,
    flatten: true,
  }) as {
    sessionId: string;
  };
  const problems: string[] = [];
  const requests = new Map<string, string>();
  let loaded: () => void = () => {};
  const load = new Promise<void>((resolve) => loaded = resolve);
  browser.on((method, params, session) => {
    if (session !== sessionId) return;
    switch (method) {
      case "Page.loadEventFired":
        loaded();
        break;
      case "Runtime.exceptionThrown": {
        const d = params.exceptionDetails as Record<string, unknown>;
        problems.push(`exception: ${d.exception ? describe(d.exception) : String(d.text)}`);
        break;
      }
      case "Runtime.consoleAPICalled":
        if (params.type === "error" || params.type === "assert") {
          const args = (params.args as unknown[] | undefined) ?? [];
          problems.push(`console.${params.type}: ${args.map(describe).join(" ")}`);
        }
        break;
      case "Log.entryAdded": {
        const entry = params.entry as Record<string, unknown>;
        if (entry.level === "error") {
          problems.push(`log: ${entry.text}${entry.url ? ` (${entry.url})` : ""}`);
        }
        break;
      }
      case "Network.requestWillBeSent":
        requests.set(
          String(params.requestId),
          String((params.request as Record<string, unknown>).url),
        );
        break;
      case "Network.loadingFailed":
        problems.push(
          `request failed: ${requests.get(String(params.requestId)) ?? params.requestId}: ` +
            String(params.errorText),
        );
        break;
    }
  });
  for (const domain of ["Runtime", "Log", "Page", "Network"]) {
    await browser.send(`${domain}.enable`, {}, sessionId);
  }
  const navigated = await browser.send("Page.navigate", { url }, sessionId);
  if (typeof navigated.errorText === "string") {
    problems.push(`navigation failed: ${url}: ${navigated.errorText}`);
  } else {
    await within(load, options.timeoutMs ?? 30000, `${url} did not load in time`);
  }

  async function evaluate(expression: string): Promise<unknown> {
    const r = await browser.send(
      "Runtime.evaluate",
      { expression, returnByValue: true, awaitPromise: true },
      sessionId,
    );
    if (r.exceptionDetails) {
      throw new Error(
        `Cannot evaluate ${expression}: ${
          describe((r.exceptionDetails as Record<string, unknown>).exception)
        }`,
      );
    }
    return (r.result as { value?: unknown }).value;
  }

  async function screenshot(): Promise<Uint8Array> {
    const metrics = await browser.send("Page.getLayoutMetrics", {}, sessionId);
    const size = metrics.cssContentSize as { width: number; height: number };
    const { data } = await browser.send("Page.captureScreenshot", {
      format: "png",
      captureBeyondViewport: true,
      clip: { x: 0, y: 0, width: Math.ceil(size.width), height: Math.ceil(size.height), scale: 1 },
    }, sessionId);
    return Uint8Array.from(atob(String(data)), (c) => c.charCodeAt(0));
  }

  return { sessionId, problems, evaluate, screenshot };
}
