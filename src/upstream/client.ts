/**
 * The one HTTP client to all backends: a shared undici Agent keeps a keep-alive pool per backend
 * origin, so no request pays for a new connection and backpressure flows end to end. Generation
 * requests pass through the token accounting on their way.
 */
import type { Dispatcher } from "undici";
import type { Cancellation } from "../lifecycle/cancellation.js";
import { type Accounted, UpstreamAccounting, type UpstreamObserver } from "./accounting.js";
import { Agent } from "./undici.js";

export interface UpstreamRequest {
  baseUrl: string;
  path: string;
  method?: "GET" | "POST";
  body?: string;
  /** A generation request, counted by the accounting under this model and endpoint. */
  account?: Accounted;
}

export type UpstreamResponse = Dispatcher.ResponseData;

type AccountedOptions = Dispatcher.DispatchOptions & { account?: Accounted };

const JSON_HEADERS = { "content-type": "application/json" };
const NO_HEADERS = {};

export class UpstreamClient {
  private readonly agent = new Agent({
    keepAliveTimeout: 30_000,
    connections: 256,
    // Generation can be slow before its first byte (a long prompt on a CPU); the gateway's own
    // abort handling, not a timer, ends requests that the client gave up on.
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  private readonly dispatcher: Dispatcher;

  /** Parsed base URLs: a handful of backends, parsed once each instead of once per request. */
  private readonly bases = new Map<string, { origin: string; prefix: string }>();

  constructor(observer?: UpstreamObserver) {
    const accounting = observer && new UpstreamAccounting(observer);
    // An interceptor, so request() (which builds its own handler) is accounted the same way as dispatch().
    this.dispatcher = accounting
      ? this.agent.compose((dispatch) => (options, handler) => {
          const { account } = options as AccountedOptions;
          return dispatch(options, account ? accounting.wrap(handler, account) : handler);
        })
      : this.agent;
  }

  /** The response as a stream, for callers that read or translate it. */
  request(request: UpstreamRequest, signal?: Cancellation): Promise<UpstreamResponse> {
    return this.dispatcher.request({ ...this.options(request), signal });
  }

  /** The response as handler callbacks, for callers that pass it straight on: no stream in between. */
  dispatch(request: UpstreamRequest, handler: Dispatcher.DispatchHandler): void {
    this.dispatcher.dispatch(this.options(request), handler);
  }

  close(): Promise<void> {
    return this.agent.close();
  }

  private options({ baseUrl, path, method = "POST", body, account }: UpstreamRequest): AccountedOptions & { origin: string } {
    // A remote upstream may live under a path prefix (https://host/prefix); undici wants origin and path apart.
    let base = this.bases.get(baseUrl);
    if (!base) {
      const url = new URL(baseUrl);
      base = { origin: url.origin, prefix: url.pathname.replace(/\/+$/, "") };
      if (this.bases.size > 1024) this.bases.clear();
      this.bases.set(baseUrl, base);
    }
    return { origin: base.origin, path: `${base.prefix}${path}`, method, body, headers: body === undefined ? NO_HEADERS : JSON_HEADERS, account };
  }
}
