"""docs/reference.md is generated from the config model and the CLI; these tests regenerate it and fail when
the
committed file differs, so the README's reference cannot drift from the code."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from pydantic import BaseModel

from tests.conftest import REPO

FIX = "run `python scripts/gen_reference.py` and commit docs/reference.md"


def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "scripts" / "gen_reference.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_reference"] = mod
    spec.loader.exec_module(mod)
    return mod


def committed_part(heading: str) -> str:
    text = (REPO / "docs" / "reference.md").read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start : end + 1]


def test_yaml_reference_matches_the_config_model() -> None:
    expected = gen().yaml_reference()
    assert committed_part("## YAML reference").strip() == expected.strip(), f"YAML reference is stale: {FIX}"


def test_cli_reference_matches_the_cli() -> None:
    expected = gen().cli_reference()
    assert committed_part("## CLI reference").strip() == expected.strip(), f"CLI reference is stale: {FIX}"


def test_whole_file_is_what_the_generator_writes(tmp_path: Path) -> None:
    out, readme = tmp_path / "reference.md", tmp_path / "README.md"
    readme.write_text("# x\n")
    assert gen().main(["-o", str(out), "--readme", str(readme)]) == 0
    assert out.read_text() == (REPO / "docs" / "reference.md").read_text(), FIX
    assert gen().main(["--check", "-o", str(out), "--readme", str(readme)]) == 0
    out.write_text(out.read_text().replace("| `job` |", "| `jobb` |"))
    assert gen().main(["--check", "-o", str(out), "--readme", str(readme)]) == 1


def test_readme_generated_blocks_are_filled_and_checked(tmp_path: Path) -> None:
    g = gen()
    out, readme = tmp_path / "reference.md", tmp_path / "README.md"
    readme.write_text(
        "# P\n\n<!-- generated:yaml-reference -->\nSTALE TEXT\n<!-- /generated:yaml-reference -->\n\nend\n"
    )
    assert g.main(["--check", "-o", str(out), "--readme", str(readme)]) == 1
    assert g.main(["-o", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "STALE TEXT" not in text and "| `merge_keys` |" in text and text.endswith("end\n")
    assert g.main(["--check", "-o", str(out), "--readme", str(readme)]) == 0


def test_readme_in_the_repo_is_in_sync() -> None:
    """If the README carries the generated reference blocks, they match the model and the CLI."""
    readme = (REPO / "README.md").read_text()
    assert gen().fill_blocks(readme) == readme, f"README.md reference blocks are stale: {FIX}"


def test_every_key_of_every_file_kind_is_documented() -> None:
    g = gen()
    text = g.yaml_reference()
    seen: set[type] = set()
    todo: list[type[BaseModel]] = [root for _, root, _ in g.FILE_KINDS]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        section = text[text.index(f"#### {cls.__name__}\n") :]
        section = section[: section.find("<a id=", 1)]
        for name, f in cls.model_fields.items():
            key = f.alias or name
            row = next((line for line in section.splitlines() if line.startswith(f"| `{key}` |")), None)
            assert row is not None, f"{cls.__name__}.{key} missing from the reference"
            assert not row.rstrip().endswith("|  |"), f"{cls.__name__}.{key} has no description"
            found: list[type[BaseModel]] = []
            g.type_text(f.annotation, found)
            todo += found
    # the allowed values of a Literal are listed, the defaults shown
    assert '| `mode` | one of `append`, `overwrite`, `overwrite_partitions`, `merge` | `"append"` |' in text
    assert "| `max_attempts` | integer | `1` | ≥ 1, ≤ 10 |" in text


def test_fallback_descriptions_name_real_fields() -> None:
    g = gen()
    classes = {c.__name__: c for c in vars(g.M).values() if isinstance(c, type) and issubclass(c, BaseModel)}
    for key in g.NOTES:
        cls_name, field = key.split(".")
        assert cls_name in classes and field in classes[cls_name].model_fields, f"stale NOTES entry {key}"
