"""The expectation snapshot `etl validate` uses (so that it never imports GX) matches the installed Great
Expectations: same types, same keyword arguments, same row-level flags. Imports GX (~5 s)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.conftest import REPO


def _generator():
    spec = importlib.util.spec_from_file_location("gen_gx_registry", REPO / "scripts" / "gen_gx_registry.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_snapshot_matches_installed_gx() -> None:
    gen = _generator()
    live = gen.build()
    import great_expectations

    from etl_framework.config.gx_registry import EXPECTATIONS, GX_VERSION

    assert GX_VERSION == great_expectations.__version__
    assert set(EXPECTATIONS) == set(live), "re-run scripts/gen_gx_registry.py"
    assert EXPECTATIONS == live
    # and the file is exactly what the generator writes (nobody edited it by hand)
    assert (Path(gen.TARGET)).read_text() == gen.render(live)


def test_snapshot_agrees_with_gx_on_kwargs_and_row_level() -> None:
    """Cross-check with GX's own machinery: a known kwarg is accepted, an unknown one is refused, and row-level
    expectations are exactly those with a map metric (which can give the failing rows)."""
    import pydantic.v1
    import pytest
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.registry import get_expectation_impl

    from etl_framework.config.gx_registry import EXPECTATIONS

    ok = ExpectationConfiguration(type="expect_column_values_to_be_between",
                                  kwargs={"column": "x", "min_value": 0, "mostly": 0.9})
    ok.to_domain_obj()
    assert {"column", "min_value", "mostly"} <= set(EXPECTATIONS["expect_column_values_to_be_between"]["kwargs"])
    bad = ExpectationConfiguration(type="expect_column_values_to_be_between", kwargs={"column": "x", "min_valu": 0})
    with pytest.raises((pydantic.v1.ValidationError, Exception)):
        bad.to_domain_obj()
    assert "min_valu" not in EXPECTATIONS["expect_column_values_to_be_between"]["kwargs"]
    for name, info in EXPECTATIONS.items():
        has_map_metric = bool(getattr(get_expectation_impl(name), "map_metric", None))
        assert info["row_level"] == has_map_metric, name
    assert EXPECTATIONS["expect_table_row_count_to_be_between"]["row_level"] is False
    assert EXPECTATIONS["expect_column_values_to_not_be_null"]["row_level"] is True
