/**
 * Translates the JSON Schema that OpenAI clients send (response_format, tool parameters) into the subset
 * node-llama-cpp turns into a grammar. Needed because node-llama-cpp silently reads what it does not know
 * as `null`: `{}` or `anyOf` would otherwise constrain the model to print `null`. What cannot be expressed is
 * rejected with a SchemaError (a 400 for the client) rather than quietly generating something else.
 */
import type { GbnfJsonSchema } from "node-llama-cpp";

export class SchemaError extends Error {}

type JsonObject = Record<string, unknown>;

const scalarTypes = new Set(["string", "number", "integer", "boolean", "null"]);
const knownTypes = new Set([...scalarTypes, "object", "array"]);
const stringFormats = new Set(["date-time", "time", "date"]);

/** Any JSON value: what JSON Schema means by `{}` or `true`. */
const anyJson: GbnfJsonSchema = {
  oneOf: [
    { type: ["string", "number", "boolean", "null"] },
    { type: "object", additionalProperties: true },
    { type: "array" },
  ],
};

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isPrimitive(value: unknown): value is string | number | boolean | null {
  return value === null || typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value));
}

function optionalCount(schema: JsonObject, key: string, at: string): number | undefined {
  const value = schema[key];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new SchemaError(`${at}.${key} must be a non-negative integer`);
  }
  return value;
}

class Converter {
  readonly defs = new Map<string, unknown>();

  collectDefs(schema: unknown): void {
    if (!isObject(schema)) return;
    for (const key of ["$defs", "definitions"]) {
      const defs = schema[key];
      if (defs === undefined) continue;
      if (!isObject(defs)) throw new SchemaError(`${key} must be an object`);
      for (const [name, def] of Object.entries(defs)) {
        this.defs.set(name, def);
        this.collectDefs(def);
      }
    }
  }

  convert(schema: unknown, at: string): GbnfJsonSchema {
    if (schema === true) return anyJson;
    if (schema === false) throw new SchemaError(`${at}: a 'false' schema matches nothing`);
    if (!isObject(schema)) throw new SchemaError(`${at}: a schema must be an object`);
    const description = typeof schema.description === "string" ? { description: schema.description } : {};

    if (schema.$ref !== undefined) return { ...this.ref(schema.$ref, at), ...description };
    if (schema.const !== undefined) {
      if (!isPrimitive(schema.const)) throw new SchemaError(`${at}.const: only string, number, boolean or null constants are supported`);
      return { const: schema.const, ...description };
    }
    if (schema.enum !== undefined) {
      if (!Array.isArray(schema.enum) || schema.enum.length === 0) throw new SchemaError(`${at}.enum must be a non-empty array`);
      if (!schema.enum.every(isPrimitive)) throw new SchemaError(`${at}.enum: only string, number, boolean or null values are supported`);
      return { enum: schema.enum, ...description };
    }
    for (const key of ["oneOf", "anyOf"] as const) {
      const options = schema[key];
      if (options === undefined) continue;
      if (!Array.isArray(options) || options.length === 0) throw new SchemaError(`${at}.${key} must be a non-empty array`);
      return { oneOf: options.map((option, i) => this.convert(option, `${at}.${key}[${i}]`)), ...description };
    }
    if (schema.allOf !== undefined) return this.convert(this.mergeAllOf(schema, at), at);
    for (const key of ["not", "if", "then", "else", "dependentSchemas", "patternProperties"]) {
      if (schema[key] !== undefined) throw new SchemaError(`${at}: '${key}' is not supported`);
    }

    let type = schema.type;
    if (type === undefined) {
      if (schema.properties !== undefined || schema.additionalProperties !== undefined) type = "object";
      else if (schema.items !== undefined || schema.prefixItems !== undefined) type = "array";
      else return anyJson;
    }
    if (Array.isArray(type)) {
      if (type.length === 0) throw new SchemaError(`${at}.type must not be empty`);
      for (const t of type) this.checkType(t, at);
      if (type.every((t) => scalarTypes.has(t as string))) return { type: type as ("string" | "number" | "integer" | "boolean" | "null")[], ...description };
      return { oneOf: type.map((t) => this.convert({ ...schema, type: t }, at)), ...description };
    }
    this.checkType(type, at);
    switch (type) {
      case "object":
        return { ...this.object(schema, at), ...description };
      case "array":
        return { ...this.array(schema, at), ...description };
      case "string": {
        if (typeof schema.format === "string" && stringFormats.has(schema.format)) {
          return { type: "string", format: schema.format as "date-time" | "time" | "date", ...description };
        }
        const minLength = optionalCount(schema, "minLength", at);
        const maxLength = optionalCount(schema, "maxLength", at);
        return {
          type: "string",
          ...(minLength === undefined ? {} : { minLength }),
          ...(maxLength === undefined ? {} : { maxLength }),
          ...description,
        };
      }
      default:
        return { type: type as "number" | "integer" | "boolean" | "null", ...description };
    }
  }

