/**
 * Server-sent events as OpenAI clients parse them: `data: <json>\n\n` per event, written (and so flushed)
 * one by one, ending with `data: [DONE]`. Headers go out at once so a client sees the stream open before
 * the first token, which may be far away while a long prompt is evaluated.
 */
import type { ServerResponse } from "node:http";

export class SseStream {
  constructor(private readonly res: ServerResponse) {
    res.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-cache",
      Connection: "keep-alive",
      "X-Accel-Buffering": "no",
    });
    res.flushHeaders();
  }

  get open(): boolean {
    return !this.res.writableEnded && !this.res.destroyed;
  }

  send(event: unknown): void {
    if (this.open) this.res.write(`data: ${JSON.stringify(event)}\n\n`);
  }

  done(): void {
    if (this.open) this.res.end("data: [DONE]\n\n");
  }
}
