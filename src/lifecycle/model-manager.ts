/**
 * Decides which backend processes run and hands out leases on them. Loads are single-flight (N
 * concurrent first requests start one process), a model with requests in flight is never stopped to
 * make room, and at most `maxLoaded` backends exist at once (1 = swap on demand).
 */
import type { Logger } from "pino";
import { backendFor } from "../backends/index.js";
import type { ModelEntry } from "../catalog/catalog.js";
import type { Config } from "../config/schema.js";
import { GatewayError } from "../errors/index.js";
import type { EventBus, StopReason } from "../events/bus.js";
import { waitHealthy } from "../runner/health.js";
import { freePort } from "../runner/ports.js";
import { BackendProcess, describeExit } from "../runner/process.js";

export type ModelState = "unloaded" | "loading" | "ready" | "stopping" | "error";

export interface Lease {
  readonly entry: ModelEntry;
  readonly baseUrl: string;
  /** Must be called exactly once, when the response to the client has ended. */
  release(): void;
}

export interface ModelStatus {
  state: ModelState;
  port: number | undefined;
  pid: number | undefined;
  startedAt: number | undefined;
  lastUsed: number | undefined;
  inFlight: number;
  error: string | undefined;
}

interface Instance {
  entry: ModelEntry;
  state: "loading" | "ready" | "stopping";
  process: BackendProcess | undefined;
  port: number | undefined;
  baseUrl: string;
  inFlight: number;
  startedAt: number;
  lastUsed: number;
  ready: Promise<void>;
  stopped: Promise<void> | undefined;
}

export interface ModelManagerOptions {
  config: Config;
  bus: EventBus;
  logger: Logger;
  host?: string;
}

const LOG_TAIL_LINES = 12;

export class ModelManager {
  private readonly instances = new Map<string, Instance>();
  private readonly lastErrors = new Map<string, string>();
  private readonly lastUsed = new Map<string, number>();
  private waiters: Array<() => void> = [];
  private closed = false;
  private readonly host: string;

  constructor(private readonly options: ModelManagerOptions) {
    this.host = options.host ?? "127.0.0.1";
  }

  private get maxLoaded(): number {
    return this.options.config.concurrentRunners;
  }

  async acquire(entry: ModelEntry, signal?: AbortSignal): Promise<Lease> {
    if (entry.error) throw new GatewayError("service_unavailable", `Model '${entry.id}' is unavailable: ${entry.error}`);
    for (;;) {
      if (this.closed) throw new GatewayError("service_unavailable", "The server is shutting down.");
      signal?.throwIfAborted();
      const instance = this.instances.get(entry.id);
      if (instance?.state === "stopping") {
        await instance.stopped;
        continue;
      }
      if (instance) return this.lease(instance, signal);
      const evicting = this.makeRoom();
      if (evicting === "full") await this.changed(signal);
      else if (evicting) await evicting;
      else return this.lease(this.load(entry), signal);
    }
  }

  status(id: string): ModelStatus {
    const instance = this.instances.get(id);
    const error = this.lastErrors.get(id);
    return {
      state: instance?.state ?? (error ? "error" : "unloaded"),
      port: instance?.port,
      pid: instance?.process?.pid,
      startedAt: instance?.startedAt,
      lastUsed: instance?.lastUsed ?? this.lastUsed.get(id),
      inFlight: instance?.inFlight ?? 0,
      error: instance ? undefined : error,
    };
  }

