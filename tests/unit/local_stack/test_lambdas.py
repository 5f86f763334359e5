"""Finding, loading and invoking the template's functions in this process."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.lambdas import (
    EnvironmentConflict,
    FakeLambdaContext,
    FunctionError,
    FunctionRuntime,
    InvocationTimeout,
    LambdaFunction,
    asset_dir,
    discover_functions,
    merge_environments,
)
from local_stack.template import Physical, Resolver, Template
from tests.unit.local_stack.sample import sample_template, write_sample_assembly


@pytest.fixture
def runtime() -> Iterator[FunctionRuntime]:
    runtime = FunctionRuntime()
    yield runtime
    runtime.unload()


def function(code_dir: Path, logical_id: str = "Fn", **environment: str) -> LambdaFunction:
    return LambdaFunction(logical_id, logical_id, "handler.handler", code_dir, [], environment)


def write_handler(directory: Path, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "handler.py").write_text(source)
    return directory


def test_asset_dir_follows_the_asset_metadata(tmp_path: Path) -> None:
    (tmp_path / "asset.abc").mkdir()
    template = Template(body={}, path=tmp_path / "T.template.json")
    resource = {"Metadata": {"aws:asset:path": "asset.abc"}}
    assert asset_dir(template, resource, {}) == tmp_path / "asset.abc"


def test_asset_dir_falls_back_to_the_s3_key_hash(tmp_path: Path) -> None:
    (tmp_path / "asset.abc").mkdir()
    template = Template(body={}, path=tmp_path / "T.template.json")
    assert asset_dir(template, {}, {"S3Key": "abc.zip"}) == tmp_path / "asset.abc"


def test_asset_dir_is_none_when_the_code_is_not_in_the_assembly(tmp_path: Path) -> None:
    template = Template(body={}, path=tmp_path / "T.template.json")
    assert asset_dir(template, {}, {"S3Key": "missing.zip"}) is None


def test_discover_functions_resolves_code_layers_and_environment(tmp_path: Path) -> None:
    template = Template(body=sample_template(), path=write_sample_assembly(tmp_path), stack_name="Sample")
    resolver = Resolver(template)
    resolver.register("Items", Physical(ref="Items", attributes={"Arn": "arn:aws:dynamodb:::table/Items"}))
    resolver.register(
        "Key", Physical(ref="k", attributes={"Arn": "arn:aws:kms:us-east-1:123456789012:key/k"})
    )

    functions = {f.logical_id: f for f in discover_functions(template, resolver)}

    echo = functions["EchoFn"]
    assert echo.code_dir == tmp_path / "asset.echo"
    assert echo.layer_dirs == [tmp_path / "asset.layer" / "python"]
    assert echo.environment["ITEMS_TABLE"] == "Items"
    assert echo.environment["KMS_KEY_ID"] == "arn:aws:kms:us-east-1:123456789012:key/k"
    assert echo.environment["SECRET_PREFIX"] == "byom/Sample/tenants/"
    assert echo.timeout_seconds == 10 and echo.memory_mb == 256
    assert resolver.resolve({"Fn::GetAtt": ["EchoFn", "Arn"]}) == echo.arn


def test_merged_environment_refuses_two_values_for_one_name(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentConflict, match="TABLE"):
        merge_environments([function(tmp_path, "A", TABLE="one"), function(tmp_path, "B", TABLE="two")])


def test_merged_environment_accepts_equal_values_and_per_function_service_names(tmp_path: Path) -> None:
    merged = merge_environments(
        [
            function(tmp_path, "A", TABLE="one", POWERTOOLS_SERVICE_NAME="a"),
            function(tmp_path, "B", TABLE="one", POWERTOOLS_SERVICE_NAME="b"),
        ]
    )
    assert merged == {"TABLE": "one"}


def test_two_handler_files_load_as_distinct_modules(tmp_path: Path, runtime: FunctionRuntime) -> None:
    first = function(write_handler(tmp_path / "a", "def handler(e, c):\n    return 'a'\n"), "A")
    second = function(write_handler(tmp_path / "b", "def handler(e, c):\n    return 'b'\n"), "B")
    runtime.load(first)
    runtime.load(second)
    assert (first.invoke({}), second.invoke({})) == ("a", "b")


def test_a_handler_imports_sibling_modules_and_sees_its_service_name(
    tmp_path: Path, runtime: FunctionRuntime
) -> None:
    code = write_handler(
        tmp_path / "fn",
        "import os\nimport helper_for_test\nNAME = os.environ['POWERTOOLS_SERVICE_NAME']\n"
        "def handler(e, c):\n    return [helper_for_test.VALUE, NAME]\n",
    )
    (code / "helper_for_test.py").write_text("VALUE = 42\n")
    fn = function(code, POWERTOOLS_SERVICE_NAME="svc-fn")
    runtime.load(fn)
    assert fn.invoke({}) == [42, "svc-fn"]


def test_unload_forgets_the_imported_modules(tmp_path: Path, runtime: FunctionRuntime) -> None:
    code = write_handler(tmp_path / "fn", "import helper_gone\ndef handler(e, c):\n    return 1\n")
    (code / "helper_gone.py").write_text("")
    runtime.load(function(code))
    runtime.unload()
    assert "helper_gone" not in sys.modules
    assert not any(name.startswith("byom_local_fn_") for name in sys.modules)


def test_invoke_passes_json_and_a_lambda_context(tmp_path: Path, runtime: FunctionRuntime) -> None:
    code = write_handler(
        tmp_path / "fn",
        "def handler(e, c):\n"
        "    return {'event': e, 'name': c.function_name, 'ms': c.get_remaining_time_in_millis()}\n",
    )
    fn = function(code)
    fn.timeout_seconds = 5
    runtime.load(fn)
    result = fn.invoke({"a": (1, 2)})
    assert result["event"] == {"a": [1, 2]}
    assert result["name"] == "Fn"
    assert 0 < result["ms"] <= 5000


def test_a_handler_exception_becomes_a_function_error(tmp_path: Path, runtime: FunctionRuntime) -> None:
    fn = function(write_handler(tmp_path / "fn", "def handler(e, c):\n    raise Exception('Unauthorized')\n"))
    runtime.load(fn)
    with pytest.raises(FunctionError) as raised:
        fn.invoke({})
    assert str(raised.value.__cause__) == "Unauthorized"


def test_a_response_that_is_not_json_is_a_function_error(tmp_path: Path, runtime: FunctionRuntime) -> None:
    fn = function(write_handler(tmp_path / "fn", "def handler(e, c):\n    return {1, 2}\n"))
    runtime.load(fn)
    with pytest.raises(FunctionError, match="JSON"):
        fn.invoke({})


def test_fake_context_counts_down_from_the_timeout() -> None:
    context = FakeLambdaContext(
        "f", "arn:aws:lambda:us-east-1:123456789012:function:f", 128, timeout_seconds=3
    )
    assert 2900 < context.get_remaining_time_in_millis() <= 3000
    assert context.log_group_name == "/aws/lambda/f"
    assert json.dumps(context.aws_request_id)


def test_a_handler_past_its_timeout_is_a_timeout_of_the_function(
    tmp_path: Path, runtime: FunctionRuntime
) -> None:
    fn = function(write_handler(tmp_path / "fn", "import time\ndef handler(e, c):\n    time.sleep(1)\n"))
    fn.timeout_seconds = 0.1  # type: ignore[assignment]
    runtime.load(fn)
    with pytest.raises(InvocationTimeout) as raised:
        fn.invoke({})
    assert raised.value.caller_gave_up is False


def test_a_caller_timeout_shorter_than_the_functions_is_the_callers(
    tmp_path: Path, runtime: FunctionRuntime
) -> None:
    fn = function(write_handler(tmp_path / "fn", "import time\ndef handler(e, c):\n    time.sleep(1)\n"))
    runtime.load(fn)
    with pytest.raises(InvocationTimeout) as raised:
        fn.invoke({}, caller_timeout=0.1)
    assert raised.value.caller_gave_up is True
