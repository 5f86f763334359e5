"""The security gates' configuration (`make check`) and the Python version the functions run."""

from __future__ import annotations

import re

from aws_cdk.assertions import Template

from infra import checkov_skips
from infra.config import REPO_ROOT
from tests.infra.stack_template import kms_key_id, props, resources

# Checks every function fails by design: each is skipped on each function with its reason.
FUNCTION_CHECKS = {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117"}


def makefile_layer_python() -> str:
    match = re.search(r"^LAYER_PYTHON \?= (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile sets LAYER_PYTHON"
    return match.group(1)


def test_functions_run_the_python_the_dependency_layer_is_built_for(template: Template) -> None:
    runtime = f"python{makefile_layer_python()}"
    assert {props(fn)["Runtime"] for fn in resources(template, "AWS::Lambda::Function").values()} == {runtime}


def test_own_layers_are_compatible_with_that_python_only(template: Template) -> None:
    runtime = f"python{makefile_layer_python()}"
    for layer in resources(template, "AWS::Lambda::LayerVersion").values():
        assert props(layer)["CompatibleRuntimes"] == [runtime]


def test_function_environments_are_encrypted_with_the_stack_key(template: Template) -> None:
    key = {"Fn::GetAtt": [kms_key_id(template), "Arn"]}
    for fn in resources(template, "AWS::Lambda::Function").values():
        assert props(fn)["KmsKeyArn"] == key


def test_every_function_skips_its_checks_one_by_one(template: Template) -> None:
    skipped = list(checkov_skips.skipped(resources(template, "AWS::Lambda::Function")))
    for logical_id in resources(template, "AWS::Lambda::Function"):
        assert {check for fn, check, _ in skipped if fn == logical_id} == FUNCTION_CHECKS, logical_id


def test_every_checkov_skip_names_a_check_and_gives_a_reason(template: Template) -> None:
    skipped = list(checkov_skips.skipped(template.to_json()["Resources"]))
    assert skipped
    for logical_id, check, reason in skipped:
        assert re.fullmatch(r"CKV2?_AWS_[0-9]+", check), (logical_id, check)
        # A reason template left unformatted would still carry its {placeholder}.
        assert len(reason) > 80 and not re.search(r"\{[a-z_]+\}", reason), (logical_id, check)


def test_no_check_is_skipped_for_the_whole_template() -> None:
    # Skips live on resources; a template-wide skip list (a .checkov.yaml skip-check) would hide new ones.
    assert not (REPO_ROOT / ".checkov.yaml").exists()
    assert "--skip-check" not in (REPO_ROOT / "Makefile").read_text()


def test_cfn_lint_ignores_only_documented_checks() -> None:
    lines = (REPO_ROOT / ".cfnlintrc.yaml").read_text().splitlines()
    ignored = [i for i, line in enumerate(lines) if re.fullmatch(r"\s+- [EWI][0-9]+", line)]
    assert ignored
    for i in ignored:
        assert lines[i - 1].lstrip().startswith("#"), lines[i]
