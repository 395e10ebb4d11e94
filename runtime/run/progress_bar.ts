/**
 * A live progress bar for a terminal: one line per phase, redrawn in place at most `fps` times a
 * second, with log lines printed above it. Drawn with `cli-progress`'s `MultiBar` (its `log()`
 * keeps lines and bar apart); the layout is our own. In a terminal 120 columns wide:
 *
 * ```
 * run addition-gift · plan 3dfc49152e7c2685 · cpu · 412,288 parameters → runs/addition-gift-…
 * warm start ████████████████████ step 300/300 · loss 0.1155 · in 9s
 * eval       ████████████████████ 500/500 problems · accuracy 50.2% · in 4s
 * checkpoint step 40 → runs/addition-gift-20261126-162023/checkpoints/step-40
 * train      ████████░░░░░░░░░░░░ step 62/150 · reward 0.420 ± 0.450 · eval 60.0% · 836 tok/s · ETA 1m14s
 * ```
 *
 * The bar's width follows the terminal's (20 cells down to 8); what still does not fit is left
 * out, tok/s first, then the train line's eval accuracy, then the reward or loss. A finished
 * phase's bar stays on screen with its final values and how long it took.
 *
 * The terminal's cursor and line wrapping are left alone, so a run killed mid-bar leaves the
 * terminal as it was. While a bar is live, everything printed to its stream must go through
 * `log()`: a bare `console.log` would land on the bar's line. On a stream that is not a terminal
 * the bar could not redraw in place, so {@linkcode barProgress} prints plain lines
 * ({@linkcode lineProgress}) instead.
 *
 * @module
 */

import process from "node:process";
import cliProgress from "cli-progress";
import { duration, lineProgress, pct, type Phase, type Progress } from "./progress.ts";

/** What the bar writes to: a terminal stream such as `process.stdout`. */
export interface BarStream {
  write(chunk: string): unknown;
  /** Only a terminal gets a bar; anything else gets plain lines. */
  isTTY?: boolean;
  /** The terminal's width, read at every redraw (so a resized terminal is followed). */
  columns?: number;
}

/** Options for {@linkcode barProgress}. */
export interface BarProgressOptions {
  /**
   * Where the bar is drawn.
   *
   * @default {process.stdout}
   */
  stream?: BarStream;
  /**
   * Width of the line in columns.
   *
   * @default {the stream's `columns`, or 80}
   */
  columns?: number;
  /**
   * Redraws per second, at most; updates in between only change what the next redraw shows.
   *
   * @default {10}
   */
  fps?: number;
  /**
   * Widest the bar itself gets, in characters (narrower where the line would not fit).
   *
   * @default {20}
   */
  barSize?: number;
}

// The part of cli-progress this module uses (the package ships no types).
interface CliBar {
  update(value: number): void;
  stop(): void;
}
interface CliMultiBar {
  create(total: number, startValue: number): CliBar;
  log(text: string): void;
  update(): void;
  stop(): void;
  on(event: "start" | "update-post", listener: () => void): void;
  timer: { unref?: () => void } | number | null;
}
interface RenderParams {
  value: number;
  total: number;
  /** cli-progress's own estimate of the seconds left: a number, or "NULL" / "INF". */
  eta: number | string;
  startTime: number;
  stopTime: number | null;
}
type Formatter = (options: unknown, params: RenderParams, payload: unknown) => string;
const { MultiBar } = cliProgress as unknown as {
  MultiBar: new (options: Record<string, unknown>) => CliMultiBar;
};

/** The label column fits the longest phase name. */
const LABEL_WIDTH = "warm start".length;
/** The bar gives up width, down to `MIN_BAR`, until the fields have this much room. */
const TEXT_ROOM = 76;
/** The narrowest bar; a line without room for it and `MIN_TEXT_ROOM` goes without a bar. */
const MIN_BAR = 8;
const MIN_TEXT_ROOM = 30;

/** What the current phase's line shows, besides the count the bar keeps. */
interface View {
  phase: Phase;
  loss?: number;
  accuracy?: number;
  reward?: number;
  rewardStd?: number;
  tokensPerSecond?: number;
  etaSeconds?: number;
}

/**
 * Progress as a live bar on a terminal (plain lines, as {@linkcode lineProgress}, when the stream
 * is not one). Each `start()` begins a new bar below the last; `update()` outside a phase is
 * ignored; `stop()` draws the bar's final state, stops its redraw timer and may be called twice.
 *
 * @example
 * ```ts
 * const progress = barProgress();
 * progress.start("train", 150);
 * progress.update({ done: 42, reward: 0.5, rewardStd: 0.484, accuracy: 0.6, tokensPerSecond: 860 });
 * progress.log("checkpoint step 40 → runs/addition-20261126-162023/checkpoints/step-40");
 * progress.stop();
 * ```
 */
