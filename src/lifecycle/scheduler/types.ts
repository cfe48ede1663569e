/**
 * The scheduler's vocabulary. Everything here is data: the scheduler never touches a process, a
 * socket or a clock; time arrives inside events and decisions leave as effects.
 */
export type StopReason = "ttl" | "evicted" | "requested" | "crashed" | "shutdown";

export type RequestId = number;

export interface ModelPolicy {
  /** Requests one backend is given at once (its parallel slots, plus those it may queue itself). */
  parallel: number;
  /** Idle time before unloading, in ms; null = never. */
  ttlMs: number | null;
  /** Never evicted and never unloaded by TTL. */
  pinned: boolean;
  /** Memory the model needs when loaded (estimate until measured). */
  estimateBytes: number;
}

export interface SchedulerLimits {
  /** At most this many backends exist at once (loading, ready or stopping). */
  maxLoaded: number;
  /** Sum of loaded models' memory never exceeds this; null = no budget. */
  memoryBudgetBytes: number | null;
  /** Requests waiting beyond this are refused with 503. */
  maxQueue: number;
}

export type Phase = "loading" | "ready" | "stopping";

export interface Instance {
  model: string;
  /** Distinguishes successive processes of one model, so late events of a dead one are ignored. */
  generation: number;
  phase: Phase;
  inFlight: number;
  lastUsed: number;
  memoryBytes: number;
  ttlMs: number | null;
  pinned: boolean;
  parallel: number;
  /**
   * Set while request `for` needs this model's room: only requests queued before `before` may
   * still use it, so the model drains instead of being kept busy forever.
   */
  drain: { before: number; for: RequestId } | undefined;
  /** Stop as soon as the last in-flight request ends (a requested stop, keep_alive 0). */
  stopWhenIdle: StopReason | undefined;
}

export interface Waiting {
  id: RequestId;
  model: string;
  seq: number;
  /** undefined: the model's policy; null: keep loaded forever; 0: unload after this request. */
  keepAliveMs: number | null | undefined;
}

export interface SchedulerState {
  instances: Map<string, Instance>;
  queue: Waiting[];
  nextSeq: number;
  nextGeneration: number;
  /** Last load failure or crash per model, cleared by the next successful load. */
  errors: Map<string, string>;
  /** Granted requests, so a release or a late cancel finds its instance. */
  granted: Map<RequestId, { model: string; generation: number }>;
}

export type SchedulerEvent =
  | { type: "request"; id: RequestId; model: string; now: number; keepAliveMs?: number | null }
  | { type: "cancel"; id: RequestId; now: number }
  | { type: "release"; id: RequestId; now: number }
  | { type: "loaded"; model: string; generation: number; now: number }
  | { type: "load_failed"; model: string; generation: number; now: number; error: string }
  | { type: "exited"; model: string; generation: number; now: number; error?: string }
  | { type: "measured"; model: string; generation: number; memoryBytes: number }
  | { type: "tick"; now: number }
  | { type: "stop"; model: string; now: number; reason: "requested" }
  /** The gateway is going away: everything stops now, in flight or not, and nobody waits any longer. */
  | { type: "shutdown"; now: number };

export type RejectCode = "service_unavailable" | "invalid_request";

export type Effect =
  | { type: "load"; model: string; generation: number }
  | { type: "stop"; model: string; generation: number; reason: StopReason }
  | { type: "grant"; id: RequestId; model: string; generation: number }
  | { type: "reject"; id: RequestId; code: RejectCode; message: string; retryAfterS?: number }
  | { type: "crashed"; model: string; generation: number; error: string }
  | { type: "load_failed"; model: string; generation: number; error: string };

export interface StepResult {
  state: SchedulerState;
  effects: Effect[];
}
