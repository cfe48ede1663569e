/**
 * Process-wide `node:diagnostics_channel`s named `llama-runner:*`: how code that must stay cheap (a
 * backend's output pipe, the request policies) hands data to the logs and metrics without knowing them.
 * A publish with no subscriber costs one property read; subscribers never throw into the publisher.
 */
import { channel } from "node:diagnostics_channel";

/** One line a backend process printed (stdout or stderr), as its log ring stores it. */
export interface BackendLogLine {
  model: string;
  line: string;
}

/** A request refused by a limit (published by src/gateway/policies); metrics count these. */
export interface RateLimitRejection {
  listener?: string;
  /** Which limit: `requests_per_minute`, `concurrent_requests`, `streaming_connections`, ... */
  limit?: string;
  client?: string;
}

export const BACKEND_LOG_CHANNEL = "llama-runner:backend-log";
export const RATE_LIMIT_CHANNEL = "llama-runner:rate-limit";

export const backendLogChannel = channel(BACKEND_LOG_CHANNEL);
export const rateLimitChannel = channel(RATE_LIMIT_CHANNEL);

/** For the runner: reports one backend log line (free when nobody listens). */
export function publishBackendLog(model: string, line: string): void {
  if (backendLogChannel.hasSubscribers) backendLogChannel.publish({ model, line } satisfies BackendLogLine);
}

/** For limit code that does not publish on the channel itself. */
export function publishRateLimitRejection(rejection: RateLimitRejection): void {
  if (rateLimitChannel.hasSubscribers) rateLimitChannel.publish(rejection);
}
