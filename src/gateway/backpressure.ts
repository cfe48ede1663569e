import type { ServerResponse } from "node:http";

/**
 * Writes a chunk and, when the client's socket is full, waits until it drains. A client that stops
 * reading cannot hold its backend slot forever: after `stallMs` without draining the response is
 * destroyed. A client that hangs up ends the wait too.
 */
export function writeWithBackpressure(res: ServerResponse, chunk: string | Uint8Array, stallMs: number): Promise<void> | undefined {
  if (res.write(chunk)) return undefined;
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    const timer = setTimeout(() => {
      res.destroy(new Error(`the client read nothing for ${Math.round(stallMs / 1000)} s`));
      done();
    }, stallMs);
    res.on("drain", done);
    res.on("close", done);
  });
}
