"""Target versions: fixed defaults, stated versions, `auto`, ranges, and what the generated table knows."""

from __future__ import annotations

import pytest

from tuner.config import versions
from tuner.config.schema import load_schema
from tuner.config.versions import (
    DEFAULT_LLAMAFACTORY,
    DEFAULT_TRANSFORMERS,
    TargetError,
    TargetVersions,
    Version,
    default_transformers,
    label,
    matches,
    newest_transformers,
    resolve_target,
    transformers_requirement,
    v,
)


def test_version_order_and_parsing() -> None:
    assert v("0.9.10") > v("0.9.9") > v("0.9") == v("0.9.0")
    assert v("v0.9.5") == v("0.9.5.post1") == v("0.9.5")
    assert str(v("4.57")) == "4.57" and v("5").major == 5
    with pytest.raises(ValueError):
        v("latest")


@pytest.mark.parametrize(
    ("version", "requirement", "ok"),
    [
        ("4.46.1", ">=4.41.2,<=4.49.0,!=4.46.*", False),
        ("4.45.2", ">=4.41.2,<=4.49.0,!=4.46.*", True),
        ("4.52.0", ">=4.45.0,<=4.52.4,!=4.52.0", False),
        ("5.6.0", ">=4.55.0,<=5.6.0", True),
        ("5.6.1", ">=4.55.0,<=5.6.0", False),
        ("4.30.0", "", True),
    ],
)
def test_requirement_matching(version: str, requirement: str, ok: bool) -> None:
    assert matches(v(version), requirement) is ok


def test_defaults_are_the_newest_release_and_what_it_installs() -> None:
    releases = [r for r in load_schema().llamafactory_versions if label(r) == str(r)]  # tags, not the dev head
    assert DEFAULT_LLAMAFACTORY == max(releases) == v("0.9.5")
    # LLaMA-Factory 0.9.5 checks transformers>=4.55.0,<=5.6.0 at start-up: a fresh install gets 5.6.0
    assert transformers_requirement(DEFAULT_LLAMAFACTORY).startswith(">=4.55.0,<=5.6.0")
    assert DEFAULT_TRANSFORMERS == v("5.6.0") == TargetVersions().transformers
    assert TargetVersions().describe() == "LLaMA-Factory 0.9.5, transformers 5.6.0"


def test_defaults_never_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import tuner.lint.distributions as dist

    monkeypatch.setattr(dist, "installed_version", lambda name: {"transformers": "4.45.0", "llamafactory": "0.8.3"}[name])
    monkeypatch.setenv("CFGLINT_TRANSFORMERS", "4")
    target, warnings = resolve_target()
    assert (target.llamafactory, target.transformers, warnings) == (v("0.9.5"), v("5.6.0"), [])
    assert target.source == {"llamafactory": "default", "transformers": "default"}


def test_auto_opts_in_to_the_installed_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    import tuner.lint.distributions as dist

    monkeypatch.setattr(dist, "installed_version", lambda name: {"transformers": "4.52.4", "llamafactory": "0.9.3"}[name])
    target, warnings = resolve_target("auto", "auto")
    assert (str(target.llamafactory), str(target.transformers)) == ("0.9.3", "4.52.4")
    assert target.source == {"llamafactory": "installed", "transformers": "installed"} and warnings == []


def test_auto_without_the_package_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import tuner.lint.distributions as dist

    monkeypatch.setattr(dist, "installed_version", lambda name: None)
    with pytest.raises(TargetError, match="transformers is not installed"):
        resolve_target(None, "auto")


def test_auto_with_a_development_install_newer_than_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    import tuner.lint.distributions as dist

    monkeypatch.setattr(dist, "installed_version", lambda name: "0.9.9.dev0")
    newest = max(load_schema().llamafactory_versions)
    target, warnings = resolve_target("auto", "5.6.0")
    assert target.llamafactory == newest and "pre-release" in warnings[0]


@pytest.mark.parametrize("lf", ["0.7.1", "0.10.0", "1.0"])
def test_llamafactory_outside_the_supported_range_is_an_error(lf: str) -> None:
    with pytest.raises(TargetError, match="outside the releases cfglint supports"):
        resolve_target(lf, None)


def test_transformers_outside_what_the_release_accepts_is_a_warning() -> None:
    target, warnings = resolve_target("0.9.3", "4.57.1")
    assert target.transformers == v("4.57.1")
    assert len(warnings) == 1 and "requires transformers>=4.45.0" in warnings[0] and "DISABLE_VERSION_CHECK" in warnings[0]
    with pytest.raises(TargetError):
        resolve_target(None, "6.0")


def test_a_major_means_the_newest_release_of_it_the_target_accepts() -> None:
    assert newest_transformers(4, v("0.9.5")) == v("4.57.6")
    assert newest_transformers(4, v("0.9.4")) == v("4.57.1")
    assert newest_transformers(4, v("0.9.3")) == v("4.52.4")
    assert newest_transformers(4, v("0.9.2")) == v("4.49.0")  # 4.46-4.48.0 are excluded, 4.49.0 is the bound
    assert newest_transformers(5, v("0.9.5")) == v("5.6.0")
    assert resolve_target("0.9.4", "4")[0].transformers == v("4.57.1")
    assert versions.with_transformers_major(TargetVersions(), 4).transformers == v("4.57.6")


def test_default_transformers_follows_the_llamafactory_release() -> None:
    assert default_transformers(v("0.9.4")) == v("4.57.1")
    assert default_transformers(v("0.9.2")) == v("4.49.0")
    # 0.8.x declared no upper bound; the default is what the next bounded release (0.9.0: <=4.45.0) accepted
    assert default_transformers(v("0.8.3")) == v("4.45.0")
    assert resolve_target("0.8.3", None)[0].transformers == v("4.45.0")


def test_the_development_head_is_named_as_such() -> None:
    head = max(load_schema().llamafactory_versions)
    if head == DEFAULT_LLAMAFACTORY:
        pytest.skip("the table has no development head")
    assert label(head).endswith(".dev0")
    target, _ = resolve_target(label(head), None)
    assert target.describe().startswith(f"LLaMA-Factory {label(head)},")


def test_version_boundaries_in_rules_compare_numerically() -> None:
    target = TargetVersions(Version.parse("0.9.10"))
    assert target.llamafactory >= v("0.9.2") and target.transformers_major == 5
