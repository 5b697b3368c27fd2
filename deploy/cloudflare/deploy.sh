#!/usr/bin/env bash
# Deploys the nimbus-llm edge worker (handlers/cloudflare) with the wrangler pinned in package.json.
# Run `deploy/cloudflare/deploy.sh --help` for the options; docs/cloudflare.md walks through it.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/cloudflare/deploy.sh                  deploy (needs CLOUDFLARE_API_TOKEN)
       deploy/cloudflare/deploy.sh --dry-run [DIR]  bundle only, into DIR; no account needed
       deploy/cloudflare/deploy.sh --delete         tear down: wrangler delete
       deploy/cloudflare/deploy.sh --help

Environment:
  CLOUDFLARE_API_TOKEN   an API token allowed to edit Workers scripts (docs/cloudflare.md)
  CLOUDFLARE_ACCOUNT_ID  the account, when the token can see more than one
  Vars (override wrangler.toml [vars] for this deploy):
    INFERENCE_ORIGIN ORIGIN_TIMEOUT_MS HEALTH_TIMEOUT_MS ALLOW_ANONYMOUS SIGV4 SIGV4_SERVICE AWS_REGION
  Secrets (uploaded with the deploy itself, `wrangler deploy --secrets-file`, so the first
  version never runs without them; unset ones keep their current value):
    EDGE_API_KEY ORIGIN_API_KEY AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN

The edge's own model (EDGE_MODE=failover or always, docs/edge-inference.md): the GGUF is uploaded
to the R2 bucket bound as MODEL_BUCKET (created if missing) under EDGE_MODEL_KEY, from
EDGE_MODEL_FILE (default: the bundled SmolLM2-135M re-quantized to Q4_0, made on first use);
SKIP_MODEL_UPLOAD=1 keeps the object already there. Vars for it: EDGE_MODE EDGE_WASM
EDGE_MODEL_KEY EDGE_MODEL_ID EDGE_MAX_QUEUE EDGE_MAX_TOKENS EDGE_CONTEXT_TOKENS EDGE_LOG.

Without EDGE_API_KEY the worker refuses every request (fails closed) unless ALLOW_ANONYMOUS=true.
USAGE
}

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CONFIG="$ROOT/handlers/cloudflare/wrangler.toml"
SECRETS=(EDGE_API_KEY ORIGIN_API_KEY AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN)
VARS=(INFERENCE_ORIGIN ORIGIN_TIMEOUT_MS HEALTH_TIMEOUT_MS ALLOW_ANONYMOUS SIGV4 SIGV4_SERVICE AWS_REGION
  EDGE_MODE EDGE_WASM EDGE_MODEL_KEY EDGE_MODEL_ID EDGE_MAX_QUEUE EDGE_MAX_TOKENS EDGE_CONTEXT_TOKENS
  EDGE_LOG)

action=deploy
outdir=""
case "${1:-}" in
  "") ;;
  -h | --help) usage; exit 0 ;;
  --dry-run) action=dry-run; outdir="${2:-}" ;;
  --delete) action=delete ;;
  *) echo "deploy.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

export WRANGLER_SEND_METRICS="${WRANGLER_SEND_METRICS:-false}"

cd "$HERE"
WRANGLER="${WRANGLER:-$HERE/node_modules/.bin/wrangler}"
if [[ ! -x "$WRANGLER" ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "deploy.sh: npm not found: install Node.js 20 or newer (with npm), then run \`make install\`." >&2
    exit 3
  fi
  npm ci --prefer-offline --no-audit --no-fund
fi
wrangler() { "$WRANGLER" "$@"; }

if [[ "$action" == delete ]]; then
  : "${CLOUDFLARE_API_TOKEN:?set CLOUDFLARE_API_TOKEN (a token allowed to edit Workers scripts)}"
  wrangler delete --config "$CONFIG"
  exit 0
fi

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

# Secrets set in the environment go to wrangler in a private JSON file (never on a command line)
# and are uploaded together with the worker's code.
secret_args=()
names=()
for name in "${SECRETS[@]}"; do
  [[ -n "${!name:-}" ]] && names+=("$name")
done
if [[ ${#names[@]} -gt 0 ]]; then
  workdir="$(mktemp -d)"
  trap 'rm -rf "$workdir"' EXIT
  (umask 077 && node -e '
    const out = {};
    for (const name of process.argv.slice(1)) out[name] = process.env[name];
    process.stdout.write(JSON.stringify(out));
  ' "${names[@]}" >"$workdir/secrets.json")
  secret_args=(--secrets-file "$workdir/secrets.json")
fi

if [[ "$action" == dry-run ]]; then
  outdir="${outdir:-$(mktemp -d)}"
  wrangler deploy --config "$CONFIG" --dry-run --outdir "$outdir" "${secret_args[@]}"
  echo "bundle written to $outdir"
  exit 0
fi

: "${CLOUDFLARE_API_TOKEN:?set CLOUDFLARE_API_TOKEN (a token allowed to edit Workers scripts)}"

# Vars from the environment override wrangler.toml's [vars] for this deploy.
var_args=()
for name in "${VARS[@]}"; do
  if [[ -n "${!name:-}" ]]; then var_args+=(--var "$name:${!name}"); fi
done
if [[ -z "${INFERENCE_ORIGIN:-}" ]]; then
  echo "note: INFERENCE_ORIGIN not set; using the value in wrangler.toml" >&2
fi
if [[ -z "${EDGE_API_KEY:-}" && "${ALLOW_ANONYMOUS:-}" != "true" ]]; then
  echo "note: EDGE_API_KEY not set; a worker that never had one refuses every request (500 edge_misconfigured)" >&2
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

wrangler deploy --config "$CONFIG" "${var_args[@]}" "${secret_args[@]}"
echo "deployed; check it with: curl https://nimbus-edge.<your-subdomain>.workers.dev/api/health"
echo "tear it down with: deploy/cloudflare/deploy.sh --delete"
