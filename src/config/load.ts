import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { z } from "zod";
import { type Config, configSchema, defaultConfig } from "./schema.js";

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`invalid config ${file}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

export interface LoadedConfig {
  config: Config;
  file: string;
  /** Keys we do not know: reported, never silently dropped. */
  warnings: string[];
  created: boolean;
}

const formatPath = (path: PropertyKey[]): string =>
  path.length === 0 ? "(root)" : path.map((p) => (typeof p === "number" ? `[${p}]` : String(p))).join(".");

/**
 * Validates raw JSON against the schema. Unknown keys are warnings: they are removed and the rest is
 * validated again, so one typo does not stop start-up while every real type error still does.
 */
export function validateConfig(raw: unknown, file: string): { config: Config; warnings: string[] } {
  const first = configSchema.safeParse(raw);
  if (first.success) return { config: first.data, warnings: [] };

  const warnings: string[] = [];
  const errors: string[] = [];
  const copy = structuredClone(raw);
  for (const issue of first.error.issues) {
    if (issue.code === "unrecognized_keys") {
      const parent = issue.path.reduce<unknown>((node, key) => (node as Record<PropertyKey, unknown>)[key], copy);
      for (const key of issue.keys) {
        warnings.push(`unknown key ${formatPath([...issue.path, key])} is ignored`);
        delete (parent as Record<string, unknown>)[key];
      }
    } else {
      errors.push(describe(issue));
    }
  }
  if (errors.length > 0) throw new ConfigError(file, errors);
  const second = configSchema.safeParse(copy);
  if (!second.success) throw new ConfigError(file, second.error.issues.map(describe));
  return { config: second.data, warnings };
}

function describe(issue: z.core.$ZodIssue): string {
  return `${formatPath(issue.path)}: ${issue.message}`;
}

/** Reads the config, creating it with the defaults (owner-only permissions) on first start. */
export async function loadConfig(file: string): Promise<LoadedConfig> {
  let text: string;
  let created = false;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw new ConfigError(file, [String(error)]);
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    text = `${JSON.stringify(defaultConfig(), null, 2)}\n`;
    await writeFile(file, text, { mode: 0o600, flag: "wx" }).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "EEXIST") throw e;
    });
    created = true;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(file, [`not valid JSON: ${(error as Error).message}`]);
  }
  return { ...validateConfig(raw, file), file, created };
}
