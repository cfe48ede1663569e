/**
 * Keeps the runner from outliving the gateway. A SIGKILLed parent cannot clean up after itself, so the
 * child watches for two signs of its death: the stdin pipe the gateway holds reaching EOF, and the parent
 * pid changing (the child is re-parented to init or a subreaper).
 */
import { fstatSync } from "node:fs";

/** Only a pipe or socket on stdin is a lifeline; a TTY or /dev/null would look "ended" or never end. */
function stdinIsLifeline(): boolean {
  if (process.stdin.isTTY) return false;
  try {
    const stat = fstatSync(0);
    return stat.isFIFO() || stat.isSocket();
  } catch {
    return false;
  }
}

export function watchForOrphaning(onOrphaned: (reason: string) => void, pollMs = 1000): () => void {
  let fired = false;
  const fire = (reason: string): void => {
    if (fired) return;
    fired = true;
    onOrphaned(reason);
  };
  const cleanups: Array<() => void> = [];

  if (stdinIsLifeline()) {
    const onEnd = (): void => fire("stdin closed");
    process.stdin.on("end", onEnd);
    process.stdin.on("close", onEnd);
    process.stdin.on("error", onEnd);
    // Whatever the parent writes is ignored; reading is what lets us see EOF.
    process.stdin.resume();
    cleanups.push(() => {
      process.stdin.off("end", onEnd);
      process.stdin.off("close", onEnd);
      process.stdin.off("error", onEnd);
      process.stdin.pause();
      // A paused pipe still holds the event loop open.
      process.stdin.unref?.();
    });
  }

  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) fire(`parent process ${parent} exited`);
  }, pollMs);
  timer.unref();
  cleanups.push(() => clearInterval(timer));

  return () => {
    for (const cleanup of cleanups) cleanup();
  };
}
