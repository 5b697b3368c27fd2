// Server mode: the OpenAI chat route, streamed (SSE parsed from fetch).
import { ApiError, apiError } from './errors.js';
import { sseData } from './sse.js';

export function authHeaders(apiKey) {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

// Resolves with {usage, finishReason} when the stream ends; rejects with an AbortError when
// `signal` fires (the server sees the connection close and cancels the generation).
export async function streamChat({ base, apiKey, messages, params, signal, onToken }) {
  const response = await fetch(new URL('v1/chat/completions', base), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...authHeaders(apiKey) },
    body: JSON.stringify({
      messages,
      temperature: params.temperature,
      max_tokens: params.maxTokens,
      stream: true,
      stream_options: { include_usage: true },
    }),
    signal,
    cache: 'no-store',
  });
  if (!response.ok) throw await apiError(response);
  let usage = null;
  let finishReason = null;
  for await (const data of sseData(response.body)) {
    if (data === '[DONE]') break;
    const event = JSON.parse(data);
    if (event.error) {
      throw new ApiError(500, event.error.message, { code: event.error.code });
    }
    if (event.usage) usage = event.usage;
    const choice = event.choices?.[0];
    if (choice?.delta?.content) onToken(choice.delta.content);
    if (choice?.finish_reason) finishReason = choice.finish_reason;
  }
  return { usage, finishReason };
}

export async function serverInfo(base) {
  const response = await fetch(new URL('api/health', base), { cache: 'no-store' });
  const body = await response.json();
  return { model: body.model, status: body.status };
}
