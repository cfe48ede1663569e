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
  if (depthExceeds(value, MAX_DEPTH)) throw new GatewayError("invalid_request", `Request body is nested more than ${MAX_DEPTH} levels deep`);
  return value;
}

/** Iterative, so hostile input cannot overflow the stack here either. */
function depthExceeds(root: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[root, 0]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop() as [unknown, number];
    if (value === null || typeof value !== "object") continue;
    if (depth >= max) return true;
    for (const child of Object.values(value)) if (child !== null && typeof child === "object") stack.push([child, depth + 1]);
  }
  return false;
}
