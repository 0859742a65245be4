"""YAML loading that keeps the position of every key, value and sequence item, and maps pydantic errors back to
`file:line:col` (SPEC §4: every config error points at the offending line, all errors of a file at once).

ruamel.yaml's round-trip loader is used only for its positions; the data handed to pydantic is plain Python.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from etl_framework.config.errors import ConfigError, ConfigErrors

PathT = tuple[str | int, ...]


@dataclass
class YamlDoc:
    """One loaded YAML file: plain data plus the positions (1-based) of every node."""

    file: str
    text: str
    data: Any
    # path -> (line, col) of the key (mappings) or the item (sequences), and of the value
    key_pos: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    value_pos: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    block: dict[PathT, str] = field(default_factory=dict)  # path -> '|' or '>' for block scalars

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def error(self, path: PathT, message: str, at_key: bool = False) -> ConfigError:
        line, col = self.pos(path, at_key)
        return ConfigError(self.file, line, col, message)

    def pos(self, path: PathT, at_key: bool = False) -> tuple[int, int]:
        """Position of a node; falls back to the nearest ancestor that has one."""
        path = tuple(path)
        while True:
            table = self.key_pos if at_key else self.value_pos
            if path in table:
                return table[path]
            other = self.value_pos if at_key else self.key_pos
            if path in other:
                return other[path]
            if not path:
                # the document itself: its first key (the file may start with comments)
                tops = [pos for p, pos in self.key_pos.items() if len(p) == 1]
                return min(tops) if tops else (1, 1)
            path = path[:-1]
            at_key = True

    def scalar_pos(self, path: PathT, offset: int) -> tuple[int, int]:
        """Position of character `offset` inside the string value at `path` (block scalars, quoted and plain
        one-line scalars exactly; folded multi-line plain scalars at their start)."""
        line, col = self.pos(path)
        value = _get(self.data, path)
        if not isinstance(value, str):
            return line, col
        lines = self.lines
        if path in self.block:
            before = value[:offset]
            row = before.count("\n")
            first = line  # the line holding '|' ; content starts on the next non-empty line
            content_line = first + 1
            indent = None
            for ln in lines[first:]:
                if ln.strip():
                    indent = len(ln) - len(ln.lstrip(" "))
                    break
            target = content_line + row
            col_in = len(before) - (before.rfind("\n") + 1)
            return target, (indent or 0) + col_in + 1
        src = lines[line - 1] if 0 < line <= len(lines) else ""
        quoted = src[col - 1: col] in ("'", '"')
        if "\n" in value:
            return line, col
        return line, col + offset + (1 if quoted else 0)


def _get(data: Any, path: PathT) -> Any:
    for p in path:
        try:
            data = data[p]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _walk(node: Any, path: PathT, doc: YamlDoc) -> Any:
    """Convert ruamel nodes to plain Python, recording positions on the way."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        for k, v in node.items():
            key = k if isinstance(k, (str, int, float, bool)) or k is None else str(k)
            sub = path + (key,)
            try:
                kl, kc = node.lc.key(k)
                doc.key_pos[sub] = (kl + 1, kc + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            try:
                vl, vc = node.lc.value(k)
                doc.value_pos[sub] = (vl + 1, vc + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            if isinstance(v, LiteralScalarString):
                doc.block[sub] = "|"
            elif isinstance(v, FoldedScalarString):
                doc.block[sub] = ">"
            out[key] = _walk(v, sub, doc)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, v in enumerate(node):
            sub = path + (i,)
            try:
                il, ic = node.lc.item(i)
                doc.key_pos[sub] = (il + 1, ic + 1)
                doc.value_pos[sub] = (il + 1, ic + 1)
            except (KeyError, TypeError, AttributeError, IndexError):
                pass
            if isinstance(v, LiteralScalarString):
                doc.block[sub] = "|"
            items.append(_walk(v, sub, doc))
        return items
    if isinstance(node, (LiteralScalarString, FoldedScalarString)):
        return str(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if hasattr(node, "isoformat"):  # dates and timestamps: keep the text the user wrote
        return node.isoformat()
    return node


_TAB_INDENT = re.compile(r"^[ ]*\t")

# YAML aliases share one node however often they are used; expanding them to plain data does not. A file whose
# aliases would expand to more than this many extra values is refused before anything expands it ("billion
# laughs": 9 levels of `&a [*a, *a, ...]` are 9^9 values from 10 lines).
MAX_ALIAS_EXPANSION = 100_000


class AliasBomb(ValueError):
    def __init__(self, node: Any, expanded: int) -> None:
        super().__init__(f"expands to {expanded:,} values")
        self.node, self.expanded = node, expanded


def expansion(data: Any, limit: int = MAX_ALIAS_EXPANSION) -> int:
    """How many values `data` (as loaded, aliases still shared) has once aliases are expanded, minus the distinct
    ones; raises AliasBomb at the first container past `limit` (depth first: the innermost such node), or for a
    value that contains itself through an alias. Linear in the distinct nodes: sizes are memoized per object."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()
    distinct = 0

    def size(node: Any) -> int:
        nonlocal distinct
        if isinstance(node, dict):
            children: Any = [*node.keys(), *node.values()]
        elif isinstance(node, list | tuple):
            children = node
        else:
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise AliasBomb(node, -1)
        busy.add(key)
        distinct += 1
        total = 1 + sum(size(c) for c in children)
        busy.discard(key)
        sizes[key] = total
        if total - distinct > limit:
            raise AliasBomb(node, total)
        return total

    return size(data) - distinct


def _bomb_error(file: str, e: AliasBomb) -> ConfigError:
    line, col = 1, 1
    lc = getattr(e.node, "lc", None)
    if lc is not None and getattr(lc, "line", None) is not None:
        line, col = lc.line + 1, lc.col + 1
    anchor = getattr(getattr(e.node, "anchor", None), "value", None)
    what = f"the value anchored as &{anchor}" if anchor else "this value"
    if e.expanded < 0:
        return ConfigError(file, line, col, f"{what} contains itself through an alias: a config value must be "
                                            "finite; write it out without the self-reference")
    return ConfigError(file, line, col, f"YAML aliases expand {what} to {e.expanded:,} values (more than "
                                        f"{MAX_ALIAS_EXPANSION:,}): refused, nothing was expanded (an alias bomb?)"
                                        "; write the values out, or use fewer nested aliases")


def parse_text(text: str, file: str) -> YamlDoc:
    """Parse YAML text; raise ConfigErrors with positions for tabs, syntax errors and an empty file."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    doc = YamlDoc(file=file, text=text, data=None)
    tabs = [
        ConfigError(file, i + 1, m.end(), "tab character in indentation: YAML indents with spaces only")
        for i, ln in enumerate(text.splitlines())
        if (m := _TAB_INDENT.match(ln))
    ]
    if not text.strip() or all(ln.strip().startswith("#") or not ln.strip() for ln in text.splitlines()):
        raise ConfigErrors([ConfigError(file, 1, 1, "the file is empty: a job file starts with 'job: NAME', "
                                                    "a workflow file with 'workflow: NAME'")])
    yaml = YAML(typ="rt", pure=True)
    try:
        node = yaml.load(text)
    except MarkedYAMLError as e:
        if tabs:  # tabs in indentation are the likely cause (a tab inside a block scalar is fine YAML)
            raise ConfigErrors(tabs) from None
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = " ".join(x for x in (e.context, e.problem) if x) or "invalid YAML"
        if "found duplicate key" in str(e.problem or ""):
            problem = str(e.problem).split("\n")[0]
        raise ConfigErrors([ConfigError(file, line, col, f"YAML syntax error: {problem}")]) from None
    except YAMLError as e:
        raise ConfigErrors([ConfigError(file, 1, 1, f"YAML error: {str(e).splitlines()[0]}")]) from None
    except (RecursionError, ValueError, TypeError) as e:
        raise ConfigErrors([ConfigError(file, 1, 1, f"YAML error: {type(e).__name__}: {e}")]) from None
    if node is None:
        raise ConfigErrors([ConfigError(file, 1, 1, "the file is empty: a job file starts with 'job: NAME', "
                                                    "a workflow file with 'workflow: NAME'")])
    try:
        expansion(node)
    except AliasBomb as e:
        raise ConfigErrors([_bomb_error(file, e)]) from None
    except RecursionError:
        raise ConfigErrors([ConfigError(file, 1, 1, "the YAML is nested too deeply")]) from None
    try:
        doc.data = _walk(node, (), doc)
    except RecursionError:
        raise ConfigErrors([ConfigError(file, 1, 1, "the YAML is nested too deeply")]) from None
    if not isinstance(doc.data, dict):
        raise ConfigErrors([ConfigError(file, 1, 1, "expected a mapping of keys (e.g. 'job: NAME') at the top of "
                                                    f"the file, found {_kind(doc.data)}")])
    return doc


_DOC_CACHE: dict[tuple[str, int, int, str], YamlDoc] = {}


def load_yaml(path: str | Path, display: str | None = None) -> YamlDoc:
    """Load a YAML file with positions. Parsed documents are cached by path, size and mtime: a workflow's job
    files are often loaded again (validate, plan); the pure-Python round-trip parser is the slow part."""
    path = Path(path)
    file = display or str(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size, file)
    except OSError:
        key = None
    if key is not None and key in _DOC_CACHE:
        return _DOC_CACHE[key]
    doc = _load_yaml(path, file)
    if key is not None:
        if len(_DOC_CACHE) > 256:
            _DOC_CACHE.clear()
        _DOC_CACHE[key] = doc
    return doc


def _load_yaml(path: Path, file: str) -> YamlDoc:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigErrors([ConfigError(file, 1, 1, "file not found")]) from None
    except OSError as e:
        raise ConfigErrors([ConfigError(file, 1, 1, f"cannot read the file: {e.strerror or e}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigErrors([ConfigError(file, line, 1, "the file is not UTF-8 text")]) from None
    return parse_text(text, file)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) < 40 else "a string"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "nothing (null)"
    return f"the {type(value).__name__} {value!r}"


# ------------------------------------------------------------------------------------------ pydantic errors


def _model_at(model: type[BaseModel], loc: PathT) -> type[BaseModel] | None:
    """The pydantic model class reached by following `loc` (for 'did you mean' on unknown keys)."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(current, tuple):  # a dict or list: this part is a key or an index
            current = current[0]
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        fld = None
        for name, f in current.model_fields.items():
            if part in (name, f.alias):
                fld = f
                break
        if fld is None:
            return None
        current = _unwrap(fld.annotation, typing)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(ann: Any, typing: Any) -> Any:
    origin = typing.get_origin(ann)
    if origin is None:
        return ann
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if origin in (list, dict):
        inner = _unwrap(args[-1], typing) if args else None
        return (inner,)
    for a in args:  # Optional / Union: the first model member
        u = _unwrap(a, typing)
        if isinstance(u, type) and issubclass(u, BaseModel):
            return u
        if isinstance(u, tuple):
            return u
    return ann


def field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def suggest(word: str, options: Iterator[str] | list[str]) -> str:
    match = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


_LITERAL_RE = re.compile(r"'([^']*)'")


_EXPECTS = {
    "dict_type": "a mapping (key: value)", "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)", "list_type": "a list", "string_type": "a string",
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def _expects(err: dict[str, Any]) -> str | None:
    """What a type error wanted, for merging the members of a union into one message."""
    if err["type"] == "literal_error":
        allowed = _LITERAL_RE.findall(err.get("ctx", {}).get("expected", ""))
        return "one of: " + ", ".join(allowed)
    return _EXPECTS.get(err["type"])


def _message(err: dict[str, Any], value: Any) -> str:
    kind = err["type"]
    msg = err["msg"]
    if kind == "literal_error":
        allowed = _LITERAL_RE.findall(err.get("ctx", {}).get("expected", ""))
        return f"{value!r} is not allowed; use one of: {', '.join(allowed)}" + suggest(str(value), allowed)
    if kind in _EXPECTS:
        return f"expected {_EXPECTS[kind]}, found {_kind(value)}"
    if kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        if pattern == r"^[a-z][a-z0-9_]*$":
            return (f"{value!r} is not a valid name: use lower-case letters, digits and '_', starting with a "
                    "letter (e.g. trips_clean)")
        return f"{value!r} does not match the pattern {pattern}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "too_short":
        return "must not be empty"
    bounds = {"less_than_equal": ("at most", "le"), "greater_than_equal": ("at least", "ge"),
              "less_than": ("less than", "lt"), "greater_than": ("more than", "gt")}
    if kind in bounds:
        words, key = bounds[kind]
        return f"{value!r} is out of range: must be {words} {err.get('ctx', {}).get(key)}"
    return msg[0].lower() + msg[1:] if msg else kind


def validate_model(doc: YamlDoc, model: type[BaseModel], data: Any | None = None,
                   prefix: PathT = ()) -> tuple[BaseModel | None, list[ConfigError]]:
    """Validate `data` (default: the document) against `model`, mapping every pydantic error to a position."""
    data = doc.data if data is None else data
    try:
        return model.model_validate(data), []
    except ValidationError as e:
        raw = e.errors(include_url=False)
    grouped: dict[tuple[PathT, bool, str], list[str]] = {}
    expects: dict[PathT, list[tuple[str | None, Any]]] = {}
    for err in raw:
        loc: PathT = tuple(err["loc"])
        # keep only loc parts that exist in the data (drops union member tags like 'dict[str,str]')
        real: list[str | int] = []
        node = data
        for part in loc:
            in_dict = isinstance(node, dict) and part in node
            if in_dict or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
                real.append(part)
                node = node[part]
            elif err["type"] in ("missing", "extra_forbidden") and part == loc[-1]:
                real.append(part)
            # else: a union tag; skip it
        path = prefix + tuple(real)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, tuple(real[:-1]))
            options = field_names(parent) if parent else []
            key = real[-1] if real else "?"
            msg = f"unknown key '{key}'" + suggest(str(key), options)
            if not suggest(str(key), options) and options:
                msg += f" (allowed: {', '.join(options)})"
            grouped.setdefault((path, True, kind), []).append(msg)
        elif kind == "missing":
            key = real[-1] if real else "?"
            grouped.setdefault((path[:-1], True, kind), []).append(f"missing required key '{key}'")
        else:
            # model-level checks point at the mapping's key; so does a missing value (`key:` with nothing)
            at_key = kind == "value_error" or node is None
            grouped.setdefault((path, at_key, "value"), []).append(_message(err, node))
            expects.setdefault(path, []).append((_expects(err), node))
    errors = []
    for (path, at_key, _kind_), msgs in grouped.items():
        uniq = list(dict.fromkeys(msgs))
        text = "; ".join(uniq)
        if len(uniq) > 1 and _kind_ == "value":
            wants = list(dict.fromkeys(w for w, _ in expects.get(path, [])))
            if wants and all(wants):  # the members of a union: one message
                text = f"expected {' or '.join(wants)}, found {_kind(expects[path][0][1])}"
        if _kind_ == "value":
            text = f"{_label(path)}: {text}" if path else text
        elif _kind_ == "missing":
            text = f"{_label(path) + ': ' if path else ''}{text}"
        line, col = doc.pos(path, at_key=at_key)
        errors.append(ConfigError(doc.file, line, col, text + _comma_hint(doc, data, path, prefix)))
    return None, errors


def _unbalanced(text: Any) -> bool:
    return isinstance(text, str) and (text.count("(") != text.count(")") or text.count("[") != text.count("]")
                                      or text.count("'") % 2 == 1)


def _comma_hint(doc: YamlDoc, data: Any, path: PathT, prefix: PathT) -> str:
    """`{x: coalesce(a, b)}` is valid YAML meaning {x: 'coalesce(a', 'b)': null}: say how to write it."""
    rel = path[len(prefix):]
    for cut in (rel, rel[:-1]):
        parent = _get(data, cut)
        if isinstance(parent, dict) and any(_unbalanced(k) or _unbalanced(v) for k, v in parent.items()):
            line = doc.pos(prefix + cut, at_key=False)[0]
            src = doc.lines[line - 1] if 0 < line <= len(doc.lines) else ""
            if "{" in src:
                return ("; note: inside {...} a comma separates entries: quote an expression that contains "
                        "commas, e.g. {x: 'coalesce(a, b)'}, or write the mapping in block style")
    return ""


def _label(path: PathT) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out or "file"
