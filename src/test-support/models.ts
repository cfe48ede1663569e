/**
 * Models for tests, generated on demand and shared between test files and runs through a cache
 * keyed by the generator options, so a suite pays for each distinct model once.
 */
import os from "node:os";
import path from "node:path";
import { ensureTinyLlamaGguf, type TinyLlamaOptions } from "../catalog/demo/tiny-llama.js";

export async function tinyModelPath(options?: TinyLlamaOptions): Promise<string> {
  return ensureTinyLlamaGguf(path.join(os.tmpdir(), "llama-runner-test-models"), options);
}
