/**
 * What every data source produces: problems with a prompt, a reference answer and the row they
 * came from, split into train and eval. The runtime tokenises `prompt` and `answer`; reward
 * sources also see `row` (a JSON Lines object, or a synthetic task's parameters).
 *
 * @module
 */

/**
 * One problem. `Row` is the dataset's row type (a JSON object).
 *
 * @example
 * ```ts
 * const problem: Problem<AdditionRow> = { prompt: "12+30=", answer: "42", row: { a: 12, b: 30 } };
 * ```
 */
export interface Problem<Row = Record<string, unknown>> {
  /** The prompt text, template applied, without special tokens. */
  prompt: string;
  /** The reference answer as text. */
  answer: string;
  /** The row the problem came from. */
  row: Row;
}

/** The train and eval problems of a data source; the two never share a problem. */
export interface Splits<Row = Record<string, unknown>> {
  train: Problem<Row>[];
  eval: Problem<Row>[];
}
