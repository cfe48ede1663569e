import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ConfigError, loadConfig } from "./load.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "lr-config-"));
});
after(() => rm(dir, { recursive: true, force: true }));

test("first start writes the defaults with owner-only permissions", async () => {
  const file = join(dir, "home", "config.json");
  const loaded = await loadConfig(file);
  assert.equal(loaded.created, true);
  assert.equal(loaded.config.proxies.ollama.port, 11434);
  assert.equal(loaded.config.proxies.lmstudio.port, 1234);
  assert.equal(loaded.config.proxies.lmstudio.host, "127.0.0.1");
  assert.equal(loaded.config.concurrentRunners, 1);
  assert.equal(loaded.config.default_runtime, "embedded");
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, "home"))).mode & 0o777, 0o700);
  const again = await loadConfig(file);
  assert.equal(again.created, false);
  assert.deepEqual(again.config, loaded.config);
});

test("a bad file names the path of every bad key and what was expected", async () => {
  const file = join(dir, "bad.json");
  await writeFile(
    file,
    JSON.stringify({
      concurrentRunners: "two",
      proxies: { ollama: { port: 99999 } },
      models: { a: { aliases: "x", model_path: 5 }, b: { model_path: "/m.gguf", runtime: "nope" } },
    }),
  );
  const error = await loadConfig(file).then(
    () => assert.fail("expected a ConfigError"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ConfigError);
  const text = error.problems.join("\n");
  assert.match(text, /concurrentRunners: .*expected number/);
  assert.match(text, /proxies\.ollama\.port: .*(<=|65535)/);
  assert.match(text, /models\.a\.model_path: .*expected string/);
  assert.match(text, /models\.a\.aliases: .*expected array/);
  assert.ok(error.message.includes(file), "the message names the file");
});

test("an unknown runtime is an error that names the model", async () => {
  const file = join(dir, "runtime.json");
  await writeFile(file, JSON.stringify({ models: { b: { model_path: "/m.gguf", runtime: "nope" } } }));
  await assert.rejects(loadConfig(file), (e: ConfigError) => e.problems.some((p) => /models\.b\.runtime: unknown runtime 'nope'/.test(p)));
});

test("unknown keys are warnings, never silent loss, and the rest still loads", async () => {
  const file = join(dir, "unknown.json");
  await writeFile(file, JSON.stringify({ concurrentRunners: 2, colour: "blue", proxies: { ollama: { port: 1, tls: true } } }));
  const loaded = await loadConfig(file);
  assert.equal(loaded.config.concurrentRunners, 2);
  assert.equal(loaded.config.proxies.ollama.port, 1);
  assert.deepEqual(loaded.warnings.sort(), ["unknown key colour is ignored", "unknown key proxies.ollama.tls is ignored"]);
});

test("invalid JSON is reported with the file name", async () => {
  const file = join(dir, "broken.json");
  await writeFile(file, "{ not json");
  await assert.rejects(loadConfig(file), (e: ConfigError) => e instanceof ConfigError && /not valid JSON/.test(e.message));
  assert.equal(await readFile(file, "utf8"), "{ not json", "a broken file is never overwritten");
});

test("the original config.json's llama-runtimes accept a path or an object", async () => {
  const file = join(dir, "runtimes.json");
  await writeFile(
    file,
    JSON.stringify({
      "llama-runtimes": { fast: "/opt/llama-server", tuned: { runtime: "/opt/ls", parameters: { flash_attn: true } } },
      default_runtime: "fast",
      models: { m: { model_path: "m.gguf", runtime: "tuned", parameters: { ctx_size: 4096 } } },
    }),
  );
  const { config } = await loadConfig(file);
  assert.deepEqual(config["llama-runtimes"]["fast"], { runtime: "/opt/llama-server", parameters: {} });
  assert.deepEqual(config["llama-runtimes"]["tuned"], { runtime: "/opt/ls", parameters: { flash_attn: true } });
  assert.deepEqual(config.models["m"]?.parameters, { ctx_size: 4096 });
});

test("a model needs a model_path unless it names a url or a command; sizes take units", async () => {
  const file = join(dir, "kinds.json");
  await writeFile(
    file,
    JSON.stringify({
      memory_budget: "12GiB",
      models: {
        remote: { url: "http://127.0.0.1:9/" },
        custom: { command: "my-server --port ${PORT}", memory: "512MB" },
        nothing: { aliases: [] },
        badurl: { url: "ftp://x" },
      },
    }),
  );
  const error = await loadConfig(file).then(
    () => assert.fail("expected a ConfigError"),
    (e: unknown) => e as ConfigError,
  );
  const text = error.problems.join("\n");
  assert.match(text, /models\.nothing\.model_path: required/);
  assert.match(text, /models\.badurl\.url/);
  await writeFile(file, JSON.stringify({ memory_budget: "12GiB", models: { custom: { command: "x ${PORT}", memory: "512MB" }, remote: { url: "http://127.0.0.1:9" } } }));
  const { config } = await loadConfig(file);
  assert.equal(config.memory_budget, 12 * 2 ** 30);
  assert.equal(config.models["custom"]?.memory, 512e6);
  await writeFile(file, JSON.stringify({ memory_budget: "lots" }));
  await assert.rejects(loadConfig(file), (e: ConfigError) => e.problems.some((p) => /memory_budget: expected a positive size like 8GiB/.test(p)));
});
