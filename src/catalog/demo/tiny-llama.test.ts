import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Llama, LlamaModel } from "node-llama-cpp";
import { ensureTinyLlamaGguf, writeTinyLlamaGguf } from "./tiny-llama.js";

const dir = await mkdtemp(path.join(os.tmpdir(), "tiny-llama-test-"));
const modelPath = path.join(dir, "a.gguf");
let llama: Llama | undefined;

after(async () => {
  await llama?.dispose();
  await rm(dir, { recursive: true, force: true });
});

const sha256 = (bytes: Buffer): string => createHash("sha256").update(bytes).digest("hex");

test("identical options give identical bytes, and the cache reuses them", async () => {
  await writeTinyLlamaGguf(modelPath);
  await writeTinyLlamaGguf(path.join(dir, "b.gguf"));
  const a = await readFile(modelPath);
  const b = await readFile(path.join(dir, "b.gguf"));
  assert.equal(sha256(a), sha256(b));
  assert.ok(a.equals(b));

  const cacheDir = path.join(dir, "cache");
  const cached = await ensureTinyLlamaGguf(cacheDir);
  assert.match(path.basename(cached), /^tiny-llama-[0-9a-f]+\.gguf$/);
  assert.equal(await ensureTinyLlamaGguf(cacheDir, {}), cached);
  assert.ok((await readFile(cached)).equals(a));
  assert.notEqual(await ensureTinyLlamaGguf(cacheDir, { seed: 2 }), cached);
});

async function loadModel(): Promise<LlamaModel> {
  const { getLlama } = await import("node-llama-cpp");
  llama ??= await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: "warn" as never });
  return llama.loadModel({ modelPath, gpuLayers: 0 });
}

async function chat(
  model: LlamaModel,
  prompt: string,
  sampling: { temperature: number; topK?: number; topP?: number; seed?: number },
): Promise<{ text: string; tokenCount: number; stopReason: string; wrapper: string }> {
  const { LlamaChatSession } = await import("node-llama-cpp");
  // One thread short of all cores: node-llama-cpp's default thread count fights Node's own threads.
  const context = await model.createContext({
    contextSize: 512,
    threads: Math.max(1, os.availableParallelism() - 1),
  });
  try {
    const session = new LlamaChatSession({ contextSequence: context.getSequence() });
    let tokenCount = 0;
    const { responseText, stopReason } = await session.promptWithMeta(prompt, {
      maxTokens: 32,
      ...sampling,
      onToken: (tokens) => (tokenCount += tokens.length),
    });
    return { text: responseText, tokenCount, stopReason, wrapper: session.chatWrapper.wrapperName };
  } finally {
    await context.dispose();
  }
}

test("node-llama-cpp loads it, text round-trips and generation runs to maxTokens", async () => {
  const model = await loadModel();
  try {
    for (const text of ["Hello world, this is a test.", "naïve café ☕\n\ttabs"]) {
      assert.equal(model.detokenize(model.tokenize(text)), text);
    }
    // The merged pieces are reachable, so common words are single tokens.
    assert.ok(model.tokenize("Hello world, this is a test.").length <= 10);

    const first = await chat(model, "Tell me a story.", { temperature: 0 });
    assert.equal(first.wrapper, "ChatML");
    assert.equal(first.stopReason, "maxTokens");
    assert.equal(first.tokenCount, 32);
    assert.ok(first.text.length > 0);
    assert.ok(!first.text.includes("\uFFFD"), `invalid UTF-8 in ${JSON.stringify(first.text)}`);
    assert.deepEqual(await chat(model, "Tell me a story.", { temperature: 0 }), first);

    // Library-default top-k, and sampling with every token in play at a high temperature.
    for (const sampling of [
      { temperature: 0.8, seed: 7 },
      { temperature: 2, topK: 0, topP: 1, seed: 7 },
    ]) {
      const sampled = await chat(model, "Tell me a story.", sampling);
      assert.equal(sampled.stopReason, "maxTokens");
      assert.equal(sampled.tokenCount, 32);
      assert.ok(!sampled.text.includes("\uFFFD"), `invalid UTF-8 in ${JSON.stringify(sampled.text)}`);
    }
  } finally {
    await model.dispose();
  }
});
