import assert from "node:assert/strict";
import { closest, distance } from "../../dsl/_suggest.ts";

Deno.test("distance() counts edits, an adjacent swap as one", () => {
  assert.equal(distance("size", "size"), 0);
  assert.equal(distance("szie", "size"), 1);
  assert.equal(distance("siz", "size"), 1);
  assert.equal(distance("sizes", "size"), 1);
  assert.equal(distance("kitten", "sitting"), 3);
  assert.equal(distance("", "abc"), 3);
});

Deno.test("closest() suggests likely typos only", () => {
  const keys = ["size", "prompts"];
  assert.equal(closest("szie", keys), "size");
  assert.equal(closest("Size", keys), "size");
  assert.equal(closest("promts", keys), "prompts");
  assert.equal(closest("frobnicate", keys), undefined);
  assert.equal(closest("sz", keys), undefined);
  assert.equal(closest("maxnewtokens", ["maxNewTokens", "stop"]), "maxNewTokens");
});
