import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { configSchema } from "../config/schema.js";
import type { GatewayError } from "../errors/index.js";
import { tinyModelPath } from "../test-support/models.js";
import { Catalog } from "./catalog.js";
import { CatalogEdits } from "./edits.js";
import { readGgufSummary } from "./gguf/metadata.js";

let dir: string;
let model: string;
let embedder: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "lr-catalog-"));
  model = await tinyModelPath();
  embedder = await tinyModelPath({ poolingType: 1, seed: 7 });
  await mkdir(join(dir, "models", "family"), { recursive: true });
  await copyFile(model, join(dir, "models", "family", "Tiny-Chat.gguf"));
  await copyFile(embedder, join(dir, "models", "tiny-embed.gguf"));
  await writeFile(join(dir, "models", "broken.gguf"), "this is not a gguf file at all");
  await writeFile(join(dir, "models", "notes.txt"), "ignored");
  await writeFile(join(dir, "models", "x-mmproj-f16.gguf"), "projector, not a model");
});
after(() => rm(dir, { recursive: true, force: true }));

test("GGUF metadata comes from the header", async () => {
  const summary = await readGgufSummary(model);
  assert.equal(summary.architecture, "llama");
  assert.equal(summary.contextLength, 2048);
  assert.equal(summary.embeddingLength, 64);
  assert.equal(summary.blockCount, 2);
  assert.equal(summary.quantization, "F16");
  assert.ok(summary.parameterCount > 100_000 && summary.parameterCount < 200_000, `parameters: ${summary.parameterCount}`);
  assert.match(summary.chatTemplate ?? "", /im_start/);
  assert.equal(summary.isEmbedding, false);
  assert.ok(summary.sizeBytes > 0);
  assert.equal(summary.flat["general.architecture"], "llama");
  assert.equal(Object.values(summary.flat).some(Array.isArray), false, "no tokenizer arrays in the flat view");
  const pooled = await readGgufSummary(embedder);
  assert.equal(pooled.isEmbedding, true);
  assert.equal(pooled.poolingType, 1);
});

test("configured and discovered models, a corrupt file reported, never thrown", async () => {
  const config = configSchema.parse({
    models: { chat: { model_path: join(dir, "models", "family", "Tiny-Chat.gguf"), aliases: ["my-chat"], model_id: "upstream-name" } },
  });
  const catalog = await Catalog.build({ config, configDir: dir });
  const ids = catalog.entries.map((e) => e.id).sort();
  assert.deepEqual(ids, ["broken", "chat", "tiny-embed"], "configured path is not listed twice; txt and mmproj files skipped");
  const broken = catalog.resolve("broken");
  assert.match(broken?.error ?? "", /broken\.gguf is not a readable GGUF file/);
  assert.ok(!broken?.error?.includes(dir), "errors name the file, never its folder");
  const chat = catalog.resolve("chat");
  assert.equal(chat?.upstreamModel, "upstream-name");
  assert.equal(chat?.source, "config");
  assert.ok((chat?.created ?? 0) > 1_600_000_000);
  assert.equal(catalog.resolve("tiny-embed")?.gguf?.isEmbedding, true);
});

test("lookup by id, alias, name:latest and any letter case", async () => {
  const config = configSchema.parse({ models: { "Chat-Model": { model_path: model, aliases: ["friend"] } }, models_dir: join(dir, "none") });
  const catalog = await Catalog.build({ config, configDir: dir });
  for (const name of ["Chat-Model", "friend", "Chat-Model:latest", "chat-model", "FRIEND:latest"]) {
    assert.equal(catalog.resolve(name)?.id, "Chat-Model", name);
  }
  assert.equal(catalog.resolve("other"), undefined);
  assert.equal(catalog.resolve("Chat-Model:7b"), undefined);
});

test("a configured model whose file is missing is an error entry", async () => {
  const config = configSchema.parse({ models: { gone: { model_path: "nowhere/gone.gguf" } }, models_dir: join(dir, "none") });
  const catalog = await Catalog.build({ config, configDir: dir });
  assert.equal(catalog.resolve("gone")?.error, "model file gone.gguf not found");
});

test("copies and deletes: saved, read back by the next start, and a dangling copy names nothing", async () => {
  const file = join(dir, "edits", "catalog-edits.json");
  const config = configSchema.parse({ models: { chat: { model_path: model }, other: { model_path: embedder } }, models_dir: join(dir, "none") });
  const catalog = await Catalog.build({ config, configDir: dir, edits: CatalogEdits.load(file).edits });
  assert.equal(catalog.copy("chat", "My-Copy:latest"), true);
  assert.equal(catalog.copy("nothing", "x"), false);
  assert.equal(catalog.resolve("my-copy")?.id, "chat", "a copy matches without its tag and in any case");
  assert.deepEqual(catalog.remove("chat"), { found: true, removed: catalog.get("chat") });
  assert.equal(catalog.resolve("chat"), undefined);
  assert.deepEqual(catalog.listed.map((e) => e.id), ["other"]);
  assert.equal(catalog.resolve("My-Copy")?.id, "chat", "a copy outlives its source");
  assert.equal(catalog.get("chat")?.id, "chat", "the gateway still knows the entry");

  // The next start reads the same edits back.
  const loaded = CatalogEdits.load(file);
  assert.equal(loaded.problem, undefined);
  const again = await Catalog.build({ config, configDir: dir, edits: loaded.edits });
  assert.equal(again.resolve("chat"), undefined);
  assert.equal(again.resolve("my-copy:latest")?.id, "chat");
  assert.equal(again.restore("chat")?.id, "chat");
  assert.equal(again.resolve("chat")?.id, "chat");
  assert.deepEqual(again.remove("my-copy"), { found: true });
  assert.deepEqual(again.copies(), []);

  // A copy whose entry left the catalogue names nothing, and does not hide an entry of that name.
  const renamed = configSchema.parse({ models: { "My-Copy": { model_path: model } }, models_dir: join(dir, "none") });
  const edits = CatalogEdits.load(join(dir, "edits", "dangling.json")).edits;
  edits.addCopy("My-Copy", "gone");
  const third = await Catalog.build({ config: renamed, configDir: dir, edits });
  assert.equal(third.resolve("My-Copy")?.id, "My-Copy");
  assert.deepEqual(third.copies(), []);

  await writeFile(join(dir, "edits", "broken.json"), "{ not json");
  assert.match(CatalogEdits.load(join(dir, "edits", "broken.json")).problem ?? "", /not readable JSON/);
});

test("a save that fails undoes the change and leaves no temporary file", async () => {
  // A folder where the file should be: the rename over it fails.
  const blocked = join(dir, "blocked", "catalog-edits.json");
  await mkdir(join(blocked, "inside"), { recursive: true });
  const edits = CatalogEdits.load(blocked).edits;
  assert.throws(() => edits.addCopy("x", "chat"), (e: GatewayError) => e.code === "server_error" && /could not save/.test(e.message) && !e.message.includes(dir));
  assert.equal(edits.copyOf("x"), undefined, "the copy was undone");
  assert.throws(() => edits.setRemoved("chat", true), /could not save/);
  assert.equal(edits.isRemoved("chat"), false, "the delete was undone");
  assert.deepEqual(await readdir(join(dir, "blocked")), ["catalog-edits.json"], "no temporary file left");
});
