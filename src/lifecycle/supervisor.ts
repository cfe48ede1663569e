/**
 * One backend instance: spawn (or, for a remote upstream, just reach), wait for health, watch for
 * exit, stop. It reports outcomes; deciding what happens next is the scheduler's job.
 */
import type { Logger } from "pino";
import type { LaunchPlan } from "../backends/index.js";
import type { ModelEntry } from "../catalog/catalog.js";
import { GatewayError } from "../errors/index.js";
import { redactPaths } from "../errors/redact.js";
import { publishBackendLog } from "../events/channels.js";
import { waitHealthy } from "../runner/health.js";
import { freePort } from "../runner/ports.js";
import { BackendProcess, describeExit, type ExitInfo, type SpawnSpec, withWatchdog } from "../runner/process.js";
import { groupRssBytes } from "../runner/rss.js";
import { type Scheduling, scheduled } from "../runner/scheduling.js";

const LOG_TAIL_LINES = 12;

export interface SupervisorOptions {
  host: string;
  loadTimeoutMs: number;
  stopGraceMs: number;
  scheduling: Scheduling;
  logger: Logger;
  plan(listen: { host: string; port: number }): LaunchPlan;
}

export class Supervisor {
  baseUrl = "";
  port: number | undefined;
  readonly startedAt = Date.now();
  private process: BackendProcess | undefined;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private stopCommand: SpawnSpec | undefined;
  /** Why a load failed, so the exit that follows is not reported as a crash. */
  private loadFailure: string | undefined;
  /** Resolves with a description when the backend goes away by itself (never for a remote one). */
  readonly exited: Promise<string>;
  private resolveExited!: (how: string) => void;

  constructor(
    readonly entry: ModelEntry,
    private readonly options: SupervisorOptions,
  ) {
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
  }

  get pid(): number | undefined {
    return this.process?.pid;
  }

  logTail(lines = LOG_TAIL_LINES): string[] {
    return this.process?.logs.tail(lines) ?? [];
  }

  async start(): Promise<void> {
    const { host, logger } = this.options;
    const port = await freePort(host);
    // A stop (gateway shutdown) while we waited for a port must not be followed by a spawn.
    if (this.stopping) throw new GatewayError("service_unavailable", `Model '${this.entry.id}' was stopped while loading.`);
    const plan = this.options.plan({ host, port });
    if (plan.kind === "remote") {
      this.baseUrl = plan.baseUrl;
      await this.awaitHealth(`${plan.baseUrl}${plan.healthPath}`, new Promise(() => {}));
      return;
    }
    if (plan.ignoredParameters.length > 0) {
      logger.warn({ model: this.entry.id, parameters: plan.ignoredParameters }, "the backend ignores these parameters");
    }
    const child = BackendProcess.spawn(scheduled(plan.watchesStdin ? plan.spawn : withWatchdog(plan.spawn), this.options.scheduling));
    this.process = child;
    child.logs.onLine = (line) => publishBackendLog(this.entry.id, line);
    this.port = port;
    this.baseUrl = `http://${host}:${port}`;
    this.stopCommand = plan.stop;
    logger.info({ model: this.entry.id, port, pid: child.pid }, "starting backend");
    void child.exited.then((info) => this.resolveExited(this.describe(info)));
    await this.awaitHealth(`${this.baseUrl}${plan.healthPath}`, child.exited);
  }

  /** Resident memory of the backend's whole process group. */
  async memoryBytes(): Promise<number | undefined> {
    const pid = this.process?.pid;
    return pid === undefined ? undefined : groupRssBytes(pid);
  }

  /** Idempotent: a second call waits for the first stop. */
  stop(): Promise<void> {
    this.stopped ??= this.halt();
    return this.stopped;
  }

  private async halt(): Promise<void> {
    this.stopping = true;
    const child = this.process;
    if (!child) {
      // A remote upstream keeps running; for us it is gone.
      this.resolveExited(`Model '${this.entry.id}' stopped.`);
      return;
    }
    if (this.stopCommand && !child.hasExited) {
      const stopper = BackendProcess.spawn({ ...this.stopCommand, args: this.stopCommand.args.map((a) => a.replaceAll("${PID}", String(child.pid))) });
      // The stop command may only begin a clean shutdown: give the backend the grace period to finish it.
      const grace = new Promise((resolve) => setTimeout(resolve, this.options.stopGraceMs).unref());
      await Promise.race([stopper.exited.then(() => child.exited), child.exited, grace]);
      await stopper.stop(1000);
    }
    await child.stop(this.options.stopGraceMs);
  }

  private async awaitHealth(url: string, exited: Promise<ExitInfo | never>): Promise<void> {
    const result = await waitHealthy({ url, timeoutMs: this.options.loadTimeoutMs, exited });
    if (result.ok) return;
    const why =
      result.reason === "timeout"
        ? `did not answer ${url.replace(/^https?:\/\/[^/]+/, "")} with 200 within ${Math.round(this.options.loadTimeoutMs / 1000)} s`
        : "exited while loading";
    this.loadFailure = `Model '${this.entry.id}' failed to load: the backend ${why}.`;
    await this.process?.stop(this.options.stopGraceMs);
    throw new GatewayError("service_unavailable", this.withLogTail(this.loadFailure));
  }

  private describe(info: ExitInfo): string {
    if (this.loadFailure) return this.withLogTail(this.loadFailure);
    if (this.stopping) return `Model '${this.entry.id}' stopped.`;
    return this.withLogTail(`Model '${this.entry.id}' backend ${describeExit(info)} unexpectedly.`);
  }

  private withLogTail(message: string): string {
    // These messages reach clients: backends print full model paths, clients must not see folders.
    const tail = redactPaths(this.logTail().join("\n"));
    return tail ? `${message}\nLast log lines:\n${tail}` : message;
  }
}
