/**
 * The run loop that binds the pure scheduler to real backends. Every event goes through `dispatch`,
 * which runs `step` synchronously and then performs the effects; since `step` never awaits, events
 * are serialised without locks. Outcomes of slow work (a load, an exit) come back as new events.
 */
import type { Logger } from "pino";
import { backendFor } from "../backends/index.js";
import type { Catalog, ModelEntry } from "../catalog/catalog.js";
import type { Config } from "../config/schema.js";
import { GatewayError } from "../errors/index.js";
import type { EventBus } from "../events/bus.js";
import { type Cancellation, onCancel } from "./cancellation.js";
import { admissionLimit, estimateMemoryBytes } from "./memory.js";
import { initialState, type SchedulerContext, step } from "./scheduler/scheduler.js";
import type { Effect, SchedulerEvent, StopReason } from "./scheduler/types.js";
import { Supervisor } from "./supervisor.js";

export type ModelState = "unloaded" | "loading" | "ready" | "stopping" | "error";

export interface Lease {
  readonly entry: ModelEntry;
  readonly baseUrl: string;
  /** Settles when this backend instance goes away (exit or stop). */
  readonly gone: Promise<unknown>;
  /** Must be called once the response to the client has ended; extra calls are ignored. */
  release(): void;
}

export interface AcquireOptions {
  signal?: Cancellation;
  /** Ollama `keep_alive` / LM Studio `ttl`, in ms: 0 unloads after this request, null keeps it loaded. */
  keepAliveMs?: number | null;
}

export interface ModelStatus {
  state: ModelState;
  port: number | undefined;
  pid: number | undefined;
  /** Unix ms when the backend became ready. */
  readySince: number | undefined;
  lastUsed: number | undefined;
  inFlight: number;
  memoryBytes: number | undefined;
  /** Unix ms when the idle TTL unloads it; undefined = never or busy. */
  expiresAt: number | undefined;
  /** Idle TTL in force for this instance (per-request keep-alive included); null = never. */
  ttlMs: number | null | undefined;
  error: string | undefined;
}

export interface LifecycleOptions {
  config: Config;
  catalog: Catalog;
  bus: EventBus;
  logger: Logger;
  host?: string;
  tickMs?: number;
}

interface Waiter {
  resolve(lease: Lease): void;
  reject(error: unknown): void;
  model: string;
}

const MEASURE_EVERY_TICKS = 5;

