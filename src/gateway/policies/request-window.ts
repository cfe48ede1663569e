/**
 * Requests per minute per client: a fixed one-minute window per address, as @fastify/rate-limit counts
 * them, kept in one map that is swept once a window. Written here rather than taken from that plugin:
 * with it the gateway served ~6 % fewer small proxied requests per second (A/B at 64 clients), and it added
 * three headers to every response, for what is a counter per address.
 */
interface Window {
  count: number;
  resetAt: number;
}

export class RequestWindow {
  private readonly clients = new Map<string, Window>();
  private sweepAt = 0;

  constructor(
    readonly max: number,
    readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one request of `client`: 0 when it may go ahead, else the whole seconds until its window resets. */
  take(client: string): number {
    const now = this.now();
    if (now >= this.sweepAt) this.sweep(now);
    let window = this.clients.get(client);
    if (window === undefined || now >= window.resetAt) {
      window = { count: 0, resetAt: now + this.windowMs };
      this.clients.set(client, window);
    }
    if (window.count >= this.max) return Math.max(1, Math.ceil((window.resetAt - now) / 1000));
    window.count++;
    return 0;
  }

  /** Clients being counted now (for tests: the map does not grow with clients that went quiet). */
  get size(): number {
    return this.clients.size;
  }

  private sweep(now: number): void {
    for (const [client, window] of this.clients) if (now >= window.resetAt) this.clients.delete(client);
    this.sweepAt = now + this.windowMs;
  }
}
