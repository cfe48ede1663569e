/**
 * Webhook signatures: `X-LlamaRunner-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw request body
 * (the exact bytes received, before any JSON parsing) keyed with the secret returned at registration.
 * A receiver recomputes it and compares in constant time (`verifySignature`).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "X-LlamaRunner-Signature";

export function newSecret(): string {
  return `whsec_${randomBytes(32).toString("hex")}`;
}

export function sign(secret: string, body: string | Uint8Array): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Whether `header` is the signature of `body` with `secret`; constant time in the signature's content. */
export function verifySignature(secret: string, body: string | Uint8Array, header: string | undefined): boolean {
  if (typeof header !== "string") return false;
  const expected = Buffer.from(sign(secret, body));
  const given = Buffer.from(header.trim());
  return given.length === expected.length && timingSafeEqual(given, expected);
}
