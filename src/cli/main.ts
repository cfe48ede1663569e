#!/usr/bin/env -S node --v8-pool-size=2
/**
 * `llama-runner` command line. `npm start` runs `serve` with the default config.
 *
 * Node's flags are on the line above because a process cannot set them for itself once it runs; `npm
 * start` passes the same ones (a test keeps the two equal) and the bench starts the gateway with them.
 * `--v8-pool-size=2`: V8's background threads (concurrent marking, sweeping, compilation) default to
 * four, each with its own glibc malloc arena. A gateway's heap is small, and two threads do its
 * background work; the memory bench measured ~3 MB less RSS idle and after load with two (README).
 */
import { Command } from "commander";
import { ConfigError } from "../config/load.js";
import { resolvePaths } from "../config/paths.js";
import { createLogger } from "../logger.js";
import { buildApp } from "../main.js";
import { VERSION } from "../version.js";

const program = new Command()
  .name("llama-runner")
  .description("Local AI gateway: your models behind the OpenAI, Ollama and LM Studio APIs")
  .version(VERSION)
  .addHelpText(
    "after",
    "\nEnvironment:\n  LLAMA_RUNNER_HOME     data folder (default ~/.llama-runner)\n  LLAMA_RUNNER_CONFIG   config file (default $LLAMA_RUNNER_HOME/config.json)\n  LLAMA_RUNNER_LOG_LEVEL  trace|debug|info|warn|error (default info)",
  );

program
  .command("serve")
  .description("start the gateway on the configured listeners (LM Studio :1234, Ollama :11434)")
  .option("-c, --config <path>", "config file (created with defaults if missing)")
  .action(async (options: { config?: string }) => {
    const logger = createLogger();
    const paths = resolvePaths(process.env, options.config);
    let app;
    try {
      app = await buildApp({ configFile: paths.configFile, home: paths.home, logger });
    } catch (error) {
      if (error instanceof ConfigError) {
        console.error(error.message);
        process.exit(2);
      }
      throw error;
    }
    let closing = false;
    const shutdown = async (signal: string) => {
      if (closing) return;
      closing = true;
      logger.info({ signal }, "shutting down");
      await app.close();
      process.exit(0);
    };
    process.on("SIGINT", () => void shutdown("SIGINT"));
    process.on("SIGTERM", () => void shutdown("SIGTERM"));
    try {
      for (const [name, address] of await app.listen()) {
        logger.info(`${name} listener on http://${address.host}:${address.port}`);
      }
    } catch (error) {
      logger.error({ err: error }, "could not start listening");
      await app.close();
      process.exit(1);
    }
  });

await program.parseAsync(process.argv);
