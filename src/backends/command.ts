/**
 * Any program that serves the OpenAI API: the configured command line with ${PORT}, ${MODEL_PATH},
 * ${MODEL_ID} (and ${PID} in the stop command) filled in, run by /bin/sh.
 */
import type { ModelEntry } from "../catalog/catalog.js";
import type { Backend, ProcessPlan } from "./types.js";

/** Values go into a shell command line, so each is quoted as one word. */
const quote = (value: string) => `'${value.replaceAll("'", `'\\''`)}'`;

export function expandMacros(template: string, values: Record<string, string>): string {
  return template.replace(/\$\{([A-Z_]+)\}/g, (whole, name: string) => (name in values ? quote(values[name] as string) : whole));
}

export const commandBackend: Backend = {
  kind: "command",
  plan(entry: ModelEntry, listen): ProcessPlan {
    const values = { PORT: String(listen.port), HOST: listen.host, MODEL_PATH: entry.path ?? "", MODEL_ID: entry.upstreamModel };
    const shell = (template: string) => ({ command: "/bin/sh", args: ["-c", expandMacros(template, values)] });
    return {
      kind: "process",
      spawn: shell(`exec ${entry.command ?? "false"}`),
      ...(entry.stopCommand ? { stop: shell(entry.stopCommand) } : {}),
      watchesStdin: false,
      healthPath: entry.healthPath,
      ignoredParameters: Object.keys(entry.parameters),
    };
  },
};

export const urlBackend: Backend = {
  kind: "url",
  plan(entry: ModelEntry) {
    return { kind: "remote", baseUrl: (entry.url ?? "").replace(/\/+$/, ""), healthPath: entry.healthPath };
  },
};
