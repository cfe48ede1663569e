import assert from "node:assert/strict";
import { test } from "node:test";
import type { ModelEntry } from "../catalog/catalog.js";
import { admissionLimit } from "./memory.js";

const entry = (runtime: string, parameters: Record<string, number> = {}, queueAhead?: number) => ({ runtime, parameters, queueAhead }) as unknown as ModelEntry;

test("admission: the slots plus queue_ahead; by default as many again, none for command backends", () => {
  assert.equal(admissionLimit(entry("embedded")), 2);
  assert.equal(admissionLimit(entry("llama-cpp", { parallel: 4 })), 8);
  assert.equal(admissionLimit(entry("url", { np: 3 })), 6);
  assert.equal(admissionLimit(entry("command", { parallel: 4 })), 4);
  assert.equal(admissionLimit(entry("command", { parallel: 2 }, 1)), 3);
  assert.equal(admissionLimit(entry("llama-cpp", { parallel: 4 }, 0)), 4);
});
