#!/usr/bin/env bash
# Deploy nimbus-llm to Modal and print its URL.
#
#   deploy/modal/deploy.sh            # modal deploy modal_app.py, then print the endpoint URL
#   NIMBUS_MODAL_MIN_CONTAINERS=0 deploy/modal/deploy.sh   # scale to zero when idle
#
# Credentials: MODAL_TOKEN_ID + MODAL_TOKEN_SECRET in the environment, or a profile written by
# `modal token new` / `modal token set` (~/.modal.toml, or $MODAL_CONFIG_PATH).
# Every NIMBUS_MODAL_* and NIMBUS_* variable set here configures the deployment (README, "Modal").
# API keys are on: create the modal.Secret once (default name nimbus-api-keys):
#   modal secret create nimbus-api-keys NIMBUS_SECURITY__AUTH__KEYS=<key>
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)"
# MODAL_CLI lets CI (or a wrapper) substitute the CLI; normally the modal package's own.
read -r -a MODAL <<<"${MODAL_CLI:-$PYTHON -m modal}"

have_credentials() {
  if [[ -n "${MODAL_TOKEN_ID:-}" && -n "${MODAL_TOKEN_SECRET:-}" ]]; then
    return 0
  fi
  local config="${MODAL_CONFIG_PATH:-$HOME/.modal.toml}"
  [[ -f "$config" ]] && grep -Eq '^[[:space:]]*token_id[[:space:]]*=' "$config"
}

if ! have_credentials; then
  cat >&2 <<'MSG'
deploy.sh: no Modal credentials found.
  Run `modal token new` (opens a browser) or `modal token set --token-id ... --token-secret ...`,
  or export MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, then run this script again.
MSG
  exit 2
fi

if ! "$PYTHON" -c "import modal_app" >/dev/null; then
  echo "deploy.sh: modal_app.py does not import; fix the error above (is the 'modal' extra installed?)" >&2
  exit 3
fi

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
echo "deploy.sh: ${MODAL[*]} deploy modal_app.py"
status=0
"${MODAL[@]}" deploy modal_app.py 2>&1 | tee "$LOG" || status=$?  # pipefail: modal's status
if [[ $status -ne 0 ]]; then
  echo "deploy.sh: modal deploy failed (exit $status)" >&2
  if grep -qi "secret" "$LOG"; then
    SECRET="${NIMBUS_MODAL_SECRET_NAME-nimbus-api-keys}"
    cat >&2 <<MSG
  API keys are on by default and come from the modal.Secret '$SECRET'. Create it once:
    modal secret create $SECRET NIMBUS_SECURITY__AUTH__KEYS=<a key of 16+ characters>
  (or deploy open on purpose: NIMBUS_MODAL_SECRET_NAME= NIMBUS_SECURITY__AUTH__MODE=off)
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
echo "  $PYTHON deploy/modal/smoke.py $URL     # health, generate, stream, openai client"
echo "  $PYTHON -m modal run modal_app.py      # a temporary copy of the app: Model().generate.remote(...)"
