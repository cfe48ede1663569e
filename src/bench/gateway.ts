/**
 * The gateway under test, started the way a user starts it: `llama-runner serve --config FILE` (node with
 * the flags of the command's `#!` line) in its own (pinned) process, its listener port read from its JSON log.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { RunningProxy } from "./nginx.js";
import { startChild } from "./util.js";

export const DIST = fileURLToPath(new URL("..", import.meta.url));
export const CLI = join(DIST, "cli", "main.js");

/** The node flags of a script's `#!/usr/bin/env -S node FLAGS` line (none for a plain `node`). */
export function shebangNodeFlags(source: string): string[] {
  const line = source.split("\n", 1)[0] ?? "";
  const match = /^#!\S*env(?: -S)? node((?: --?\S+)*)\s*$/.exec(line);
  if (!match) throw new Error(`not a node #! line: ${line}`);
  return match[1]!.split(" ").filter(Boolean);
}

/** The flags `llama-runner` (and `npm start`) run node with. */
export const CLI_NODE_FLAGS = shebangNodeFlags(readFileSync(CLI, "utf8"));

/** Every request of the bench carries this key; the gateway under test requires it. */
export const BENCH_API_KEY = "llama-runner-bench-key";
export const AUTH_HEADERS: Record<string, string> = { authorization: `Bearer ${BENCH_API_KEY}` };

/**
 * The gateway as the issue asks to measure it: auth, routing and limits switched on. The limits are
 * high enough that the bench's own load is never refused (a refusal would be an error in the table),
 * but every request still pays for their bookkeeping. `exempt_loopback` stays off for the same reason.
 */
const LIMITS = { requests_per_minute: 100_000_000, concurrent_requests: 100_000, streaming_connections: 100_000, exempt_loopback: false };
export const POLICIES = {
  api_keys: [BENCH_API_KEY],
  proxies: { lmstudio: { port: 0, rate_limits: LIMITS }, ollama: { port: 0, rate_limits: LIMITS } },
};

export interface GatewayOptions {
  dir: string;
  name: string;
  models: Record<string, unknown>;
  extra?: Record<string, unknown>;
  cpus: string | undefined;
  /** Node flags besides the command's own (e.g. --cpu-prof). */
  nodeFlags?: string[];
}

export interface RunningGateway extends RunningProxy {
  /** JSON log records the gateway printed so far. */
  logs(): Record<string, unknown>[];
}

export async function startGateway({ dir, name, models, extra = {}, cpus, nodeFlags = [] }: GatewayOptions): Promise<RunningGateway> {
  const home = join(dir, `gateway-${name}`);
  mkdirSync(join(home, "models"), { recursive: true });
  const configFile = join(home, "config.json");
  writeFileSync(
    configFile,
    JSON.stringify(
      {
        demo_model: false,
        models_dir: join(home, "models"),
        ...POLICIES,
        models,
        ...extra,
      },
      null,
      2,
    ),
  );
  const child = startChild("gateway", process.execPath, [...CLI_NODE_FLAGS, ...nodeFlags, CLI, "serve", "--config", configFile], {
    cpus,
    cwd: home,
    env: { ...process.env, LLAMA_RUNNER_HOME: home, LLAMA_RUNNER_LOG_LEVEL: "info" },
  });
  const m = await child.waitForLine(/lmstudio listener on (http:\/\/[\d.]+:\d+)/, 30_000);
  const url = m[1]!;
  // A key the gateway does not know (the config schema moved on) is only a warning: surface it.
  const warnings = child.lines.filter((l) => /"level":40/.test(l) && /config|unknown|key/i.test(l));
  for (const w of warnings) process.stderr.write(`bench: gateway config warning: ${w}\n`);
  return {
    name: "gateway",
    url,
    mainPid: child.pid,
    pids: () => [child.pid],
    child,
    stop: () => child.stop(5000),
    logs: () =>
      child.lines.flatMap((line) => {
        try {
          return [JSON.parse(line) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
  };
}
