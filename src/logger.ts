import { type DestinationStream, type Logger, type LevelWithSilent, pino } from "pino";

/** JSON lines on stdout; LLAMA_RUNNER_LOG_LEVEL picks the level (default info). */
export function createLogger(level = process.env["LLAMA_RUNNER_LOG_LEVEL"] ?? "info"): Logger {
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime });
}

/** Where a copy of every log line goes (the ring buffer behind GET /logs, src/gateway/logs). */
export interface LogSink {
  write(line: string): void;
}

/**
 * A logger that writes what `logger` writes, where it writes it and at its level, and also a copy of every
 * line at `sinkLevel` or above to `sink` (so /logs shows info lines even when stdout shows only warnings).
 */
export function teeLogger(logger: Logger, sink: LogSink, sinkLevel: LevelWithSilent = "info"): Logger {
  const values = pino.levels.values;
  const original = (logger as unknown as Record<symbol, DestinationStream>)[pino.symbols.streamSym];
  const own = values[logger.level] ?? Number.POSITIVE_INFINITY;
  const copy = Math.min(values[sinkLevel] ?? Number.POSITIVE_INFINITY, own);
  if (!Number.isFinite(copy)) return logger;
  const streams: pino.StreamEntry[] = [{ level: levelName(copy), stream: sink }];
  if (original && Number.isFinite(own)) streams.push({ level: logger.level as pino.Level, stream: original });
  const level = levelName(Math.min(own, copy));
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.multistream(streams));
}

function levelName(value: number): pino.Level {
  const name = Object.entries(pino.levels.values).find(([, v]) => v === value)?.[0];
  return (name ?? "fatal") as pino.Level;
}
