// AWS Signature Version 4 with WebCrypto, for an IAM-protected (AuthType AWS_IAM) Lambda function
// URL. https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
const encoder = new TextEncoder();

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256Hex(data) {
  return hex(await crypto.subtle.digest("SHA-256", typeof data === "string" ? encoder.encode(data) : data));
}

async function hmac(key, text) {
  const raw = typeof key === "string" ? encoder.encode(key) : key;
  const cryptoKey = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return crypto.subtle.sign("HMAC", cryptoKey, encoder.encode(text));
}

// RFC 3986 encoding: everything but unreserved characters, as SigV4 requires.
function uriEncode(text, keepSlash) {
  return [...encoder.encode(text)]
    .map((byte) => {
      const c = String.fromCharCode(byte);
      if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === "/")) return c;
      return `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
    })
    .join("");
}

function canonicalPath(pathname) {
  // Non-S3 services encode the (already percent-encoded) path once more, as botocore does with
  // quote(path, safe="/~"); the URL parser has already removed dot segments.
  return uriEncode(pathname || "/", true);
}

function canonicalQuery(searchParams) {
  return [...searchParams]
    .map(([k, v]) => [uriEncode(k, false), uriEncode(v, false)])
    .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

export function amzDate(date) {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

// The region of a function URL: https://<url-id>.lambda-url.<region>.on.aws
export function lambdaUrlRegion(hostname) {
  const match = /\.lambda-url\.([a-z0-9-]+)\.on\.aws$/.exec(hostname);
  return match ? match[1] : null;
}

/**
 * Signs a request and returns the headers to add (x-amz-date, x-amz-security-token when there is
 * a session token, authorization). Signed: host, content-type when present and every x-amz-*.
 *
 * @param {{method: string, url: string, headers: Headers, body: Uint8Array | null,
 *          region: string, service: string, accessKeyId: string, secretAccessKey: string,
 *          sessionToken?: string | null, date?: Date}} input
 */
export async function sign(input) {
  const url = new URL(input.url);
  const stamp = amzDate(input.date ?? new Date());
  const day = stamp.slice(0, 8);
  const headers = new Map();
  headers.set("host", url.host);
  const contentType = input.headers.get("content-type");
  if (contentType !== null) headers.set("content-type", contentType);
  for (const [name, value] of input.headers) if (name.startsWith("x-amz-")) headers.set(name, value);
  headers.set("x-amz-date", stamp);
  if (input.sessionToken) headers.set("x-amz-security-token", input.sessionToken);

  const names = [...headers.keys()].sort();
  const canonicalHeaders = names
    .map((name) => `${name}:${String(headers.get(name)).trim().replace(/\s+/g, " ")}\n`)
    .join("");
  const signedHeaders = names.join(";");
  const payloadHash = await sha256Hex(input.body ?? new Uint8Array());
  const canonicalRequest = [
    input.method.toUpperCase(),
    canonicalPath(url.pathname),
    canonicalQuery(url.searchParams),
    canonicalHeaders,
    signedHeaders,
    payloadHash,
  ].join("\n");
  const scope = `${day}/${input.region}/${input.service}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", stamp, scope, await sha256Hex(canonicalRequest)].join(
    "\n",
  );
  let key = await hmac(`AWS4${input.secretAccessKey}`, day);
  for (const part of [input.region, input.service, "aws4_request"]) key = await hmac(key, part);
  const signature = hex(await hmac(key, stringToSign));

  const added = {
    "x-amz-date": stamp,
    authorization:
      `AWS4-HMAC-SHA256 Credential=${input.accessKeyId}/${scope}, ` +
      `SignedHeaders=${signedHeaders}, Signature=${signature}`,
  };
  if (input.sessionToken) added["x-amz-security-token"] = input.sessionToken;
  return added;
}
