/** The shared comparison the webgpu tests hold fused kernels to (tests/runtime/_numeric.ts). */

import assert from "node:assert/strict";
import { assertClose } from "./_numeric.ts";

const EXACT = { rtol: 0, atol: 0 };
const ROUNDING = { rtol: 1e-5, atol: 1e-7 };

Deno.test("assertClose(): bit for bit fails on one unit in the last place and names where", () => {
  const e = new Float32Array([0.1, 0.2, 0.3]);
  const a = e.slice();
  a[2] = Math.fround(a[2]! * (1 + 2 ** -23));
  assert.notEqual(a[2], e[2]);
  assert.throws(
    () => assertClose({ p: [e.slice(), a] }, { p: [e, e] }, "params", EXACT),
    { message: `params: not equal bit for bit at p[1][2]: ${a[2]} vs ${e[2]}` },
  );
  assertClose({ p: [e.slice()] }, { p: [e] }, "params", EXACT);
  // within float32 rounding it passes; a real difference still fails
  assertClose(a, e, "rounding", ROUNDING);
  assert.throws(() => assertClose([0.30001], [0.3], "x", ROUNDING), /x: not equal within/);
});

Deno.test("assertClose(): NaN equals NaN, −0 is not +0 bit for bit, Infinity only itself", () => {
  assertClose([NaN, Infinity, -0], [NaN, Infinity, -0], "specials", EXACT);
  assertClose([NaN], [NaN], "nan", ROUNDING);
  assert.throws(() => assertClose([0], [-0], "zero", EXACT), /\[0\]: 0 vs 0/);
  assert.throws(() => assertClose([1e300], [Infinity], "inf", ROUNDING), /inf/);
  assert.throws(() => assertClose([NaN], [1], "nan", ROUNDING), /nan/);
});

Deno.test("assertClose(): shapes, keys and non-numbers must match; a large array's difference named in one line", () => {
  assert.throws(() => assertClose([1, 2], [1], "len", EXACT), /len: not equal .* length 2 vs 1/);
  assert.throws(() => assertClose({ a: 1 }, { b: 1 }, "keys", ROUNDING), /keys: .*keys a vs b/);
  assert.throws(() => assertClose({ s: "x" }, { s: "y" }, "str", ROUNDING), /s: x vs y/);
  assertClose({ s: "x", ok: true }, { s: "x", ok: true }, "same", EXACT);
  const big = new Float32Array(8_400_000).fill(1);
  const other = big.slice();
  other[8_399_999] = 2;
  assert.throws(() => assertClose(other, big, "big", ROUNDING), /\[8399999\]: 2 vs 1/);
});
