import type { ServerResponse } from "node:http";

/**
 * An AbortSignal that fires when the client goes away before its response has finished, so a
 * closed socket stops waiting for a load and stops generation upstream.
 */
export function abortOnClientClose(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) controller.abort(new Error("client closed the connection"));
  });
  return controller.signal;
}
