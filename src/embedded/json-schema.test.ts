/** The JSON Schema translation on its own: what clients send, and what must be refused. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { SchemaError, toGrammarSchema } from "./json-schema.js";

const anyJson = toGrammarSchema({});

test("{} and true mean any JSON value, not null", () => {
  assert.deepEqual(toGrammarSchema(true), anyJson);
  assert.ok("oneOf" in anyJson && anyJson.oneOf.length === 3);
});

test("anyOf becomes oneOf; type lists with object split into alternatives", () => {
  assert.deepEqual(toGrammarSchema({ anyOf: [{ type: "string" }, { type: "null" }] }), {
    oneOf: [{ type: "string" }, { type: "null" }],
  });
  assert.deepEqual(toGrammarSchema({ type: ["integer", "null"] }), { type: ["integer", "null"] });
  const split = toGrammarSchema({ type: ["object", "null"], properties: { a: { type: "boolean" } } });
  assert.ok("oneOf" in split && split.oneOf.length === 2);
});

test("objects: declared properties close the object, none leaves it open", () => {
  assert.deepEqual(toGrammarSchema({ type: "object", properties: { a: { enum: [1, 2] } }, required: ["a"] }), {
    type: "object",
    properties: { a: { enum: [1, 2] } },
    additionalProperties: false,
  });
  assert.deepEqual(toGrammarSchema({ type: "object" }), { type: "object", properties: {}, additionalProperties: true });
});

test("definitions and $ref are carried over under $defs", () => {
  const converted = toGrammarSchema({
    type: "object",
    properties: { item: { $ref: "#/definitions/Item" } },
    definitions: { Item: { type: "string", maxLength: 5 } },
  }) as { $defs?: Record<string, unknown>; properties?: Record<string, unknown> };
  assert.deepEqual(converted.properties?.item, { $ref: "#/$defs/Item" });
  assert.deepEqual(converted.$defs?.Item, { type: "string", maxLength: 5 });
});

test("tuples, allOf and string formats", () => {
  assert.deepEqual(toGrammarSchema({ type: "array", items: [{ type: "integer" }], maxItems: 1 }), {
    type: "array",
    prefixItems: [{ type: "integer" }],
    maxItems: 1,
  });
  const merged = toGrammarSchema({
    allOf: [
      { type: "object", properties: { a: { type: "string" } } },
      { properties: { b: { type: "number" } } },
    ],
  }) as { properties?: Record<string, unknown> };
  assert.deepEqual(Object.keys(merged.properties ?? {}), ["a", "b"]);
  assert.deepEqual(toGrammarSchema({ type: "string", format: "date" }), { type: "string", format: "date" });
  assert.deepEqual(toGrammarSchema({ type: "string", format: "email" }), { type: "string" });
});

test("what cannot be expressed is refused with the path to it", () => {
  const refused = (schema: unknown, pattern: RegExp): void =>
    assert.throws(() => toGrammarSchema(schema), (error: unknown) => error instanceof SchemaError && pattern.test(error.message));
  refused({ type: "sound" }, /schema\.type: unsupported type "sound"/);
  refused({ type: "object", properties: { a: { not: { type: "string" } } } }, /schema\.properties\.a: 'not' is not supported/);
  refused({ $ref: "#/$defs/Missing" }, /no definition named 'Missing'/);
  refused({ $ref: "https://example.com/schema" }, /only local references/);
  refused({ enum: [{ a: 1 }] }, /enum/);
  refused({ enum: [] }, /non-empty/);
  refused("string", /must be an object/);
});
