/**
 * What every route needs to know about this runner: its public name, its start time, and the engine once
 * the model has loaded. Until then, llama-server's contract is a 503 "Loading model" on every endpoint.
 */
import type { Engine } from "./engine.js";
import { ApiError } from "./errors.js";

export class RunnerState {
  readonly created = Math.floor(Date.now() / 1000);
  engine: Engine | undefined;

  constructor(readonly alias: string) {}

  ready(): Engine {
    if (this.engine === undefined) throw new ApiError(503, "unavailable_error", "Loading model");
    return this.engine;
  }
}
