/** The last N lines a backend printed: kept for error messages and the logs endpoint, never parsed for state. */
export class LogRing {
  private readonly lines: string[] = [];
  private partial = "";
  /** Called with every complete line as it is stored (the live logs: src/gateway/logs). */
  onLine: ((line: string) => void) | undefined;

  constructor(private readonly capacity = 500) {}

  push(chunk: string): void {
    const parts = (this.partial + chunk).split(/\r?\n/);
    this.partial = parts.pop() ?? "";
    for (const line of parts) this.add(line);
  }

  flush(): void {
    if (this.partial) this.add(this.partial);
    this.partial = "";
  }

  tail(count: number): string[] {
    return this.lines.slice(-count);
  }

  private add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.capacity) this.lines.shift();
    this.onLine?.(line);
  }
}
