/**
 * The scheduler as a state machine: `step(state, event)` decides, the caller's loop performs the
 * returned effects (spawn, stop, answer a request) and feeds their outcomes back as events. No I/O and
 * no clock here, so every interleaving of requests, loads, crashes and timers can be tested directly.
 *
 * Rules:
 * - A queued request is granted when its model is ready with a free slot. Requests queued for a model
 *   are served together before it is swapped out (no A-B-A-B thrash), but a model that another
 *   request needs room from only takes requests that were queued before that need arose, so no one
 *   starves.
 * - Room comes from `evictionFor`: least recently used idle models are stopped; busy ones are drained,
 *   never killed; pinned ones stay. While the oldest cold request is blocked on room, later ones do not
 *   take that room.
 * - Single flight: one instance per model, whatever the number of waiting requests.
 */
import { evictionFor } from "./eviction.js";
import type { Effect, Instance, ModelPolicy, SchedulerEvent, SchedulerLimits, SchedulerState, StopReason, Waiting } from "./types.js";

export interface SchedulerContext {
  limits: SchedulerLimits;
  policy(model: string): ModelPolicy;
}

export function initialState(): SchedulerState {
  return { instances: new Map(), queue: [], nextSeq: 0, nextGeneration: 1, errors: new Map(), granted: new Map() };
}

export function step(state: SchedulerState, event: SchedulerEvent, ctx: SchedulerContext): Effect[] {
  const effects: Effect[] = [];
  const current = (model: string, generation: number) => {
    const instance = state.instances.get(model);
    return instance && instance.generation === generation ? instance : undefined;
  };

  switch (event.type) {
    case "request":
      if (state.queue.length >= ctx.limits.maxQueue) {
        effects.push({ type: "reject", id: event.id, code: "service_unavailable", message: `Too many queued requests (limit ${ctx.limits.maxQueue}); try again shortly.`, retryAfterS: 5 });
      } else {
        state.queue.push({ id: event.id, model: event.model, seq: state.nextSeq++, keepAliveMs: event.keepAliveMs });
      }
      break;

    case "cancel": {
      const index = state.queue.findIndex((w) => w.id === event.id);
      if (index >= 0) state.queue.splice(index, 1);
      else release(state, event.id, event.now, effects);
      break;
    }

    case "release":
      release(state, event.id, event.now, effects);
      break;

    case "loaded": {
      const instance = current(event.model, event.generation);
      if (instance?.phase !== "loading") break;
      instance.phase = "ready";
      instance.lastUsed = event.now;
      state.errors.delete(event.model);
      if (instance.stopWhenIdle && instance.inFlight === 0) stop(instance, instance.stopWhenIdle, effects);
      break;
    }

    case "load_failed":
      fail(state, event.model, event.generation, event.error, "load_failed", effects);
      break;

    case "exited": {
      const instance = current(event.model, event.generation);
      if (!instance) break;
      if (instance.phase === "stopping") state.instances.delete(event.model);
      else fail(state, event.model, event.generation, event.error ?? "backend exited", instance.phase === "loading" ? "load_failed" : "crashed", effects);
      break;
    }

    case "measured": {
      const instance = current(event.model, event.generation);
      if (instance) instance.memoryBytes = event.memoryBytes;
      break;
    }

    case "tick":
      for (const instance of state.instances.values()) {
        if (instance.phase === "ready" && instance.inFlight === 0 && !instance.pinned && instance.ttlMs !== null && event.now - instance.lastUsed >= instance.ttlMs) {
          stop(instance, "ttl", effects);
        }
      }
      break;

    case "stop": {
      const instance = state.instances.get(event.model);
      if (!instance || instance.phase === "stopping") break;
      if (instance.phase === "ready" && instance.inFlight === 0) stop(instance, event.reason, effects);
      else instance.stopWhenIdle = event.reason;
      break;
    }

    case "shutdown":
      for (const waiting of state.queue) {
        effects.push({ type: "reject", id: waiting.id, code: "service_unavailable", message: "The server is shutting down." });
      }
      state.queue = [];
      for (const instance of state.instances.values()) if (instance.phase !== "stopping") stop(instance, "shutdown", effects);
      return effects;

    default: {
      const unreachable: never = event;
      throw new Error(`unknown event ${JSON.stringify(unreachable)}`);
    }
  }

  pump(state, ctx, effects);
  return effects;
}

function release(state: SchedulerState, id: number, now: number, effects: Effect[]): void {
  const grant = state.granted.get(id);
  if (!grant) return;
  state.granted.delete(id);
  const instance = state.instances.get(grant.model);
  // A release for a process that already died belongs to no one now.
  if (!instance || instance.generation !== grant.generation) return;
  instance.inFlight--;
  instance.lastUsed = now;
  if (instance.inFlight === 0 && instance.stopWhenIdle && instance.phase === "ready") stop(instance, instance.stopWhenIdle, effects);
}