export function barProgress(options: BarProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stdout;
  if (stream.isTTY !== true) return lineProgress((line) => stream.write(line + "\n"));
  const fps = options.fps ?? 10;
  const barSize = options.barSize ?? 20;

  let multi: CliMultiBar | null = null;
  let bar: CliBar | null = null;
  let view: View = { phase: "train" };
  // The last eval accuracy seen, in any phase: the train line keeps showing it between evals.
  let accuracy: number | undefined;

  function format(_options: unknown, params: RenderParams): string {
    const columns = Math.max(20, options.columns ?? stream.columns ?? 80);
    // The bar's width depends on the terminal alone, so it does not jump as the numbers beside it
    // change length; the fields get the rest, leaving out what does not fit.
    const room = columns - 1 - LABEL_WIDTH - 1;
    const size = Math.min(barSize, Math.max(MIN_BAR, room - 1 - TEXT_ROOM));
    const drawn = room - 1 - size >= MIN_TEXT_ROOM;
    const text = fit(fieldsOf(view, accuracy, params), drawn ? room - 1 - size : room);
    const line = view.phase.padEnd(LABEL_WIDTH) + " " +
      (drawn ? drawBar(params.value / params.total, size) + " " : "") + text;
    // Keep the line one column short of the terminal's edge, where a terminal would wrap it and
    // the next redraw would land on the wrong line.
    return line.slice(0, columns - 1);
  }

  function stop(): void {
    if (multi === null || bar === null) return;
    bar.stop(); // first, so the final redraw below knows how long the phase took
    multi.stop();
    multi = null;
    bar = null;
  }

  return {
    start(phase, total, done = 0) {
      stop();
      view = { phase };
      multi = new MultiBar({
        stream,
        fps,
        format: format satisfies Formatter,
        // Leave the terminal's cursor and line wrapping alone: a run killed mid-bar must not
        // leave them changed. Every redraw rewrites the line, so a `log()` line printed over it
        // is always drawn over again.
        hideCursor: false,
        linewrap: true,
        forceRedraw: true,
        autopadding: false,
      });
      // The redraw timer must not keep the process alive on its own (a run that fails between
      // start() and stop() would otherwise never exit); cli-progress sets a new one every frame.
      const current = multi;
      multi.on("start", () => unrefTimer(current));
      multi.on("update-post", () => unrefTimer(current));
      bar = multi.create(Math.max(total, 0), Math.min(done, total));
      multi.update(); // draw at once, not a frame later
    },
    update(u) {
      if (bar === null) return;
      const { phase } = view;
      view = { phase };
      if (u.accuracy !== undefined) view.accuracy = accuracy = u.accuracy;
      if (u.loss !== undefined) view.loss = u.loss;
      if (u.reward !== undefined) view.reward = u.reward;
      if (u.rewardStd !== undefined) view.rewardStd = u.rewardStd;
      if (u.tokensPerSecond !== undefined) view.tokensPerSecond = u.tokensPerSecond;
      if (u.etaSeconds !== undefined) view.etaSeconds = u.etaSeconds;
      bar.update(u.done);
    },
    stop,
    log(line) {
      if (multi === null) {
        stream.write(line + "\n");
        return;
      }
      multi.log(line + "\n");
      multi.update(); // print it now, in order with anything else written, and redraw the bar
    },
  };
}

/** Lets the process exit with `multi`'s redraw timer pending. */
function unrefTimer(multi: CliMultiBar): void {
  if (typeof multi.timer === "object") multi.timer?.unref?.();
}

/**
 * The fields after the bar, in order: the count, the phase's numbers, and the ETA (or, once done,
 * the time taken). `drop` ranks what goes first when the line is too wide: tok/s, then the train
 * line's eval accuracy, then the phase's other numbers; the count and the ETA stay.
 */
function fieldsOf(
  view: View,
  accuracy: number | undefined,
  params: RenderParams,
): { text: string; drop: number }[] {
  const count = `${params.value}/${params.total}`;
  const fields: { text: string; drop: number }[] = [];
  if (view.phase === "warm start") {
    fields.push({ text: `step ${count}`, drop: 0 });
    if (view.loss !== undefined) fields.push({ text: `loss ${view.loss.toFixed(4)}`, drop: 2 });
  } else if (view.phase === "train") {
    fields.push({ text: `step ${count}`, drop: 0 });
    if (view.reward !== undefined) {
      const std = view.rewardStd === undefined ? "" : ` ± ${view.rewardStd.toFixed(3)}`;
      fields.push({ text: `reward ${view.reward.toFixed(3)}${std}`, drop: 2 });
    }
    if (accuracy !== undefined) fields.push({ text: `eval ${pct(accuracy)}`, drop: 3 });
    if (view.tokensPerSecond !== undefined) {
      const rate = Math.round(view.tokensPerSecond).toLocaleString("en-US");
      fields.push({ text: `${rate} tok/s`, drop: 4 });
    }
  } else {
    fields.push({ text: `${count} problems`, drop: 0 });
    if (view.accuracy !== undefined) {
      fields.push({ text: `accuracy ${pct(view.accuracy)}`, drop: 2 });
    }
  }
  if (params.stopTime !== null) {
    fields.push({ text: `in ${duration((params.stopTime - params.startTime) / 1000)}`, drop: 1 });
  } else if (view.etaSeconds !== undefined) {
    fields.push({ text: `ETA ${duration(view.etaSeconds)}`, drop: 1 });
  } else if (typeof params.eta === "number" && params.value < params.total) {
    fields.push({ text: `ETA ${duration(params.eta)}`, drop: 1 });
  }
  return fields;
}

/** The fields joined with ` · `, leaving out the first to drop until they fit in `width`. */
function fit(fields: { text: string; drop: number }[], width: number): string {
  const kept = [...fields];
  for (;;) {
    const text = kept.map((f) => f.text).join(" · ");
    const worst = Math.max(...kept.map((f) => f.drop));
    if (text.length <= width || worst <= 1) return text;
    kept.splice(kept.findIndex((f) => f.drop === worst), 1);
  }
}

/** `fraction` of `width` cells filled: `██████░░░░`. */
function drawBar(fraction: number, width: number): string {
  const filled = Math.round(
    Math.min(Math.max(Number.isFinite(fraction) ? fraction : 1, 0), 1) * width,
  );
  return "█".repeat(filled) + "░".repeat(width - filled);
}
