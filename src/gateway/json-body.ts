import { GatewayError } from "../errors/index.js";

/** Deeper than any real request; deep enough nesting would overflow the stack when re-serialised upstream. */
const MAX_DEPTH = 64;

/** Parses a request body as JSON; an empty body is `undefined`. Any failure is a 400, never a 500. */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === "") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new GatewayError("invalid_request", "Request body is not valid JSON");
  }
  if (value !== null && typeof value === "object" && depthExceeds(value, MAX_DEPTH)) throw new GatewayError("invalid_request", `Request body is nested more than ${MAX_DEPTH} levels deep`);
  return value;
}

/** Iterative, so hostile input cannot overflow the stack here either; no arrays made per object visited. */
function depthExceeds(root: unknown, max: number): boolean {
  const values: unknown[] = [root];
  const depths: number[] = [0];
  while (values.length > 0) {
    const value = values.pop() as Record<string, unknown>;
    const depth = depths.pop() as number;
    if (depth >= max) return true;
    for (const key in value) {
      const child = value[key];
      if (child !== null && typeof child === "object") {
        values.push(child);
        depths.push(depth + 1);
      }
    }
  }
  return false;
}
