/** The GGUF reader's thread: summarizes the headers it is sent, one message each (see metadata.ts). */
import { parentPort } from "node:worker_threads";
import { summarizeGguf } from "./summary.js";

parentPort?.on("message", (request: { id: number; path: string; sizeBytes: number; modifiedMs: number }) => {
  summarizeGguf(request.path, request.sizeBytes, request.modifiedMs).then(
    (summary) => parentPort?.postMessage({ id: request.id, summary }),
    (error: unknown) => {
      const { message, code } = error as NodeJS.ErrnoException;
      parentPort?.postMessage({ id: request.id, error: { message: String(message), code } });
    },
  );
});
