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
  /**
   * The conversation a row gave instead of a plain prompt (OpenAI's `[{ role, content }]`), which
   * a chat template renders; `prompt` is then its last user message.
   */
  messages?: { role: string; content: string }[];
  /**
   * The prompt's token ids as the model reads them (special tokens and chat template included),
   * when the data was loaded for a Hugging Face tokenizer; absent for the character tokenizer.
   */
  promptIds?: number[];
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
