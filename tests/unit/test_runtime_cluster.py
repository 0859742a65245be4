"""The cluster path without a cluster (issue 21): where JARs go per master, which modules are shipped and how,
what `etl doctor` reads from a master URL and from PySpark's version-mismatch error. The real thing (a standalone
master and two workers) is tests/e2e/test_cluster.py."""

from __future__ import annotations

import importlib
import sys
import zipfile
from pathlib import Path

import pytest

from etl_framework.runtime import cluster
from etl_framework.runtime.spark import session_conf

JARS = {"spark.jars": "/j/a.jar,/j/b.jar", "spark.sql.shuffle.partitions": "4"}


def test_local_masters_put_jars_on_the_driver_class_path_others_ship_them() -> None:
    local = session_conf(JARS, "local[2]")
    assert "spark.jars" not in local and local["spark.driver.extraClassPath"] == "/j/a.jar:/j/b.jar"
    for master in ("spark://10.0.0.5:7077", "yarn", "k8s://https://k:443"):
        conf = session_conf(JARS, master)
        assert conf["spark.jars"] == JARS["spark.jars"] and "spark.driver.extraClassPath" not in conf


def test_master_of_prefers_the_conf_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPARK_MASTER", raising=False)
    monkeypatch.delenv("ETL_SPARK_MASTER", raising=False)
    assert cluster.master_of({}) == "local[2]"
    monkeypatch.setenv("ETL_SPARK_MASTER", "local[1]")
    assert cluster.master_of({}) == "local[1]"
    assert cluster.master_of({"spark.master": "spark://h:7077"}) == "spark://h:7077"


def test_master_address() -> None:
    assert cluster.master_address("spark://10.0.0.5:7078") == ("10.0.0.5", 7078)
    assert cluster.master_address("spark://a:7077,b:7077") == ("a", 7077)  # HA: the first
    assert cluster.master_address("spark://host") == ("host", 7077)
    assert cluster.master_address("yarn") is None


def test_version_mismatch_reads_pysparks_error() -> None:
    text = ("[PYTHON_VERSION_MISMATCH] Python in worker has different version (3, 12) than that in driver 3.11, "
            "PySpark cannot run with different minor versions.")
    assert cluster.version_mismatch(text) == ("3.12", "3.11")
    assert cluster.version_mismatch("Connection refused") is None


def test_a_project_package_is_zipped_whole_with_a_content_hash(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "proj"
    pkg = root / "mysteps"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "clean.py").write_text("from mysteps.sub.util import k\ndef f(df, ctx):\n    return df\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "util.py").write_text("k = 1\n")
    monkeypatch.syspath_prepend(str(root))
    mod = importlib.import_module("mysteps.clean")
    try:
        out = tmp_path / "zips"
        z = cluster.module_zip(mod, [root], out)
        assert z is not None and z.name.startswith("mysteps-")
        assert sorted(zipfile.ZipFile(z).namelist()) == ["mysteps/__init__.py", "mysteps/clean.py",
                                                         "mysteps/sub/__init__.py", "mysteps/sub/util.py"]
        assert cluster.module_zip(mod, [root], out) == z  # same content, same file
        (pkg / "sub" / "util.py").write_text("k = 2\n")
        assert cluster.module_zip(mod, [root], out) != z  # changed: a new name (addPyFile refuses old names)
        # outside the project (an installed library): the cluster's to install, not shipped
        assert cluster.module_zip(mod, [tmp_path / "elsewhere"], out) is None
        assert cluster.module_zip(importlib.import_module("yaml"), [Path(sys.prefix)], out) is None
    finally:
        for name in [m for m in sys.modules if m == "mysteps" or m.startswith("mysteps.")]:
            del sys.modules[name]


def test_a_local_session_ships_nothing(tmp_path: Path) -> None:
    class SC:
        master = "local[2]"

        def addPyFile(self, path: str) -> None:
            raise AssertionError("nothing is shipped in local mode")

    class Spark:
        sparkContext = SC()

    assert cluster.ship_module(Spark(), sys.modules[__name__], [tmp_path]) is None


def test_step_zips_for_glue_extra_py_files(tmp_path: Path) -> None:
    from etl_framework.config.model import JobConfig

    root = tmp_path / "proj"
    (root / "mysteps").mkdir(parents=True)
    (root / "mysteps" / "__init__.py").write_text("")
    (root / "mysteps" / "clean.py").write_text("raise RuntimeError('never imported by deploy')\n")
    (root / "single.py").write_text("def f(df, ctx):\n    return df\n")
    cfg = JobConfig.model_validate({
        "job": "j", "sources": {"s": {"format": "csv", "path": "/in"}},
        "transform": [{"python": "mysteps.clean:f"}, {"python": "single:f"}, {"python": "mysteps.clean:g"},
                      {"python": "installed_elsewhere:f"}],
        "target": {"format": "delta", "path": "/out"}})
    zips = cluster.step_zips(cfg, [root / "jobs", root], tmp_path / "zips")
    assert [sorted(zipfile.ZipFile(z).namelist()) for z in zips] == [["mysteps/__init__.py", "mysteps/clean.py"],
                                                                    ["single.py"]]
