/**
 * Chat templates: a model's `chat_template` (Jinja, from its `tokenizer_config.json` or
 * `chat_template.jinja`) rendered by `@huggingface/jinja` the way `transformers`'
 * `apply_chat_template` renders it: the messages, `add_generation_prompt`, the tokenizer's special
 * tokens by name (`bos_token`, `eos_token`, ...) and the caller's template arguments (Qwen3's
 * `enable_thinking`). A model without a template (a base model) takes a prompt as plain text.
 *
 * Like `transformers`, the template may call `strftime_now` (Llama 3.2's writes today's date
 * unless given `date_string`), so such a template's output depends on the day it is rendered.
 *
 * @module
 */

import { Template } from "@huggingface/jinja";

/**
 * One message of a conversation, in the OpenAI shape.
 *
 * @example
 * ```ts
 * const message: ChatMessage = { role: "user", content: "What is 2+2?" };
 * ```
 */
export interface ChatMessage {
  /** `"system"`, `"user"`, `"assistant"` or whatever role the template knows. */
  role: string;
  /** The message's text. */
  content: string;
}

/**
 * A prompt as a data row gives it: plain text (one user message when the model has a template,
 * the text itself when it has none), or a conversation `{ messages: [{ role, content }] }`.
 *
 * @example
 * ```ts
 * const plain: ChatPrompt = "What is 2+2?";
 * const chat: ChatPrompt = { messages: [{ role: "user", content: "What is 2+2?" }] };
 * ```
 */
export type ChatPrompt = string | { messages: readonly ChatMessage[] };

/**
 * A parsed chat template with the special tokens `transformers` gives a template by name.
 *
 * @example
 * ```ts
 * const chat: ChatTemplate = chatTemplate("{{ messages[0].content }}");
 * ```
 */
export interface ChatTemplate {
  /** The template's Jinja source. */
  source: string;
  /** Where the template was read from, for messages: `dir/tokenizer_config.json`. */
  origin: string;
  /** Special tokens by the names templates use: `bos_token`, `eos_token`, `pad_token`, ... */
  specialTokens: Readonly<Record<string, string>>;
  /** The parsed template. */
  template: Template;
}

/**
 * Options of {@linkcode chatTemplate}.
 *
 * @example
 * ```ts
 * chatTemplate("{{ bos_token }}", { specialTokens: { bos_token: "<s>" }, origin: "'x/chat_template.jinja'" });
 * ```
 */
export interface ChatTemplateOptions {
  /**
   * Special tokens by name (`bos_token`, `eos_token`, ...), as the template sees them.
   *
   * @default {{}}
   */
  specialTokens?: Readonly<Record<string, string>>;
  /**
   * Where the template comes from, named in errors.
   *
   * @default {"chat_template"}
   */
  origin?: string;
}

/**
 * Options of {@linkcode renderChat}.
 *
 * @example
 * ```ts
 * const options: RenderChatOptions = { system: "Be brief.", templateArgs: { enable_thinking: false } };
 * ```
 */
export interface RenderChatOptions {
  /**
   * A system prompt, put first as a system message unless the conversation starts with one.
   * Needs a chat template.
   */
  system?: string;
  /**
   * End with the opening of the assistant's turn (`<|im_start|>assistant\n`), as a prompt to
   * sample a completion from must. Off for a whole conversation, as in training on it.
   *
   * @default {true}
   */
  addGenerationPrompt?: boolean;
  /**
   * More variables for the template, e.g. `{ enable_thinking: false }` for Qwen3. They may not
   * replace `messages` or `add_generation_prompt`.
   *
   * @default {{}}
   */
  templateArgs?: Readonly<Record<string, unknown>>;
}

/** One line of an error message, whatever the library's message held. */
function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, " ").trim();
}

/**
 * Parses `source` as a chat template; a template that does not parse is refused in one line
 * naming its origin.
 *
 * @example
 * ```ts
 * const chat = chatTemplate("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}", {
 *   specialTokens: { bos_token: "<s>" },
 * });
 * renderChat(chat, "Hi"); // "<s>Hi"
 * ```
 */
export function chatTemplate(source: string, options: ChatTemplateOptions = {}): ChatTemplate {
  const origin = options.origin ?? "chat_template";
  let template: Template;
  try {
    template = new Template(source);
  } catch (e) {
    throw new Error(
      `Cannot parse the chat template of ${origin}: ${oneLine((e as Error).message)}`,
    );
  }
  return { source, origin, specialTokens: { ...options.specialTokens }, template };
}

/** The messages of `prompt`, each checked to be `{ role: string, content: string }`. */
function messagesOf(prompt: ChatPrompt): ChatMessage[] {
  if (typeof prompt === "string") return [{ role: "user", content: prompt }];
  const messages: unknown = (prompt as { messages?: unknown } | null)?.messages;
  if (!Array.isArray(messages)) {
    throw new Error(
      `Cannot render a chat as 'messages' must be a list of { role, content }: current value ` +
        `is ${JSON.stringify(messages) ?? "undefined"}`,
    );
  }
  return messages.map((m: unknown, i) => {
    const { role, content } = (m ?? {}) as { role?: unknown; content?: unknown };
    for (const [field, value] of [["role", role], ["content", content]] as const) {
      if (typeof value !== "string") {
        throw new Error(
          `Cannot render a chat as 'messages[${i}].${field}' must be a string: current value ` +
            `is ${JSON.stringify(value) ?? "undefined"}`,
        );
      }
    }
    return { role: role as string, content: content as string };
  });
}

/**
 * The text of `prompt` as the model expects it: rendered by `template` (a plain prompt as one
 * user message; `system` first unless the conversation starts with a system message), or, for a
 * model without a template (`null`, a base model), the plain prompt itself. A conversation or a
 * system prompt without a template, or a template that fails to render, is refused in one line.
 *
 * @example
 * ```ts
 * const tok = await loadHfTokenizer("models/qwen3");
 * renderChat(tok.chatTemplate, "2+2?", { system: "Be brief.", templateArgs: { enable_thinking: false } });
 * // "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n" +
 * // "<|im_start|>assistant\n<think>\n\n</think>\n\n"
 * ```
 */
export function renderChat(
  template: ChatTemplate | null,
  prompt: ChatPrompt,
  options: RenderChatOptions = {},
): string {
  if (template === null) {
    if (typeof prompt !== "string") {
      throw new Error(
        "Cannot render 'messages' for a model without a chat template: give a plain prompt",
      );
    }
    if (options.system !== undefined) {
      throw new Error(
        "Cannot add the system prompt for a model without a chat template: it takes plain text",
      );
    }
    return prompt;
  }
  const messages = messagesOf(prompt);
  if (options.system !== undefined && messages[0]?.role !== "system") {
    messages.unshift({ role: "system", content: options.system });
  }
  const args = options.templateArgs ?? {};
  for (const reserved of ["messages", "add_generation_prompt"]) {
    if (Object.hasOwn(args, reserved)) {
      throw new Error(
        `Cannot render a chat as template argument '${reserved}' is set by the renderer: ` +
          "remove it from the template arguments",
      );
    }
  }
  try {
    return template.template.render({
      ...template.specialTokens,
      ...args,
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? true,
    });
  } catch (e) {
    throw new Error(
      `Cannot render the chat template of ${template.origin}: ${oneLine((e as Error).message)}`,
    );
  }
}
