import assert from "node:assert/strict";
import { test } from "node:test";
import { GatewayError } from "../errors/index.js";
import { readSse } from "./sse-reader.js";

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield new TextEncoder().encode(part);
}

async function collect(body: AsyncIterable<Uint8Array | string>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const event of readSse(body)) out.push(event);
  return out;
}

test("parses data events split anywhere, skips comments, stops at [DONE]", async () => {
  const events = await collect(chunks(': ping\n\nda', 'ta: {"a":1}\n', "\ndata: {\"b\"", ':2}\r\n\r\n', "data: [DONE]\n\n", 'data: {"after":true}\n\n'));
  assert.deepEqual(events, [{ a: 1 }, { b: 2 }]);
});

test("multi-byte characters split across chunks survive", async () => {
  const bytes = new TextEncoder().encode('data: {"t":"héllo ✓"}\n\n');
  async function* split(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < bytes.length; i += 3) yield bytes.slice(i, i + 3);
  }
  assert.deepEqual(await collect(split()), [{ t: "héllo ✓" }]);
});

test("a last event without its blank line is still delivered; no [DONE] just ends", async () => {
  assert.deepEqual(await collect(chunks('data: {"x":1}\n\ndata: {"y":2}\n')), [{ x: 1 }, { y: 2 }]);
  await assert.rejects(collect(chunks('data: {"x":1}\n\ndata: {"y":')), /not JSON/, "a stream cut off mid-event is an error");
});

test("an error event throws a GatewayError with the backend's message", async () => {
  const body = chunks('data: {"a":1}\n\n', 'data: {"error":{"message":"backend exploded","type":"server_error"}}\n\n');
  const seen: unknown[] = [];
  await assert.rejects(
    (async () => {
      for await (const event of readSse(body)) seen.push(event);
    })(),
    (error: unknown) => error instanceof GatewayError && error.code === "upstream_error" && error.message === "backend exploded",
  );
  assert.deepEqual(seen, [{ a: 1 }]);
  await assert.rejects(collect(chunks('data: {"error":"plain text"}\n\n')), /plain text/);
});

test("non-JSON payloads and oversized events are errors, not silent drops", async () => {
  await assert.rejects(collect(chunks("data: hello\n\n")), /not JSON/);
  await assert.rejects(collect(chunks("data: [1,2]\n\n")), /not a JSON object/);
  const huge = (async function* () {
    yield `data: "${"x".repeat(50)}`;
  })();
  await assert.rejects(
    (async () => {
      for await (const _ of readSse(huge, { maxEventChars: 10 })) void _;
    })(),
    /larger than 10/,
  );
});
