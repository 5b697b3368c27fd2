#!/usr/bin/env bash
# Build the Lambda image, push it to ECR, deploy the stack and smoke-test the URL; or tear it down.
# Run `deploy/aws/deploy.sh --help` for the options; docs/aws-lambda.md walks through a deploy.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/aws/deploy.sh [--create-api-key] [--no-smoke] [--dry-run]
       deploy/aws/deploy.sh --delete

Builds the Lambda container image (sam build), pushes it to a SAM-managed ECR repository and
deploys the stack in deploy/aws/template.yaml (sam deploy), then runs deploy/aws/smoke.py
against the function URL with the project's Python.

Options:
  --create-api-key  create the Secrets Manager secret $API_KEYS_SECRET_NAME holding one
                    generated API key (or reuse it when it exists) and require that key;
                    prints how to read the key back
  --no-smoke        skip the smoke test after the deploy
  --dry-run         print the template parameters (one per line) and stop; needs no AWS
                    account, SAM CLI or Docker (DRY_RUN=1 does the same)
  --delete          tear down: sam delete (the stack, its function URL, DynamoDB table, log
                    group and the image repository SAM created)
  -h, --help        this text

Environment (template parameter in brackets):
  STACK_NAME           stack name (nimbus-llm)
  AWS_REGION           region for every call; else AWS_DEFAULT_REGION; else `aws configure
                       get region`
  AUTH_TYPE            AWS_IAM (default: callers sign with SigV4) or NONE (public URL; needs
                       API keys: --create-api-key or API_KEYS_SECRET_ARN)     [AuthType]
  INVOKE_MODE          BUFFERED (default) or RESPONSE_STREAM (tokens stream)  [InvokeMode]
  ARCH                 x86_64 (default) or arm64                              [Architecture]
  MEMORY               MB, 1024-10240 (3008); CPU grows with it               [MemorySize]
  TIMEOUT              seconds per invocation, 10-900 (120)                   [Timeout]
  API_KEYS_SECRET_ARN  an existing secret with the API keys                   [ApiKeysSecretArn]
  API_KEYS_SECRET_NAME name of the secret --create-api-key makes ($STACK_NAME/api-keys)
  MODEL                the model baked into the image: default (the bundled SmolLM2-135M),
                       hf://OWNER/REPO:QUANT, hf://OWNER/REPO/FILE.gguf[@REV] or
                       deploy/aws/models/NAME.gguf from the build context                [ModelSpec]
  MODEL_BUCKET, MODEL_KEY  load s3://MODEL_BUCKET/MODEL_KEY instead of the baked model
                       [ModelBucket, ModelKey]; upload it first with
                       `aws s3 cp model.gguf s3://MODEL_BUCKET/MODEL_KEY`
  MODEL_FILE           a local GGUF: uploaded with `aws s3 cp` to MODEL_BUCKET/MODEL_KEY
                       before the deploy, its sha256 checked at every cold start
  MODEL_SHA256         expected sha256 of the S3 model                        [ModelSha256]
  EPHEMERAL_MB         /tmp size, 512-10240 (2048); an S3 model must fit  [EphemeralStorageMB]
  DEADLINE_MARGIN_MS   generation ends this long before the timeout (2000) [DeadlineMarginMs]
  LOG_RETENTION_DAYS   (14)                                               [LogRetentionDays]
  LOG_PROMPTS          true/false (false)                                 [LogPrompts]
  TRACING              true/false (false): X-Ray                          [EnableTracing]
  NIMBUS_API_KEY       key the smoke test sends (read from the secret when unset)
  PYTHON               interpreter for the smoke test (.venv/bin/python)

Needs for a deploy: the AWS CLI with credentials, the SAM CLI (`make install` puts one in
.venv/bin, used when none is on PATH) and Docker or Finch for `sam build`.
USAGE
}

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

dry_run="${DRY_RUN:-}"
create_key=""
delete=""
smoke=1
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --dry-run) dry_run=1 ;;
    --create-api-key) create_key=1 ;;
    --delete) delete=1 ;;
    --no-smoke) smoke="" ;;
    *) echo "deploy.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

