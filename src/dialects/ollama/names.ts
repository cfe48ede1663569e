/**
 * Ollama's view of the catalogue: `name:tag` names (the tag defaults to `latest`), over the entries this
 * API serves. Copies and deletes are the catalogue's own (src/catalog/edits.ts): they are saved, and
 * hold for every dialect, so a copy's name works on `/v1/chat/completions` too, as Copilot uses it.
 */
import type { Catalog, ModelEntry } from "../../catalog/catalog.js";
import { nameKey } from "../../catalog/edits.js";

/** `llama3` → `llama3:latest`; a name that already has a tag (after its last `/`) is kept. */
export function tagged(name: string): string {
  const trimmed = name.trim();
  const last = trimmed.slice(trimmed.lastIndexOf("/") + 1);
  return last.includes(":") ? trimmed : `${trimmed}:latest`;
}

export interface NamedModel {
  /** The name Ollama clients see, always with a tag. */
  name: string;
  entry: ModelEntry;
}

export class OllamaNames {
  constructor(
    private readonly catalog: Catalog,
    /** Entries this API serves at all (speech-to-text models, for one, are not Ollama models). */
    private readonly served: (entry: ModelEntry) => boolean = () => true,
  ) {}

  /** Finds a model by any name a client may use (copy, id, alias, with or without `:latest`, any case). */
  resolve(name: string): ModelEntry | undefined {
    if (name.trim() === "") return undefined;
    const entry = this.catalog.resolve(name);
    return entry && this.served(entry) ? entry : undefined;
  }

  /** What `/api/tags` lists: the visible entries under their tagged id, then the copies. */
  list(): NamedModel[] {
    const copies = this.catalog.copies().filter(({ entry }) => this.served(entry)).map(({ name, entry }) => ({ name: tagged(name), entry }));
    const copied = new Set(copies.map((c) => nameKey(c.name)));
    // A copy named like a catalogue entry shadows it, as a copy over an existing name replaces it in Ollama.
    const own = this.catalog.listed.filter((entry) => this.served(entry) && !copied.has(nameKey(entry.id))).map((entry) => ({ name: tagged(entry.id), entry }));
    return [...own, ...copies];
  }

  /** `/api/copy`: false when the source is unknown. */
  copy(source: string, destination: string): boolean {
    return this.resolve(source) !== undefined && this.catalog.copy(source, destination);
  }

  /** `/api/delete`: the entry that was hidden (undefined for a copy); found false = nothing of that name. */
  remove(name: string): { found: boolean; hiddenEntry?: ModelEntry } {
    if (this.resolve(name) === undefined) return { found: false };
    const { found, removed } = this.catalog.remove(name);
    return { found, hiddenEntry: removed };
  }

  /** `/api/pull` of a model the catalogue has: shows it again if it was deleted. */
  restore(name: string): ModelEntry | undefined {
    if (name.trim() === "") return undefined;
    const visible = this.resolve(name);
    if (visible) return visible;
    const entry = this.catalog.restore(name);
    return entry && this.served(entry) ? entry : undefined;
  }
}
