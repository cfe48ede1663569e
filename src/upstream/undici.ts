/**
 * undici's Agent, with its request API, without the rest of undici. The package's entry point also loads
 * fetch, WebSocket, EventSource, the HTTP cache, the mocks and the proxy agents, which the gateway never
 * uses: ~6 MB of heap and ~3 MB of code pages, a tenth of an idle gateway's RSS. These are the modules
 * that entry point assembles the Agent from; undici is pinned to an exact version in package.json, and
 * every upstream test goes through here.
 */
import { createRequire } from "node:module";
import { setFlagsFromString } from "node:v8";
import type { Agent as UndiciAgent } from "undici";

// undici parses HTTP/1.1 with llhttp compiled to WebAssembly, on its first connection. V8 runs it on its
// baseline compiler (Liftoff) and recompiles the hot parts with TurboFan; that recompilation took 30–35 MB of
// compiler memory for ~100 ms in the first burst of 200 upstream connections, the gateway's peak RSS
// (133 → 100 MB). Kept on Liftoff, the parse costs no measurable CPU per request (A/B, 6 × 4 s at c=64:
// 111 vs 114 µs). The flag only applies to modules compiled after it, hence here, before any connection.
setFlagsFromString("--liftoff-only");

const require = createRequire(import.meta.url);
const Dispatcher = require("undici/lib/dispatcher/dispatcher.js") as { prototype: object };
// What undici's entry point does to give every dispatcher request(), stream(), pipeline() and the rest.
Object.assign(Dispatcher.prototype, require("undici/lib/api/index.js"));

export const Agent = require("undici/lib/dispatcher/agent.js") as typeof UndiciAgent;
export type Agent = UndiciAgent;
