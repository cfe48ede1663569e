/**
 * The model registry: configured models plus GGUF files discovered under `models_dir`, each with
 * the metadata read from its header. Ids are catalogue keys, never paths, so a client can only name
 * what the operator put here.
 */
import { basename, dirname } from "node:path";
import type { Config, ModelConfig } from "../config/schema.js";
import { resolveFrom } from "../config/paths.js";
import { discoverGgufFiles } from "./discover.js";
import { CatalogEdits } from "./edits.js";
import { type GgufSummary, readGgufSummary } from "./gguf/metadata.js";

export type ModelSource = "config" | "discovered" | "demo";
export type ParameterValue = string | number | boolean | null;

export interface ModelEntry {
  id: string;
  aliases: string[];
  source: ModelSource;
  /** The GGUF file; undefined for a `url` model or a `command` that brings its own. */
  path: string | undefined;
  /** The name sent to the backend in the `model` field. */
  upstreamModel: string;
  /** "embedded", "command", "url" or a key of `llama-runtimes`. */
  runtime: string;
  parameters: Record<string, ParameterValue>;
  command: string | undefined;
  stopCommand: string | undefined;
  url: string | undefined;
  healthPath: string;
  /** Idle seconds before unloading (0 = never); undefined = the global setting. */
  ttlSeconds: number | undefined;
  pinned: boolean;
  preload: boolean;
  /** false: requests never load it; only a start (API, preload) does. */
  autoStart: boolean;
  /** Configured memory need in bytes, overriding the GGUF estimate. */
  memoryBytes: number | undefined;
  /** Configured requests sent beyond the backend's slots (undefined: the runtime's default). */
  queueAhead: number | undefined;
  /** Unix seconds: the file's modification time. */
  created: number;
  gguf: GgufSummary | undefined;
  /** Why this model cannot be served (unreadable or not a GGUF file). */
  error: string | undefined;
}

export interface CatalogInput {
  config: Config;
  /** Client edits (Ollama copies and deletes); default: none, kept in memory. */
  edits?: CatalogEdits;
  /** Folder of the config file: relative paths in it resolve from here. */
  configDir: string;
  /** Extra entries the caller adds (the demo model). */
  extra?: Array<{ id: string; path: string; source: ModelSource }>;
}

export class Catalog {
  private readonly byName = new Map<string, ModelEntry>();

  private constructor(
    /** Every entry, deleted ones too: what the gateway runs. Clients see `listed`. */
    readonly entries: readonly ModelEntry[],
    private readonly edits: CatalogEdits,
  ) {
    for (const entry of entries) {
      for (const name of [entry.id, ...entry.aliases]) {
        if (!this.byName.has(name)) this.byName.set(name, entry);
      }
    }
  }

  static async build({ config, configDir, extra = [], edits = CatalogEdits.load().edits }: CatalogInput): Promise<Catalog> {
    const configured = await Promise.all(
      Object.entries(config.models).map(([id, model]) =>
        describe(id, model.model_path === undefined ? undefined : resolveFrom(configDir, model.model_path), "config", config.default_runtime, model),
      ),
    );
    const known = new Set(configured.map((e) => e.path));
    const ids = new Set(configured.flatMap((e) => [e.id, ...e.aliases]));
    const discovered: Array<Promise<ModelEntry>> = [];
    for (const path of await discoverGgufFiles(resolveFrom(configDir, config.models_dir))) {
      if (known.has(path)) continue;
      const id = uniqueId(basename(path, ".gguf"), basename(dirname(path)), ids);
      ids.add(id);
      discovered.push(describe(id, path, "discovered", config.default_runtime));
    }
    const extras = extra.map((e) => describe(e.id, e.path, e.source, "embedded"));
    return new Catalog([...configured, ...(await Promise.all([...discovered, ...extras]))], edits);
  }

  get size(): number {
    return this.entries.length;
  }

  /** The entries clients see: all but the deleted ones. */
  get listed(): ModelEntry[] {
    return this.entries.filter((entry) => !this.edits.isRemoved(entry.id));
  }

  /** The entry of a catalogue id, deleted or not: for the gateway's own bookkeeping, never for a client's name. */
  get(id: string): ModelEntry | undefined {
    const entry = this.byName.get(id);
    return entry?.id === id ? entry : this.entries.find((e) => e.id === id);
  }

