/**
 * Where the project's own build of llama.cpp's `llama-server` lives.
 *
 * `scripts/build-llama-server.mjs` builds it from the llama.cpp source that ships inside node-llama-cpp's
 * package and caches it outside the repository:
 *
 *   ${LLAMA_RUNNER_CACHE:-${XDG_CACHE_HOME:-~/.cache}/llama-runner}/llama-server/<key>/llama-server
 *
 * with `<key>` = `nlc-<node-llama-cpp version>_llama-<llama.cpp release>-<commit[0..10]>_<platform>-<arch>`.
 * This module mirrors that path logic (the test checks that both agree) so that the gateway and the tests
 * find the binary without running the script.
 */
import { closeSync, constants, existsSync, openSync, readFileSync, readSync } from "node:fs";
import { access } from "node:fs/promises";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";

function expandHome(path: string): string {
  if (path === "~") return homedir();
  if (path.startsWith("~/")) return join(homedir(), path.slice(2));
  return path;
}

/** `$LLAMA_RUNNER_CACHE`, else `$XDG_CACHE_HOME/llama-runner` (an absolute XDG_CACHE_HOME only), else `~/.cache/llama-runner`. */
export function llamaRunnerCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const override = env["LLAMA_RUNNER_CACHE"];
  if (override) return resolve(expandHome(override));
  const xdg = env["XDG_CACHE_HOME"];
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), ".cache"), "llama-runner");
}

function nodeLlamaCppDir(): string {
  const require = createRequire(import.meta.url);
  const entry = require.resolve("node-llama-cpp");
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "node-llama-cpp") return dir;
  }
  throw new Error(`cannot find node-llama-cpp's package folder above ${entry}`);
}

function readJson(file: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** The commit a git bundle's HEAD points to, from the bundle's text header. */
function bundleHead(bundle: string): string | undefined {
  const fd = openSync(bundle, "r");
  try {
    const buf = Buffer.alloc(4096);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const lines = buf.subarray(0, n).toString("latin1").split("\n");
    if (!/^# v[23] git bundle$/.test(lines[0] ?? "")) return undefined;
    const refs = lines
      .slice(1)
      .map((line) => /^([0-9a-f]{40,64}) (\S+)$/.exec(line))
      .filter((m): m is RegExpExecArray => m !== null);
    return (refs.find((m) => m[2] === "HEAD") ?? refs[0])?.[1];
  } finally {
    closeSync(fd);
  }
}

const safe = (s: unknown): string => String(s).replace(/[^A-Za-z0-9._-]/g, "_");

/** The cache key: node-llama-cpp version, the llama.cpp release and commit it bundles, platform and arch. */
export function llamaServerCacheKey(): string {
  const nlcDir = nodeLlamaCppDir();
  const version = (JSON.parse(readFileSync(join(nlcDir, "package.json"), "utf8")) as { version: string }).version;
  const llamaDir = join(nlcDir, "llama");
  const release =
    readJson(join(llamaDir, "binariesGithubRelease.json"))?.["release"] ?? readJson(join(llamaDir, "llama.cpp.info.json"))?.["tag"] ?? "unknown";
  const bundle = join(llamaDir, "gitRelease.bundle");
  const commit = existsSync(bundle) ? bundleHead(bundle) : undefined;
  return [`nlc-${safe(version)}`, `llama-${safe(release)}${commit ? `-${commit.slice(0, 10)}` : ""}`, `${process.platform}-${process.arch}`].join("_");
}

/** Where `scripts/build-llama-server.mjs` puts (or would put) the binary. Throws if node-llama-cpp is not installed. */
export function llamaServerCachePath(env: NodeJS.ProcessEnv = process.env): string {
  const exe = process.platform === "win32" ? "llama-server.exe" : "llama-server";
  return join(llamaRunnerCacheRoot(env), "llama-server", llamaServerCacheKey(), exe);
}

/** The cached binary's path when it exists and is executable; undefined otherwise (never builds). */
export async function findLlamaServer(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  let path: string;
  try {
    path = llamaServerCachePath(env);
  } catch {
    return undefined;
  }
  try {
    await access(path, constants.X_OK);
    return path;
  } catch {
    return undefined;
  }
}

