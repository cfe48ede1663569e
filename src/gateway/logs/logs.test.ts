/**
 * GET /logs and GET /logs/stream end to end: the gateway's own lines and each backend's output (a fake
 * llama-server printing known lines), filters, the text format, SSE with resume, and the bounded ring.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { fakeModel, json, newHome, removeHome, type RunningGateway, startGateway, waitFor } from "../../events/testing.js";
import type { LogEntry } from "./hub.js";

let home: string;
let gw: RunningGateway;
const CAPACITY = 50;

interface LogList {
  object: string;
  source: string;
  data: LogEntry[];
  last_seq: number;
}

/** Reads an SSE response's events as they come. */
class SseReader {
  readonly events: Array<{ id?: string; event?: string; data: string }> = [];
  private buffer = "";
  private readonly controller = new AbortController();

  static async open(url: string, headers: Record<string, string> = {}): Promise<{ reader: SseReader; response: Response }> {
    const reader = new SseReader();
    const response = await fetch(url, { headers, signal: reader.controller.signal });
    void reader.pump(response);
    return { reader, response };
  }

  private async pump(response: Response): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        this.buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = this.buffer.indexOf("\n\n")) !== -1) {
          const block = this.buffer.slice(0, end);
          this.buffer = this.buffer.slice(end + 2);
          const event: { id?: string; event?: string; data: string } = { data: "" };
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) event.id = line.slice(4);
            else if (line.startsWith("event: ")) event.event = line.slice(7);
            else if (line.startsWith("data: ")) event.data += line.slice(6);
          }
          if (event.event || event.data) this.events.push(event);
        }
      }
    } catch {
      // Aborted by the test.
    }
  }

  logs(): LogEntry[] {
    return this.events.filter((e) => e.event === "log").map((e) => JSON.parse(e.data) as LogEntry);
  }

  close(): void {
    this.controller.abort();
  }
}

before(async () => {
  home = await newHome();
  gw = await startGateway(home, {
    models: {
      fake: fakeModel("--log-line 'backend says hello' --log-line 'backend says goodbye'", { aliases: ["fake-alias"] }),
      other: fakeModel("--log-line 'other backend'"),
    },
    concurrentRunners: 2,
    logs: { buffer_lines: CAPACITY },
  });
});
after(async () => {
  await gw?.close();
  await removeHome(home);
});

test("GET /logs: the gateway's lines, structured; each backend's output by model id or alias", async () => {
  const gateway = await json<LogList>(`${gw.lmstudio}/logs?source=gateway`);
  assert.equal(gateway.status, 200);
  assert.equal(gateway.body.object, "list");
  assert.equal(gateway.body.source, "gateway");
  const listening = gateway.body.data.filter((e) => e.message.startsWith("Server listening"));
  assert.equal(listening.length, 2, "one line per listener");
  assert.equal(listening[0]?.level, "info");
  assert.equal(listening[0]?.source, "gateway");
  assert.ok(!Number.isNaN(Date.parse(listening[0]?.time ?? "")));
  assert.deepEqual(listening.map((e) => e.fields?.["listener"]).sort(), ["lmstudio", "ollama"]);

  await json(`${gw.lmstudio}/v1/models/fake/start`, { method: "POST" });
  await waitFor(() => gw.app.lifecycle.status("fake").state === "ready", "fake to load");
  const backend = await waitFor(async () => {
    const { body } = await json<LogList>(`${gw.ollama}/logs?source=fake-alias`);
    return body.data.some((e) => e.message === "backend says goodbye") && body;
  }, "the backend's lines");
  assert.equal(backend.source, "fake");
  const messages = backend.data.map((e) => e.message);
  assert.ok(messages.indexOf("backend says hello") < messages.indexOf("backend says goodbye"));
  assert.ok(messages.some((m) => m.startsWith("fake-upstream: listening on")));
  assert.ok(backend.data.every((e) => e.source === "fake" && e.level === null));
  // The gateway logged the start: "starting backend" with the model as a field.
  const gatewayAfter = await json<LogList>(`${gw.lmstudio}/logs?source=gateway&limit=500`);
  assert.ok(gatewayAfter.body.data.some((e) => e.message === "backend ready" && e.fields?.["model"] === "fake"));

  // All sources merged, ordered by sequence number; limit and since.
  const all = await json<LogList>(`${gw.lmstudio}/logs?limit=500`);
  assert.equal(all.body.source, "all");
  const seqs = all.body.data.map((e) => e.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  assert.ok(new Set(all.body.data.map((e) => e.source)).has("fake"));
  const lastTwo = await json<LogList>(`${gw.lmstudio}/logs?limit=2`);
  assert.deepEqual(
    lastTwo.body.data.map((e) => e.seq),
    seqs.slice(-2),
  );
  const since = await json<LogList>(`${gw.lmstudio}/logs?since=${seqs.at(-3)}`);
  assert.deepEqual(
    since.body.data.map((e) => e.seq),
    seqs.slice(-2),
  );

  const warnings = await json<LogList>(`${gw.lmstudio}/logs?source=gateway&level=warn&limit=500`);
  assert.ok(warnings.body.data.every((e) => e.level === "warn" || e.level === "error" || e.level === "fatal"));

  const text = await fetch(`${gw.lmstudio}/logs?source=fake&format=text`);
  assert.match(text.headers.get("content-type") ?? "", /^text\/plain/);
  assert.match(await text.text(), /\[fake\] backend says hello\n/);

  const unknown = await json<{ error: { code: string; param: string } }>(`${gw.lmstudio}/logs?source=nope`);
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.error.param, "source");
  assert.equal((await json(`${gw.lmstudio}/logs?limit=-1`)).status, 400);
  assert.equal((await json(`${gw.lmstudio}/logs?level=loud`)).status, 400);
});

