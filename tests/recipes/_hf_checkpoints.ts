/**
 * Small random Hugging Face checkpoints shaped like the real ones the GSM8K templates are for:
 * their `config.json` with the dimensions shrunk, random weights, and a real tokenizer of the
 * same kind, so that a template plans and trains end to end without the real download.
 *
 * @module
 */

import type { TensorData } from "../../runtime/engine/model/safetensors.ts";
import { QWEN3_TOKENIZER, writeRandomCheckpoint } from "../runtime/_hf.ts";

/** The dimensions the test checkpoints share: 2 layers, 4 heads on 2 key/value heads. */
const DIMS = {
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
};

/**
 * SmolLM2-135M-Instruct's config.json with its dimensions shrunk, and its vocabulary the test
 * tokenizer's 259 ids, as SmolLM2's 49,152 are its tokenizer's.
 */
export const SMOLLM_CONFIG = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  initializer_range: 0.041666666666666664,
  is_llama_config: true,
  max_position_embeddings: 8192,
  mlp_bias: false,
  model_type: "llama",
  pad_token_id: 2,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_interleaved: false,
  rope_scaling: null,
  rope_theta: 100_000,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  use_cache: true,
  ...DIMS,
  head_dim: 4,
  vocab_size: 259,
};

/** Qwen3-0.6B's config.json with its dimensions shrunk (its whole vocabulary kept). */
export const QWEN3_CONFIG = {
  architectures: ["Qwen3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0,
  bos_token_id: 151_643,
  eos_token_id: 151_645,
  head_dim: 8,
  hidden_act: "silu",
  initializer_range: 0.02,
  max_position_embeddings: 40_960,
  max_window_layers: 28,
  model_type: "qwen3",
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1_000_000,
  sliding_window: null,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  use_cache: true,
  use_sliding_window: false,
  ...DIMS,
  vocab_size: 151_936,
};

/** SmolLM2-Instruct's chat template, verbatim from its tokenizer_config.json. */
export const SMOLLM_CHAT_TEMPLATE = "{% for message in messages %}" +
  "{% if loop.first and messages[0]['role'] != 'system' %}" +
  "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face" +
  "<|im_end|>\n' }}{% endif %}" +
  "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/** SmolLM2's special tokens, at its ids. */
const SMOLLM_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/** GPT-2's byte-to-character map: the characters byte-level BPE writes bytes as. */
function byteChars(): string[] {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const chars: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) chars.push(String.fromCodePoint(printable(b) ? b : next++));
  return chars;
}

/**
 * A tokenizer of SmolLM2's kind (GPT-2-style byte-level BPE, `<|endoftext|>`, `<|im_start|>` and
 * `<|im_end|>` at ids 0, 1, 2, SmolLM2's ChatML template and special-token settings) over the 256
 * bytes alone, no merges: 259 tokens, one per byte, so a text's token count is its UTF-8 length
 * plus its special tokens.
 */
function smolLmTokenizer(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  SMOLLM_SPECIALS.forEach((token, id) => vocab[token] = id);
  byteChars().forEach((c, i) => vocab[c] = SMOLLM_SPECIALS.length + i);
  const byteLevel = {
    type: "ByteLevel",
    add_prefix_space: false,
    trim_offsets: true,
    use_regex: true,
  };
  return {
    "tokenizer.json": {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: SMOLLM_SPECIALS.map((content, id) => ({
        id,
        content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      })),
      normalizer: null,
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [{ type: "Digits", individual_digits: true }, byteLevel],
      },
      post_processor: { ...byteLevel, trim_offsets: false },
      decoder: byteLevel,
      model: {
        type: "BPE",
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab,
        merges: [],
      },
    },
    "tokenizer_config.json": {
      add_prefix_space: false,
      additional_special_tokens: ["<|im_start|>", "<|im_end|>"],
      bos_token: "<|im_start|>",
      chat_template: SMOLLM_CHAT_TEMPLATE,
      clean_up_tokenization_spaces: false,
      eos_token: "<|im_end|>",
      model_max_length: 8192,
      pad_token: "<|im_end|>",
      tokenizer_class: "GPT2Tokenizer",
      unk_token: "<|endoftext|>",
    },
    "generation_config.json": { bos_token_id: 1, eos_token_id: 2, pad_token_id: 2 },
  };
}

/** Writes `config.json`, random F32 weights and `files` (JSON) to `dir`; returns the weights. */
function writeCheckpoint(
  dir: string,
  config: Record<string, unknown>,
  files: Record<string, unknown>,
  tokenizer?: string,
): Promise<Record<string, TensorData>> {
  return writeRandomCheckpoint(dir, config, {
    seed: 7,
    metadata: { format: "pt" },
    files,
    ...(tokenizer === undefined ? {} : { tokenizer }),
  });
}

/**
 * A random SmolLM2-shaped checkpoint (`llama`, tied embeddings) with a SmolLM2-style tokenizer in
 * `dir`; returns its weights.
 */
export function writeSmolLm(dir: string): Promise<Record<string, TensorData>> {
  return writeCheckpoint(dir, SMOLLM_CONFIG, smolLmTokenizer());
}

/**
 * A random Qwen3-shaped checkpoint (`qwen3`: q/k norms, explicit head_dim, tied embeddings) with
 * Qwen3's real tokenizer and Qwen3-0.6B's generation_config.json in `dir`; returns its weights.
 */
export function writeQwen3(dir: string): Promise<Record<string, TensorData>> {
  return writeCheckpoint(dir, QWEN3_CONFIG, {
    "generation_config.json": {
      bos_token_id: 151_643,
      do_sample: true,
      eos_token_id: [151_645, 151_643],
      pad_token_id: 151_643,
      temperature: 0.6,
      top_k: 20,
      top_p: 0.95,
    },
  }, QWEN3_TOKENIZER);
}
