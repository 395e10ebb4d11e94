import assert from "node:assert/strict";
import { countdownScore, evaluateExpression } from "../../../../runtime/rl/rewards/countdown.ts";

const ROW = { numbers: [2, 4, 7, 25], target: 14 };

Deno.test("evaluateExpression() evaluates exactly, with precedence and parentheses", () => {
  assert.deepEqual(evaluateExpression("(7/2)*4"), {
    value: { num: 14n, den: 1n },
    literals: [7, 2, 4],
  });
  assert.deepEqual(evaluateExpression("7/2")?.value, { num: 7n, den: 2n });
  assert.deepEqual(evaluateExpression("2+3*4")?.value, { num: 14n, den: 1n });
  assert.deepEqual(evaluateExpression("(2+3)*4")?.value, { num: 20n, den: 1n });
  assert.deepEqual(evaluateExpression("10-4-3")?.value, { num: 3n, den: 1n });
  assert.deepEqual(evaluateExpression("2-7")?.value, { num: -5n, den: 1n });
  assert.deepEqual(evaluateExpression("1/3+1/6")?.value, { num: 1n, den: 2n });
  assert.deepEqual(evaluateExpression(" ( 25 - 4 ) / 7 ")?.value, { num: 3n, den: 1n });
});

Deno.test("evaluateExpression() is null for anything but a whole expression", () => {
  for (
    const text of ["", " ", "abc", "2+", "(2+3", "2+3)", "2 3", "-3+5", "2*-3", "2+3=5", "1.5"]
  ) {
    assert.equal(evaluateExpression(text), null, JSON.stringify(text));
  }
  assert.equal(evaluateExpression("7/(2-2)"), null, "division by zero");
  assert.equal(evaluateExpression("(".repeat(1000) + "1" + ")".repeat(1000)), null, "too deep");
});

Deno.test("countdownScore() gives 1 for an expression of the given numbers that hits the target", () => {
  assert.equal(countdownScore("(7/2)*4", ROW), 1); // 7/2 is exact, not 3
  assert.equal(countdownScore("7*2", ROW), 1); // not every number must be used
  assert.equal(
    countdownScore("  (25 - 4) / 7 * 2 + 4 + 4 ", { numbers: [25, 4, 7, 2, 4, 4], target: 14 }),
    1,
  );
  assert.equal(countdownScore("25-7-4", { numbers: [25, 7, 4], target: 14 }), 1);
  assert.equal(countdownScore("\n7 * 2\n", ROW), 1);
});

Deno.test("countdownScore() gives 0 for a wrong value, a reused or foreign number, or no expression", () => {
  assert.equal(countdownScore("7*4", ROW), 0, "wrong value");
  assert.equal(countdownScore("7+7", ROW), 0, "7 is given once");
  assert.equal(countdownScore("4+4+4+2", ROW), 0, "4 is given once");
  assert.equal(countdownScore("7*2", { numbers: [7, 3], target: 14 }), 0, "2 is not given");
  assert.equal(countdownScore("14", ROW), 0, "14 is not given");
  assert.equal(
    countdownScore("7/(4-4)", { numbers: [7, 4, 4], target: 14 }),
    0,
    "division by zero",
  );
  assert.equal(countdownScore("the answer is 7*2", ROW), 0, "garbage around it");
  assert.equal(countdownScore("7*2 = 14", ROW), 0, "trailing characters");
  assert.equal(countdownScore("", ROW), 0, "empty");
  assert.equal(countdownScore("0-7*2+28", { numbers: [0, 7, 2, 28], target: 14 }), 1);
  assert.equal(countdownScore("-7*2+28", { numbers: [7, 2, 28], target: 14 }), 0, "unary minus");
});
