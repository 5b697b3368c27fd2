#!/usr/bin/env bash
# Deploy nimbus-llm to Modal and print its URL; or serve a development copy, or stop the app.
# Run `deploy/modal/deploy.sh --help` for the options; docs/modal.md walks through a deploy.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/modal/deploy.sh [--dry-run]
       deploy/modal/deploy.sh --serve
       deploy/modal/deploy.sh --stop

  (no option)  modal deploy modal_app.py, then print the endpoint URL and how to smoke-test it
  --dry-run    import modal_app.py (which checks every setting and the model path) and print
               what would be deployed; needs no Modal account or credentials
  --serve      modal serve modal_app.py: a temporary copy that reloads on code changes, at
               https://<workspace>--<app>-model-web-dev.modal.run, stopped with Ctrl-C
  --stop       tear down: modal app stop <app> (its containers stop; billing ends)
  -h, --help   this text

Configuration: NIMBUS_MODAL__* variables (the Modal deploy settings, e.g.
NIMBUS_MODAL__MIN_CONTAINERS=0) and the usual NIMBUS_* settings, read when modal_app.py is
imported; docs/modal.md lists them. API keys come from a modal.Secret (default nimbus-api-keys),
created once:
  .venv/bin/modal secret create nimbus-api-keys NIMBUS_SECURITY__AUTH__KEYS=<a key of 16+ chars>

Credentials: MODAL_TOKEN_ID + MODAL_TOKEN_SECRET, or a profile written by `modal token new`
(~/.modal.toml, or $MODAL_CONFIG_PATH).
USAGE
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)"
# MODAL_CLI lets CI (or a wrapper) substitute the CLI; normally the modal package's own.
read -r -a MODAL <<<"${MODAL_CLI:-$PYTHON -m modal}"

action=deploy
case "${1:-}" in
  "") ;;
  -h | --help) usage; exit 0 ;;
  --dry-run) action=dry-run ;;
  --serve) action=serve ;;
  --stop) action=stop ;;
  *) echo "deploy.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

have_credentials() {
  if [[ -n "${MODAL_TOKEN_ID:-}" && -n "${MODAL_TOKEN_SECRET:-}" ]]; then
    return 0
  fi
  local config="${MODAL_CONFIG_PATH:-$HOME/.modal.toml}"
  [[ -f "$config" ]] && grep -Eq '^[[:space:]]*token_id[[:space:]]*=' "$config"
}

if [[ "$action" != dry-run ]] && ! have_credentials; then
  cat >&2 <<'MSG'
deploy.sh: no Modal credentials found.
  Run `.venv/bin/modal token new` (opens a browser) or `modal token set --token-id ... --token-secret ...`,
  or export MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, then run this script again.
MSG
  exit 2
fi

# Importing modal_app checks every setting and the model source offline; its app name is the
# one `modal deploy` creates and `modal app stop` stops.
if ! APP_NAME="$("$PYTHON" -c "import modal_app; print(modal_app.app.name)" | tail -n 1)"; then
  echo "deploy.sh: modal_app.py does not import; fix the error above (is the 'modal' extra installed? run \`make install\`)" >&2
  exit 3
fi

if [[ "$action" == dry-run ]]; then
  echo "deploy.sh: dry run: modal_app.py imports and its settings are valid."
  echo "  would run: ${MODAL[*]} deploy modal_app.py   (Modal app '$APP_NAME')"
  env | grep -E '^NIMBUS_' | grep -Eiv 'KEY|SECRET|TOKEN|PASSWORD' | sort | sed 's/^/  set: /' || true
  exit 0
fi

case "$action" in
  serve)
    echo "deploy.sh: ${MODAL[*]} serve modal_app.py (Ctrl-C stops it)"
    exec "${MODAL[@]}" serve modal_app.py
    ;;
  stop)
    echo "deploy.sh: ${MODAL[*]} app stop --yes $APP_NAME"
    "${MODAL[@]}" app stop --yes "$APP_NAME"
    echo "deploy.sh: the Modal app '$APP_NAME' is stopped; its containers are gone and no longer billed."
    exit 0
    ;;
esac

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
echo "deploy.sh: ${MODAL[*]} deploy modal_app.py"
status=0
"${MODAL[@]}" deploy modal_app.py 2>&1 | tee "$LOG" || status=$? # pipefail: modal's status
if [[ $status -ne 0 ]]; then
  echo "deploy.sh: modal deploy failed (exit $status)" >&2
  if grep -qi "secret" "$LOG"; then
    SECRET="${NIMBUS_MODAL__SECRET_NAME-nimbus-api-keys}"
    cat >&2 <<MSG
  API keys are on by default and come from the modal.Secret '$SECRET'. Create it once:
    .venv/bin/modal secret create $SECRET NIMBUS_SECURITY__AUTH__KEYS=<a key of 16+ characters>
  (or deploy open on purpose: NIMBUS_MODAL__SECRET_NAME= NIMBUS_SECURITY__AUTH__MODE=off)
MSG
  fi
  exit "$status"
fi

URL="$(grep -Eo 'https://[A-Za-z0-9.-]+\.modal\.run' "$LOG" | head -n 1 || true)"
if [[ -z "$URL" ]]; then
  echo "deploy.sh: deployed, but no *.modal.run URL in modal's output; see the Modal dashboard." >&2
  exit 4
fi
echo
echo "nimbus-llm is deployed: $URL"
echo "  curl -s $URL/api/health"
echo "  NIMBUS_API_KEY=<key> $PYTHON deploy/modal/smoke.py $URL   # health, generate, stream, openai client"
echo "  $PYTHON -m modal run modal_app.py      # a temporary copy of the app: Model().generate.remote(...)"
echo "  deploy/modal/deploy.sh --stop          # tear down (modal app stop $APP_NAME)"
