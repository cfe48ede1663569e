import { pino, type Logger } from "pino";

/** JSON lines on stdout; LLAMA_RUNNER_LOG_LEVEL picks the level (default info). */
export function createLogger(level = process.env["LLAMA_RUNNER_LOG_LEVEL"] ?? "info"): Logger {
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime });
}
