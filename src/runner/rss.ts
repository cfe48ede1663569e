import { readFile, readdir } from "node:fs/promises";

/**
 * Resident memory of a process group (a backend and whatever it started, such as the watchdog
 * shell), from /proc. undefined where /proc is not available.
 */
export async function groupRssBytes(pgid: number): Promise<number | undefined> {
  let pids: string[];
  try {
    pids = (await readdir("/proc")).filter((name) => /^\d+$/.test(name));
  } catch {
    return undefined;
  }
  let total = 0;
  let found = false;
  await Promise.all(
    pids.map(async (pid) => {
      try {
        // Field 5 of /proc/PID/stat is the process group; the command name (field 2) may hold spaces.
        const stat = await readFile(`/proc/${pid}/stat`, "utf8");
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        if (Number(fields[2]) !== pgid) return;
        const status = await readFile(`/proc/${pid}/status`, "utf8");
        const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
        if (kb) {
          total += Number(kb) * 1024;
          found = true;
        }
      } catch {
        // The process ended while we looked.
      }
    }),
  );
  return found ? total : undefined;
}
