/**
 * Grammars that constrain generation to JSON: `response_format` and forced tool calls. Every failure to
 * build one is the client's schema at fault, so it surfaces as a 400 before any token is generated.
 */
import { LlamaGrammarEvaluationState, type GbnfJsonSchema, type LlamaGrammar } from "node-llama-cpp";
import type { ChatCompletionRequest } from "../protocol/openai.js";
import type { Engine } from "./engine.js";
import { badRequest } from "./errors.js";
import { SchemaError, toGrammarSchema } from "./json-schema.js";

/** Converts a client schema for node-llama-cpp, naming the request field it came from when it is unusable. */
export function convertSchema(schema: unknown, param: string): GbnfJsonSchema {
  try {
    return toGrammarSchema(schema);
  } catch (error) {
    if (error instanceof SchemaError) throw badRequest(`invalid JSON schema in ${param}: ${error.message}`, param);
    throw error;
  }
}

export async function grammarForSchema(engine: Engine, schema: GbnfJsonSchema, param: string): Promise<LlamaGrammar> {
  try {
    const grammar = await engine.llama.createGrammarForJsonSchema(schema as Parameters<Engine["llama"]["createGrammarForJsonSchema"]>[0]);
    // llama.cpp parses the grammar when it is first used; do it now so a bad one is a 400, not a broken stream.
    new LlamaGrammarEvaluationState({ model: engine.model, grammar });
    return grammar;
  } catch (error) {
    throw badRequest(`${param}: cannot build a grammar from this schema: ${error instanceof Error ? error.message : String(error)}`, param);
  }
}

const builtinJson = new WeakMap<Engine, Promise<LlamaGrammar>>();

/** Any JSON object, for `response_format: {type: "json_object"}`. */
function jsonObjectGrammar(engine: Engine): Promise<LlamaGrammar> {
  let grammar = builtinJson.get(engine);
  if (grammar === undefined) {
    grammar = engine.llama.getGrammarFor("json");
    builtinJson.set(engine, grammar);
  }
  return grammar;
}

export async function grammarForResponseFormat(
  engine: Engine,
  format: ChatCompletionRequest["response_format"],
): Promise<LlamaGrammar | undefined> {
  if (format === null || format === undefined || format.type === "text") return undefined;
  if (format.type === "json_object") {
    if (format.schema === undefined) return jsonObjectGrammar(engine);
    return grammarForSchema(engine, convertSchema(format.schema, "response_format.schema"), "response_format.schema");
  }
  if (format.type === "json_schema") {
    const schema = format.json_schema.schema;
    if (schema === undefined) throw badRequest("response_format.json_schema.schema is required", "response_format");
    const param = "response_format.json_schema.schema";
    return grammarForSchema(engine, convertSchema(schema, param), param);
  }
  return undefined;
}
