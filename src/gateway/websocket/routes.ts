/**
 * `GET /v1/ws`: the WebSocket API (protocol in connection.ts), on both listeners, through
 * `@fastify/websocket` in this plugin's own context (its hooks and handler wrapper touch no other route).
 *
 * The upgrade request goes through Fastify's routing, so the listener's global hooks (API keys, limits,
 * CORS and Host checks) judge it like any HTTP request. When one of them refuses it with an error, the
 * handshake is still completed and the refusal is sent as `{type:"error", code, message, status}` followed
 * by a close (1008 for auth and policy, 1013 for limits and overload, 1011 otherwise): browsers cannot read
 * the status of a failed handshake, but they can read that message and the close reason.
 *
 * Node hands every request with an `Upgrade` header to the server's 'upgrade' listeners once one exists:
 * WebSocket upgrades of /v1/ws go to the plugin; anything else (`Upgrade: h2c`, a WebSocket to another
 * path) is replayed through Node's HTTP parser as a plain request, as it was served before.
 */
import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import fastifyWebsocket from "@fastify/websocket";
import type { FastifyInstance } from "fastify";
import type { WebSocket } from "ws";
import type { Config } from "../../config/schema.js";
import type { EventBus } from "../../events/bus.js";
import { toGatewayError } from "../errors.js";
import type { InferenceService } from "../inference.js";
import type { GatewayMetrics } from "../metrics/metrics.js";
import { Connection } from "./connection.js";

export const WS_PATH = "/v1/ws";

export interface WebSocketRoutesOptions {
  listener: string;
  bus: EventBus;
  inference: InferenceService;
  config: Config["websocket"];
  metrics?: GatewayMetrics;
  /** See ConnectionDeps.stallMs (the listener's `timeouts.write_stall_s`). */
  stallMs?: number;
}

const EMPTY = Buffer.alloc(0);
/** How long shutdown waits for clients to answer the close handshake before cutting them off. */
const CLOSE_GRACE_MS = 500;

function closeCodeFor(status: number): number {
  if (status === 429 || status === 503) return 1013;
  if (status >= 400 && status < 500) return 1008;
  return 1011;
}

/** A close reason must fit in 123 bytes. */
function closeReason(message: string): string {
  let reason = message;
  while (Buffer.byteLength(reason) > 123) reason = `${reason.slice(0, -2)}…`;
  return reason;
}

export async function websocketRoutes(app: FastifyInstance, options: WebSocketRoutesOptions): Promise<void> {
  const { listener, config, metrics } = options;
  const upgrades = new EventEmitter();
  const upgraded = new WeakSet<IncomingMessage>();

  await app.register(fastifyWebsocket, {
    options: {
      maxPayload: config.max_message_bytes,
      perMessageDeflate: false,
      // Only the upgrades we pass on reach the plugin (see onUpgrade below).
      server: upgrades as never,
    },
    errorHandler: (error, socket, request) => {
      request.log.warn({ err: error.message }, "WebSocket error");
      socket.terminate();
    },
    preClose: async function closeSockets(this: FastifyInstance) {
      const clients = [...this.websocketServer.clients];
      if (clients.length > 0) {
        const closed = Promise.all(clients.map((ws) => new Promise((resolve) => (ws.readyState === 3 ? resolve(undefined) : ws.once("close", resolve)))));
        for (const ws of clients) ws.close(1001, "server shutting down");
        await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, CLOSE_GRACE_MS).unref())]);
        for (const ws of clients) ws.terminate();
      }
      this.websocketServer.close();
    },
  });

  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (request.url ?? "/").split("?")[0];
    if (path === WS_PATH && request.headers.upgrade?.toLowerCase() === "websocket") {
      upgraded.add(request);
      upgrades.emit("upgrade", request, socket, head);
      return;
    }
    replayAsPlainRequest(app.server, request, socket, head);
  };
  app.server.on("upgrade", onUpgrade);
  app.addHook("onClose", async () => {
    app.server.off("upgrade", onUpgrade);
  });

  // Refusals by the listener's hooks (API key, limits): complete the handshake, say why, close.
  app.setErrorHandler((thrown, request, reply) => {
    if (!upgraded.has(request.raw) || reply.sent) throw thrown;
    const error = toGatewayError(thrown);
    reply.hijack();
    const socket = request.raw.socket;
    app.websocketServer.handleUpgrade(request.raw, socket, EMPTY, (ws: WebSocket) => {
      ws.send(JSON.stringify({ type: "error", code: error.code, message: error.message, status: error.statusCode }));
      ws.close(closeCodeFor(error.statusCode), closeReason(error.message));
      setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
    });
  });

  app.route({
    method: "GET",
    url: WS_PATH,
    // A plain GET (no upgrade): say what this route is.
    handler: async (_request, reply) =>
      reply
        .code(426)
        .header("upgrade", "websocket")
        .send({ error: { message: `${WS_PATH} is a WebSocket endpoint: connect with a WebSocket client.`, type: "invalid_request_error", param: null, code: "upgrade_required" } }),
    wsHandler: (ws, request) => {
      metrics?.websocketConnections.inc({ listener });
      ws.once("close", () => metrics?.websocketConnections.dec({ listener }));
      new Connection(ws, { bus: options.bus, inference: options.inference, config, metrics, log: request.log, stallMs: options.stallMs });
    },
  });
}

/**
 * An upgrade request we do not take (`Upgrade: h2c`, a WebSocket to another path) goes back through Node's
 * HTTP parser as the plain request it also is: its head is replayed without the upgrade headers, followed
 * by whatever body bytes came with it, and the socket is handed to the server as a new connection. So it
 * is served exactly as before this listener existed, body and keep-alive included.
 */
function replayAsPlainRequest(server: EventEmitter, request: IncomingMessage, socket: Duplex, head: Buffer): void {
  const lines = [`${request.method ?? "GET"} ${request.url ?? "/"} HTTP/${request.httpVersion}`];
  const raw = request.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    let value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (lower === "upgrade" || lower === "http2-settings" || lower.startsWith("sec-websocket-")) continue;
    if (lower === "connection") {
      value = value
        .split(",")
        .map((token) => token.trim())
        .filter((token) => token !== "" && !["upgrade", "http2-settings"].includes(token.toLowerCase()))
        .join(", ");
      if (value === "") continue;
    }
    lines.push(`${name}: ${value}`);
  }
  socket.unshift(Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1"), head]));
  server.emit("connection", socket);
}
