import assert from "node:assert/strict";
import {
  compile,
  customObjective,
  dapo,
  drGrpo,
  fn,
  formatPlan,
  gift,
  grpo,
  gspo,
  onlineDpo,
  type Recipe,
  recipe,
  rewardModel,
  rewards,
  rloo,
  tasks,
  una,
} from "../../mod.ts";
import { bytesText, count, flopsText } from "../../dsl/format.ts";
import frontDoor from "../../recipes/addition_gift.ts";

// Golden tests: the printed plan of each objective preset, on the front-door recipe, is pinned in
// tests/dsl/golden/<preset>.txt. After an intended change, rewrite them with
//   UPDATE_GOLDEN=1 deno task test
// and read the diff: it is the change in what giftwrap will do.

const { reference: _declared, ...door } = frontDoor;

const PRESETS: Record<string, Recipe> = {
  gift: frontDoor,
  grpo: recipe({ ...door, name: "addition-grpo", objective: grpo() }),
  drGrpo: recipe({ ...door, name: "addition-drgrpo", objective: drGrpo() }),
  dapo: recipe({
    ...door,
    name: "addition-dapo",
    rewards: [
      { source: rewards.numericAnswer(), success: true },
      { source: rewards.overlongPenalty({ buffer: 2 }), weight: 0.5 },
    ],
    objective: dapo(),
  }),
  gspo: recipe({ ...door, name: "addition-gspo", objective: gspo() }),
  rloo: recipe({ ...door, name: "addition-rloo", objective: rloo() }),
  onlineDpo: recipe({ ...door, name: "addition-online-dpo", objective: onlineDpo() }),
  una: recipe({ ...door, name: "addition-una", objective: una() }),
};

// The printed plan of each synthetic task beyond addition, with GIFT and the reward sources and
// options that suit it, pinned in tests/dsl/golden/task_<kind>.txt.
const TASKS: Record<string, Recipe> = {
  multiplication: recipe({
    ...door,
    name: "multiplication-gift",
    data: tasks.multiplication({ digits: 2 }),
    rewards: [
      { source: rewards.numericAnswer(), success: true },
      { source: fn("./format.ts", "score", { range: [0, 1], timeoutMs: 2000 }), weight: 0.1 },
    ],
  }),
  sorting: recipe({
    ...door,
    name: "sorting-gift",
    data: tasks.sorting({ length: 5, maxValue: 9 }),
    rewards: [{ source: rewards.exactMatch() }],
    eval: { every: 10, split: "train", limit: 200 },
  }),
  countdown: recipe({
    ...door,
    name: "countdown-gift",
    data: tasks.countdown({ numbers: 4, maxNumber: 25, maxTarget: 100 }),
    rewards: [
      { source: rewards.countdown(), success: true, onError: "zero" },
      { source: rewardModel("runs/rm/checkpoints/final", { range: [-1, 1] }), weight: 0.1 },
    ],
  }),
};

const update = Deno.env.get("UPDATE_GOLDEN") === "1";

const GOLDEN: [string, string, Recipe][] = [
  ...Object.entries(PRESETS).map(([p, r]): [string, string, Recipe] => [`the ${p} preset`, p, r]),
  ...Object.entries(TASKS).map((
    [t, r],
  ): [string, string, Recipe] => [`the ${t} task`, `task_${t}`, r]),
];

for (const [what, file, r] of GOLDEN) {
  Deno.test(`formatPlan() prints ${what} as its golden file`, async () => {
    const golden = new URL(`./golden/${file}.txt`, import.meta.url);
    const text = formatPlan(compile(r));
    if (update) await Deno.writeTextFile(golden, text);
    assert.equal(text, await Deno.readTextFile(golden));
  });
}

