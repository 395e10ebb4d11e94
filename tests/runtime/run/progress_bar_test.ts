/**
 * The live bar, drawn into a fake terminal: a stream that records what cli-progress writes
 * (cursor moves and line clears included) and a small emulator that replays it into the screen a
 * terminal would show. Deno's test sanitizers fail any test that leaves the redraw timer running.
 */

import assert from "node:assert/strict";
import { barProgress } from "../../../runtime/run/progress_bar.ts";

/** A writable that says it is a terminal `columns` wide and keeps everything written to it. */
function fakeTerminal(
  columns = 100,
): { isTTY: true; columns: number; write(s: string): boolean; text: string } {
  return {
    isTTY: true,
    columns,
    text: "",
    write(s: string) {
      this.text += s;
      return true;
    },
  };
}

/**
 * The lines a terminal shows after `text`: handles `\n`, `\r`, and the CSI sequences readline
 * writes (cursor to column `G`, cursor up/down/forward/back `A B C D`, erase in line `K`, erase
 * below `J`); other private modes (`?25l`, `?7h`) change nothing on screen.
 */
function screen(text: string): string[] {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  // deno-lint-ignore no-control-regex -- matching escape sequences is the point
  const csi = /^\x1b\[(\??)(\d*)([A-Za-z])/;
  for (let i = 0; i < text.length;) {
    const ch = text[i]!;
    if (ch === "\x1b") {
      const m = csi.exec(text.slice(i));
      assert.ok(m, `unexpected escape at ${JSON.stringify(text.slice(i, i + 10))}`);
      i += m[0].length;
      if (m[1] === "?") continue;
      const n = m[2] === "" ? undefined : Number(m[2]);
      const line = lines[row]!;
      switch (m[3]) {
        case "G":
          col = (n ?? 1) - 1;
          break;
        case "A":
          row = Math.max(0, row - (n ?? 1));
          break;
        case "B":
          row += n ?? 1;
          break;
        case "C":
          col += n ?? 1;
          break;
        case "D":
          col = Math.max(0, col - (n ?? 1));
          break;
        case "K":
          if ((n ?? 0) === 0) line.length = Math.min(line.length, col);
          else if (n === 1) line.fill(" ", 0, col + 1);
          else line.length = 0;
          break;
        case "J":
          line.length = Math.min(line.length, col);
          lines.length = row + 1;
          break;
        default:
          assert.fail(`unexpected escape ${JSON.stringify(m[0])}`);
      }
      while (lines.length <= row) lines.push([]);
      continue;
    }
    i++;
    if (ch === "\n") {
      row++;
      col = 0; // the bar's stream is a terminal in cooked mode: \n is \r\n
      while (lines.length <= row) lines.push([]);
    } else if (ch === "\r") {
      col = 0;
    } else {
      const line = lines[row]!;
      while (line.length < col) line.push(" ");
      line[col++] = ch;
    }
  }
  const shown = lines.map((l) => l.join("").trimEnd());
  while (shown.length > 0 && shown[shown.length - 1] === "") shown.pop();
  return shown;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("barProgress() draws the train line with reward, last eval accuracy, tok/s and ETA", async () => {
  const term = fakeTerminal();
  const progress = barProgress({ stream: term, fps: 50 });
  progress.start("train", 10);
  progress.update({
    done: 2,
    reward: 0.25,
    rewardStd: 0.5,
    accuracy: 0.6,
    tokensPerSecond: 1234.4,
    etaSeconds: 74,
  });
  progress.update({ done: 3, reward: 0.5, rewardStd: 0.484, tokensPerSecond: 860, etaSeconds: 70 });
  await sleep(60);
  const live = screen(term.text);
  progress.stop();
  // The bar is 3/10 full; eval 60.0% is carried over from the step that evaluated.
  assert.deepEqual(live, [
    "train      ███░░░░░░░░ step 3/10 · reward 0.500 ± 0.484 · eval 60.0% · 860 tok/s · ETA 1m10s",
  ]);
});

Deno.test("barProgress() sizes the bar to the terminal and leaves out what does not fit", () => {
  // Narrower: the bar shrinks to 8 cells, then tok/s goes, then the eval accuracy, then the
  // reward, then the bar; the count and the ETA stay, cut at the edge if even they do not fit.
  const drawn = [];
  for (const columns of [140, 100, 80, 70, 50, 30]) {
    const term = fakeTerminal(columns);
    const progress = barProgress({ stream: term });
    progress.start("train", 150);
    progress.update({
      done: 42,
      reward: 0.5,
      rewardStd: 0.484,
      accuracy: 0.6,
      tokensPerSecond: 1860,
      etaSeconds: 74,
    });
    progress.log(`${columns} columns`); // draws the bar now
    const [, line] = screen(term.text);
    assert.ok(line!.length < columns, line);
    drawn.push(line);
    progress.stop();
  }
  assert.deepEqual(drawn, [
    "train      ██████░░░░░░░░░░░░░░ step 42/150 · reward 0.500 ± 0.484 · eval 60.0% · 1,860 tok/s · ETA 1m14s",
    "train      ███░░░░░░░░ step 42/150 · reward 0.500 ± 0.484 · eval 60.0% · 1,860 tok/s · ETA 1m14s",
    "train      ██░░░░░░ step 42/150 · reward 0.500 ± 0.484 · eval 60.0% · ETA 1m14s",
    "train      ██░░░░░░ step 42/150 · reward 0.500 ± 0.484 · ETA 1m14s",
    "train      step 42/150 · ETA 1m14s",
    "train      step 42/150 · ETA",
  ]);
});

Deno.test("barProgress() prints log lines above the live bar and keeps the bar drawn", async () => {
  const term = fakeTerminal();
  const progress = barProgress({ stream: term, fps: 50 });
  progress.log("run tiny · plan 3dfc49152e7c2685 → runs/tiny-20261126-162023");
  progress.start("warm start", 300);
  progress.update({ done: 120, loss: 0.81234, etaSeconds: 12 });
  await sleep(60);
  progress.log("warm start cache miss");
  // A log line is printed at once, with the bar drawn again below it.
  assert.deepEqual(screen(term.text), [
    "run tiny · plan 3dfc49152e7c2685 → runs/tiny-20261126-162023",
    "warm start cache miss",
    "warm start ████░░░░░░░ step 120/300 · loss 0.8123 · ETA 12s",
  ]);
  progress.update({ done: 300, loss: 0.5 });
  progress.stop();
  progress.log("warm start done");
  assert.deepEqual(screen(term.text), [
    "run tiny · plan 3dfc49152e7c2685 → runs/tiny-20261126-162023",
    "warm start cache miss",
    "warm start ███████████ step 300/300 · loss 0.5000 · in 0s",
    "warm start done",
  ]);
});

Deno.test("barProgress() keeps each finished phase's bar and starts a new one below it", () => {
  const term = fakeTerminal();
  const progress = barProgress({ stream: term });
  progress.start("eval", 500);
  progress.update({ done: 250, accuracy: 0.5 });
  progress.update({ done: 500, accuracy: 0.502 });
  progress.stop();
  progress.start("train", 150, 40); // resumed from step 40
  progress.update({ done: 41, reward: 0.375, rewardStd: 0.484, tokensPerSecond: 860 });
  progress.stop();
  progress.start("eval", 500);
  progress.update({ done: 100, accuracy: 0.7 });
  progress.stop();
  assert.deepEqual(screen(term.text), [
    "eval       ███████████ 500/500 problems · accuracy 50.2% · in 0s",
    "train      ███░░░░░░░░ step 41/150 · reward 0.375 ± 0.484 · eval 50.2% · 860 tok/s · in 0s",
    "eval       ██░░░░░░░░░ 100/500 problems · accuracy 70.0% · in 0s",
  ]);
});

Deno.test("barProgress() ignores update() outside a phase and a second stop()", () => {
  const term = fakeTerminal();
  const progress = barProgress({ stream: term });
  progress.update({ done: 1, loss: 1 });
  progress.stop();
  assert.equal(term.text, "");
  progress.start("warm start", 10);
  progress.update({ done: 10, loss: 0.25 });
  progress.stop();
  const drawn = term.text;
  progress.stop();
  progress.update({ done: 3, loss: 1 });
  assert.equal(term.text, drawn);
  assert.deepEqual(screen(term.text), [
    "warm start ███████████ step 10/10 · loss 0.2500 · in 0s",
  ]);
});

Deno.test("barProgress() stops its redraw timer on stop()", async () => {
  // Deno's sanitizers do not see the timers of npm code, so this watches the writes: a live bar
  // redraws every frame, a stopped one never again.
  const term = fakeTerminal();
  const progress = barProgress({ stream: term, fps: 100 });
  progress.start("train", 10);
  progress.update({ done: 1, reward: 0.5, rewardStd: 0.1 });
  const started = term.text.length;
  await sleep(60);
  assert.ok(term.text.length > started, "a live bar redraws");
  progress.stop();
  const stopped = term.text.length;
  await sleep(60);
  assert.equal(term.text.length, stopped);
});

Deno.test("barProgress() does not keep the process alive when a phase is never stopped", async () => {
  const module = new URL("../../../runtime/run/progress_bar.ts", import.meta.url).href;
  const code = `import { barProgress } from ${JSON.stringify(module)};
const progress = barProgress({ stream: { isTTY: true, columns: 80, write: () => true } });
progress.start("train", 10);
progress.update({ done: 1 });`;
  const { code: exit } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", code],
    stdout: "null",
    stderr: "inherit",
    signal: AbortSignal.timeout(10_000),
  }).output();
  assert.equal(exit, 0);
});

