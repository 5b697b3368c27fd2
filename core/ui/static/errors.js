// API errors in words. The server answers in the OpenAI error shape:
// {"error": {"message", "type", "code", "param"}}.
export class ApiError extends Error {
  constructor(status, message, { retryAfter = null, code = null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.retryAfter = retryAfter;
    this.code = code;
  }
}

export async function apiError(response) {
  let message = response.statusText || `HTTP ${response.status}`;
  let code = null;
  try {
    const body = await response.json();
    if (body?.error?.message) message = body.error.message;
    code = body?.error?.code ?? null;
  } catch {
    // not JSON (a proxy's error page, or a HEAD answer): the status says enough
  }
  return new ApiError(response.status, message, {
    retryAfter: response.headers.get('Retry-After'),
    code,
  });
}

function retryIn(seconds) {
  const n = seconds ? Number(seconds) : NaN; // Number(null) would be 0
  return Number.isFinite(n) && n >= 0 ? ` Try again in ${n} s.` : ' Try again shortly.';
}

export function describeError(error) {
  if (!(error instanceof ApiError)) {
    if (error?.name === 'TypeError') return `The server could not be reached (${error.message}).`;
    return String(error?.message ?? error);
  }
  const detail = error.message ? ` (${error.message})` : '';
  switch (error.status) {
    case 401:
      return `The server needs a valid API key: enter it under Settings${detail}.`;
    case 404:
      return `Not available on this server${detail}.`;
    case 413:
      return `Too long for this server: shorten the message or clear the conversation${detail}.`;
    case 429:
      return `Rate limit reached${detail}.${retryIn(error.retryAfter)}`;
    case 503:
      return `The server is busy or still loading the model${detail}.${retryIn(error.retryAfter)}`;
    default:
      return error.status >= 500
        ? `The server failed${detail}.`
        : `The server refused the request${detail}.`;
  }
}