  /** Stops every backend; used on gateway shutdown, so in-flight requests are cut. */
  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    await Promise.all([...this.instances.values()].map((i) => this.stop(i, "shutdown")));
  }

  private async lease(instance: Instance, signal?: AbortSignal): Promise<Lease> {
    // Counted before the wait, so a model that is loading for us is never chosen for eviction.
    instance.inFlight++;
    try {
      await abortable(instance.ready, signal);
    } catch (error) {
      this.release(instance);
      throw error;
    }
    let released = false;
    return {
      entry: instance.entry,
      baseUrl: instance.baseUrl,
      release: () => {
        if (released) return;
        released = true;
        this.release(instance);
      },
    };
  }

  private release(instance: Instance): void {
    instance.inFlight--;
    instance.lastUsed = Date.now();
    this.lastUsed.set(instance.entry.id, instance.lastUsed);
    this.wake();
  }

  /** undefined: there is room now; a promise: an idle model is being stopped; "full": every slot is busy. */
  private makeRoom(): Promise<void> | "full" | undefined {
    if (this.instances.size < this.maxLoaded) return undefined;
    const idle = [...this.instances.values()]
      .filter((i) => i.state === "ready" && i.inFlight === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed)[0];
    return idle ? this.stop(idle, "evicted") : "full";
  }

  private load(entry: ModelEntry): Instance {
    const instance: Instance = {
      entry,
      state: "loading",
      process: undefined,
      port: undefined,
      baseUrl: "",
      inFlight: 0,
      startedAt: Date.now(),
      lastUsed: Date.now(),
      ready: Promise.resolve(),
      stopped: undefined,
    };
    this.instances.set(entry.id, instance);
    this.lastErrors.delete(entry.id);
    this.options.bus.publish("model.loading", { model_id: entry.id });
    instance.ready = this.start(instance);
    // A failed load is reported to every waiting request through `ready`; this keeps it from being unhandled.
    instance.ready.catch(() => {});
    return instance;
  }

  private async start(instance: Instance): Promise<void> {
    const { entry } = instance;
    const { logger, config, bus } = this.options;
    const began = Date.now();
    try {
      const backend = backendFor(entry, config);
      const port = await freePort(this.host);
      const plan = backend.plan(entry, { host: this.host, port });
      if (plan.ignoredParameters.length > 0) {
        logger.warn({ model: entry.id, parameters: plan.ignoredParameters }, `${backend.kind} backend ignores these parameters`);
      }
      const child = BackendProcess.spawn(plan.spawn);
      instance.process = child;
      instance.port = port;
      instance.baseUrl = `http://${this.host}:${port}`;
      logger.info({ model: entry.id, backend: backend.kind, port, pid: child.pid }, "starting backend");
      void child.exited.then((info) => this.onExit(instance, describeExit(info)));
      const health = await waitHealthy({
        url: `${instance.baseUrl}${plan.healthPath}`,
        timeoutMs: config.runner.load_timeout_s * 1000,
        exited: child.exited,
      });
      if (!health.ok) {
        const why = health.reason === "timeout" ? `did not become healthy within ${config.runner.load_timeout_s} s` : "exited while loading";
        await child.stop(config.runner.stop_grace_s * 1000);
        const tail = child.logs.tail(LOG_TAIL_LINES).join("\n");
        throw new GatewayError("service_unavailable", `Model '${entry.id}' failed to load: the backend ${why}.${tail ? `\nLast log lines:\n${tail}` : ""}`);
      }
      instance.state = "ready";
      instance.startedAt = Date.now();
      const loadMs = instance.startedAt - began;
      logger.info({ model: entry.id, port, load_ms: loadMs }, "backend ready");
      bus.publish("model.started", { model_id: entry.id, port, load_ms: loadMs });
      this.wake();
    } catch (error) {
      const failure = error instanceof GatewayError ? error : new GatewayError("server_error", `Model '${entry.id}' failed to load: ${(error as Error).message}`, { cause: error });
      this.forget(instance);
      this.lastErrors.set(entry.id, failure.message);
      logger.error({ model: entry.id, err: failure.message }, "backend failed to load");
      bus.publish("model.error", { model_id: entry.id, error: failure.message });
      this.wake();
      throw failure;
    }
  }

  private onExit(instance: Instance, how: string): void {
    if (this.instances.get(instance.entry.id) !== instance || instance.state !== "ready") return;
    const tail = instance.process?.logs.tail(LOG_TAIL_LINES).join("\n") ?? "";
    const message = `Model '${instance.entry.id}' backend ${how} unexpectedly.${tail ? `\nLast log lines:\n${tail}` : ""}`;
    this.forget(instance);
    this.lastErrors.set(instance.entry.id, message);
    this.options.logger.error({ model: instance.entry.id }, message);
    this.options.bus.publish("model.stopped", { model_id: instance.entry.id, reason: "crashed" });
    this.options.bus.publish("model.error", { model_id: instance.entry.id, error: message });
    this.wake();
  }

  private stop(instance: Instance, reason: StopReason): Promise<void> {
    if (instance.stopped) return instance.stopped;
    instance.state = "stopping";
    instance.stopped = (async () => {
      await instance.process?.stop(this.options.config.runner.stop_grace_s * 1000);
      this.forget(instance);
      this.options.logger.info({ model: instance.entry.id, reason }, "backend stopped");
      this.options.bus.publish("model.stopped", { model_id: instance.entry.id, reason });
      this.wake();
    })();
    return instance.stopped;
  }

  private forget(instance: Instance): void {
    if (this.instances.get(instance.entry.id) === instance) this.instances.delete(instance.entry.id);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves at the next release, load, stop or exit: the moment a waiting request may fit. */
  private changed(signal?: AbortSignal): Promise<void> {
    return abortable(new Promise<void>((resolve) => this.waiters.push(resolve)), signal);
  }
}

function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
