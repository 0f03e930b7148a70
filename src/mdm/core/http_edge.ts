// The HTTP edge of the MDM: PowerFlex-shaped error bodies (plus our pfCode), bounded JSON body
// reading validated by a zod schema, and Basic-auth parsing. One error handler for the whole
// app lives in app.ts and uses errorResponse from here.

import type { Context } from "hono";
import type { z } from "zod";
import { httpStatusOf, isPfError, PfError, powerflexErrorCodeOf, type ErrorCode } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import type { PowerFlexErrorBody } from "../../proto/powerflex_api.ts";

/** A PfError that must be answered with a specific HTTP status (e.g. 413, 404 for unknown paths). */
export class HttpError extends PfError {
  readonly status: 400 | 401 | 404 | 405 | 413 | 429 | 500 | 503;
  /** sent as Retry-After (seconds) with a 429 */
  retryAfterS: number | undefined;
  constructor(code: ErrorCode, status: HttpError["status"], message: string) {
    super(code, message);
    this.status = status;
  }
}

export function errorResponse(c: Context, e: PfError): Response {
  const status = e instanceof HttpError ? e.status : httpStatusOf[e.code];
  const body: PowerFlexErrorBody = { message: e.message, httpStatusCode: status, errorCode: e.rc ?? powerflexErrorCodeOf[e.code], pfCode: e.code };
  if (e.rc !== undefined) body.details = [{ rc: e.rc, msg: e.message }];
  if (e instanceof HttpError && e.retryAfterS !== undefined) c.header("retry-after", String(e.retryAfterS));
  return c.json(body, status);
}

export function asPfError(e: unknown): PfError {
  if (isPfError(e)) return e;
  return new PfError("INTERNAL", `internal error: ${(e as Error)?.message ?? String(e)}`);
}

function describeZodError(err: z.ZodError): string {
  return err.issues
    .slice(0, 5)
    .map((i) => `${i.path.length > 0 ? i.path.join(".") : "body"}: ${i.message}`)
    .join("; ");
}

/** Read the request body (at most Limits.restMaxBodyBytes) as JSON and validate it. Empty = {}. */
export async function readBody<T extends z.ZodType>(c: Context, schema: T, maxBytes: number = Limits.restMaxBodyBytes): Promise<z.infer<T>> {
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > maxBytes) throw new HttpError("TOO_BIG", 413, `request body of ${declared} bytes is over the limit of ${maxBytes} bytes`);
  const buf = await c.req.arrayBuffer();
  if (buf.byteLength > maxBytes) throw new HttpError("TOO_BIG", 413, `request body of ${buf.byteLength} bytes is over the limit of ${maxBytes} bytes`);
  const text = new TextDecoder().decode(buf);
  let json: unknown = {};
  if (text.trim().length > 0) {
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new PfError("BAD_REQUEST", `request body is not valid JSON: ${(e as Error).message}`);
    }
  }
  return validate(schema, json);
}

export function validate<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new PfError("BAD_REQUEST", "request body must be a JSON object");
  }
  const r = schema.safeParse(value);
  if (!r.success) throw new PfError("BAD_REQUEST", `invalid request: ${describeZodError(r.error)}`);
  return r.data;
}

/** user and password of a Basic Authorization header (password may be a token); null if absent. */
export function basicCredentials(header: string | undefined): { user: string; password: string } | null {
  if (!header) return null;
  const m = /^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (m?.[1]) {
    const decoded = Buffer.from(m[1], "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) return null;
    return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  const b = /^\s*bearer\s+(\S+)\s*$/i.exec(header);
  if (b?.[1]) return { user: "", password: b[1] };
  return null;
}
