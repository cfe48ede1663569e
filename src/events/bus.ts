/**
 * The one in-process event bus. Lifecycle transitions and finished work are published here; logs,
 * metrics, webhooks and the WebSocket API subscribe instead of being called from the code that acts.
 */
import { EventEmitter } from "node:events";

export type StopReason = "ttl" | "evicted" | "requested" | "crashed" | "shutdown";

export interface GatewayEvents {
  "model.loading": { model_id: string };
  "model.started": { model_id: string; port: number; load_ms: number };
  "model.stopped": { model_id: string; reason: StopReason };
  "model.error": { model_id: string; error: string };
  /** A transcription or translation answered (src/audio): audio seconds, output language code, time taken. */
  "transcription.completed": {
    model_id: string;
    task: "transcribe" | "translate";
    language: string;
    duration_s: number;
    /** Decode + wait for the runner + inference, in ms. */
    processing_ms: number;
    decode_ms: number;
    inference_ms: number;
  };
}

export type EventName = keyof GatewayEvents;

/**
 * Every event kind, at run time (webhook registrations and WebSocket subscriptions are checked against
 * it). A Record over `EventName`, so an event added to `GatewayEvents` without an entry here is a type error.
 */
const EVENT_KINDS: Record<EventName, true> = {
  "model.loading": true,
  "model.started": true,
  "model.stopped": true,
  "model.error": true,
  "transcription.completed": true,
};

/** In a webhook's or a WebSocket subscription's event list: every event, present and future. */
export const ALL_EVENTS = "*";

export const EVENT_NAMES: readonly EventName[] = Object.freeze(Object.keys(EVENT_KINDS) as EventName[]);

export function isEventName(value: unknown): value is EventName {
  return typeof value === "string" && Object.hasOwn(EVENT_KINDS, value);
}

export interface EventEnvelope<K extends EventName = EventName> {
  event: K;
  timestamp: string;
  data: GatewayEvents[K];
}

export class EventBus {
  private readonly emitter = new EventEmitter({ captureRejections: false });

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  publish<K extends EventName>(event: K, data: GatewayEvents[K]): void {
    const envelope: EventEnvelope<K> = { event, timestamp: new Date().toISOString(), data };
    this.emitter.emit(event, envelope);
    this.emitter.emit("*", envelope);
  }

  subscribe<K extends EventName>(event: K | "*", listener: (envelope: EventEnvelope<K>) => void): () => void {
    const wrapped = (envelope: EventEnvelope<K>) => {
      // A subscriber's bug must never break the code that published the event.
      try {
        listener(envelope);
      } catch {
        /* ignored on purpose */
      }
    };
    this.emitter.on(event, wrapped);
    return () => this.emitter.off(event, wrapped);
  }
}