Deno.test("barProgress() redraws at most fps times a second", async () => {
  const term = fakeTerminal();
  const progress = barProgress({ stream: term, fps: 5 });
  progress.start("train", 1000);
  const drawn = term.text.length;
  for (let i = 1; i <= 50; i++) {
    progress.update({ done: i, reward: 0.5, rewardStd: 0.1 });
    await sleep(2);
  }
  // 50 updates over ~100 ms or more, at 5 frames a second: one redraw, or none yet.
  const redraws = term.text.slice(drawn).split("step ").length - 1;
  progress.stop();
  assert.ok(redraws <= 2, `${redraws} redraws`);
  assert.match(screen(term.text)[0]!, /step 50\/1000/);
});

Deno.test("barProgress() falls back to ETA from its own rate when none is given", async () => {
  const term = fakeTerminal();
  const progress = barProgress({ stream: term, fps: 50 });
  progress.start("train", 100);
  await sleep(20);
  progress.update({ done: 1, reward: 0.5, rewardStd: 0.1 });
  await sleep(60);
  const [line] = screen(term.text);
  progress.stop();
  assert.match(line!, /step 1\/100 · reward 0\.500 ± 0\.100 · ETA \d+s$/);
});

Deno.test("barProgress() prints plain lines on a stream that is not a terminal", () => {
  let text = "";
  const progress = barProgress({
    stream: {
      isTTY: false,
      write(s: string) {
        text += s;
      },
    },
  });
  progress.log("run tiny");
  progress.start("train", 150);
  progress.update({
    done: 1,
    reward: 0.375,
    rewardStd: 0.484,
    tokensPerSecond: 860,
    etaSeconds: 74,
  });
  progress.stop();
  assert.equal(
    text,
    "run tiny\nstep 1/150 · reward 0.375 ± 0.484 · 860 tok/s · ETA 1m14s\n",
  );
});
