import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";

export interface ConfigPaths {
  /** LLAMA_RUNNER_HOME: where the config, generated models and data live. */
  home: string;
  /** The config file actually read (LLAMA_RUNNER_CONFIG or --config override it). */
  configFile: string;
}

export function expandHome(path: string): string {
  if (path === "~") return homedir();
  if (path.startsWith("~/")) return join(homedir(), path.slice(2));
  return path;
}

export function resolvePaths(env: NodeJS.ProcessEnv, configOverride?: string): ConfigPaths {
  const home = resolve(expandHome(env["LLAMA_RUNNER_HOME"] || join(homedir(), ".llama-runner")));
  const configFile = resolve(expandHome(configOverride || env["LLAMA_RUNNER_CONFIG"] || join(home, "config.json")));
  return { home, configFile };
}

/** Relative paths in the config are relative to the config file's folder, as users expect. */
export function resolveFrom(baseDir: string, path: string): string {
  const expanded = expandHome(path);
  return isAbsolute(expanded) ? expanded : resolve(baseDir, expanded);
}
