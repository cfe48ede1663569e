import { readdir } from "node:fs/promises";
import { join } from "node:path";

// Vision projectors and the non-first parts of split models are not models of their own.
const NOT_A_MODEL = [/mmproj/i, /-0000[2-9]-of-\d+\.gguf$/i, /-000[1-9]\d-of-\d+\.gguf$/i];

/** Every `*.gguf` under `dir`, recursively, sorted; a missing folder is simply empty. */
export async function discoverGgufFiles(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  return entries
    .filter((e) => e.isFile() && e.name.toLowerCase().endsWith(".gguf") && !NOT_A_MODEL.some((re) => re.test(e.name)))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}