function stop(instance: Instance, reason: StopReason, effects: Effect[]): void {
  instance.phase = "stopping";
  effects.push({ type: "stop", model: instance.model, generation: instance.generation, reason });
}

/** A load that failed or a process that died: forget it and refuse whoever was waiting for it. */
function fail(state: SchedulerState, model: string, generation: number, error: string, kind: "load_failed" | "crashed", effects: Effect[]): void {
  const instance = state.instances.get(model);
  if (!instance || instance.generation !== generation) return;
  state.instances.delete(model);
  state.errors.set(model, error);
  effects.push({ type: kind, model, generation, error });
  if (kind === "load_failed") {
    for (const waiting of state.queue.filter((w) => w.model === model)) {
      effects.push({ type: "reject", id: waiting.id, code: "service_unavailable", message: error });
    }
    state.queue = state.queue.filter((w) => w.model !== model);
  }
}

function pump(state: SchedulerState, ctx: SchedulerContext, effects: Effect[]): void {
  const refused = new Map<string, string>();
  let blockedOnRoom = false;
  // A drain lasts while the request that needed the room still waits; if it went away, so does the drain.
  const queued = new Set(state.queue.map((w) => w.id));
  for (const instance of state.instances.values()) {
    if (instance.drain && !queued.has(instance.drain.for)) instance.drain = undefined;
  }
  // Grants first: whatever a loaded model may still serve is served before anyone plans to evict it.
  state.queue = state.queue.filter((waiting) => {
    const instance = state.instances.get(waiting.model);
    if (!instance || !canServe(instance, waiting)) return true;
    grant(state, instance, waiting, effects);
    return false;
  });
  const stillWaiting: Waiting[] = [];
  for (const waiting of state.queue) {
    if (state.instances.has(waiting.model)) {
      stillWaiting.push(waiting);
      continue;
    }
    const refusal = refused.get(waiting.model);
    if (refusal !== undefined) {
      effects.push({ type: "reject", id: waiting.id, code: "invalid_request", message: refusal });
      continue;
    }
    stillWaiting.push(waiting);
    if (blockedOnRoom) continue;
    const policy = ctx.policy(waiting.model);
    const plan = evictionFor({ model: waiting.model, estimateBytes: policy.estimateBytes }, [...state.instances.values()], ctx.limits);
    switch (plan.kind) {
      case "fits":
        state.instances.set(waiting.model, newInstance(state, waiting.model, policy));
        effects.push({ type: "load", model: waiting.model, generation: state.nextGeneration - 1 });
        break;
      case "evict":
        blockedOnRoom = true;
        for (const victim of plan.victims) {
          if (victim.inFlight === 0) stop(victim, "evicted", effects);
          else victim.drain ??= { before: state.nextSeq, for: waiting.id };
        }
        break;
      case "wait":
        blockedOnRoom = true;
        break;
      case "never": {
        const message = `Cannot load: ${plan.reason}.`;
        refused.set(waiting.model, message);
        stillWaiting.pop();
        effects.push({ type: "reject", id: waiting.id, code: "invalid_request", message });
        break;
      }
    }
  }
  state.queue = stillWaiting;
}

function canServe(instance: Instance, waiting: Waiting): boolean {
  return (
    instance.phase === "ready" &&
    instance.stopWhenIdle === undefined &&
    instance.inFlight < instance.parallel &&
    (instance.drain === undefined || waiting.seq < instance.drain.before)
  );
}

function grant(state: SchedulerState, instance: Instance, waiting: Waiting, effects: Effect[]): void {
  instance.inFlight++;
  state.granted.set(waiting.id, { model: instance.model, generation: instance.generation });
  if (waiting.keepAliveMs === 0) instance.stopWhenIdle = "ttl";
  else if (waiting.keepAliveMs !== undefined) instance.ttlMs = waiting.keepAliveMs;
  effects.push({ type: "grant", id: waiting.id, model: instance.model, generation: instance.generation });
}

function newInstance(state: SchedulerState, model: string, policy: ModelPolicy): Instance {
  return {
    model,
    generation: state.nextGeneration++,
    phase: "loading",
    inFlight: 0,
    lastUsed: 0,
    memoryBytes: policy.estimateBytes,
    ttlMs: policy.ttlMs,
    pinned: policy.pinned,
    parallel: Math.max(1, policy.parallel),
    drain: undefined,
    stopWhenIdle: undefined,
  };
}
