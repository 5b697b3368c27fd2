#!/usr/bin/env bash
# Deploys the nimbus-llm edge worker (handlers/cloudflare) with the wrangler pinned in package.json.
#
#   CLOUDFLARE_API_TOKEN=... [CLOUDFLARE_ACCOUNT_ID=...] \
#   INFERENCE_ORIGIN=https://<id>.lambda-url.<region>.on.aws,https://<app>.modal.run \
#   EDGE_API_KEY=... [ORIGIN_API_KEY=...] [AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...] \
#   deploy/cloudflare/deploy.sh
#
#   deploy/cloudflare/deploy.sh --dry-run [OUTDIR]   # bundle only, no account needed
#
# The edge's own model (EDGE_MODE=failover or always, docs/edge-inference.md): the GGUF is uploaded
# to the R2 bucket bound as MODEL_BUCKET (created if missing) under EDGE_MODEL_KEY, from
# EDGE_MODEL_FILE (default: the bundled SmolLM2-135M re-quantized to Q4_0, made on first use).
# SKIP_MODEL_UPLOAD=1 keeps the object already there.
#
# Secrets are read from the environment and uploaded with `wrangler secret put` (stdin, never on
# the command line); unset ones are left as they are. Until EDGE_API_KEY is set the worker refuses
# every request (fails closed) unless ALLOW_ANONYMOUS=true.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CONFIG="$ROOT/handlers/cloudflare/wrangler.toml"
SECRETS=(EDGE_API_KEY ORIGIN_API_KEY AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN)
VARS=(INFERENCE_ORIGIN ORIGIN_TIMEOUT_MS HEALTH_TIMEOUT_MS ALLOW_ANONYMOUS SIGV4 SIGV4_SERVICE AWS_REGION
  EDGE_MODE EDGE_WASM EDGE_MODEL_KEY EDGE_MODEL_ID EDGE_MAX_QUEUE EDGE_MAX_TOKENS EDGE_CONTEXT_TOKENS
  EDGE_LOG)

export WRANGLER_SEND_METRICS="${WRANGLER_SEND_METRICS:-false}"

cd "$HERE"
WRANGLER="${WRANGLER:-$HERE/node_modules/.bin/wrangler}"
if [[ ! -x "$WRANGLER" ]]; then
  npm ci --prefer-offline --no-audit --no-fund
fi
wrangler() { "$WRANGLER" "$@"; }

# llama.cpp's wasm for the edge's model, copied from the pinned npm package and checked byte for byte.
node "$HERE/vendor_wllama.mjs"

# A value from wrangler.toml's [vars] or [[r2_buckets]] (the first bucket), unless overridden.
toml_value() {
  sed -n "s/^$1 *= *\"\(.*\)\"/\1/p" "$CONFIG" | head -n 1
}

# The edge enforces core's limits: refuse to ship a limits.js that no longer matches them.
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
if [[ -x "$PYTHON" ]]; then
  (cd "$ROOT" && "$PYTHON" -m handlers.cloudflare.gen_limits --check)
fi

if [[ "${1:-}" == "--dry-run" ]]; then
  outdir="${2:-$(mktemp -d)}"
  wrangler deploy --config "$CONFIG" --dry-run --outdir "$outdir"
  echo "bundle written to $outdir"
  exit 0
fi

: "${CLOUDFLARE_API_TOKEN:?set CLOUDFLARE_API_TOKEN (a token with Workers Scripts:Edit)}"

# Vars from the environment override wrangler.toml's [vars] for this deploy.
var_args=()
for name in "${VARS[@]}"; do
  if [[ -n "${!name:-}" ]]; then var_args+=(--var "$name:${!name}"); fi
done
if [[ -z "${INFERENCE_ORIGIN:-}" ]]; then
  echo "note: INFERENCE_ORIGIN not set; using the value in wrangler.toml" >&2
fi

EDGE_MODE_VALUE="${EDGE_MODE:-$(toml_value EDGE_MODE)}"
if [[ "${EDGE_MODE_VALUE:-off}" != "off" && -z "${SKIP_MODEL_UPLOAD:-}" ]]; then
  bucket="$(toml_value bucket_name)"
  key="${EDGE_MODEL_KEY:-$(toml_value EDGE_MODEL_KEY)}"
  model="${EDGE_MODEL_FILE:-}"
  if [[ -z "$model" ]]; then
    # The bundled SmolLM2-135M re-quantized to Q4_0 (build/edge/, made once, ~10 s).
    model="$ROOT/build/edge/SmolLM2-135M-Instruct.Q4_0.gguf"
    [[ -f "$model" ]] || (cd "$ROOT" && "$PYTHON" -m handlers.cloudflare.requantize --output "$model")
  fi
  [[ -f "$model" ]] || { echo "EDGE_MODEL_FILE $model is not a file" >&2; exit 1; }
  wrangler r2 bucket create "$bucket" --config "$CONFIG" || echo "note: bucket $bucket not created (it may exist already)" >&2
  wrangler r2 object put "$bucket/$key" --file "$model" --remote --config "$CONFIG"
fi

wrangler deploy --config "$CONFIG" "${var_args[@]}"

for name in "${SECRETS[@]}"; do
  if [[ -n "${!name:-}" ]]; then
    printf '%s' "${!name}" | wrangler secret put "$name" --config "$CONFIG"
  fi
done
echo "deployed; check it with: curl https://<worker>.<subdomain>.workers.dev/api/health"