Deno.test("formatPlan() prints each new task's data, shapes and reward options", () => {
  const text = (name: string) => formatPlan(compile(TASKS[name]!));
  const multiplication = text("multiplication");
  assert.match(
    multiplication,
    /^ {2}data {8}multiplication of two 2-digit numbers, zero-padded: 'a\*b=' → 'c' · 5,000 train/m,
  );
  assert.match(multiplication, /^ {2}shapes .* T 12 = 7 prompt \+ 5 new tokens · V 15$/m);
  assert.match(
    multiplication,
    /fn module "\.\/format\.ts" export "score" range \[0, 1\] sandbox true timeoutMs 2000 ·/,
  );
  const sorting = text("sorting");
  assert.match(sorting, /^ {2}shapes .* T 21 = 11 prompt \+ 10 new tokens · V 15$/m);
  assert.match(sorting, /step 0: greedy decoding of 200 train problems, scored by exactMatch/);
  const countdown = text("countdown");
  assert.match(countdown, /^ {2}shapes .* T 33 = 17 prompt \+ 16 new tokens · V 22$/m);
  assert.match(
    countdown,
    /^ {2}rewards {5}countdown · weight 1 · success · range \[0, 1\] · onError zero$/m,
  );
  assert.match(
    countdown,
    /rewardModel checkpoint "runs\/rm\/checkpoints\/final" batchSize 64 range \[-1, 1\]/,
  );
  // onError is printed only when it is not the default "fail".
  assert.doesNotMatch(multiplication, /onError/);
});

Deno.test("formatPlan() lists the stages in execution order", () => {
  const text = formatPlan(compile({ ...PRESETS["grpo"]!, miniBatches: 2 }));
  const order = ["init", "warm start", "reference", "eval", "sample", "score", "old log-probs"]
    .concat([
      "reference log-probs",
      "advantages",
      "update",
      "eval",
      "checkpoint",
      "samples",
      "eval",
      "checkpoint",
    ]);
  const names = [...text.matchAll(/^ {2,3}\d+ {2}(\S+(?: \S+)*?) {2,}/gm)].map((m) => m[1]);
  assert.deepEqual(names, order);
});

Deno.test("formatPlan() prints the warnings", () => {
  const text = formatPlan(compile({ ...frontDoor, reference: "rollout", miniBatches: 1 }));
  assert.match(
    text,
    /\nwarnings\n {2}- miniBatches: with reference 'rollout' and one optimiser step/,
  );
  assert.match(formatPlan(compile(frontDoor)), /\nwarnings: none\n$/);
});

Deno.test("count(), flopsText() and bytesText() print numbers without a locale", () => {
  assert.equal(count(0), "0");
  assert.equal(count(999), "999");
  assert.equal(count(1000), "1,000");
  assert.equal(count(1234567), "1,234,567");
  assert.equal(flopsText(0), "0 FLOP");
  assert.equal(flopsText(999), "999 FLOP");
  assert.equal(flopsText(1_234_000_000), "1.23 GFLOP");
  assert.equal(flopsText(5e15), "5 PFLOP");
  assert.equal(bytesText(1023), "1023 B");
  assert.equal(bytesText(1024), "1 KiB");
  assert.equal(bytesText(3 * 1024 * 1024 / 2), "1.5 MiB");
});

Deno.test("formatPlan() names the front door's objective and its defaults", () => {
  const text = formatPlan(compile(recipe({ ...frontDoor, objective: gift({ betaC: 2 }) })));
  assert.match(text, /^ {2}objective {3}gift · betaC 2 · stdEpsilon 1e-6$/m);
  assert.match(text, /mean over rows of \(Â − 2·ũ\)²/);
});

Deno.test("formatPlan() prints a custom objective's module and export on the objective line", () => {
  const objective = customObjective("./losses/mine.ts", {
    export: "clipped",
    options: { clip: 0.2 },
    reads: { old: true },
  });
  const text = formatPlan(compile(recipe({ ...door, objective, miniBatches: 2 })));
  assert.match(
    text,
    /^ {2}objective {3}custom · module "\.\/losses\/mine\.ts" · export "clipped" · options \{"clip":0\.2\} · reads\n {14}\{"reference":true,"old":true\}$/m,
  );
  assert.match(text, /^ {14}clipped from "\.\/losses\/mine\.ts" with options \{"clip":0\.2\}$/m);
  assert.match(
    text,
    /^ {2}reference {3}initial: a frozen copy of the policy after the warm start$/m,
  );
  assert.match(text, /^ {3}\d {2}old log-probs {8}log π_old of the completions/m);
  assert.doesNotMatch(text, /advantages|targets/);
  const unread = formatPlan(compile(recipe({
    ...door,
    objective: customObjective("./losses/mine.ts", { reads: { reference: false } }),
  })));
  assert.match(unread, /^ {2}reference {3}none \(custom reads no reference\)$/m);
  assert.match(
    unread,
    /^ {2}objective {3}custom · module "\.\/losses\/mine\.ts" · export "default" ·/m,
  );
});
