/**
 * Token-level facts about the loaded model that node-llama-cpp does not expose directly. Client-supplied
 * token ids are checked here because an id outside the vocabulary crashes llama.cpp instead of failing.
 */
import { LlamaVocabularyType, type LlamaModel, type Token } from "node-llama-cpp";
import { badRequest } from "./errors.js";

export function vocabularySize(model: LlamaModel): number {
  const metadata = model.fileInfo.metadata as unknown as Record<string, Record<string, unknown> | undefined>;
  const tokens = (metadata.tokenizer?.ggml as { tokens?: unknown } | undefined)?.tokens;
  if (Array.isArray(tokens) && tokens.length > 0) return tokens.length;
  const perArchitecture = metadata[model.fileInfo.metadata.general.architecture]?.vocab_size;
  return typeof perArchitecture === "number" ? perArchitecture : 0;
}

/** The token llama.cpp puts first when it adds special tokens (node-llama-cpp's own rule, which it does not export). */
export function beginningToken(model: LlamaModel): Token | null {
  switch (model.vocabularyType) {
    case LlamaVocabularyType.rwkv:
    case LlamaVocabularyType.ugm:
      return null;
    case LlamaVocabularyType.wpm:
      return model.tokens.bos;
    default:
      return model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
  }
}

export function checkTokens(model: LlamaModel, tokens: readonly number[], param: string): Token[] {
  const size = vocabularySize(model);
  for (const token of tokens) {
    if (!Number.isInteger(token) || token < 0 || (size > 0 && token >= size)) {
      throw badRequest(`${param}: token id ${token} is outside the vocabulary (0..${size - 1})`, param);
    }
  }
  return tokens as Token[];
}
