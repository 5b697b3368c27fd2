"""deploy/aws/deploy.sh without an AWS account: --help and the dry run from a fresh clone (no
.venv, no AWS CLI, no SAM), the refusals that save a ten-minute build, and a whole deploy and
teardown against stand-ins for `aws`, `sam` and `docker` that record what they are asked to do
and answer like the real CLIs (the real template is checked by test_template.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "deploy" / "aws" / "deploy.sh"
URL = "https://abcdefghijklmnop.lambda-url.eu-west-3.on.aws/"
FUNCTION_ARN = "arn:aws:lambda:eu-west-3:123456789012:function:nimbus-llm-nimbus"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:nimbus-llm/api-keys-AbCdEf"

# One recorder for every stand-in: it logs argv (and, for `create-secret`, the file it was
# given) to $RECORD, keeps created secrets in $STATE, and answers as the real CLI would.
FAKE = """#!{python}
import json, os, sys
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
if tool == "python" and not (args and args[0].endswith("smoke.py")):
    os.execv({python!r}, [{python!r}, *args])  # any other use of the interpreter is real
entry = {{"tool": tool, "argv": args}}
state_path = os.environ["STATE"]
state = json.load(open(state_path)) if os.path.exists(state_path) else {{}}
out, status = "", 0
if tool == "aws":
    cmd = " ".join(args[:2])
    if cmd == "configure get":
        out = os.environ.get("FAKE_CONFIG_REGION", "")
        status = 0 if out else 1
    elif cmd == "sts get-caller-identity":
        out = "123456789012"
    elif cmd == "secretsmanager describe-secret":
        out, status = (state["arn"], 0) if "secret" in state else ("", 254)
    elif cmd == "secretsmanager create-secret":
        source = args[args.index("--secret-string") + 1]
        entry["secret_file"] = open(source.removeprefix("file://")).read()
        entry["secret_file_mode"] = oct(os.stat(source.removeprefix("file://")).st_mode & 0o777)
        state.update(secret=entry["secret_file"], arn={secret_arn!r})
        out = state["arn"]
    elif cmd == "secretsmanager get-secret-value":
        out = state.get("secret", "")
    elif cmd == "cloudformation describe-stacks":
        query = args[args.index("--query") + 1]
        out = {url!r} if "FunctionUrl" in query else {function_arn!r}
    elif cmd == "s3api head-object":
        status = 254 if os.environ.get("FAKE_S3_MISSING") else 0
elif tool == "python":
    entry["NIMBUS_API_KEY"] = os.environ.get("NIMBUS_API_KEY")
    entry["AWS_REGION"] = os.environ.get("AWS_REGION")
with open(os.environ["RECORD"], "a") as f:
    f.write(json.dumps(entry) + "\\n")
with open(state_path + ".tmp", "w") as f:
    json.dump(state, f)
os.replace(state_path + ".tmp", state_path)
if out:
    print(out)
