/** Scenario tests: events in, effects out, no processes and no sleeping. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { initialState, type SchedulerContext, step } from "./scheduler.js";
import type { Effect, ModelPolicy, SchedulerEvent, SchedulerLimits } from "./types.js";

const GiB = 2 ** 30;
type EventWithoutTime = SchedulerEvent extends infer E ? (E extends { now: number } ? Omit<E, "now"> & { now?: number } : E) : never;

function harness(limits: Partial<SchedulerLimits> = {}, policies: Record<string, Partial<ModelPolicy>> = {}) {
  const state = initialState();
  const ctx: SchedulerContext = {
    limits: { maxLoaded: 1, memoryBudgetBytes: null, maxQueue: 100, ...limits },
    policy: (model) => ({ parallel: 1, ttlMs: null, pinned: false, estimateBytes: GiB, ...policies[model] }),
  };
  let now = 1000;
  const send = (event: EventWithoutTime): Effect[] => step(state, { now: (now += 10), ...event } as SchedulerEvent, ctx);
  const gen = (model: string) => state.instances.get(model)?.generation ?? -1;
  return { state, send, gen, at: (t: number) => (now = t) };
}

const types = (effects: Effect[]) => effects.map((e) => `${e.type}:${"model" in e ? e.model : ""}${"id" in e ? `#${e.id}` : ""}${"reason" in e ? `(${e.reason})` : ""}`);

describe("scheduler", () => {
  test("concurrent first requests start one load, then all are granted", () => {
    const h = harness({}, { a: { parallel: 2 } });
    assert.deepEqual(types(h.send({ type: "request", id: 1, model: "a" })), ["load:a"]);
    assert.deepEqual(types(h.send({ type: "request", id: 2, model: "a" })), []);
    assert.deepEqual(types(h.send({ type: "request", id: 3, model: "a" })), []);
    assert.deepEqual(types(h.send({ type: "loaded", model: "a", generation: h.gen("a") })), ["grant:a#1", "grant:a#2"]);
    assert.deepEqual(types(h.send({ type: "release", id: 1 })), ["grant:a#3"]);
  });

  test("a swap drains the busy model and never stops it mid-request", () => {
    const h = harness();
    h.send({ type: "request", id: 1, model: "a" });
    h.send({ type: "loaded", model: "a", generation: h.gen("a") });
    assert.deepEqual(types(h.send({ type: "request", id: 2, model: "b" })), [], "a is busy: no stop yet");
    assert.equal(h.state.instances.get("a")?.phase, "ready");
    assert.deepEqual(types(h.send({ type: "release", id: 1 })), ["stop:a(evicted)"]);
    assert.deepEqual(types(h.send({ type: "exited", model: "a", generation: h.gen("a") })), ["load:b"]);
    assert.deepEqual(types(h.send({ type: "loaded", model: "b", generation: h.gen("b") })), ["grant:b#2"]);
  });

  test("requests queued for the loaded model are served together before the swap (no A-B-A-B thrash)", () => {
    const h = harness();
    h.send({ type: "request", id: 1, model: "a" });
    h.send({ type: "loaded", model: "a", generation: h.gen("a") });
    // a is busy with #1; b, a, b, a arrive together.
    h.send({ type: "request", id: 2, model: "b" });
    h.send({ type: "request", id: 3, model: "a" });
    h.send({ type: "request", id: 4, model: "b" });
    h.send({ type: "request", id: 5, model: "a" });
    const order: string[] = [];
    const run = (effects: Effect[]) => effects.forEach((e) => order.push(...types([e])));
    run(h.send({ type: "release", id: 1 }));
    // #3 and #5 were queued before... no: they were queued after #2 asked for room, so they wait.
    assert.deepEqual(order, ["stop:a(evicted)"]);
    run(h.send({ type: "exited", model: "a", generation: h.gen("a") }));
    run(h.send({ type: "loaded", model: "b", generation: h.gen("b") }));
    run(h.send({ type: "release", id: 2 }));
    assert.deepEqual(order, ["stop:a(evicted)", "load:b", "grant:b#2", "grant:b#4"], "both b requests served by one load");
    run(h.send({ type: "release", id: 4 }));
    run(h.send({ type: "exited", model: "b", generation: h.gen("b") }));
    run(h.send({ type: "loaded", model: "a", generation: h.gen("a") }));
    run(h.send({ type: "release", id: 3 }));
    assert.deepEqual(order.slice(4), ["stop:b(evicted)", "load:a", "grant:a#3", "grant:a#5"]);
  });

  test("a model that never fits the budget is refused with the budget and the estimate", () => {
    const h = harness({ memoryBudgetBytes: 2 * GiB }, { big: { estimateBytes: 3 * GiB } });
    const [effect] = h.send({ type: "request", id: 1, model: "big" });
    assert.equal(effect?.type, "reject");
    assert.equal(effect?.type === "reject" && effect.code, "invalid_request");
    assert.match(effect?.type === "reject" ? effect.message : "", /3072 MiB.*2048 MiB/);
    assert.equal(h.state.queue.length, 0);
  });

  test("the memory budget decides how many fit; LRU idle model goes first", () => {
    const h = harness({ maxLoaded: 5, memoryBudgetBytes: 3 * GiB });
    for (const [id, model] of [[1, "a"], [2, "b"], [3, "c"]] as const) {
      h.send({ type: "request", id, model });
      h.send({ type: "loaded", model, generation: h.gen(model) });
    }
    h.send({ type: "release", id: 2 });
    h.send({ type: "release", id: 1 });
    h.send({ type: "release", id: 3 });
    // b was used least recently.
    assert.deepEqual(types(h.send({ type: "request", id: 4, model: "d" })), ["stop:b(evicted)"]);
    assert.deepEqual(types(h.send({ type: "exited", model: "b", generation: h.gen("b") })), ["load:d"]);
  });

  test("measured memory replaces the estimate", () => {
    const h = harness({ maxLoaded: 5, memoryBudgetBytes: 3 * GiB });
    h.send({ type: "request", id: 1, model: "a" });
    h.send({ type: "loaded", model: "a", generation: h.gen("a") });
    h.send({ type: "measured", model: "a", generation: h.gen("a"), memoryBytes: 2.5 * GiB });
    h.send({ type: "release", id: 1 });
    assert.deepEqual(types(h.send({ type: "request", id: 2, model: "b" })), ["stop:a(evicted)"]);
  });

  test("pinned models are never evicted", () => {
    const h = harness({ maxLoaded: 2 }, { p: { pinned: true } });
    h.send({ type: "request", id: 1, model: "p" });
    h.send({ type: "loaded", model: "p", generation: h.gen("p") });
    h.send({ type: "release", id: 1 });
    h.send({ type: "request", id: 2, model: "a" });
    h.send({ type: "loaded", model: "a", generation: h.gen("a") });
    h.send({ type: "release", id: 2 });
    assert.deepEqual(types(h.send({ type: "request", id: 3, model: "b" })), ["stop:a(evicted)"]);
    const only = harness({ maxLoaded: 1 }, { p: { pinned: true } });
    only.send({ type: "request", id: 1, model: "p" });
    only.send({ type: "loaded", model: "p", generation: only.gen("p") });
    const [refusal] = only.send({ type: "request", id: 2, model: "b" });
    assert.equal(refusal?.type, "reject");
    assert.match(refusal?.type === "reject" ? refusal.message : "", /pinned/);
  });

  test("idle TTL unloads; a request in flight is never unloaded", () => {
    const h = harness({}, { a: { ttlMs: 1000 } });
    h.at(0);
    h.send({ type: "request", id: 1, model: "a" });
    h.send({ type: "loaded", model: "a", generation: h.gen("a") });
    assert.deepEqual(types(h.send({ type: "tick", now: 50_000 })), [], "busy: no TTL");
    h.at(60_000);
    h.send({ type: "release", id: 1 });
    assert.deepEqual(types(h.send({ type: "tick", now: 60_500 })), []);
    assert.deepEqual(types(h.send({ type: "tick", now: 61_100 })), ["stop:a(ttl)"]);
  });

  test("per-request keep-alive: 0 unloads after the request, null keeps forever", () => {
    const h = harness({}, { a: { ttlMs: 1000 } });
    h.send({ type: "request", id: 1, model: "a", keepAliveMs: null });
    h.send({ type: "loaded", model: "a", generation: h.gen("a") });
    h.send({ type: "release", id: 1 });
    assert.deepEqual(types(h.send({ type: "tick", now: 10 ** 9 })), []);
    h.send({ type: "request", id: 2, model: "a", keepAliveMs: 0 });
    assert.deepEqual(types(h.send({ type: "release", id: 2 })), ["stop:a(ttl)"]);
  });

  test("a TTL tick racing a new request: the request wins", () => {
    const h = harness({}, { a: { ttlMs: 1000 } });
    h.at(0);
    h.send({ type: "request", id: 1, model: "a" });
    h.send({ type: "loaded", model: "a", generation: h.gen("a") });
    h.send({ type: "release", id: 1 });
    h.at(5000);
    assert.deepEqual(types(h.send({ type: "request", id: 2, model: "a" })), ["grant:a#2"]);
    assert.deepEqual(types(h.send({ type: "tick", now: 9000 })), []);
  });

  test("a crash forgets the instance; stale releases are ignored; the next request restarts it", () => {
    const h = harness({}, { a: { parallel: 2 } });
    h.send({ type: "request", id: 1, model: "a" });
    const first = h.gen("a");
    h.send({ type: "loaded", model: "a", generation: first });
    assert.deepEqual(types(h.send({ type: "exited", model: "a", generation: first, error: "killed" })), ["crashed:a"]);
    assert.equal(h.state.errors.get("a"), "killed");
    assert.deepEqual(types(h.send({ type: "request", id: 2, model: "a" })), ["load:a"]);
    h.send({ type: "release", id: 1 });
    h.send({ type: "loaded", model: "a", generation: h.gen("a") });
    assert.equal(h.state.instances.get("a")?.inFlight, 1, "the stale release did not touch the new instance");
  });

  test("a failed load refuses everyone waiting for it", () => {
    const h = harness();
    h.send({ type: "request", id: 1, model: "a" });
    h.send({ type: "request", id: 2, model: "a" });
    const effects = h.send({ type: "load_failed", model: "a", generation: h.gen("a"), error: "bad file" });
    assert.deepEqual(types(effects), ["load_failed:a", "reject:#1", "reject:#2"]);
    assert.equal(h.state.instances.size, 0);
  });

  test("a full queue answers 503 with Retry-After", () => {
    const h = harness({ maxQueue: 1 });
    h.send({ type: "request", id: 1, model: "a" });
    const [effect] = h.send({ type: "request", id: 2, model: "a" });
    assert.equal(effect?.type === "reject" && effect.code, "service_unavailable");
    assert.equal(effect?.type === "reject" && effect.retryAfterS, 5);
  });

  test("a cancelled waiter leaves the queue and lifts the drain it caused", () => {
    const h = harness({}, { a: { parallel: 2 } });
    h.send({ type: "request", id: 1, model: "a" });
    h.send({ type: "loaded", model: "a", generation: h.gen("a") });
    h.send({ type: "request", id: 2, model: "b" });
    assert.ok(h.state.instances.get("a")?.drain);
    h.send({ type: "cancel", id: 2 });
    assert.deepEqual(types(h.send({ type: "request", id: 3, model: "a" })), ["grant:a#3"]);
  });

  test("a requested stop waits for in-flight requests", () => {
    const h = harness();
    h.send({ type: "request", id: 1, model: "a" });
    h.send({ type: "loaded", model: "a", generation: h.gen("a") });
    assert.deepEqual(types(h.send({ type: "stop", model: "a", reason: "requested" })), []);
    assert.deepEqual(types(h.send({ type: "release", id: 1 })), ["stop:a(requested)"]);
  });
});

describe("scheduler shutdown", () => {
  test("stops every instance, loading or busy, and refuses whoever waits; later exits are not crashes", () => {
    const h = harness({ maxLoaded: 2 });
    h.send({ type: "request", id: 1, model: "a" });
    h.send({ type: "loaded", model: "a", generation: h.gen("a") });
    h.send({ type: "request", id: 2, model: "b" });
    h.send({ type: "request", id: 3, model: "c" });
    const effects = h.send({ type: "shutdown" });
    assert.deepEqual(types(effects).sort(), ["reject:#2", "reject:#3", "stop:a(shutdown)", "stop:b(shutdown)"].sort());
    assert.deepEqual(types(h.send({ type: "exited", model: "a", generation: h.gen("a") })), []);
    assert.equal(h.state.errors.size, 0);
  });
});