die() { # die STATUS LINE... (the first line names the script, the rest continue it)
  local status="$1"
  printf 'deploy.sh: %s\n' "$2" >&2
  shift 2
  [[ $# -eq 0 ]] || printf '%s\n' "$@" >&2
  exit "$status"
}

one_of() { # one_of NAME VALUE ALLOWED...
  local name="$1" value="$2"
  shift 2
  for allowed in "$@"; do [[ "$value" == "$allowed" ]] && return 0; done
  die 2 "$name=$value: must be one of: $*"
}

PYTHON="${PYTHON:-$VENV/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3 || true)"

STACK_NAME="${STACK_NAME:-nimbus-llm}"
AUTH_TYPE="${AUTH_TYPE:-AWS_IAM}"
INVOKE_MODE="${INVOKE_MODE:-BUFFERED}"
ARCH="${ARCH:-x86_64}"
SECRET_NAME="${API_KEYS_SECRET_NAME:-$STACK_NAME/api-keys}"
one_of AUTH_TYPE "$AUTH_TYPE" AWS_IAM NONE
one_of INVOKE_MODE "$INVOKE_MODE" BUFFERED RESPONSE_STREAM
one_of ARCH "$ARCH" x86_64 arm64

# The region every call uses, so the stack, the secret, the model check and the smoke test agree.
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"

# --- tools (a dry run needs none of them) -------------------------------------------------
find_tool() { # the tool on PATH, else the project's own copy in .venv/bin
  command -v "$1" 2>/dev/null || { [[ -x "$VENV/bin/$1" ]] && echo "$VENV/bin/$1"; } || true
}
SAM="$(find_tool sam)"
AWS="$(find_tool aws)"

need_tools() {
  [[ -n "$AWS" ]] || die 3 "the AWS CLI (aws) is not installed." \
    "  Install AWS CLI v2: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html" \
    "  then give it credentials: aws configure (or aws sso login)."
  [[ -n "$SAM" ]] || die 3 "the SAM CLI (sam) is not on PATH nor in $VENV/bin: run \`make install\`."
  if [[ -z "$REGION" ]]; then
    REGION="$("$AWS" configure get region 2>/dev/null || true)"
  fi
  [[ -n "$REGION" ]] || die 2 "no AWS region: export AWS_REGION=<region> or run \`aws configure set region <region>\`."
  export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"
  ACCOUNT="$("$AWS" sts get-caller-identity --query Account --output text 2>/dev/null)" ||
    die 3 "no usable AWS credentials for region $REGION: run \`aws configure\` or \`aws sso login\`."
}

# --- teardown -----------------------------------------------------------------------------
if [[ -n "$delete" ]]; then
  if [[ -n "$dry_run" ]]; then
    echo "deploy.sh: dry run: would run: sam delete --stack-name $STACK_NAME --region ${REGION:-<region>} --no-prompts" >&2
    exit 0
  fi
  need_tools
  echo "==> sam delete --stack-name $STACK_NAME --region $REGION (the stack and its image repository)"
  "$SAM" delete --stack-name "$STACK_NAME" --region "$REGION" --no-prompts
  if "$AWS" secretsmanager describe-secret --secret-id "$SECRET_NAME" >/dev/null 2>&1; then
    echo "==> the API-key secret $SECRET_NAME is kept (not part of the stack). To delete it too:"
    echo "    aws secretsmanager delete-secret --secret-id $SECRET_NAME --region $REGION"
  fi
  exit 0
fi

# --- what is deployed -----------------------------------------------------------------------
if [[ -n "${MODEL_BUCKET:-}" || -n "${MODEL_KEY:-}" || -n "${MODEL_FILE:-}" ]]; then
  [[ -n "${MODEL_BUCKET:-}" && -n "${MODEL_KEY:-}" ]] ||
    die 2 "an S3 model needs both MODEL_BUCKET and MODEL_KEY (s3://MODEL_BUCKET/MODEL_KEY)."
fi
if [[ -n "${MODEL_FILE:-}" ]]; then
  [[ -f "$MODEL_FILE" ]] || die 2 "MODEL_FILE=$MODEL_FILE: no such file."
  # The function checks this digest after each download, so a partial or swapped object fails.
  MODEL_SHA256="${MODEL_SHA256:-$(sha256sum "$MODEL_FILE" | cut -d' ' -f1)}"
fi

# A public URL without keys would refuse to start (the adapter requires keys when anyone can
# call it): say so now instead of after a ten-minute build.
if [[ "$AUTH_TYPE" == "NONE" && -z "${API_KEYS_SECRET_ARN:-}" && -z "$create_key" ]]; then
  die 2 "a public function URL (AUTH_TYPE=NONE) needs API keys; without them the function refuses to start." \
    "  Add --create-api-key (creates the secret $SECRET_NAME with a generated key)," \
    "  or set API_KEYS_SECRET_ARN to a Secrets Manager secret holding your keys."
fi

overrides=(
  "MemorySize=${MEMORY:-3008}"
  "Timeout=${TIMEOUT:-120}"
  "Architecture=$ARCH"
  "AuthType=$AUTH_TYPE"
  "InvokeMode=$INVOKE_MODE"
  "EphemeralStorageMB=${EPHEMERAL_MB:-2048}"
  "DeadlineMarginMs=${DEADLINE_MARGIN_MS:-2000}"
  "LogRetentionDays=${LOG_RETENTION_DAYS:-14}"
  "LogPrompts=${LOG_PROMPTS:-false}"
  "EnableTracing=${TRACING:-false}"
)
# Optional parameters: SAM rejects "Key=" with an empty value, so only set ones are passed.
[[ -n "${MODEL:-}" ]] && overrides+=("ModelSpec=${MODEL}")
[[ -n "${MODEL_BUCKET:-}" ]] && overrides+=("ModelBucket=${MODEL_BUCKET}")
[[ -n "${MODEL_KEY:-}" ]] && overrides+=("ModelKey=${MODEL_KEY}")
[[ -n "${MODEL_SHA256:-}" ]] && overrides+=("ModelSha256=${MODEL_SHA256}")

if [[ -n "$dry_run" ]]; then
  if [[ -n "${API_KEYS_SECRET_ARN:-}" ]]; then
    overrides+=("ApiKeysSecretArn=${API_KEYS_SECRET_ARN}")
  elif [[ -n "$create_key" ]]; then
    # The real ARN ends in a random suffix Secrets Manager picks when it creates the secret.
    overrides+=("ApiKeysSecretArn=arn:aws:secretsmanager:${REGION:-REGION}:ACCOUNT:secret:${SECRET_NAME}")
  fi
  printf '%s\n' "${overrides[@]}"
  {
    echo "deploy.sh: dry run: stack $STACK_NAME, region ${REGION:-(from aws configure)}, sam ${SAM:-(not found: make install)}"
    [[ -n "${MODEL_FILE:-}" ]] && echo "deploy.sh: would upload: aws s3 cp $MODEL_FILE s3://$MODEL_BUCKET/$MODEL_KEY"
    [[ -n "$create_key" && -z "${API_KEYS_SECRET_ARN:-}" ]] && echo "deploy.sh: would create (or reuse) the secret $SECRET_NAME"
    echo "deploy.sh: would run: sam validate --lint, sam build, sam deploy --stack-name $STACK_NAME"
  } >&2
  exit 0
fi

need_tools
command -v docker >/dev/null 2>&1 || command -v finch >/dev/null 2>&1 ||
  die 3 "sam build needs Docker (or Finch) to build the container image; install and start it."
echo "==> account $ACCOUNT, region $REGION, stack $STACK_NAME, sam $SAM"

# --- the model in S3 ----------------------------------------------------------------------
if [[ -n "${MODEL_FILE:-}" ]]; then
  echo "==> aws s3 cp $MODEL_FILE s3://$MODEL_BUCKET/$MODEL_KEY"
  "$AWS" s3 cp "$MODEL_FILE" "s3://$MODEL_BUCKET/$MODEL_KEY"
elif [[ -n "${MODEL_BUCKET:-}" ]]; then
  "$AWS" s3api head-object --bucket "$MODEL_BUCKET" --key "$MODEL_KEY" >/dev/null 2>&1 ||
    die 2 "s3://$MODEL_BUCKET/$MODEL_KEY does not exist or is not readable; upload the model first:" \
      "  aws s3 cp model.gguf s3://$MODEL_BUCKET/$MODEL_KEY   (or set MODEL_FILE=model.gguf)"
fi

# --- the API-key secret -------------------------------------------------------------------
secret_arn="${API_KEYS_SECRET_ARN:-}"
if [[ -z "$secret_arn" && -n "$create_key" ]]; then
  if secret_arn="$("$AWS" secretsmanager describe-secret --secret-id "$SECRET_NAME" \
    --query ARN --output text 2>/dev/null)"; then
    echo "==> using the existing secret $SECRET_NAME"
  else
    [[ -n "$PYTHON" ]] || die 3 "python3 is needed to generate the API key."
    # The key goes to the CLI through a private file, never on a command line (ps would show it).
    workdir="$(mktemp -d)"
    trap 'rm -rf "$workdir"' EXIT
    (umask 077 && "$PYTHON" -c 'import json, secrets; print(json.dumps([secrets.token_urlsafe(32)]))' \
      >"$workdir/keys.json")
    secret_arn="$("$AWS" secretsmanager create-secret --name "$SECRET_NAME" \
      --description "API keys accepted by the nimbus-llm stack $STACK_NAME" \
      --secret-string "file://$workdir/keys.json" --query ARN --output text)"
    rm -f "$workdir/keys.json"
    echo "==> created the secret $SECRET_NAME holding one generated API key"
  fi
fi
[[ -n "$secret_arn" ]] && overrides+=("ApiKeysSecretArn=$secret_arn")

# --- build and deploy ---------------------------------------------------------------------
cd "$HERE"
echo "==> sam validate --lint"
"$SAM" validate --lint --template-file template.yaml --region "$REGION"

echo "==> sam build (Docker image: llama.cpp compiled for $ARCH; the first build takes a while)"
"$SAM" build --template-file template.yaml --parameter-overrides "${overrides[@]}" --region "$REGION"

echo "==> sam deploy (pushes the image to ECR, creates or updates stack $STACK_NAME)"
"$SAM" deploy --stack-name "$STACK_NAME" --parameter-overrides "${overrides[@]}" --region "$REGION"

output() {
  "$AWS" cloudformation describe-stacks --stack-name "$STACK_NAME" --region "$REGION" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
url="$(output FunctionUrl)"
echo "==> function URL: $url"
if [[ "$AUTH_TYPE" == "AWS_IAM" ]]; then
  echo "    callers sign with SigV4 and need lambda:InvokeFunctionUrl and lambda:InvokeFunction on"
  echo "    $(output FunctionArn)"
fi
if [[ -n "$secret_arn" ]]; then
  echo "==> API key: in Secrets Manager; read it with"
  echo "    aws secretsmanager get-secret-value --secret-id $secret_arn --region $REGION --query SecretString --output text"
fi

# --- smoke test ---------------------------------------------------------------------------
if [[ -z "$smoke" ]]; then
  exit 0
fi
[[ -n "$PYTHON" ]] || die 3 "no Python for the smoke test: run \`make install\`."
smoke_args=("$url" --region "$REGION")
[[ "$AUTH_TYPE" == "AWS_IAM" ]] && smoke_args+=(--iam)
[[ "$INVOKE_MODE" == "RESPONSE_STREAM" ]] && smoke_args+=(--stream)
if [[ -z "${NIMBUS_API_KEY:-}" && -n "$secret_arn" ]]; then
  # The first key of the secret (a JSON list, {"keys": [...]}, or one per line), kept in the
  # environment rather than on smoke.py's command line.
  NIMBUS_API_KEY="$("$AWS" secretsmanager get-secret-value --secret-id "$secret_arn" \
    --query SecretString --output text | "$PYTHON" -c '
import json, sys
text = sys.stdin.read().strip()
try:
    data = json.loads(text)
except ValueError:
    data = text.replace(",", "\n").split()
if isinstance(data, dict):
    data = data.get("keys", [])
print(next((k.strip() for k in data if k.strip() and not k.startswith("#")), ""))')"
  export NIMBUS_API_KEY
fi
echo "==> smoke test: $PYTHON deploy/aws/smoke.py ${smoke_args[*]}"
"$PYTHON" "$HERE/smoke.py" "${smoke_args[@]}"
