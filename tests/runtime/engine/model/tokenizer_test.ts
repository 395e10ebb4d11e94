import assert from "node:assert/strict";
import {
  BOS,
  charTokenizer,
  EOS,
  PAD,
  type Tokenizer,
} from "../../../../runtime/engine/model/tokenizer.ts";

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

Deno.test("charTokenizer() is a Tokenizer with the ids it always had", () => {
  const chars = charTokenizer("0123456789+=");
  const tok: Tokenizer = chars;
  assert.equal(tok.kind, "char");
  assert.equal(tok.vocabSize, chars.vocab);
  assert.deepEqual([tok.padId, tok.bosId, tok.eosId], [PAD, BOS, EOS]);
  assert.deepEqual([tok.padSource, tok.stopIds, tok.addBos, tok.addEos], [
    "pad_token",
    [EOS],
    true,
    false,
  ]);
  assert.deepEqual(tok.encode("12+3="), chars.encode("12+3="));
  assert.deepEqual(tok.encode("12+3=", { addSpecialTokens: false }), [4, 5, 13, 6, 14]);
  assert.deepEqual(tok.encode("12+3=", { addSpecialTokens: true }), [BOS, 4, 5, 13, 6, 14]);
  assert.deepEqual(tok.encode("", { addSpecialTokens: true }), [BOS]);
});

Deno.test("charTokenizer() decodes through the Tokenizer options", () => {
  const tok: Tokenizer = charTokenizer("0123456789+=");
  const ids = [PAD, BOS, 4, 5, EOS, 6];
  assert.equal(tok.decode(ids), "12");
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "12");
  assert.equal(tok.decode(ids, { skipSpecialTokens: false }), "<pad><bos>12<eos>3");
  assert.equal(tok.decode(tok.encode("30+12=", { addSpecialTokens: true })), "30+12=");
});
