// HTTP calls of the page, to the auth service and to the chat HTTP API, with their failures
// as values a person can read: "403 forbidden: you may not do that in this room".

const TIMEOUT_MS = 15000;

/** A service answered with an error status (or did not answer at all: status 0). */
export class HttpError extends Error {
  constructor(status, code, description, retryAfter) {
    super(HttpError.explain(status, code, description, retryAfter));
    this.status = status;
    this.code = code;
    this.description = description;
    this.retryAfter = retryAfter;
  }

  static explain(status, code, description, retryAfter) {
    let text = status ? `${status} ${code}` : code;
    if (description) text += `: ${description}`;
    if (retryAfter) text += ` (retry after ${retryAfter} s)`;
    return text;
  }

  /** Worth trying again later: overloaded, rate limited, or unreachable. */
  get transient() {
    return [0, 429, 502, 503, 504].includes(this.status);
  }
}

/**
 * Sends one request and reads its JSON answer (null for an empty one). `where` names the
 * service in the message shown when it cannot be reached.
 */
export async function request(url, { method = "GET", headers = {}, body, where, hint } = {}) {
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body,
      // The page authenticates with tokens it holds, never with cookies: nothing here
      // rides on an ambient credential.
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (error) {
    const why = error && error.name === "TimeoutError" ? "no answer in 15 s" : "no answer";
    throw new HttpError(0, `cannot reach ${where}`, hint ? `${why}; ${hint}` : why, null);
  }
  let payload = null;
  const text = await response.text();
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = null;
    }
  }
  if (!response.ok) {
    const known = payload && typeof payload === "object";
    throw new HttpError(
      response.status,
      known && typeof payload.error === "string" ? payload.error : response.statusText || "error",
      known && typeof payload.error_description === "string" ? payload.error_description : "",
      response.headers.get("Retry-After"),
    );
  }
  return payload;
}
