#!/usr/bin/env bash
# Build the Lambda image, push it to ECR and deploy the stack, then smoke-test the URL.
#
#   deploy/aws/deploy.sh                                   # x86_64, buffered, AWS_IAM URL
#   INVOKE_MODE=RESPONSE_STREAM AUTH_TYPE=NONE deploy/aws/deploy.sh
#   ARCH=arm64 MEMORY=6144 deploy/aws/deploy.sh
#   MODEL=hf://OWNER/REPO:Q4_K_M deploy/aws/deploy.sh              # bake a Hub model into the image
#   MODEL_BUCKET=my-models MODEL_KEY=gemma.gguf deploy/aws/deploy.sh
#
# Needs: Docker (or Finch), the SAM CLI, AWS credentials for the target account/region.
# Every variable maps to a template parameter (deploy/aws/template.yaml); the same overrides go to
# `sam build` (which picks the image variant and CPU architecture from them) and `sam deploy`.
# DRY_RUN=1 prints the parameter overrides and stops.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

STACK_NAME="${STACK_NAME:-nimbus-llm}"
overrides=(
  "MemorySize=${MEMORY:-3008}"
  "Timeout=${TIMEOUT:-120}"
  "Architecture=${ARCH:-x86_64}"
  "AuthType=${AUTH_TYPE:-AWS_IAM}"
  "InvokeMode=${INVOKE_MODE:-BUFFERED}"
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
[[ -n "${API_KEYS_SECRET_ARN:-}" ]] && overrides+=("ApiKeysSecretArn=${API_KEYS_SECRET_ARN}")
if [[ -n "${DRY_RUN:-}" ]]; then
  printf '%s\n' "${overrides[@]}"
  exit 0
fi
region_args=()
if [[ -n "${AWS_REGION:-}" ]]; then
  region_args=(--region "$AWS_REGION")
fi

echo "==> sam validate --lint"
sam validate --lint --template-file template.yaml "${region_args[@]}"

echo "==> sam build (Docker image: llama.cpp compiled for ${ARCH:-x86_64}; first build ~10 min)"
sam build --template-file template.yaml --parameter-overrides "${overrides[@]}" "${region_args[@]}"

echo "==> sam deploy (pushes the image to ECR, creates or updates stack ${STACK_NAME})"
sam deploy --stack-name "$STACK_NAME" --parameter-overrides "${overrides[@]}" "${region_args[@]}"

url="$(aws cloudformation describe-stacks --stack-name "$STACK_NAME" "${region_args[@]}" \
  --query "Stacks[0].Outputs[?OutputKey=='FunctionUrl'].OutputValue" --output text)"
echo "==> function URL: $url"

smoke_args=("$url")
if [[ "${AUTH_TYPE:-AWS_IAM}" == "AWS_IAM" ]]; then
  smoke_args+=(--iam)
fi
if [[ "${INVOKE_MODE:-BUFFERED}" == "RESPONSE_STREAM" ]]; then
  smoke_args+=(--stream)
fi
if [[ -n "${NIMBUS_API_KEY:-}" ]]; then
  smoke_args+=(--api-key "$NIMBUS_API_KEY")
fi
echo "==> smoke test"
python3 "$here/smoke.py" "${smoke_args[@]}"