test("GET /logs/stream: the recent lines, then new ones live; Last-Event-ID resumes", async () => {
  const { reader, response } = await SseReader.open(`${gw.lmstudio}/logs/stream?source=other&tail=10`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
  await json(`${gw.lmstudio}/v1/models/other/start`, { method: "POST" });
  await waitFor(() => reader.logs().some((e) => e.message === "other backend"), "a live backend line");
  const received = reader.logs();
  assert.ok(received.every((e) => e.source === "other"));
  assert.ok(reader.events.filter((e) => e.event === "log").every((e) => e.id === String((JSON.parse(e.data) as LogEntry).seq)));

  // All sources: backlog of 3, then a gateway line as it is logged.
  const { reader: everything } = await SseReader.open(`${gw.ollama}/logs/stream?tail=3`);
  await waitFor(() => everything.logs().length >= 3, "the backlog");
  gw.app.lifecycle.stop("other");
  await waitFor(() => everything.logs().some((e) => e.source === "gateway" && e.message === "backend stopped"), "the stop, live");
  const seen = everything.logs();
  assert.deepEqual(
    seen.map((e) => e.seq),
    [...new Set(seen.map((e) => e.seq))].sort((a, b) => a - b),
    "in order, no duplicates",
  );
  everything.close();

  // A client that reconnects with Last-Event-ID gets what it missed and nothing twice.
  const lastId = Number(reader.events.filter((e) => e.event === "log").at(-1)?.id);
  reader.close();
  await json(`${gw.lmstudio}/v1/models/other/start`, { method: "POST" });
  await waitFor(() => gw.app.lifecycle.status("other").state === "ready", "other to load again");
  const { reader: resumed } = await SseReader.open(`${gw.lmstudio}/logs/stream?source=other`, { "last-event-id": String(lastId) });
  await waitFor(() => resumed.logs().some((e) => e.message === "other backend"), "the missed lines");
  assert.ok(resumed.logs().every((e) => e.seq > lastId));
  resumed.close();
});

test("the ring is bounded per source", async () => {
  for (let i = 0; i < CAPACITY * 2; i++) gw.app.logs.append("gateway", "info", `filler ${i}`);
  const { body } = await json<LogList>(`${gw.lmstudio}/logs?source=gateway&limit=100000`);
  assert.equal(body.data.length, CAPACITY);
  assert.equal(body.data.at(-1)?.message, `filler ${CAPACITY * 2 - 1}`);
  assert.equal(body.data[0]?.message, `filler ${CAPACITY}`);
  // Another source keeps its own lines.
  const fake = await json<LogList>(`${gw.lmstudio}/logs?source=fake`);
  assert.ok(fake.body.data.some((e) => e.message === "backend says hello"));
});