  private checkType(type: unknown, at: string): void {
    if (typeof type !== "string" || !knownTypes.has(type)) {
      throw new SchemaError(`${at}.type: unsupported type ${JSON.stringify(type)}`);
    }
  }

  private ref(ref: unknown, at: string): GbnfJsonSchema {
    const match = typeof ref === "string" ? /^#\/(?:\$defs|definitions)\/([^/]+)$/.exec(ref) : null;
    const name = match?.[1];
    if (name === undefined) throw new SchemaError(`${at}.$ref: only local references like '#/$defs/Name' are supported`);
    if (!this.defs.has(name)) throw new SchemaError(`${at}.$ref: no definition named '${name}'`);
    return { $ref: `#/$defs/${name}` } as GbnfJsonSchema;
  }

  private object(schema: JsonObject, at: string): GbnfJsonSchema {
    const properties: Record<string, GbnfJsonSchema> = {};
    if (schema.properties !== undefined) {
      if (!isObject(schema.properties)) throw new SchemaError(`${at}.properties must be an object`);
      for (const [name, property] of Object.entries(schema.properties)) {
        properties[name] = this.convert(property, `${at}.properties.${name}`);
      }
    }
    const hasProperties = Object.keys(properties).length > 0;
    const extra = schema.additionalProperties;
    // JSON Schema allows extra keys unless told otherwise; with declared properties we keep the object closed,
    // which is what a client that lists properties wants from a model.
    const additionalProperties: boolean | GbnfJsonSchema =
      extra === undefined ? !hasProperties : typeof extra === "boolean" ? extra : this.convert(extra, `${at}.additionalProperties`);
    const minProperties = optionalCount(schema, "minProperties", at);
    const maxProperties = optionalCount(schema, "maxProperties", at);
    return {
      type: "object",
      properties,
      additionalProperties,
      ...(minProperties === undefined ? {} : { minProperties }),
      ...(maxProperties === undefined ? {} : { maxProperties }),
    } as GbnfJsonSchema;
  }

  private array(schema: JsonObject, at: string): GbnfJsonSchema {
    // Draft 4-7 tuples (`items: [...]`) are today's `prefixItems`.
    const tuple = Array.isArray(schema.items) ? schema.items : schema.prefixItems;
    if (tuple !== undefined && !Array.isArray(tuple)) throw new SchemaError(`${at}.prefixItems must be an array`);
    const items = Array.isArray(schema.items) ? schema.additionalItems : schema.items;
    const minItems = optionalCount(schema, "minItems", at);
    const maxItems = optionalCount(schema, "maxItems", at);
    return {
      type: "array",
      ...(tuple === undefined ? {} : { prefixItems: tuple.map((item, i) => this.convert(item, `${at}.prefixItems[${i}]`)) }),
      ...(items === undefined || items === true ? {} : { items: this.convert(items, `${at}.items`) }),
      ...(minItems === undefined ? {} : { minItems }),
      ...(maxItems === undefined ? {} : { maxItems }),
    } as GbnfJsonSchema;
  }

  /** `allOf` is mostly used to extend an object; merging the parts covers that case. */
  private mergeAllOf(schema: JsonObject, at: string): JsonObject {
    const { allOf, ...base } = schema;
    if (!Array.isArray(allOf) || allOf.length === 0) throw new SchemaError(`${at}.allOf must be a non-empty array`);
    const merged: JsonObject = { ...base };
    for (const [i, part] of allOf.entries()) {
      const resolved = isObject(part) && typeof part.$ref === "string" ? this.defs.get(String(part.$ref).split("/").at(-1) ?? "") : part;
      if (!isObject(resolved)) throw new SchemaError(`${at}.allOf[${i}] must be an object schema`);
      for (const [key, value] of Object.entries(resolved)) {
        if (key === "$ref") continue;
        if (key === "properties" && isObject(value)) {
          merged.properties = { ...(isObject(merged.properties) ? merged.properties : {}), ...value };
        } else if (key === "required" && Array.isArray(value)) {
          merged.required = [...(Array.isArray(merged.required) ? merged.required : []), ...value];
        } else if (merged[key] !== undefined && JSON.stringify(merged[key]) !== JSON.stringify(value)) {
          throw new SchemaError(`${at}.allOf[${i}]: conflicting '${key}'`);
        } else {
          merged[key] = value;
        }
      }
    }
    return merged;
  }
}

/** Converts a client's JSON Schema; throws SchemaError with a path to the offending part. */
export function toGrammarSchema(schema: unknown): GbnfJsonSchema {
  const converter = new Converter();
  converter.collectDefs(schema);
  const root = converter.convert(schema, "schema");
  if (converter.defs.size === 0) return root;
  const $defs: Record<string, GbnfJsonSchema> = {};
  for (const [name, def] of converter.defs) $defs[name] = converter.convert(def, `$defs.${name}`);
  // node-llama-cpp reads `$defs` on objects, arrays, oneOf and refs; a scalar root has no use for them.
  return "type" in root && (root.type === "object" || root.type === "array") || "oneOf" in root || "$ref" in root
    ? ({ ...root, $defs } as GbnfJsonSchema)
    : root;
}
