/** llama-server's `POST /tokenize` and `POST /detokenize`, which the gateway uses to count tokens. */
import { z } from "zod";
import { describeIssues } from "../../protocol/openai.js";
import { badRequest } from "../errors.js";
import { sendJson, type RouteHandler, type Routes } from "../http-server.js";
import type { RunnerState } from "../runner-state.js";
import { beginningToken, checkTokens } from "../tokens.js";

const tokenizeSchema = z.looseObject({
  content: z.string(),
  add_special: z.boolean().nullish(),
  with_pieces: z.boolean().nullish(),
});

const detokenizeSchema = z.looseObject({ tokens: z.array(z.number().int()) });

export function tokenizeRoutes(state: RunnerState): Routes {
  const tokenize: RouteHandler = ({ body, res }) => {
    const engine = state.ready();
    const parsed = tokenizeSchema.safeParse(body);
    if (!parsed.success) throw badRequest(describeIssues(parsed.error));
    const { content, add_special: addSpecial, with_pieces: withPieces } = parsed.data;
    // llama-server parses special tokens in the text and adds BOS only when asked to.
    const tokens = engine.model.tokenize(content, true);
    const bos = beginningToken(engine.model);
    if (addSpecial === true && bos !== null) tokens.unshift(bos);
    sendJson(res, 200, {
      // A piece is detokenized after the tokens before it, or SentencePiece's leading space would be lost.
      tokens:
        withPieces === true
          ? tokens.map((id, i) => ({ id, piece: engine.model.detokenize([id], true, tokens.slice(Math.max(0, i - 4), i)) }))
          : tokens,
    });
  };
  const detokenize: RouteHandler = ({ body, res }) => {
    const engine = state.ready();
    const parsed = detokenizeSchema.safeParse(body);
    if (!parsed.success) throw badRequest(describeIssues(parsed.error));
    sendJson(res, 200, { content: engine.model.detokenize(checkTokens(engine.model, parsed.data.tokens, "tokens"), true) });
  };
  return { "POST /tokenize": tokenize, "POST /detokenize": detokenize };
}
