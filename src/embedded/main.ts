/**
 * Entry point of the embedded runner: one model, one port, llama-server's protocol. The HTTP server
 * starts before the model loads so the gateway's health probe sees 503 "Loading model" instead of a
 * refused connection, exactly as with llama-server. Only light modules are imported statically: importing
 * node-llama-cpp alone takes most of a second, and /health should answer before that.
 */
import type { AddressInfo } from "node:net";
import { parseRunnerArgs, usage, UsageError, type RunnerOptions } from "./args.js";
import { ApiError } from "./errors.js";
import { createRunnerServer } from "./http-server.js";
import { log } from "./log.js";
import { watchForOrphaning } from "./orphan.js";
import { metaRoutes } from "./routes/meta.js";
import { RunnerState } from "./runner-state.js";

/** How long a shutdown may take before we stop waiting for the native side and exit anyway. */
const SHUTDOWN_GRACE_MS = 2000;

function parseOrExit(argv: string[]): RunnerOptions {
  try {
    return parseRunnerArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`error: ${error.message}\n${usage}\n`);
    process.exit(2);
  }
}

async function main(): Promise<void> {
  const options = parseOrExit(process.argv.slice(2));
  const state = new RunnerState(options.alias);
  const http = createRunnerServer(metaRoutes(state), { loading: () => state.engine === undefined });

  let stopping = false;
  let stopWatching = (): void => {};
  const shutdown = async (reason: string, code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log(`shutting down: ${reason}`);
    setTimeout(() => process.exit(code), SHUTDOWN_GRACE_MS).unref();
    stopWatching();
    try {
      state.engine?.pool.close(new ApiError(503, "unavailable_error", "the runner is shutting down"));
      await http.close();
      await state.engine?.dispose();
    } catch (error) {
      log(`error during shutdown: ${error instanceof Error ? error.message : String(error)}`);
    }
    process.exit(code);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM", 0));
  process.on("SIGINT", () => void shutdown("SIGINT", 0));
  // A stray rejection inside the native binding must not take down requests that are still healthy.
  process.on("unhandledRejection", (error) => log(`unhandled rejection: ${error instanceof Error ? error.stack : String(error)}`));
  stopWatching = watchForOrphaning((reason) => void shutdown(reason, 0));

  await new Promise<void>((resolve, reject) => {
    http.server.once("error", reject);
    http.server.listen(options.port, options.host, () => {
      http.server.off("error", reject);
      resolve();
    });
  }).catch((error: unknown) => {
    log(`cannot listen on ${options.host}:${options.port}: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
  const address = http.server.address() as AddressInfo;
  log(`server is listening on http://${options.host}:${address.port} (model '${options.alias}' loading)`);

  try {
    const [{ loadEngine }, chat, completions, embeddings, tokenize] = await Promise.all([
      import("./engine.js"),
      import("./routes/chat.js"),
      import("./routes/completions.js"),
      import("./routes/embeddings.js"),
      import("./routes/tokenize.js"),
    ]);
    http.addRoutes({
      ...chat.chatRoutes(state),
      ...completions.completionRoutes(state),
      ...embeddings.embeddingRoutes(state),
      ...tokenize.tokenizeRoutes(state),
    });
    const engine = await loadEngine(options);
    if (stopping) {
      await engine.dispose();
      return;
    }
    state.engine = engine;
    log("model loaded, ready");
  } catch (error) {
    log(`failed to load model ${options.modelPath}: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}

void main();
