/**
 * Random interleavings of requests, completions, cancellations, loads, crashes, TTL ticks and stop
 * calls against a simulated world, checking the invariants the gateway promises:
 * no model with requests in flight is stopped; never two processes for one model; the loaded count
 * and the memory budget hold at every load; every request ends granted, refused or cancelled.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { initialState, type SchedulerContext, step } from "./scheduler.js";
import type { Effect, SchedulerEvent } from "./types.js";

const MODELS = ["a", "b", "c", "d"];
const GiB = 2 ** 30;

type Action =
  | { kind: "request"; model: number; keepAlive: number }
  | { kind: "release"; pick: number }
  | { kind: "cancel"; pick: number }
  | { kind: "load"; pick: number; ok: boolean }
  | { kind: "exit"; pick: number }
  | { kind: "crash"; pick: number }
  | { kind: "tick"; advance: number }
  | { kind: "stop"; model: number }
  | { kind: "measure"; pick: number; gib: number };

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("request" as const), model: fc.nat(3), keepAlive: fc.integer({ min: -1, max: 3 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("cancel" as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("load" as const), pick: fc.nat(), ok: fc.integer({ min: 0, max: 9 }).map((n) => n > 0) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("exit" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("crash" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("tick" as const), advance: fc.integer({ min: 0, max: 5000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("stop" as const), model: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("measure" as const), pick: fc.nat(), gib: fc.integer({ min: 1, max: 3 }) }) },
);

const limitsArb = fc.record({
  maxLoaded: fc.integer({ min: 1, max: 3 }),
  budgetGiB: fc.option(fc.integer({ min: 2, max: 6 }), { nil: null }),
  parallel: fc.integer({ min: 1, max: 3 }),
  pinnedModel: fc.option(fc.nat(3), { nil: null }),
});

interface Process {
  model: string;
  generation: number;
  loaded: boolean;
  stopping: boolean;
  memory: number;
}

type Limits = { maxLoaded: number; budgetGiB: number | null; parallel: number; pinnedModel: number | null };

function simulate(limits: Limits, actions: Action[]) {
  const estimates: Record<string, number> = { a: 1 * GiB, b: 2 * GiB, c: 1 * GiB, d: 5 * GiB };
  const ctx: SchedulerContext = {
    limits: { maxLoaded: limits.maxLoaded, memoryBudgetBytes: limits.budgetGiB === null ? null : limits.budgetGiB * GiB, maxQueue: 20 },
    policy: (model) => ({
      parallel: limits.parallel,
      ttlMs: 2000,
      pinned: limits.pinnedModel !== null && MODELS[limits.pinnedModel] === model,
      estimateBytes: estimates[model] ?? GiB,
    }),
  };
  const state = initialState();
  let now = 0;
  let nextId = 1;
  const processes: Process[] = [];
  const inFlight = new Map<number, { model: string; generation: number }>();
  const outcome = new Map<number, "waiting" | "granted" | "rejected" | "cancelled" | "done">();

  const apply = (effects: Effect[]) => {
    for (const effect of effects) {
      switch (effect.type) {
        case "load": {
          assert.ok(!processes.some((p) => p.model === effect.model), `two processes for ${effect.model}`);
          assert.ok(processes.length + 1 <= ctx.limits.maxLoaded, "more models loaded than maxLoaded");
          const budget = ctx.limits.memoryBudgetBytes;
          const used = processes.reduce((sum, p) => sum + p.memory, 0);
          assert.ok(budget === null || used + ctx.policy(effect.model).estimateBytes <= budget, "memory budget exceeded");
          processes.push({ model: effect.model, generation: effect.generation, loaded: false, stopping: false, memory: ctx.policy(effect.model).estimateBytes });
          break;
        }
        case "stop": {
          const busy = [...inFlight.values()].filter((r) => r.model === effect.model && r.generation === effect.generation);
          assert.equal(busy.length, 0, `stopped ${effect.model} with requests in flight`);
          const p = processes.find((q) => q.model === effect.model && q.generation === effect.generation);
          assert.ok(p, "stop of a process that does not exist");
          assert.ok(!(ctx.policy(effect.model).pinned && effect.reason === "evicted"), "pinned model evicted");
          p.stopping = true;
          break;
        }
        case "grant": {
          const p = processes.find((q) => q.model === effect.model && q.generation === effect.generation);
          assert.ok(p?.loaded && !p.stopping, "grant on a process that is not ready");
          assert.equal(outcome.get(effect.id), "waiting");
          outcome.set(effect.id, "granted");
          inFlight.set(effect.id, { model: effect.model, generation: effect.generation });
          const onThis = [...inFlight.values()].filter((r) => r.model === effect.model && r.generation === effect.generation).length;
          assert.ok(onThis <= limits.parallel, "more in flight than parallel slots");
          break;
        }
        case "reject":
          assert.equal(outcome.get(effect.id), "waiting");
          assert.ok(effect.message.length > 0);
          outcome.set(effect.id, "rejected");
          break;
        case "crashed":
        case "load_failed":
          break;
      }
    }
  };
  const send = (event: SchedulerEvent) => apply(step(state, event, ctx));

  for (const a of actions) {
    now += 10;
    switch (a.kind) {
      case "request": {
        const id = nextId++;
        outcome.set(id, "waiting");
        const keepAliveMs = a.keepAlive === -1 ? null : a.keepAlive === 3 ? undefined : a.keepAlive * 1000;
        send({ type: "request", id, model: MODELS[a.model] ?? "a", now, keepAliveMs });
        break;
      }
      case "release": {
        const ids = [...inFlight.keys()];
        const id = ids[a.pick % Math.max(1, ids.length)];
        if (id === undefined) break;
        inFlight.delete(id);
        outcome.set(id, "done");
        send({ type: "release", id, now });
        break;
      }
      case "cancel": {
        const waiting = [...outcome].filter(([, o]) => o === "waiting").map(([id]) => id);
        const id = waiting[a.pick % Math.max(1, waiting.length)];
        if (id === undefined) break;
        outcome.set(id, "cancelled");
        send({ type: "cancel", id, now });
        break;
      }
      case "load": {
        const loading = processes.filter((p) => !p.loaded && !p.stopping);
        const p = loading[a.pick % Math.max(1, loading.length)];
        if (!p) break;
        if (a.ok) {
          p.loaded = true;
          send({ type: "loaded", model: p.model, generation: p.generation, now });
        } else {
          processes.splice(processes.indexOf(p), 1);
          send({ type: "load_failed", model: p.model, generation: p.generation, now, error: "boom" });
        }
        break;
      }
      case "exit": {
        const stopping = processes.filter((p) => p.stopping);
        const p = stopping[a.pick % Math.max(1, stopping.length)];
        if (!p) break;
        processes.splice(processes.indexOf(p), 1);
        send({ type: "exited", model: p.model, generation: p.generation, now });
        break;
      }
      case "crash": {
        const ready = processes.filter((p) => p.loaded && !p.stopping);
        const p = ready[a.pick % Math.max(1, ready.length)];
        if (!p) break;
        processes.splice(processes.indexOf(p), 1);
        // The proxy answers the crashed process's requests with errors; they are released later.
        send({ type: "exited", model: p.model, generation: p.generation, now, error: "killed" });
        break;
      }
      case "tick":
        now += a.advance;
        send({ type: "tick", now });
        break;
      case "stop":
        send({ type: "stop", model: MODELS[a.model] ?? "a", now, reason: "requested" });
        break;
      case "measure": {
        const ready = processes.filter((p) => p.loaded);
        const p = ready[a.pick % Math.max(1, ready.length)];
        if (!p) break;
        // Measured memory may be below the estimate; above it would be the world breaking the budget, not us.
        p.memory = Math.min(p.memory, a.gib * GiB);
        send({ type: "measured", model: p.model, generation: p.generation, memoryBytes: p.memory });
        break;
      }
    }
  }

  // Quiesce: every load completes, every request finishes, every stop exits, time passes.
  for (let round = 0; round < 200; round++) {
    now += 10;
    const loading = processes.find((p) => !p.loaded && !p.stopping);
    if (loading) {
      loading.loaded = true;
      send({ type: "loaded", model: loading.model, generation: loading.generation, now });
      continue;
    }
    const [id] = inFlight.keys();
    if (id !== undefined) {
      inFlight.delete(id);
      outcome.set(id, "done");
      send({ type: "release", id, now });
      continue;
    }
    const stopping = processes.find((p) => p.stopping);
    if (stopping) {
      processes.splice(processes.indexOf(stopping), 1);
      send({ type: "exited", model: stopping.model, generation: stopping.generation, now });
      continue;
    }
    if (state.queue.length === 0) break;
    send({ type: "tick", now: (now += 10_000) });
  }
  const stuck = [...outcome].filter(([, o]) => o === "waiting" || o === "granted");
  assert.deepEqual(stuck, [], "every request ends granted and done, refused or cancelled");
  assert.equal(state.queue.length, 0);
}

test("scheduler invariants hold under random interleavings", () => {
  fc.assert(
    fc.property(limitsArb, fc.array(action, { maxLength: 120 }), (limits, actions) => simulate(limits, actions)),
    { numRuns: 1500 },
  );
});
