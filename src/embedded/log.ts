/**
 * Plain one-line logs on stderr: the gateway keeps a ring buffer of a backend's stderr for diagnostics,
 * and stdout stays unused so nothing a client could depend on is ever printed there.
 */
export function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} ${message}\n`);
}
