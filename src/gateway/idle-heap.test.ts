import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { getHeapStatistics } from "node:v8";
import { pino } from "pino";
import { startGateway } from "../test-support/gateway.js";
import { checkIdle, GROWTH_BYTES, IdleHeapCollector } from "./idle-heap.js";

const MB = 2 ** 20;
const quiet = { periodMs: 500, utilization: 0.001, busy: false, heapBytes: 100 * MB };

test("idle time accumulates while no request is in flight and restarts with one; a busy event loop only defers the collection", () => {
  let state = { idleForMs: 0, baselineBytes: 20 * MB };
  for (const expected of [500, 1000, 1500]) {
    const r = checkIdle(state, quiet, 2000);
    assert.equal(r.idleForMs, expected);
    assert.equal(r.collect, false, "not before the idle window has passed");
    state = { ...state, idleForMs: r.idleForMs };
  }
  assert.deepEqual(checkIdle(state, quiet, 2000), { idleForMs: 2000, collect: true });
  assert.equal(checkIdle(state, { ...quiet, busy: true }, 2000).idleForMs, 0, "a request in flight is not idle");
  const loaded = checkIdle(state, { ...quiet, utilization: 0.2 }, 2000);
  assert.equal(loaded.collect, false, "no collection while the event loop is busy");
  assert.equal(loaded.idleForMs, 2000, "but a busy event loop without requests does not restart the idle time");
});

test("only a heap that grew since the last collection is collected", () => {
  const state = { idleForMs: 5000, baselineBytes: 20 * MB };
  assert.equal(checkIdle(state, { ...quiet, heapBytes: 20 * MB + GROWTH_BYTES }, 2000).collect, false);
  assert.equal(checkIdle(state, { ...quiet, heapBytes: 20 * MB + GROWTH_BYTES + MB }, 2000).collect, true);
});

/** Old-generation garbage: arrays that live long enough to be promoted, then are dropped. */
async function makeOldGarbage(megabytes: number): Promise<void> {
  let keep: string[][] = [];
  for (let i = 0; i < megabytes; i++) {
    keep.push(Array.from({ length: 10_000 }, (_, j) => `garbage ${i} ${j} `.padEnd(80, "x")));
    if (i % 8 === 0) await sleep(1);
  }
  keep = [];
  assert.equal(keep.length, 0);
}

test("a grown heap is collected once the process is idle, never while a request is in flight", async () => {
  let busy = true;
  const collector = new IdleHeapCollector({ idleMs: 300, busy: () => busy, logger: pino({ level: "silent" }) });
  try {
    // The start-up heap may itself count as grown: let that first collection happen.
    busy = false;
    await sleep(600);
    busy = true;
    const before = collector.collections;
    await makeOldGarbage(64);
    const grown = getHeapStatistics().total_heap_size;
    await sleep(900);
    assert.equal(collector.collections, before, "no collection while busy");

    busy = false;
    for (let i = 0; i < 100 && collector.collections === before; i++) await sleep(50);
    assert.equal(collector.collections, before + 1, `collected once idle (heap now ${(getHeapStatistics().total_heap_size / MB).toFixed(1)} MB, grown to ${(grown / MB).toFixed(1)} MB)`);
    const after = getHeapStatistics().total_heap_size;
    assert.ok(grown - after > 32 * MB, `the heap was given back: ${(grown / MB).toFixed(1)} → ${(after / MB).toFixed(1)} MB`);

    await sleep(900);
    assert.equal(collector.collections, before + 1, "an idle heap that did not grow again is left alone");
  } finally {
    collector.close();
  }
});

test("the gateway holds off while a stream is open and collects after it ends; 0 switches it off", async () => {
  const fake = fileURLToPath(new URL("../test-support/fake-upstream.js", import.meta.url));
  const gw = await startGateway({
    heap: { idle_collect_s: 0.6 },
    models: { slow: { command: `'${process.execPath}' '${fake}' --port \${PORT} --chunk-delay-ms 1000` } },
  });
  try {
    await sleep(1200);
    const before = gw.app.idleHeap.collections;
    await makeOldGarbage(48);
    // The stream stays open for ~3 s with an idle event loop between its chunks: only the lease holds the collection off.
    const response = await fetch(`${gw.lmstudio}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "slow", stream: true, max_tokens: 3, messages: [{ role: "user", content: "hi" }] }),
    });
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.match(text, /\[DONE\]/);
    assert.equal(gw.app.idleHeap.collections, before, "nothing collected while the stream was open");
    for (let i = 0; i < 160 && gw.app.idleHeap.collections === before; i++) await sleep(50);
    assert.equal(gw.app.idleHeap.collections, before + 1, `collected after the stream (heap now ${(getHeapStatistics().total_heap_size / MB).toFixed(1)} MB)`);
  } finally {
    await gw.close();
  }

  const off = await startGateway({ heap: { idle_collect_s: 0 } });
  try {
    await makeOldGarbage(32);
    await sleep(500);
    assert.equal(off.app.idleHeap.collections, 0);
  } finally {
    await off.close();
  }
});
