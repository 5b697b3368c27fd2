"""The SAM template, validated for real: aws-sam-translator expands it, cfn-lint lints the
CloudFormation it produces, `sam validate --lint` runs, and the SAM CLI's own template provider
shows what `sam build` would build for each parameter set."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
AWS_DIR = ROOT / "deploy" / "aws"
TEMPLATE = AWS_DIR / "template.yaml"
IMAGE_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/nimbus:placeholder"
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("SAM_CLI_TELEMETRY", "0")


def load_sam() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return dict(yaml_parse(TEMPLATE.read_text()))


def translate(sam: dict[str, Any]) -> dict[str, Any]:
    from samtranslator.translator.transform import transform

    sam = copy.deepcopy(sam)
    # sam build fills ImageUri after building the image; give the translator a placeholder.
    sam["Resources"]["NimbusFunction"]["Properties"]["ImageUri"] = IMAGE_URI

    class NoManagedPolicies:  # the translator would ask IAM for managed policy ARNs
        def load(self) -> dict[str, str]:
            return {}

    return dict(transform(sam, {}, NoManagedPolicies()))


def cfn_lint(template: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "cfn.json"
    path.write_text(json.dumps(template))
    return subprocess.run(
        [str(BIN / "cfn-lint"), "--regions", "us-east-1", "us-west-2", "--", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return translate(load_sam())


def test_translated_template_is_lint_clean(cfn: dict[str, Any], tmp_path: Path) -> None:
    proc = cfn_lint(cfn, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lint_is_real_a_broken_template_fails(tmp_path: Path) -> None:
    sam = load_sam()
    sam["Resources"]["RateLimitTable"]["Properties"]["BillingMode"] = "FREE"
    sam["Resources"]["FunctionLogGroup"]["Properties"]["RetentionInDays"] = 13
    proc = cfn_lint(translate(sam), tmp_path)
    assert proc.returncode != 0
    assert "FREE" in proc.stdout and "13" in proc.stdout


def test_sam_validate_lint() -> None:
    proc = subprocess.run(
        [str(BIN / "sam"), "validate", "--lint", "--template-file", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=AWS_DIR,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is a valid SAM Template" in proc.stdout + proc.stderr


def test_function_url_image_function_and_parameters(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    fn = res["NimbusFunction"]["Properties"]
    assert fn["PackageType"] == "Image" and fn["Code"] == {"ImageUri": IMAGE_URI}
    assert fn["MemorySize"] == {"Ref": "MemorySize"} and fn["Timeout"] == {"Ref": "Timeout"}
    assert fn["Architectures"] == [{"Ref": "Architecture"}]
    url = res["NimbusFunctionUrl"]["Properties"]
    assert url["AuthType"] == {"Ref": "AuthType"} and url["InvokeMode"] == {"Ref": "InvokeMode"}
    params = cfn["Parameters"]
    assert params["AuthType"]["AllowedValues"] == ["AWS_IAM", "NONE"]
    assert params["InvokeMode"]["AllowedValues"] == ["BUFFERED", "RESPONSE_STREAM"]
    assert params["Architecture"]["AllowedValues"] == ["x86_64", "arm64"]
    assert params["AuthType"]["Default"] == "AWS_IAM"  # private unless asked otherwise
    env = fn["Environment"]["Variables"]
    assert env["NIMBUS_SECURITY__RATE_LIMIT__DYNAMODB_TABLE"] == {"Ref": "RateLimitTable"}
    assert env["AWS_LWA_INVOKE_MODE"] == {"Fn::If": ["IsStreaming", "response_stream", "buffered"]}
    assert env["NIMBUS_SECURITY__AUTH__MODE"] == {
        "Fn::If": ["HasApiKeysSecret", "on", {"Fn::If": ["IsPublic", "on", "off"]}]
    }
    assert env["NIMBUS_SECURITY__RATE_LIMIT__BACKEND"] == "dynamodb"
    assert cfn["Outputs"]["FunctionUrl"]["Value"] == {
        "Fn::GetAtt": ["NimbusFunctionUrl", "FunctionUrl"]
    }
    # What an AWS_IAM caller's policy must name (lambda:InvokeFunctionUrl and lambda:InvokeFunction).
    assert cfn["Outputs"]["FunctionArn"]["Value"] == {"Fn::GetAtt": ["NimbusFunction", "Arn"]}


def test_public_url_permissions_only_when_auth_is_none(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    public = {k: v for k, v in res.items() if v["Type"] == "AWS::Lambda::Permission"}
    assert set(public) == {"PublicUrlPermission", "PublicInvokePermission"}
    assert all(v["Condition"] == "IsPublic" for v in public.values())
    assert cfn["Conditions"]["IsPublic"] == {"Fn::Equals": [{"Ref": "AuthType"}, "NONE"]}
    assert public["PublicUrlPermission"]["Properties"]["FunctionUrlAuthType"] == "NONE"


def test_rate_limit_table_logs_and_least_privilege(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    table = res["RateLimitTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    logs = res["FunctionLogGroup"]["Properties"]
    assert logs["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert res["NimbusFunction"]["Properties"]["LoggingConfig"]["LogGroup"] == {
        "Ref": "FunctionLogGroup"
    }
    role = res["NimbusFunctionRole"]["Properties"]
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    flat = []
    for st in statements:
        if "Fn::If" in st:
            flat.append(st["Fn::If"][1])
            assert st["Fn::If"][2] == {"Ref": "AWS::NoValue"}
        else:
            flat.append(st)
    actions = {s["Sid"]: s["Action"] for s in flat}
    assert actions == {
        "RateLimitCounters": "dynamodb:UpdateItem",
        "ReadModel": "s3:GetObject",
        "ReadApiKeys": "secretsmanager:GetSecretValue",
    }
    for s in flat:
        assert "*" not in json.dumps(s["Resource"])
    model = next(s for s in flat if s["Sid"] == "ReadModel")
    assert model["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelKey}"}


def deploy_overrides(**env: str) -> list[str]:
    proc = subprocess.run(
        ["bash", str(AWS_DIR / "deploy.sh")],
        env={**os.environ, "DRY_RUN": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout.split()


def built_function(overrides: list[str]) -> Any:
    """What `sam build` sees for these --parameter-overrides (the SAM CLI's own provider)."""
    from samcli.cli.types import CfnParameterOverridesType
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    parsed = CfnParameterOverridesType().convert(tuple(overrides), None, None)
    stacks, _ = SamLocalStackProvider.get_stacks(str(TEMPLATE), parameter_overrides=parsed)
    (function,) = SamFunctionProvider(stacks).get_all()
    return function


@pytest.mark.parametrize(
    ("env", "variant", "arch"),
    [
        ({}, "buffered", "x86_64"),
        ({"INVOKE_MODE": "RESPONSE_STREAM"}, "streaming", "x86_64"),
        (
            {
                "ARCH": "arm64",
                "AUTH_TYPE": "NONE",
                "API_KEYS_SECRET_ARN": "arn:aws:secretsmanager:"
                "us-east-1:123456789012:secret:nimbus/api-keys-AbCdEf",
            },
            "buffered",
            "arm64",
        ),
    ],
)
def test_sam_build_picks_the_image_variant_and_architecture(
    env: dict[str, str], variant: str, arch: str
) -> None:
    function = built_function(deploy_overrides(**env))
    assert function.packagetype == "Image"
    assert function.architectures == [arch]
    assert function.metadata["Dockerfile"] == "Dockerfile.lambda"
    assert (Path(function.metadata["DockerContext"]).resolve() / "Dockerfile.lambda").is_file()
    assert function.metadata["DockerBuildArgs"] == {"VARIANT": variant, "MODEL": "default"}


@pytest.mark.parametrize(
    "model",
    [
        "hf://bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M",
        "hf://o/r/sub/m-Q8_0.gguf@v1.0",
        "models/x.gguf",
    ],
)
def test_the_model_choice_reaches_the_image_build(model: str) -> None:
    overrides = deploy_overrides(MODEL=model)
    assert f"ModelSpec={model}" in overrides
    function = built_function(overrides)
    assert function.metadata["DockerBuildArgs"]["MODEL"] == model
    # The function serves what the image baked: the directory Dockerfile.lambda copies it to.
    assert function.environment["Variables"]["NIMBUS_MODEL"] == "/var/task/model"
    dockerfile = (ROOT / "Dockerfile.lambda").read_text()
    assert "COPY --from=build /model ${LAMBDA_TASK_ROOT}/model" in dockerfile  # /var/task


def test_model_spec_parameter_and_image_model(cfn: dict[str, Any]) -> None:
    param = cfn["Parameters"]["ModelSpec"]
    assert param["Default"] == "default" and param["Type"] == "String"
    env = cfn["Resources"]["NimbusFunction"]["Properties"]["Environment"]["Variables"]
    assert env["NIMBUS_MODEL"] == {
        "Fn::If": ["ModelFromS3", {"Fn::Sub": "s3://${ModelBucket}/${ModelKey}"}, "/var/task/model"]
    }


def test_deploy_script_passes_optional_parameters_only_when_set() -> None:
    assert not any(o.startswith(("ModelBucket", "ModelSpec")) for o in deploy_overrides())
    overrides = deploy_overrides(MODEL_BUCKET="models", MODEL_KEY="m/x.gguf")
    function = built_function(overrides)
    assert function.environment["Variables"]["NIMBUS_MODEL"] == "s3://models/m/x.gguf"
    assert "ModelBucket=models" in overrides


def test_shell_scripts_parse() -> None:
    proc = subprocess.run(["bash", "-n", str(AWS_DIR / "deploy.sh")], capture_output=True)
    assert proc.returncode == 0, proc.stderr
