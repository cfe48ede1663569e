/**
 * Ollama's view of the catalogue: `name:tag` names (the tag defaults to `latest`), plus what `/api/copy` and
 * `/api/delete` change. Both are kept in memory by this listener and last until the gateway restarts:
 *
 * - a copy is an alias, `destination` → the source's catalogue entry (no file is written);
 * - a delete hides a catalogue entry (or drops a copy) from this dialect; the GGUF file is never touched,
 *   and `/api/pull` of the same name brings the entry back.
 */
import type { Catalog, ModelEntry } from "../../catalog/catalog.js";

/** `llama3` → `llama3:latest`; a name that already has a tag (after its last `/`) is kept. */
export function tagged(name: string): string {
  const trimmed = name.trim();
  const last = trimmed.slice(trimmed.lastIndexOf("/") + 1);
  return last.includes(":") ? trimmed : `${trimmed}:latest`;
}

const key = (name: string): string => tagged(name).toLowerCase();

export interface NamedModel {
  /** The name Ollama clients see, always with a tag. */
  name: string;
  entry: ModelEntry;
}

export class OllamaNames {
  private readonly copies = new Map<string, NamedModel>();
  private readonly hidden = new Set<string>();

  constructor(
    private readonly catalog: Catalog,
    /** Entries this API serves at all (speech-to-text models, for one, are not Ollama models). */
    private readonly served: (entry: ModelEntry) => boolean = () => true,
  ) {}

  /** Finds a model by any name a client may use (copy, id, alias, with or without `:latest`, any case). */
  resolve(name: string): ModelEntry | undefined {
    if (name.trim() === "") return undefined;
    const copy = this.copies.get(key(name));
    if (copy) return copy.entry;
    const entry = this.catalog.resolve(name.trim());
    return entry && this.served(entry) && !this.hidden.has(entry.id) ? entry : undefined;
  }

  /** What `/api/tags` lists: visible catalogue entries under their tagged id, then the copies. */
  list(): NamedModel[] {
    const own = this.catalog.entries.filter((entry) => this.served(entry) && !this.hidden.has(entry.id)).map((entry) => ({ name: tagged(entry.id), entry }));
    // A copy named like a catalogue entry shadows it, as a copy over an existing name replaces it in Ollama.
    return [...own.filter((m) => !this.copies.has(m.name.toLowerCase())), ...this.copies.values()];
  }

  /** The tagged name a catalogue entry is listed under. */
  nameOf(entry: ModelEntry): string {
    return tagged(entry.id);
  }

  /** `/api/copy`: false when the source is unknown. */
  copy(source: string, destination: string): boolean {
    const entry = this.resolve(source);
    if (!entry) return false;
    this.copies.set(key(destination), { name: tagged(destination), entry });
    return true;
  }

  /** `/api/delete`: the entry that was hidden (undefined for a copy, or when nothing matched); false = not found. */
  remove(name: string): { found: boolean; hiddenEntry?: ModelEntry } {
    if (this.copies.delete(key(name))) return { found: true };
    const entry = this.resolve(name);
    if (!entry) return { found: false };
    this.hidden.add(entry.id);
    return { found: true, hiddenEntry: entry };
  }

  /** `/api/pull` of a model the catalogue has: shows it again if it was deleted. */
  restore(name: string): ModelEntry | undefined {
    const visible = this.resolve(name);
    if (visible) return visible;
    const entry = this.catalog.resolve(name.trim());
    if (!entry || !this.served(entry)) return undefined;
    this.hidden.delete(entry.id);
    return entry;
  }
}
