/**
 * Where JSON text goes wrong. `JSON.parse` names a position for some mistakes and none for others
 * (a stray quote, a bare word), so this small scanner walks the grammar itself and reports the
 * first offending character, as a line, a column and what was expected there.
 *
 * @module
 */

/** The first syntax error of `text`, or undefined when it is valid JSON. */
export function jsonSyntaxError(
  text: string,
): { line: number; column: number; message: string } | undefined {
  let i = 0;
  const fail = (message: string): never => {
    throw new SyntaxErrorAt(i, message);
  };
  const space = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const describe = () => (i >= text.length ? "the end of the file" : `'${text[i]}'`);
  const expect = (what: string): never => fail(`expected ${what}, found ${describe()}`);

  const value = (): void => {
    space();
    const c = text[i];
    if (c === "{") return object();
    if (c === "[") return array();
    if (c === '"') return string();
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return number();
    for (const word of ["true", "false", "null"]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return;
      }
    }
    expect("a value");
  };
  const object = () => {
    i++; // {
    space();
    if (text[i] === "}") return void i++;
    for (;;) {
      space();
      if (text[i] !== '"') expect("a double-quoted key");
      string();
      space();
      if (text[i] !== ":") expect("':'");
      i++;
      value();
      space();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "}") return void i++;
      expect("',' or '}'");
    }
  };
  const array = () => {
    i++; // [
    space();
    if (text[i] === "]") return void i++;
    for (;;) {
      value();
      space();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "]") return void i++;
      expect("',' or ']'");
    }
  };
  const string = () => {
    const start = i;
    i++; // "
    while (i < text.length && text[i] !== '"') {
      const c = text[i]!;
      if (c < " ") fail("a control character inside a string (write it escaped)");
      if (c === "\\") {
        i++;
        if (text[i] === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail("an invalid \\u escape");
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? "")) fail("an invalid escape");
      }
      i++;
    }
    if (i >= text.length) {
      i = start;
      fail("a string that never ends");
    }
    i++;
  };
  const number = () => {
    const match = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i));
    if (match === null) expect("a number");
    i += match![0].length;
  };

  try {
    value();
    space();
    if (i < text.length) expect("the end of the file");
    return undefined;
  } catch (e) {
    if (!(e instanceof SyntaxErrorAt)) throw e;
    const before = text.slice(0, e.offset).split("\n");
    return {
      line: before.length,
      column: before[before.length - 1]!.length + 1,
      message: e.message,
    };
  }
}

class SyntaxErrorAt extends Error {
  constructor(readonly offset: number, message: string) {
    super(message);
  }
}
