// The origin's browser pages: the chat page (/ and /chat) with its assets (/ui/...) and the API
// docs (/docs, /redoc, /openapi.json and their assets). They are public on the origin too (the
// page asks for the key itself), so the edge forwards them without one; GET and HEAD only.
const PAGE_PATHS = new Set(["/", "/chat", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"]);
const PAGE_PREFIXES = ["/ui/", "/static-offline-docs/"];

export function isPage(pathname, method) {
  if (method !== "GET" && method !== "HEAD") return false;
  return PAGE_PATHS.has(pathname) || PAGE_PREFIXES.some((prefix) => pathname.startsWith(prefix));
}
