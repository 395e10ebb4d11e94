/**
 * A problem's prompt as the model reads it. With the character tokenizer: `<bos>` and one id per
 * character. With a Hugging Face tokenizer: through the model's chat template when it has one and
 * the recipe keeps it on (`policy.chat`), as `apply_chat_template(..., add_generation_prompt=True)`
 * renders it, then encoded without adding special tokens (the template writes its own); a model
 * without a template reads the plain text, encoded with its special tokens (`<s>` first where
 * the tokenizer adds it), as `transformers`' `tokenizer(text)` does.
 *
 * @module
 */

import type { HfTokenizerSpec } from "../../dsl/plan.ts";
import { type ChatPrompt, renderChat } from "../engine/model/chat_template.ts";
import type { HfTokenizer } from "../engine/model/hf_tokenizer.ts";
import type { Tokenizer } from "../engine/model/tokenizer.ts";
import type { Problem } from "./types.ts";

/**
 * How prompts are rendered: the plan's tokenizer settings.
 *
 * @example
 * ```ts
 * const format: PromptFormat = { chatTemplate: true, system: "Be brief.", templateArgs: {} };
 * ```
 */
export type PromptFormat = Pick<HfTokenizerSpec, "chatTemplate" | "system" | "templateArgs">;

/** The prompt of `problem` as a chat template takes it: its messages, else its text. */
export function chatPrompt(problem: Pick<Problem, "prompt" | "messages">): ChatPrompt {
  return problem.messages === undefined ? problem.prompt : { messages: problem.messages };
}

/**
 * The text the model reads for `prompt`: the chat template's rendering (with the system prompt
 * and template arguments) when `format.chatTemplate`, else the plain text. A conversation without
 * a template is refused in one line.
 *
 * @example
 * ```ts
 * const tok = await loadHfTokenizer("models/stories260K"); // no chat template
 * renderPrompt(tok, { chatTemplate: false, system: null, templateArgs: {} }, "Once upon"); // "Once upon"
 * ```
 */
export function renderPrompt(
  tokenizer: HfTokenizer,
  format: PromptFormat,
  prompt: ChatPrompt,
): string {
  if (!format.chatTemplate || tokenizer.chatTemplate === null) {
    if (typeof prompt !== "string") {
      throw new Error(
        tokenizer.chatTemplate === null
          ? "a conversation ('messages') needs a chat template, but the tokenizer has none: " +
            "give a plain prompt"
          : "a conversation ('messages') needs the chat template, but policy.chat.template is " +
            "false",
      );
    }
    return prompt;
  }
  return renderChat(tokenizer.chatTemplate, prompt, {
    ...(format.system === null ? {} : { system: format.system }),
    templateArgs: format.templateArgs,
  });
}

/**
 * The token ids of `prompt` as the model reads them (see the module's description).
 *
 * @example
 * ```ts
 * const tok = await loadHfTokenizer("models/stories260K");
 * promptIds(tok, { chatTemplate: false, system: null, templateArgs: {} }, "Once upon a time");
 * // [1, 403, 407, 261, 378]
 * ```
 */
export function promptIds(
  tokenizer: Tokenizer,
  format: PromptFormat | null,
  prompt: ChatPrompt,
): number[] {
  if (tokenizer.kind === "char" || format === null) {
    if (typeof prompt !== "string") {
      throw new Error("a conversation ('messages') needs a Hugging Face tokenizer's chat template");
    }
    return tokenizer.encode(prompt, { addSpecialTokens: true });
  }
  const hf = tokenizer as HfTokenizer;
  const templated = format.chatTemplate && hf.chatTemplate !== null;
  const text = renderPrompt(hf, format, prompt);
  return hf.encode(text, { addSpecialTokens: !templated });
}
