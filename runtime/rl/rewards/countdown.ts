/**
 * The countdown verifier: reach `target` with an arithmetic expression over the given `numbers`,
 * each used at most as often as it is given. The completion (trimmed) must be the expression and
 * nothing else:
 *
 *   expr   := term (("+" | "-") term)*
 *   term   := factor (("*" | "/") factor)*
 *   factor := integer | "(" expr ")"
 *
 * Integers are non-negative decimal literals; spaces are allowed between tokens; there is no unary
 * minus. Evaluation is exact, over rationals with BigInt numerator and denominator, so `(7/2)*4` is
 * 14 and `7/2*2` is 7, not a rounding away from it. Targets are integers.
 *
 * @module
 */

/** An exact rational `num / den`, in lowest terms, `den > 0`. */
export interface Rational {
  num: bigint;
  den: bigint;
}

/** A countdown problem: the numbers to use and the target to reach. */
export interface CountdownRow {
  numbers: number[];
  target: number;
}

/** The value of a parsed expression and the integer literals it uses, in order. */
export interface Evaluation {
  value: Rational;
  literals: number[];
}

/** Deeper nesting than this is not an answer, and would only risk the stack. */
const MAX_DEPTH = 256;

function gcd(a: bigint, b: bigint): bigint {
  if (a < 0n) a = -a;
  if (b < 0n) b = -b;
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

function rational(num: bigint, den: bigint): Rational {
  if (den < 0n) [num, den] = [-num, -den];
  const g = gcd(num, den);
  return g > 1n ? { num: num / g, den: den / g } : { num, den };
}

/** Thrown inside the parser only; `evaluateExpression()` turns it into null. */
class Invalid extends Error {}

function apply(op: string, a: Rational, b: Rational): Rational {
  switch (op) {
    case "+":
      return rational(a.num * b.den + b.num * a.den, a.den * b.den);
    case "-":
      return rational(a.num * b.den - b.num * a.den, a.den * b.den);
    case "*":
      return rational(a.num * b.num, a.den * b.den);
    default:
      if (b.num === 0n) throw new Invalid("division by zero");
      return rational(a.num * b.den, a.den * b.num);
  }
}

/**
 * Parses and evaluates an arithmetic expression of non-negative integers with `+ - * /` and
 * parentheses, exactly. Null when the text is not such an expression in full (garbage, trailing
 * characters, a unary minus, empty) or when it divides by zero.
 *
 * @example
 * ```ts
 * evaluateExpression("(7/2)*4"); // { value: { num: 14n, den: 1n }, literals: [7, 2, 4] }
 * evaluateExpression("1/0"); // null
 * evaluateExpression("-3+5"); // null
 * ```
 */
export function evaluateExpression(text: string): Evaluation | null {
  let pos = 0;
  const literals: number[] = [];

  function skipSpaces(): void {
    while (pos < text.length && /\s/.test(text[pos]!)) pos++;
  }

  function expr(depth: number): Rational {
    let value = term(depth);
    for (skipSpaces(); text[pos] === "+" || text[pos] === "-"; skipSpaces()) {
      const op = text[pos++]!;
      value = apply(op, value, term(depth));
    }
    return value;
  }

  function term(depth: number): Rational {
    let value = factor(depth);
    for (skipSpaces(); text[pos] === "*" || text[pos] === "/"; skipSpaces()) {
      const op = text[pos++]!;
      value = apply(op, value, factor(depth));
    }
    return value;
  }

  function factor(depth: number): Rational {
    skipSpaces();
    if (text[pos] === "(") {
      if (depth >= MAX_DEPTH) throw new Invalid("too deep");
      pos++;
      const value = expr(depth + 1);
      skipSpaces();
      if (text[pos] !== ")") throw new Invalid("expected ')'");
      pos++;
      return value;
    }
    const start = pos;
    while (pos < text.length && text[pos]! >= "0" && text[pos]! <= "9") pos++;
    if (pos === start) throw new Invalid("expected a number or '('");
    const digits = text.slice(start, pos);
    literals.push(Number(digits));
    return { num: BigInt(digits), den: 1n };
  }

  try {
    const value = expr(0);
    skipSpaces();
    return pos === text.length ? { value, literals } : null;
  } catch (error) {
    if (error instanceof Invalid) return null;
    throw error;
  }
}

/**
 * 1 when the trimmed completion is an expression over `row.numbers` (each used at most as often as
 * given) whose exact value is `row.target`, else 0.
 *
 * @example
 * ```ts
 * countdownScore("(7/2)*4", { numbers: [2, 4, 7], target: 14 }); // 1
 * countdownScore("7*2", { numbers: [2, 4, 7], target: 14 }); // 1: not every number must be used
 * countdownScore("7+7", { numbers: [2, 4, 7], target: 14 }); // 0: 7 is given once
 * ```
 */
export function countdownScore(completion: string, row: CountdownRow): 0 | 1 {
  if (!Number.isSafeInteger(row.target)) return 0;
  const result = evaluateExpression(completion.trim());
  if (result === null) return 0;
  const left = new Map<number, number>();
  for (const n of row.numbers) left.set(n, (left.get(n) ?? 0) + 1);
  for (const literal of result.literals) {
    const count = left.get(literal) ?? 0;
    if (count === 0) return 0;
    left.set(literal, count - 1);
  }
  const { num, den } = result.value;
  return den === 1n && num === BigInt(row.target) ? 1 : 0;
}
