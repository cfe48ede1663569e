import { createHash, randomUUID } from "node:crypto";
import { access, mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";

/**
 * A generated file cached by a hash of what it is made from: returns dir/<prefix>-<hash><ext>, written
 * only when missing, to a temp name then renamed, so concurrent callers and crashes never see half a file.
 */
export async function ensureCachedFile(dir: string, prefix: string, ext: string, key: unknown, write: (path: string) => Promise<void>): Promise<string> {
  const hash = createHash("sha256").update(JSON.stringify(key)).digest("hex").slice(0, 16);
  const path = join(dir, `${prefix}-${hash}${ext}`);
  try {
    await access(path);
    return path;
  } catch {
    // Missing: write it below.
  }
  await mkdir(dir, { recursive: true });
  const temporary = `${path}.${process.pid}.${randomUUID()}.tmp`;
  try {
    await write(temporary);
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  return path;
}