export class Lifecycle {
  private readonly state = initialState();
  private readonly ctx: SchedulerContext;
  private readonly supervisors = new Map<string, Supervisor>();
  private readonly waiters = new Map<number, Waiter>();
  private readonly stopReasons = new Map<string, StopReason>();
  private readonly readySince = new Map<string, number>();
  private readonly lastUsed = new Map<string, number>();
  private nextId = 1;
  private ticks = 0;
  private closed = false;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly options: LifecycleOptions) {
    const { config, catalog } = options;
    this.ctx = {
      limits: { maxLoaded: config.concurrentRunners, memoryBudgetBytes: config.memory_budget ?? null, maxQueue: config.max_queue },
      policy: (id) => {
        const entry = catalog.get(id);
        const ttl = entry?.ttlSeconds ?? config.ttl;
        return {
          parallel: entry ? admissionLimit(entry) : 1,
          ttlMs: ttl > 0 ? ttl * 1000 : null,
          pinned: entry?.pinned ?? false,
          estimateBytes: entry ? estimateMemoryBytes(entry) : 0,
        };
      },
    };
    this.timer = setInterval(() => this.tick(), options.tickMs ?? 1000);
    this.timer.unref();
  }

  /** Waits for a ready backend of `entry` with a free slot; loads it (swapping others out) if needed. */
  acquire(entry: ModelEntry, { signal, keepAliveMs }: AcquireOptions = {}): Promise<Lease> {
    if (entry.error) return Promise.reject(new GatewayError("service_unavailable", `Model '${entry.id}' is unavailable: ${entry.error}`));
    if (this.closed) return Promise.reject(new GatewayError("service_unavailable", "The server is shutting down."));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this.nextId++;
    return new Promise<Lease>((resolve, reject) => {
      let settled = false;
      let stopListening: (() => void) | undefined;
      const onAbort = () => {
        if (!this.waiters.delete(id)) return;
        this.dispatch({ type: "cancel", id, now: Date.now() });
        reject(signal?.reason);
      };
      const done = () => {
        settled = true;
        stopListening?.();
      };
      this.waiters.set(id, {
        model: entry.id,
        resolve: (lease) => (done(), resolve(lease)),
        reject: (error) => (done(), reject(error)),
      });
      this.dispatch({ type: "request", id, model: entry.id, now: Date.now(), keepAliveMs });
      // Most requests are granted (or refused) inside that dispatch: only one that really waits needs
      // to hear about an abort.
      if (!settled && signal) stopListening = onCancel(signal, onAbort);
    });
  }

  /** Loads a model without a request (management start, preload); resolves when it is ready. */
  async start(entry: ModelEntry, keepAliveMs?: number | null): Promise<void> {
    (await this.acquire(entry, { keepAliveMs })).release();
  }

  /** Unloads a model once its in-flight requests have finished. */
  stop(id: string): void {
    this.dispatch({ type: "stop", model: id, reason: "requested", now: Date.now() });
  }

  status(id: string): ModelStatus {
    const instance = this.state.instances.get(id);
    const supervisor = this.supervisors.get(id);
    const error = this.state.errors.get(id);
    const lastUsed = instance && instance.lastUsed > 0 ? instance.lastUsed : this.lastUsed.get(id);
    const idle = instance?.phase === "ready" && instance.inFlight === 0 && !instance.pinned && instance.ttlMs !== null;
    return {
      state: instance?.phase ?? (error ? "error" : "unloaded"),
      port: supervisor?.port,
      pid: supervisor?.pid,
      readySince: instance?.phase === "ready" ? this.readySince.get(id) : undefined,
      lastUsed,
      inFlight: instance?.inFlight ?? 0,
      memoryBytes: instance?.memoryBytes,
      expiresAt: idle && instance.ttlMs !== null ? instance.lastUsed + instance.ttlMs : undefined,
      ttlMs: instance?.ttlMs,
      error: instance ? undefined : error,
    };
  }

  /** Requests waiting for a backend (queued, or waiting for a load), by model: the queue depth in /metrics. */
  queueDepth(): Map<string, number> {
    const depth = new Map<string, number>();
    for (const { model } of this.waiters.values()) depth.set(model, (depth.get(model) ?? 0) + 1);
    return depth;
  }

  /** Whether any request holds a backend or waits for one. */
  busy(): boolean {
    return this.waiters.size > 0 || this.state.granted.size > 0;
  }

  /** Last lines a model's backend printed (empty when it never ran in this gateway). */
  logTail(id: string, lines?: number): string[] {
    return this.supervisors.get(id)?.logTail(lines) ?? [];
  }

  /** Stops every backend at once (gateway shutdown): waiting requests are refused, running ones cut. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.dispatch({ type: "shutdown", now: Date.now() });
    // Stopping is idempotent: this also waits for the stops that were already under way.
    await Promise.all([...this.supervisors.values()].map((supervisor) => supervisor.stop()));
  }

  private tick(): void {
    const now = Date.now();
    this.dispatch({ type: "tick", now });
    if (++this.ticks % MEASURE_EVERY_TICKS === 0) this.measure();
  }

  private measure(): void {
    for (const [model, instance] of this.state.instances) {
      const supervisor = this.supervisors.get(model);
      if (instance.phase !== "ready" || !supervisor) continue;
      const generation = instance.generation;
      void supervisor.memoryBytes().then((bytes) => {
        if (bytes !== undefined) this.dispatch({ type: "measured", model, generation, memoryBytes: bytes });
      });
    }
  }

  private dispatch(event: SchedulerEvent): void {
    for (const effect of step(this.state, event, this.ctx)) this.perform(effect);
  }

  private perform(effect: Effect): void {
    const { bus, logger } = this.options;
    switch (effect.type) {
      case "load":
        this.load(effect.model, effect.generation);
        break;
      case "stop": {
        const supervisor = this.supervisors.get(effect.model);
        this.stopReasons.set(effect.model, effect.reason);
        logger.info({ model: effect.model, reason: effect.reason }, "stopping backend");
        void supervisor?.stop();
        break;
      }
      case "grant": {
        const waiter = this.waiters.get(effect.id);
        const supervisor = this.supervisors.get(effect.model);
        this.waiters.delete(effect.id);
        if (!waiter || !supervisor) {
          this.dispatch({ type: "release", id: effect.id, now: Date.now() });
          break;
        }
        let released = false;
        waiter.resolve({
          entry: supervisor.entry,
          baseUrl: supervisor.baseUrl,
          gone: supervisor.exited,
          release: () => {
            if (released) return;
            released = true;
            this.lastUsed.set(effect.model, Date.now());
            this.dispatch({ type: "release", id: effect.id, now: Date.now() });
          },
        });
        break;
      }
      case "reject": {
        const waiter = this.waiters.get(effect.id);
        this.waiters.delete(effect.id);
        waiter?.reject(new GatewayError(effect.code, effect.message, effect.retryAfterS === undefined ? {} : { retryAfter: effect.retryAfterS }));
        break;
      }
      case "crashed":
        logger.error({ model: effect.model }, effect.error);
        this.supervisors.delete(effect.model);
        bus.publish("model.stopped", { model_id: effect.model, reason: "crashed" });
        bus.publish("model.error", { model_id: effect.model, error: effect.error });
        break;
      case "load_failed":
        logger.error({ model: effect.model }, effect.error);
        this.supervisors.delete(effect.model);
        bus.publish("model.error", { model_id: effect.model, error: effect.error });
        break;
      default: {
        const unreachable: never = effect;
        throw new Error(`unknown effect ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private load(model: string, generation: number): void {
    const { catalog, config, bus, logger } = this.options;
    const entry = catalog.get(model);
    if (!entry) {
      this.dispatch({ type: "load_failed", model, generation, now: Date.now(), error: `Model '${model}' is not in the catalogue.` });
      return;
    }
    let supervisor: Supervisor;
    try {
      const backend = backendFor(entry, config);
      supervisor = new Supervisor(entry, {
        host: this.options.host ?? "127.0.0.1",
        loadTimeoutMs: config.runner.load_timeout_s * 1000,
        stopGraceMs: config.runner.stop_grace_s * 1000,
        scheduling: config.runner.scheduling,
        logger,
        plan: (listen) => backend.plan(entry, listen),
      });
    } catch (error) {
      queueMicrotask(() => this.dispatch({ type: "load_failed", model, generation, now: Date.now(), error: (error as Error).message }));
      return;
    }
    this.supervisors.set(model, supervisor);
    this.stopReasons.delete(model);
    bus.publish("model.loading", { model_id: model });
    const began = Date.now();
    void supervisor.exited.then((how) => {
      if (this.supervisors.get(model) === supervisor && this.stopReasons.has(model)) {
        const reason = this.stopReasons.get(model) ?? "requested";
        this.supervisors.delete(model);
        this.stopReasons.delete(model);
        logger.info({ model, reason }, "backend stopped");
        bus.publish("model.stopped", { model_id: model, reason });
      }
      this.dispatch({ type: "exited", model, generation, now: Date.now(), error: how });
    });
    supervisor.start().then(
      () => {
        const now = Date.now();
        this.readySince.set(model, now);
        logger.info({ model, port: supervisor.port, load_ms: now - began }, "backend ready");
        bus.publish("model.started", { model_id: model, port: supervisor.port ?? 0, load_ms: now - began });
        this.dispatch({ type: "loaded", model, generation, now });
        void supervisor.memoryBytes().then((bytes) => {
          if (bytes !== undefined) this.dispatch({ type: "measured", model, generation, memoryBytes: bytes });
        });
      },
      (error: unknown) => this.dispatch({ type: "load_failed", model, generation, now: Date.now(), error: (error as Error).message }),
    );
  }
}
