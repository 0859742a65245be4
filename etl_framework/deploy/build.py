"""The framework wheel that Glue installs through `--additional-python-modules`.

Built here, in pure Python, from the source tree's pyproject.toml and `etl_framework/` (PEP 427 layout), instead of
`pip wheel`: setuptools 65 needs the `wheel` package (or network for build isolation) to build one, and a wheel
whose bytes depend only on the sources (sorted entries, fixed timestamps) makes `etl deploy` idempotent — an
unchanged package uploads nothing.

The wheel's dependencies leave out what Glue 5.0 itself provides (pyspark, delta-spark via
`--datalake-formats delta`, boto3/botocore, pandas, numpy, pyarrow): pip on Glue would otherwise replace Glue's own
Spark with the PyPI one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from etl_framework.errors import EtlError

GLUE_PROVIDED = {"pyspark", "delta-spark", "boto3", "botocore", "pandas", "numpy", "pyarrow", "py4j"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass
class Wheel:
    filename: str
    data: bytes
    requires: list[str]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def source_root() -> Path:
    """The framework's source tree (holding pyproject.toml and etl_framework/)."""
    import etl_framework

    root = Path(etl_framework.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise EtlError(
            f"cannot build the etl_framework wheel: no pyproject.toml beside {root / 'etl_framework'}\n"
            "  what to do: run `etl deploy` from an editable install of the framework (pip install -e .)"
        )
    return root


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _norm(re.split(r"[ <>=!~;\[]", req.strip(), maxsplit=1)[0])


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(root: Path | None = None) -> Wheel:
    """Build the wheel in memory; the same sources give the same bytes."""
    root = root or source_root()
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    name, version = meta["name"], meta["version"]
    dist = re.sub(r"[-.]+", "_", name)
    requires = [r for r in meta.get("dependencies", []) if _req_name(r) not in GLUE_PROVIDED]
    files: dict[str, bytes] = {}
    pkg = root / "etl_framework"
    for path in sorted(pkg.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        files[path.relative_to(root).as_posix()] = path.read_bytes()
    info = f"{dist}-{version}.dist-info"
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if meta.get("description"):
        lines.append(f"Summary: {meta['description']}")
    if meta.get("requires-python"):
        lines.append(f"Requires-Python: {meta['requires-python']}")
    lines += [f"Requires-Dist: {r}" for r in requires]
    files[f"{info}/METADATA"] = ("\n".join(lines) + "\n").encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: etl_framework.deploy.build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    scripts = meta.get("scripts") or {}
    if scripts:
        files[f"{info}/entry_points.txt"] = (
            "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(scripts.items()))
        ).encode()
    files[f"{info}/top_level.txt"] = b"etl_framework\n"
    record = [f"{n},{_record_hash(d)},{len(d)}" for n, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n, d in files.items():
            zi = zipfile.ZipInfo(n, date_time=FIXED_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, d)
    return Wheel(f"{dist}-{version}-py3-none-any.whl", buf.getvalue(), requires)


def load_wheel(path: Path) -> Wheel:
    """A wheel built elsewhere (e.g. once by CI), deployed as is."""
    if not path.is_file() or path.suffix != ".whl":
        raise EtlError(f"--wheel {path}: not a wheel file\n  what to do: pass a .whl built from this framework")
    with zipfile.ZipFile(path) as zf:
        meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
        text = zf.read(meta).decode() if meta else ""
    requires = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    return Wheel(path.name, path.read_bytes(), requires)
