import assert from "node:assert/strict";
import { BOS, charTokenizer, EOS, PAD } from "../../../../runtime/engine/model/tokenizer.ts";

Deno.test("charTokenizer() puts the specials first and the alphabet after, in order", () => {
  const tok = charTokenizer("0123456789+=");
  assert.deepEqual([PAD, BOS, EOS], [0, 1, 2]);
  assert.equal(tok.vocab, 15);
  assert.deepEqual(tok.encode("12+3="), [4, 5, 13, 6, 14]);
  assert.equal(tok.decode([BOS, 4, 5, EOS, 6]), "12");
  assert.equal(tok.decode([4, PAD, 5]), "12");
});

Deno.test("charTokenizer() rejects a character outside its alphabet, naming it", () => {
  assert.throws(() => charTokenizer("01").encode("0x1"), /character "x" at 1 is not in/);
});
