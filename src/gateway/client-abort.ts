import type { ServerResponse } from "node:http";
import { ClientAbort } from "../lifecycle/cancellation.js";

/** A ClientAbort that fires when the client goes away before its response has finished. */
export function abortOnClientClose(res: ServerResponse): ClientAbort {
  const abort = new ClientAbort();
  res.once("close", () => {
    if (!res.writableFinished) abort.abort(new Error("client closed the connection"));
  });
  return abort;
}
