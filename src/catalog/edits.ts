/**
 * What clients changed in the catalogue through Ollama's `/api/copy` and `/api/delete`, kept in one JSON
 * file under LLAMA_RUNNER_HOME, so the changes outlast a restart and hold on every listener and dialect:
 *
 * - a copy is a new name for an entry (no file is written); it stays when its source is deleted;
 * - a delete hides an entry, or drops a copy. The GGUF file is never touched: llama-runner downloads
 *   nothing, so every file is the user's. `/api/pull` of the name (or removing it from the file) brings
 *   the entry back.
 *
 * The file is written whole to a temporary name and renamed over the old one, so a crash mid-write
 * leaves the previous version, never half of one.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname } from "node:path";
import { GatewayError } from "../errors/index.js";

interface EditsFile {
  /** Copy name as the client wrote it → the catalogue id it names. */
  copies: Record<string, string>;
  /** Catalogue ids hidden by a delete. */
  removed: string[];
}

/** Names match without the `:latest` tag and in any case, as catalogue names do. */
export const nameKey = (name: string): string => {
  const trimmed = name.trim().toLowerCase();
  return trimmed.endsWith(":latest") ? trimmed.slice(0, -":latest".length) : trimmed;
};

export class CatalogEdits {
  private readonly copies = new Map<string, { name: string; id: string }>();
  private readonly removed = new Set<string>();

  /** `file` undefined: kept in memory only (tests, embedded use). */
  private constructor(private readonly file: string | undefined) {}

  /** Reads the file when there is one; a damaged file is reported and the gateway starts without edits. */
  static load(file?: string): { edits: CatalogEdits; problem?: string } {
    const edits = new CatalogEdits(file);
    if (file === undefined || !existsSync(file)) return { edits };
    try {
      const data = JSON.parse(readFileSync(file, "utf8")) as Partial<EditsFile>;
      for (const [name, id] of Object.entries(data.copies ?? {})) {
        if (typeof id === "string") edits.copies.set(nameKey(name), { name, id });
      }
      for (const id of data.removed ?? []) if (typeof id === "string") edits.removed.add(id);
      return { edits };
    } catch (error) {
      return { edits, problem: `${file} is not readable JSON (${(error as Error).message}); starting without the copies and deletes it held` };
    }
  }

  copyOf(name: string): { name: string; id: string } | undefined {
    return this.copies.get(nameKey(name));
  }

  listCopies(): Array<{ name: string; id: string }> {
    return [...this.copies.values()];
  }

  isRemoved(id: string): boolean {
    return this.removed.has(id);
  }

  addCopy(name: string, id: string): void {
    const key = nameKey(name);
    const before = this.copies.get(key);
    this.copies.set(key, { name: name.trim(), id });
    this.saveOrUndo(() => (before ? this.copies.set(key, before) : this.copies.delete(key)));
  }

  /** Drops a copy; false when there is none of that name. */
  dropCopy(name: string): boolean {
    const key = nameKey(name);
    const before = this.copies.get(key);
    if (!before) return false;
    this.copies.delete(key);
    this.saveOrUndo(() => this.copies.set(key, before));
    return true;
  }

  setRemoved(id: string, removed: boolean): void {
    if (removed === this.removed.has(id)) return;
    const flip = (to: boolean) => (to ? this.removed.add(id) : this.removed.delete(id));
    flip(removed);
    this.saveOrUndo(() => flip(!removed));
  }

  /** Writes the file; when that fails, the change is undone, so memory never says what the file does not. */
  private saveOrUndo(undo: () => void): void {
    if (this.file === undefined) return;
    const data: EditsFile = { copies: Object.fromEntries([...this.copies.values()].map((c) => [c.name, c.id])), removed: [...this.removed] };
    const temp = `${this.file}.${process.pid}.tmp`;
    try {
      mkdirSync(dirname(this.file), { recursive: true });
      writeFileSync(temp, `${JSON.stringify(data, null, 2)}\n`);
      renameSync(temp, this.file);
    } catch (error) {
      undo();
      rmSync(temp, { force: true });
      throw new GatewayError("server_error", `could not save the catalogue's copies and deletes to ${basename(this.file)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
    }
  }
}
