"""Settings from CDK context: the dependency layer asset, the log retention and the alarm thresholds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from aws_cdk import App

from infra import config
from infra.config import AlarmThresholds, Settings

CONTEXT = {
    "byom:logRetentionDays": 30,
    "byom:authorizerCacheSeconds": 300,
    "byom:throttleRateLimit": 100,
    "byom:throttleBurstLimit": 200,
}


def settings(**context: object) -> Settings:
    return Settings.from_context(App(context={**CONTEXT, **context}))


def test_bundling_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BYOM_BUNDLING", raising=False)
    assert settings().bundling is False


def test_bundling_env_var_turns_bundling_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYOM_BUNDLING", "1")
    assert settings().bundling is True


def test_bundling_context_overrides_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYOM_BUNDLING", "1")
    assert settings(**{"byom:bundling": False}).bundling is False


def test_without_bundling_the_dependency_layer_is_the_requirements_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BYOM_BUNDLING", raising=False)
    assert settings().deps_layer_dir == config.REPO_ROOT / "layers" / "deps"


def test_bundling_uses_the_pip_built_layer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "python").mkdir()
    monkeypatch.setattr(config, "DEPS_BUILD_DIR", tmp_path)
    assert settings(**{"byom:bundling": True}).deps_layer_dir == tmp_path


def test_bundling_without_a_built_layer_asks_for_make_layers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(config, "DEPS_BUILD_DIR", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="make layers"):
        _ = settings(**{"byom:bundling": True}).deps_layer_dir


def test_log_retention_must_be_a_cloudwatch_retention_period() -> None:
    with pytest.raises(ValueError, match="retention period"):
        settings(**{"byom:logRetentionDays": 31})


def test_alarm_thresholds_default_when_the_context_has_none() -> None:
    assert settings().alarms == AlarmThresholds()


def test_alarm_threshold_from_context_overrides_its_default() -> None:
    alarms = settings(**{"byom:alarmP99LatencyMs": "15000"}).alarms
    assert alarms == replace(AlarmThresholds(), api_p99_latency_ms=15000.0)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("byom:alarm5xxRatePercent", 0, "greater than 0"),
        ("byom:alarm5xxRatePercent", 101, "at most 100"),
        ("byom:alarmP99LatencyMs", "fast", "not a number"),
        ("byom:alarmLambdaErrors", 1.5, "whole number"),
    ],
)
def test_alarm_threshold_out_of_range_is_refused(key: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(**{key: value})


def test_snap_start_is_off_by_default() -> None:
    assert settings().snap_start is False


def test_snap_start_with_tenant_isolation_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="SnapStart on a function in tenant isolation mode"):
        settings(**{"byom:snapStart": True, "byom:tenantIsolation": True})


def test_bundling_uses_the_compiled_copy_of_the_common_layer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "python" / "byom").mkdir(parents=True)
    monkeypatch.setattr(config, "COMMON_BUILD_DIR", tmp_path)
    built = settings(**{"byom:bundling": True})
    assert (built.common_layer_dir, "*.pyc" in built.layer_asset_excludes) == (tmp_path, False)


def test_without_bundling_the_common_layer_is_its_source_without_bytecode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BYOM_BUNDLING", raising=False)
    source = settings()
    assert (source.common_layer_dir, "*.pyc" in source.layer_asset_excludes) == (
        config.COMMON_LAYER_DIR,
        True,
    )


def test_bundling_without_a_compiled_common_layer_asks_for_make_layers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(config, "COMMON_BUILD_DIR", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="make layers"):
        _ = settings(**{"byom:bundling": True}).common_layer_dir