sys.exit(status)
"""


def install_fake(directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(
        FAKE.format(
            python=sys.executable, url=URL, function_arn=FUNCTION_ARN, secret_arn=SECRET_ARN
        )
    )
    path.chmod(0o755)


class Clone:
    """A machine with this checkout: which tools exist, and what the script did with them."""

    def __init__(self, tmp_path: Path, *, aws: bool = True, venv: bool = True) -> None:
        self.tmp = tmp_path
        self.bin = tmp_path / "bin"  # tools on PATH
        self.venv = tmp_path / "venv"  # stands in for the checkout's .venv
        self.record = tmp_path / "calls.jsonl"
        self.bin.mkdir()
        install_fake(self.bin, "docker")
        if aws:
            install_fake(self.bin, "aws")
        if venv:
            install_fake(self.venv / "bin", "sam")
            install_fake(self.venv / "bin", "python")

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "NIMBUS_", "MODEL_", "API_KEYS_", "DRY_RUN", "VIRTUAL_"))
            and k not in {"PATH", "PYTHON", "STACK_NAME", "AUTH_TYPE", "INVOKE_MODE", "ARCH"}
        }
        full = {
            **base,
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.tmp),
            "VENV": str(self.venv),
            "RECORD": str(self.record),
            "STATE": str(self.tmp / "state.json"),
            **env,
        }
        return subprocess.run(
            ["bash", str(SCRIPT), *args],
            cwd=self.tmp,
            env=full,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        calls = [json.loads(line) for line in self.record.read_text().splitlines()]
        return [c for c in calls if tool is None or c["tool"] == tool]


def test_help_and_dry_run_work_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = Clone(tmp_path, aws=False, venv=False)  # nothing installed, no AWS configuration
    help_ = clone.run("--help")
    assert help_.returncode == 0, help_.stderr
    for word in ("--create-api-key", "--delete", "--dry-run", "AWS_REGION", "aws s3 cp"):
        assert word in help_.stdout
    for args, env in ((("--dry-run",), {}), ((), {"DRY_RUN": "1"})):
        dry = clone.run(*args, **env)
        assert dry.returncode == 0, dry.stderr
        assert "AuthType=AWS_IAM" in dry.stdout.split()
        assert "would run: sam validate --lint, sam build, sam deploy" in dry.stderr
    teardown = clone.run("--delete", "--dry-run")
    assert teardown.returncode == 0 and "sam delete --stack-name nimbus-llm" in teardown.stderr
    assert clone.calls() == []


def test_public_url_without_keys_is_refused_before_anything_runs(tmp_path: Path) -> None:
    clone = Clone(tmp_path)
    for args in ((), ("--dry-run",)):
        proc = clone.run(*args, AUTH_TYPE="NONE", AWS_REGION="eu-west-3")
        assert proc.returncode == 2
        assert "--create-api-key" in proc.stderr and "API_KEYS_SECRET_ARN" in proc.stderr
    assert clone.calls() == []
    # With a key source the same configuration is fine.
    proc = clone.run("--dry-run", AUTH_TYPE="NONE", API_KEYS_SECRET_ARN=SECRET_ARN)
    assert proc.returncode == 0 and f"ApiKeysSecretArn={SECRET_ARN}" in proc.stdout.split()


def test_bad_values_and_arguments_are_refused(tmp_path: Path) -> None:
    clone = Clone(tmp_path)
    proc = clone.run("--dry-run", INVOKE_MODE="STREAM")
    assert proc.returncode == 2 and "INVOKE_MODE=STREAM" in proc.stderr
    assert "BUFFERED RESPONSE_STREAM" in proc.stderr
    proc = clone.run("--bogus")
    assert proc.returncode == 2 and "--help" in proc.stderr


def test_missing_aws_cli_says_how_to_install_it(tmp_path: Path) -> None:
    clone = Clone(tmp_path, aws=False)
    proc = clone.run(AWS_REGION="eu-west-3")
    assert proc.returncode == 3
    assert "AWS CLI" in proc.stderr and "getting-started-install" in proc.stderr
    assert clone.calls("sam") == []


def test_missing_region_is_refused(tmp_path: Path) -> None:
    proc = Clone(tmp_path).run()  # no AWS_REGION, nothing in `aws configure`
    assert proc.returncode == 2 and "AWS_REGION" in proc.stderr


def test_deploy_uses_the_projects_sam_one_region_and_the_projects_python(tmp_path: Path) -> None:
    clone = Clone(tmp_path)
    proc = clone.run(FAKE_CONFIG_REGION="eu-west-3")  # the region from `aws configure`
    assert proc.returncode == 0, proc.stderr
    sam = clone.calls("sam")
    assert [c["argv"][0] for c in sam] == ["validate", "build", "deploy"]
    assert all(c["argv"][c["argv"].index("--region") + 1] == "eu-west-3" for c in sam)
    deploy = sam[2]["argv"]
    assert deploy[deploy.index("--stack-name") + 1] == "nimbus-llm"
    assert "AuthType=AWS_IAM" in deploy and not any("ApiKeysSecretArn" in a for a in deploy)
    stacks = [c for c in clone.calls("aws") if c["argv"][0] == "cloudformation"]
    assert stacks and all("eu-west-3" in c["argv"] for c in stacks)
    (smoke,) = [c for c in clone.calls("python") if c["argv"][0].endswith("smoke.py")]
    assert smoke["argv"][1:] == [URL, "--region", "eu-west-3", "--iam"]
    assert smoke["AWS_REGION"] == "eu-west-3"
    assert "lambda:InvokeFunctionUrl and lambda:InvokeFunction" in proc.stdout
    assert FUNCTION_ARN in proc.stdout


def test_create_api_key_makes_the_secret_once_and_says_how_to_read_it(tmp_path: Path) -> None:
    clone = Clone(tmp_path)
    env = {"AUTH_TYPE": "NONE", "AWS_REGION": "eu-west-3", "INVOKE_MODE": "RESPONSE_STREAM"}
    proc = clone.run("--create-api-key", **env)
    assert proc.returncode == 0, proc.stderr
    (create,) = [
        c for c in clone.calls("aws") if c["argv"][:2] == ["secretsmanager", "create-secret"]
    ]
    assert create["argv"][create["argv"].index("--name") + 1] == "nimbus-llm/api-keys"
    assert create["secret_file_mode"] == "0o600"  # the key sat in a private file
    (key,) = json.loads(create["secret_file"])
    assert len(key) >= 32
    deploy = clone.calls("sam")[-1]["argv"]
    assert f"ApiKeysSecretArn={SECRET_ARN}" in deploy
    assert (
        f"aws secretsmanager get-secret-value --secret-id {SECRET_ARN} --region eu-west-3 "
        "--query SecretString --output text" in proc.stdout
    )
    (smoke,) = [c for c in clone.calls("python") if c["argv"][0].endswith("smoke.py")]
    assert smoke["NIMBUS_API_KEY"] == key  # read back from the secret, passed in the environment
    assert "--stream" in smoke["argv"] and "--iam" not in smoke["argv"]
    # The key itself is never on a command line, nor printed.
    assert not any(key in arg for c in clone.calls() for arg in c["argv"])
    assert key not in proc.stdout + proc.stderr

    again = clone.run("--create-api-key", "--no-smoke", **env)
    assert again.returncode == 0, again.stderr
    assert "using the existing secret nimbus-llm/api-keys" in again.stdout
    creates = [
        c for c in clone.calls("aws") if c["argv"][:2] == ["secretsmanager", "create-secret"]
    ]
    assert len(creates) == 1


def test_a_missing_s3_model_is_reported_with_the_upload_command(tmp_path: Path) -> None:
    clone = Clone(tmp_path)
    env = {"AWS_REGION": "eu-west-3", "MODEL_BUCKET": "models", "MODEL_KEY": "m/x.gguf"}
    proc = clone.run(FAKE_S3_MISSING="1", **env)
    assert proc.returncode == 2
    assert "aws s3 cp model.gguf s3://models/m/x.gguf" in proc.stderr
    assert clone.calls("sam") == []
    proc = clone.run("--dry-run", MODEL_BUCKET="models")
    assert proc.returncode == 2 and "MODEL_KEY" in proc.stderr


def test_model_file_is_uploaded_first_and_its_sha256_checked(tmp_path: Path) -> None:
    clone = Clone(tmp_path)
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(64))
    env = {"AWS_REGION": "eu-west-3", "MODEL_BUCKET": "models", "MODEL_KEY": "tiny.gguf"}
    proc = clone.run("--no-smoke", MODEL_FILE=str(model), **env)
    assert proc.returncode == 0, proc.stderr
    (upload,) = [c for c in clone.calls("aws") if c["argv"][:2] == ["s3", "cp"]]
    assert upload["argv"][2:] == [str(model), "s3://models/tiny.gguf"]
    deploy = clone.calls("sam")[-1]["argv"]
    assert f"ModelSha256={hashlib.sha256(model.read_bytes()).hexdigest()}" in deploy
    assert "ModelBucket=models" in deploy and "ModelKey=tiny.gguf" in deploy


@pytest.mark.parametrize("secret_exists", [False, True])
def test_delete_tears_the_stack_down_in_the_same_region(
    tmp_path: Path, secret_exists: bool
) -> None:
    clone = Clone(tmp_path)
    if secret_exists:
        (tmp_path / "state.json").write_text(json.dumps({"secret": "[]", "arn": SECRET_ARN}))
    proc = clone.run("--delete", AWS_DEFAULT_REGION="ap-southeast-2", STACK_NAME="nimbus-dev")
    assert proc.returncode == 0, proc.stderr
    (delete,) = clone.calls("sam")
    assert delete["argv"] == [
        "delete",
        "--stack-name",
        "nimbus-dev",
        "--region",
        "ap-southeast-2",
        "--no-prompts",
    ]
    hint = "aws secretsmanager delete-secret --secret-id nimbus-dev/api-keys"
    assert (hint in proc.stdout) is secret_exists
