/** The last N lines a backend printed: kept for error messages and the logs endpoint, never parsed for state. */
export class LogRing {
  private readonly lines: string[] = [];
  private partial = "";

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
  }
}