  /**
   * Finds a model by any name a client may use: a copy, an id or an alias. Ollama-style `name:latest`
   * and different letter case are accepted too, since clients add the tag or change case on their own.
   * Deleted entries are not found (their copies are).
   */
  resolve(name: string): ModelEntry | undefined {
    const copy = this.edits.copyOf(name);
    // A copy of an entry that has left the catalogue (its file is gone) names nothing; the name may still be an entry's.
    const copied = copy && this.get(copy.id);
    if (copied) return copied;
    const entry = this.lookup(name.trim());
    return entry && !this.edits.isRemoved(entry.id) ? entry : undefined;
  }

  /** Copies (Ollama's `/api/copy`) with the entries they name. */
  copies(): Array<{ name: string; entry: ModelEntry }> {
    return this.edits.listCopies().flatMap(({ name, id }) => {
      const entry = this.get(id);
      return entry ? [{ name, entry }] : [];
    });
  }

  /** A new name for the entry `source` names; false when `source` names nothing. */
  copy(source: string, destination: string): boolean {
    const entry = this.resolve(source);
    if (!entry) return false;
    this.edits.addCopy(destination, entry.id);
    return true;
  }

  /** Drops a copy, or hides an entry. `removed`: the entry hidden (undefined for a copy); false = nothing of that name. */
  remove(name: string): { found: boolean; removed?: ModelEntry } {
    if (this.edits.dropCopy(name)) return { found: true };
    const entry = this.resolve(name);
    if (!entry) return { found: false };
    this.edits.setRemoved(entry.id, true);
    return { found: true, removed: entry };
  }

  /** Brings a deleted entry back (Ollama's `/api/pull` of a model the catalogue has). */
  restore(name: string): ModelEntry | undefined {
    const visible = this.resolve(name);
    if (visible) return visible;
    const entry = this.lookup(name.trim());
    if (entry) this.edits.setRemoved(entry.id, false);
    return entry;
  }

  private lookup(name: string): ModelEntry | undefined {
    const exact = this.byName.get(name);
    if (exact) return exact;
    const untagged = name.endsWith(":latest") ? name.slice(0, -":latest".length) : name;
    const lower = untagged.toLowerCase();
    for (const [key, entry] of this.byName) {
      if (key === untagged || key.toLowerCase() === lower) return entry;
    }
    return undefined;
  }
}

async function describe(
  id: string,
  path: string | undefined,
  source: ModelSource,
  defaultRuntime: string,
  model?: ModelConfig,
): Promise<ModelEntry> {
  const entry: ModelEntry = {
    id,
    aliases: model?.aliases ?? [],
    source,
    path,
    upstreamModel: model?.model_id ?? id,
    runtime: model?.runtime ?? (model?.url ? "url" : model?.command ? "command" : defaultRuntime),
    parameters: model?.parameters ?? {},
    command: model?.command,
    stopCommand: model?.stop_command,
    url: model?.url,
    healthPath: model?.health_path ?? "/health",
    ttlSeconds: model?.ttl,
    pinned: model?.pinned ?? false,
    preload: model?.preload ?? false,
    autoStart: model?.auto_start ?? true,
    memoryBytes: model?.memory,
    queueAhead: model?.queue_ahead,
    created: 0,
    gguf: undefined,
    error: undefined,
  };
  if (path === undefined) {
    entry.created = Math.floor(Date.now() / 1000);
    return entry;
  }
  try {
    entry.gguf = await readGgufSummary(path);
    entry.created = Math.floor(entry.gguf.modifiedMs / 1000);
  } catch (error) {
    // The reason is shown to clients, so it names the file, never its folder.
    entry.error =
      (error as NodeJS.ErrnoException).code === "ENOENT"
        ? `model file ${basename(path)} not found`
        : `${basename(path)} is not a readable GGUF file: ${(error as Error).message.replaceAll(path, basename(path))}`;
  }
  return entry;
}

function uniqueId(name: string, parent: string, taken: Set<string>): string {
  if (!taken.has(name)) return name;
  const qualified = `${parent}-${name}`;
  if (!taken.has(qualified)) return qualified;
  for (let i = 2; ; i++) if (!taken.has(`${qualified}-${i}`)) return `${qualified}-${i}`;
}
