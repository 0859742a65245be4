"""Semantic checks that need more than the model: SQL parsing (sqlglot, Spark dialect), references between steps
and sources, Great Expectations types and keyword arguments (from the generated snapshot, never importing GX),
`${run.X}` references, Glue cron syntax, and the workflow graph (unknown nodes, condition states, cycles,
conditions that can never be met, duplicate names).

Every check returns `ConfigError`s positioned in the YAML; none raises on bad input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_framework.config.errors import ConfigError
from etl_framework.config.interpolate import REF, RUN_BUILTINS, Context, references
from etl_framework.config.loader import YamlDoc, expansion, suggest
from etl_framework.config.ownership import check_ownership

if TYPE_CHECKING:
    from etl_framework.config.load import LoadedJob, LoadedWorkflow
    from etl_framework.config.project import Project

JOB_STATES = ("SUCCEEDED", "STOPPED", "FAILED", "TIMEOUT")
CRAWLER_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")
PYTHON_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def _guard(errors: list[ConfigError], fn: Callable[[], list[ConfigError]]) -> None:
    """A bug in one check must not hide the other errors nor print a traceback (ETL_DEBUG=1 re-raises)."""
    try:
        errors += fn()
    except Exception:
        if os.environ.get("ETL_DEBUG"):
            raise


# ------------------------------------------------------------------------------------------ interpolation map


def substitute(raw: str, ctx: Context) -> tuple[str, Callable[[int], int]]:
    """Interpolate `raw` for checking (unknown references stay as written) and return a function that maps an
    offset in the result back to the offset in `raw`, so SQL errors point into the YAML."""
    from etl_framework.config.interpolate import interpolate_str

    out: list[str] = []
    segs: list[tuple[int, int, int, bool]] = []  # new_start, raw_start, length_new, replaced
    pos = 0
    new = 0
    for m in REF.finditer(raw):
        if m.start() > pos:
            seg = raw[pos: m.start()]
            segs.append((new, pos, len(seg), False))
            out.append(seg)
            new += len(seg)
        piece = m.group(0)
        value = interpolate_str(piece, ctx, []) if piece != "$${" else "${"
        text = str(value).lower() if isinstance(value, bool) else str(value)
        segs.append((new, m.start(), len(text), True))
        out.append(text)
        new += len(text)
        pos = m.end()
    if pos < len(raw):
        segs.append((new, pos, len(raw) - pos, False))
        out.append(raw[pos:])

    def back(offset: int) -> int:
        for start, raw_start, length, replaced in segs:
            if start <= offset < start + length:
                return raw_start if replaced else raw_start + (offset - start)
        return len(raw)

    return "".join(out), back


def _check_ctx(loaded: LoadedJob, env_vars: dict[str, Any]) -> Context:
    return Context(env=env_vars, params=loaded.params, run=None,
                   placeholder=lambda scope, name: f"{scope}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}")


# ---------------------------------------------------------------------------------------------------- SQL


def _line_col_to_offset(text: str, line: int, col: int) -> int:
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[: max(line - 1, 0)]) + max(col - 1, 0)


def _parse_error(e: Exception, text: str, prefix: int) -> tuple[str, int]:
    """(message, offset into the user's text) of a sqlglot ParseError / TokenError."""
    errs = getattr(e, "errors", None)
    if errs:
        first = errs[0]
        desc = first.get("description") or "syntax error"
        line, col = first.get("line") or 1, first.get("col") or 1
        hl = first.get("highlight") or ""
        off = _line_col_to_offset(text, line, col) - max(len(hl) - 1, 0) - prefix
        near = f" near '{hl}'" if hl else ""
        return f"{desc}{near}", max(off, 0)
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    m = re.search(r"[Ll]ine (\d+), [Cc]ol(?:umn)?:? (\d+)", msg)
    off = _line_col_to_offset(text, int(m.group(1)), int(m.group(2))) - prefix if m else 0
    return msg, max(off, 0)


def parse_query(sql: str) -> tuple[Any, str | None, int]:
    """(tree, error message, error offset) of a `sql:` step."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        trees = [t for t in sqlglot.parse(sql, read="spark") if t is not None]
    except SqlglotError as e:
        msg, off = _parse_error(e, sql, 0)
        return None, f"SQL does not parse: {msg}", off
    except (RecursionError, ValueError, TypeError, KeyError, IndexError) as e:
        return None, f"SQL does not parse: {type(e).__name__}", 0
    if not trees:
        return None, "empty SQL: write a query, e.g. SELECT * FROM previous", 0
    if len(trees) > 1:
        return None, "one query per sql step (found several statements separated by ';')", sql.find(";")
    tree = trees[0]
    if not isinstance(tree, exp.Query):
        return None, (f"a sql step must be a query (SELECT ..., WITH ..., ... UNION ...); this parses as "
                      f"{type(tree).__name__}: check the keywords"), 0
    return tree, None, 0


def parse_expression(text: str, kind: str = "expr") -> tuple[Any, str | None, int]:
    """Parse a SQL expression as Spark would inside a query. `kind`: expr | order | condition."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    if not isinstance(text, str) or not text.strip():
        return None, "empty SQL expression", 0
    prefix = {"expr": "SELECT ", "order": "SELECT 1 ORDER BY ", "condition": "SELECT 1 WHERE "}[kind]
    sql = prefix + text
    try:
        trees = [t for t in sqlglot.parse(sql, read="spark") if t is not None]
    except SqlglotError as e:
        msg, off = _parse_error(e, sql, len(prefix))
        return None, f"SQL expression does not parse: {msg}", off
    except (RecursionError, ValueError, TypeError, KeyError, IndexError) as e:
        return None, f"SQL expression does not parse: {type(e).__name__}", 0
    if len(trees) != 1 or not isinstance(trees[0], exp.Select):
        return None, "not a single SQL expression", 0
    tree = trees[0]
    extra = [k for k in ("from_", "from", "where", "group", "having", "order", "limit", "joins")
             if tree.args.get(k) and not (kind == "order" and k == "order")
             and not (kind == "condition" and k == "where")]
    if kind == "expr" and len(tree.expressions) != 1:
        return None, "one SQL expression expected (found a list: write one expression per entry)", 0
    if extra:
        clause = extra[0].rstrip("_").upper()
        return None, f"a SQL expression expected, found a clause ({clause}): write only the expression", 0
    return tree, None, 0


def _spark_type_error(t: str) -> str | None:
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    if not isinstance(t, str) or not t.strip():
        return "empty type"
    try:
        dt = exp.DataType.build(t, dialect="spark")
    except (SqlglotError, ValueError, TypeError, KeyError, AttributeError) as e:
        del e
        return f"'{t}' is not a Spark SQL type: use e.g. string, int, long, double, decimal(10,2), date, " \
               "timestamp, boolean"
    if dt.this == exp.DataType.Type.USERDEFINED:
        return f"'{t}' is not a Spark SQL type: use e.g. string, int, long, double, decimal(10,2), date, " \
               "timestamp, boolean"
    return None


# ---------------------------------------------------------------------------------------------------- job


# Run properties the scheduler sets on the runs it starts (see etl_framework/scheduler): readable as ${run.X}
# by the jobs of workflows that have such triggers; each trigger type says which (etl_framework.workflow_graph).
EVENT_RUN_PROPERTIES = ("event_files", "event_batch_id", "event_trigger")
SCHEDULE_RUN_PROPERTIES = ("scheduled_time",)


def trigger_run_properties(triggers: Any) -> tuple[str, ...]:
    from etl_framework.workflow_graph import run_properties_of

    kinds = {t.get("type") for t in triggers if isinstance(t, dict)} if isinstance(triggers, list) else set()
    return run_properties_of(k for k in kinds if isinstance(k, str))


def workflows_using(job_path: Path, project: Project | None) -> list[tuple[Path, dict[str, Any]]]:
    """(workflow file, run_properties) of every workflow in the project (jobs/ and the job's folder) that names
    this job file; cached per project."""
    from ruamel.yaml import YAML

    cache: dict[tuple, list[tuple[Path, Path, dict[str, Any]]]] = getattr(project, "_wf_cache", None) or {}
    folders = {job_path.parent.resolve()}
    if project is not None and project.jobs_dir.is_dir():
        folders.add(project.jobs_dir.resolve())
    found: list[tuple[Path, dict[str, Any]]] = []
    yaml = YAML(typ="safe")
    for folder in folders:
        files = list(_yaml_files(folder))
        key = (folder, *((f, *_stamp(f)) for f in files))  # a new key when a file is edited
        if key not in cache:
            entries: list[tuple[Path, Path, dict[str, Any]]] = []
            for wf in files:
                try:
                    data = yaml.load(wf.read_text(encoding="utf-8"))
                    expansion(data)  # an alias bomb is not walked here either
                except Exception:  # noqa: BLE001, S112 - a broken workflow file is reported when it is validated
                    continue
                if not (isinstance(data, dict) and "workflow" in data and isinstance(data.get("jobs"), dict)):
                    continue
                props = dict(data.get("run_properties")) if isinstance(data.get("run_properties"), dict) else {}
                props.update(dict.fromkeys(trigger_run_properties(data.get("triggers"))))
                for rel in data["jobs"].values():
                    if isinstance(rel, str):
                        entries.append((wf, (wf.parent / rel).resolve(), props))
            cache[key] = entries
        for wf, jp, props in cache[key]:
            if jp == job_path.resolve() and (wf, props) not in found:
                found.append((wf, props))
    if project is not None:
        try:
            object.__setattr__(project, "_wf_cache", cache)
        except (AttributeError, TypeError):
            pass
    return found


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def _yaml_files(folder: Path) -> Iterator[Path]:
    for p in sorted(folder.rglob("*")):
        if p.suffix in (".yaml", ".yml") and p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(folder).parts):
            yield p


def _strings(data: Any, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    if isinstance(data, str):
        yield path, data
    elif isinstance(data, dict):
        for k, v in data.items():
            yield from _strings(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _strings(v, path + (i,))


def check_run_refs(doc: YamlDoc, allowed: set[str], where: str) -> list[ConfigError]:
    errors = []
    for path, text in _strings(doc.data):
        if "${" not in text:
            continue
        for scope, name, off in references(text):
            if scope == "run" and name not in allowed:
                line, col = doc.scalar_pos(path, off)
                errors.append(ConfigError(doc.file, line, col, f"unknown run property '${{run.{name}}}': valid "
                                          f"are {', '.join(sorted(allowed))} ({where})" + suggest(name, allowed)))
    return errors


def check_job(loaded: LoadedJob, project: Project | None, run_known: bool = False) -> list[ConfigError]:
    """All semantic checks of one job file."""
    doc = loaded.doc
    if doc is None:
        return []
    errors: list[ConfigError] = []
    env_vars = project.env_config(loaded.env).vars if project is not None else {}
    ctx = _check_ctx(loaded, env_vars)
    if not run_known:
        def runs() -> list[ConfigError]:
            wfs = workflows_using(loaded.path, project)
            allowed = set(RUN_BUILTINS)
            for _, props in wfs:
                allowed |= {str(k) for k in props}
            where = "built-ins" + (", plus run_properties of " + ", ".join(w.name for w, _ in wfs) if wfs else
                                   "; no workflow of the project uses this job, so no run_properties")
            return check_run_refs(doc, allowed, where)
        _guard(errors, runs)
    _guard(errors, lambda: _check_sources(loaded, doc, ctx))
    _guard(errors, lambda: _check_incremental_sources(loaded, doc))
    _guard(errors, lambda: _check_jdbc_sources(loaded, doc, project))
    _guard(errors, lambda: _check_steps(loaded, doc, ctx))
    _guard(errors, lambda: _check_quality(loaded, doc))
    _guard(errors, lambda: _check_target(loaded, doc))
    _guard(errors, lambda: _check_catalog_tables(loaded, doc, project))
    _guard(errors, lambda: check_ownership(loaded, project))
    _guard(errors, lambda: _check_generated_iam(loaded, doc, project))
    return errors


def _check_generated_iam(loaded: LoadedJob, doc: YamlDoc, project: Project | None) -> list[ConfigError]:
    """`deploy: {iam: generate}`: what the generated policy must name has to be known before the run."""
    if project is None:
        return []
    deploy = project.env_config(loaded.env).deploy
    if deploy is None or deploy.iam != "generate":
        return []
    from etl_framework.deploy.iam import dynamic_secret_errors

    return dynamic_secret_errors(doc, loaded.config.job, doc.file)


def _check_sources(loaded: LoadedJob, doc: YamlDoc, ctx: Context) -> list[ConfigError]:
    cfg = loaded.config
    errors: list[ConfigError] = []
    names = list(cfg.sources)
    for name, src in cfg.sources.items():
        if src is None:
            continue
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            errors.append(doc.error(("sources", name), f"source name '{name}' must be a SQL identifier (letters, "
                                    "digits, '_'): it becomes a view name", at_key=True))
        if isinstance(src.schema_, dict):
            for col, typ in src.schema_.items():
                why = _spark_type_error(typ)
                if why:
                    errors.append(doc.error(("sources", name, "schema", col), f"sources.{name}.schema.{col}: {why}"))
        if src.push_down_predicate:
            errors += _expr_error(doc, ("sources", name, "push_down_predicate"), ctx, "condition")
        if src.schema_ == "catalog" and src.format != "catalog":
            errors.append(doc.error(("sources", name, "schema"), "schema 'catalog' is for format 'catalog' sources; "
                                    "give the columns (name: type) or 'infer'"))
    for i, c in enumerate(cfg.crawl):
        if c is None:
            continue
        if c.source and c.source not in cfg.sources:
            errors.append(doc.error(("crawl", i, "source"), f"crawl source '{c.source}' is not a source of this "
                                    f"job (sources: {', '.join(names)})" + suggest(c.source, names)))
        elif c.source and cfg.sources[c.source] is not None and cfg.sources[c.source].format == "catalog":
            errors.append(doc.error(("crawl", i, "source"), f"source '{c.source}' is read from the catalog; crawl "
                                    "a path instead ('path:')"))
    return errors


# ------------------------------------------------------------------------------- incremental and jdbc sources

# JDBC subprotocol -> the driver class Spark loads (the first three are resolved by `make` into .jars/)
JDBC_DRIVERS = {
    "postgresql": "org.postgresql.Driver",
    "mysql": "com.mysql.cj.jdbc.Driver",
    "mariadb": "org.mariadb.jdbc.Driver",
    "sqlite": "org.sqlite.JDBC",
    "redshift": "com.amazon.redshift.jdbc42.Driver",
    "sqlserver": "com.microsoft.sqlserver.jdbc.SQLServerDriver",
    "oracle": "oracle.jdbc.OracleDriver",
}
GLUE_PARALLEL_OPTIONS = ("hashfield", "hashexpression", "hashpartitions")
SPARK_PARALLEL_OPTIONS = ("partitionColumn", "lowerBound", "upperBound", "numPartitions")
JDBC_OWN_OPTIONS = ("url", "dbtable", "query", "user", "password", "driver")


def _check_incremental_sources(loaded: LoadedJob, doc: YamlDoc) -> list[ConfigError]:
    """Source/incremental combinations that no run could honour are config errors, not run-time failures."""
    errors: list[ConfigError] = []
    for name, src in loaded.config.sources.items():
        if src is None or src.incremental is None:
            continue
        inc = src.incremental
        base = ("sources", name, "incremental")
        if inc.mode == "files" and src.format == "jdbc":
            errors.append(doc.error(base + ("mode",), f"source '{name}': a jdbc source has no files to bookmark: "
                                    "use {mode: watermark, column: <an ever-increasing column, e.g. updated_at>}"))
        if inc.mode == "files" and src.format in ("delta", "iceberg"):
            errors.append(doc.error(base + ("mode",), f"source '{name}': a {src.format} table is read at its "
                                    "committed state, not file by file: use {mode: watermark, column: ...}"))
        if isinstance(inc.column, list) and src.format != "jdbc":
            errors.append(doc.error(base + ("column",), f"source '{name}': a compound watermark key is for jdbc "
                                    "sources (pushed into the database's WHERE); a file or catalog source takes "
                                    "one column"))
        for j, col in enumerate(inc.columns):
            if not isinstance(col, str) or not col.strip():
                errors.append(doc.error(base + ("column",) + ((j,) if isinstance(inc.column, list) else ()),
                                        f"source '{name}': empty watermark column"))
            elif src.format == "jdbc" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?",
                                                           col):
                errors.append(doc.error(base + ("column",) + ((j,) if isinstance(inc.column, list) else ()),
                                        f"source '{name}': watermark column '{col}' must be a plain column name "
                                        "(it goes into the database's WHERE)"))
    return errors


def _check_jdbc_sources(loaded: LoadedJob, doc: YamlDoc, project: Project | None) -> list[ConfigError]:
    """The shape of `format: jdbc` sources, without connecting: url scheme, table xor query (a SELECT), the
    password a `${secret:NAME}`, a known driver, parallel-read options that fit together."""
    from etl_framework.config.interpolate import SECRET_REF

    errors: list[ConfigError] = []
    for name, src in loaded.config.sources.items():
        if src is None or src.format != "jdbc":
            continue
        base = ("sources", name)
        url = src.url or ""
        m = re.match(r"jdbc:([a-z0-9]+):", url)
        if not m:
            errors.append(doc.error(base + ("url",), f"source '{name}': url must start with "
                                    "'jdbc:<database>:' (e.g. jdbc:postgresql://host:5432/shop)"))
        elif m.group(1) not in JDBC_DRIVERS and not src.driver:
            errors.append(doc.error(base + ("url",), f"source '{name}': no known driver for 'jdbc:{m.group(1)}:': "
                                    f"give 'driver:' (the class name) and its JAR under 'jars:' (known: "
                                    f"{', '.join(JDBC_DRIVERS)})"))
        if re.search(r"(?i)[?;&:]password=(?!\$\{secret:)", url) or re.search(r"//[^/@:]+:[^/@]+@", url):
            errors.append(doc.error(base + ("url",), f"source '{name}': a password in the url would be logged and "
                                    "stored: write it as 'password: ${secret:NAME}'"))
        if src.password is not None and not SECRET_REF.fullmatch(src.password.strip()):
            errors.append(doc.error(base + ("password",), f"source '{name}': password must be a secret reference, "
                                    "'${secret:NAME}' (resolved at run time from the environment variable NAME or "
                                    "AWS Secrets Manager), never the password itself"))
        if src.password is not None and not src.user:
            errors.append(doc.error(base + ("password",), f"source '{name}': a password needs 'user'"))
        if src.query is not None:
            why = _jdbc_query_error(src.query)
            if why:
                errors.append(doc.error(base + ("query",), f"source '{name}': {why}"))
        if src.table is not None and not re.fullmatch(r'[A-Za-z0-9_$."`\[\]]+', src.table):
            errors.append(doc.error(base + ("table",), f"source '{name}': table '{src.table}' must be a table name "
                                    "([schema.]table); for anything else write 'query: SELECT ...'"))
        for key in src.options:
            if key in JDBC_OWN_OPTIONS:
                errors.append(doc.error(base + ("options", key), f"source '{name}': '{key}' is a key of the source "
                                        "itself, not a reader option: move it up one level", at_key=True))
        glue = [k for k in GLUE_PARALLEL_OPTIONS if k in src.options]
        spark_opts = [k for k in SPARK_PARALLEL_OPTIONS if k in src.options]
        if spark_opts:
            errors.append(doc.error(base + ("options", spark_opts[0]), f"source '{name}': write a parallel read as "
                                    "'parallel: {column: id, partitions: 4}' (bounds are found with one min/max "
                                    "query when not given)", at_key=True))
        if glue and src.parallel is not None:
            errors.append(doc.error(base + ("options", glue[0]), f"source '{name}': '{glue[0]}' (Glue's name) and "
                                    "'parallel' say the same thing: keep one", at_key=True))
        elif glue and not ({"hashfield", "hashexpression"} & set(glue)):
            errors.append(doc.error(base + ("options", glue[0]), f"source '{name}': 'hashpartitions' needs "
                                    "'hashfield' or 'hashexpression' (the column that strides the read)",
                                    at_key=True))
        elif "hashpartitions" in src.options and not str(src.options["hashpartitions"]).isdigit():
            errors.append(doc.error(base + ("options", "hashpartitions"), f"source '{name}': hashpartitions is a "
                                    "number of partitions"))
        p = src.parallel
        if p is not None and (p.lower_bound is None) != (p.upper_bound is None):
            errors.append(doc.error(base + ("parallel",), f"source '{name}': give both lower_bound and upper_bound, "
                                    "or neither (then one min/max query finds them)"))
        for j, jar in enumerate(src.jars):
            root = loaded.path.parent
            if "${" not in jar and not (Path(jar) if Path(jar).is_absolute() else root / jar).is_file():
                errors.append(doc.error(base + ("jars", j), f"source '{name}': driver JAR {jar} does not exist "
                                        "(a relative path is relative to the job file)"))
    return errors


def _jdbc_query_error(query: str) -> str | None:
    """A jdbc `query` must be one SELECT (it runs as a subquery in the database): None when it is."""
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", query, flags=re.DOTALL).strip().rstrip(";").strip()
    if not text:
        return "query is empty: write a SELECT, or use 'table:'"
    if ";" in text:
        return "query must be one statement (found ';')"
    first = text.split(None, 1)[0].upper()
    if first not in ("SELECT", "WITH", "("):
        return (f"query must be a SELECT (it runs inside the database as a subquery); this starts with "
                f"'{first}'")
    try:
        import sqlglot
        from sqlglot import exp

        tree = sqlglot.parse_one(text)
    except Exception:  # noqa: BLE001 - the database's own dialect may be beyond sqlglot: the database decides
        return None
    if not isinstance(tree, exp.Query):
        return f"query must be a SELECT; this parses as {type(tree).__name__}"
    return None


def _expr_error(doc: YamlDoc, path: tuple, ctx: Context, kind: str = "expr") -> list[ConfigError]:
    raw = _raw(doc, path)
    if not isinstance(raw, str):
        return []
    text, back = substitute(raw, ctx)
    _, msg, off = parse_expression(text, kind)
    if msg:
        line, col = doc.scalar_pos(path, back(off))
        return [ConfigError(doc.file, line, col, f"{_label(path)}: {msg}")]
    return []


def _raw(doc: YamlDoc, path: tuple) -> Any:
    node = doc.data
    for p in path:
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _label(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out


def _check_steps(loaded: LoadedJob, doc: YamlDoc, ctx: Context) -> list[ConfigError]:
    from sqlglot import exp

    cfg = loaded.config
    errors: list[ConfigError] = []
    sources = list(cfg.sources)
    for i, step in enumerate(cfg.transform):
        if step is None:
            continue
        base = ("transform", i)
        kind = step.kind
        if kind == "sql":
            raw = _raw(doc, base + ("sql",))
            if not isinstance(raw, str):
                continue
            text, back = substitute(raw, ctx)
            tree, msg, off = parse_query(text)
            if msg:
                line, col = doc.scalar_pos(base + ("sql",), back(off))
                errors.append(ConfigError(doc.file, line, col, f"transform[{i}].sql: {msg}"))
                continue
            ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
            for table in tree.find_all(exp.Table):
                if table.db or not table.name:
                    continue  # database.table: read from the catalog
                if table.name in ctes or table.name in cfg.sources or table.name == "previous":
                    continue
                start = (table.this.meta or {}).get("start", 0) if isinstance(table.this, exp.Expression) else 0
                line, col = doc.scalar_pos(base + ("sql",), back(start))
                known = sources + ["previous"]
                errors.append(ConfigError(doc.file, line, col, f"transform[{i}].sql reads '{table.name}', which is "
                                          f"neither a source ({', '.join(sources)}), nor 'previous' (the result of "
                                          "the step before), nor a CTE, nor a catalog table database.table"
                                          + suggest(table.name, known)))
        elif kind == "filter":
            errors += _expr_error(doc, base + ("filter",), ctx, "condition")
        elif kind == "select":
            for j in range(len(step.select or [])):
                errors += _expr_error(doc, base + ("select", j), ctx, "expr")
        elif kind == "with_columns":
            for col in step.with_columns or {}:
                errors += _expr_error(doc, base + ("with_columns", col), ctx, "expr")
        elif kind == "aggregate" and step.aggregate:
            for col in step.aggregate.aggs:
                errors += _expr_error(doc, base + ("aggregate", "aggs", col), ctx, "expr")
            for j in range(len(step.aggregate.group_by)):
                errors += _expr_error(doc, base + ("aggregate", "group_by", j), ctx, "expr")
        elif kind == "dedupe" and step.dedupe and step.dedupe.order_by is not None:
            if isinstance(step.dedupe.order_by, str):
                errors += _expr_error(doc, base + ("dedupe", "order_by"), ctx, "order")
            else:
                for j in range(len(step.dedupe.order_by)):
                    errors += _expr_error(doc, base + ("dedupe", "order_by", j), ctx, "order")
        elif kind == "join" and step.join:
            if step.join.with_ not in cfg.sources:
                errors.append(doc.error(base + ("join", "with"), f"transform[{i}].join.with: '{step.join.with_}' "
                                        f"is not a source of this job (sources: {', '.join(sources)})"
                                        + suggest(step.join.with_, sources)))
            if isinstance(step.join.on, str):
                errors += _expr_error(doc, base + ("join", "on"), ctx, "condition")
            if step.join.how == "cross" and step.join.on:
                errors.append(doc.error(base + ("join", "on"), "a cross join takes no 'on'"))
        elif kind == "union" and step.union:
            for j, other in enumerate(step.union.with_):
                if other not in cfg.sources:
                    errors.append(doc.error(base + ("union", "with", j), f"transform[{i}].union.with: '{other}' is "
                                            f"not a source of this job (sources: {', '.join(sources)})"
                                            + suggest(other, sources)))
        elif kind == "cast":
            for col, typ in (step.cast or {}).items():
                why = _spark_type_error(typ)
                if why:
                    errors.append(doc.error(base + ("cast", col), f"transform[{i}].cast.{col}: {why}"))
        elif kind == "python" and step.python and not PYTHON_REF.match(step.python):
            errors.append(doc.error(base + ("python",), f"transform[{i}].python: '{step.python}' must be "
                                    "'package.module:function' (called as function(df, ctx) -> df)"))
    return errors


def _check_quality(loaded: LoadedJob, doc: YamlDoc) -> list[ConfigError]:
    from etl_framework.config.gx_registry import EXPECTATIONS

    errors: list[ConfigError] = []
    names: dict[str, int] = {}
    for i, e in enumerate(loaded.config.quality):
        if e is None:
            continue
        base = ("quality", i)
        info = EXPECTATIONS.get(e.expect)
        if info is None:
            hint = suggest(e.expect, list(EXPECTATIONS))
            if not hint and not e.expect.startswith("expect_"):
                hint = "; expectation types start with 'expect_' (see `etl schema --kind job` for the list)"
            errors.append(doc.error(base + ("expect",), f"quality[{i}]: unknown expectation type '{e.expect}' "
                                    "(not in Great Expectations' registry)" + hint))
            continue
        allowed = info["kwargs"]
        ours = ["expect", "on_fail", "name"]
        for k in e.kwargs:
            if k not in allowed:
                hint = suggest(k, allowed + ours) or f" (it takes: {', '.join(_user_kwargs(allowed) + ours)})"
                errors.append(doc.error(base + (k,), f"quality[{i}]: {e.expect} has no keyword argument '{k}'"
                                        + hint, at_key=True))
        missing = [k for k in info["required"] if k not in e.kwargs]
        if missing:
            errors.append(doc.error(base, f"quality[{i}]: {e.expect} needs {', '.join(missing)}", at_key=True))
        if e.on_fail == "quarantine" and not info["row_level"]:
            errors.append(doc.error(base + ("on_fail",), f"quality[{i}]: on_fail 'quarantine' needs a row-level "
                                    f"expectation (column values, column pairs, multicolumn); {e.expect} is "
                                    f"{info['domain'].replace('_', '-')}-level: use 'fail' or 'warn'"))
        rule = e.rule_name
        if rule in names:
            errors.append(doc.error(base, f"quality[{i}]: the rule name '{rule}' is already used by quality"
                                    f"[{names[rule]}]: give one of them a distinct 'name:'", at_key=True))
        names.setdefault(rule, i)
    return errors


def _user_kwargs(kwargs: list[str]) -> list[str]:
    hidden = {"catch_exceptions", "meta", "notes", "result_format", "windows", "description", "severity"}
    return [k for k in kwargs if k not in hidden]


def _check_target(loaded: LoadedJob, doc: YamlDoc) -> list[ConfigError]:
    t = loaded.config.target
    errors: list[ConfigError] = []
    if t is None:
        return errors
    if t.mode == "overwrite_partitions" and not t.partition_by:
        errors.append(doc.error(("target", "mode"), "mode 'overwrite_partitions' needs 'partition_by' (it replaces "
                                "only the partitions present in the data)"))
    seen: set[str] = set()
    for j, col in enumerate(t.partition_by):
        if col in seen:
            errors.append(doc.error(("target", "partition_by", j), f"partition column '{col}' is listed twice"))
        seen.add(col)
    return errors


# --------------------------------------------------------------------- catalog names and produced columns


def _local_catalog(project: Project | None, env: str) -> Any:
    """The env's catalog when it is local and its file exists (validate never creates one), else None."""
    if project is None:
        return None
    cfg = project.env_config(env)
    if cfg.catalog.backend != "local":
        return None
    path = Path(cfg.catalog.path)
    if not path.is_absolute():
        path = project.root / path
    if not path.is_file():
        return None
    from etl_framework.catalog.local import LocalCatalog

    return LocalCatalog(path)


def project_tables(job_path: Path, project: Project | None) -> tuple[set[str], set[str]]:
    """(database.table names, databases with names not known before a run) that the project's own files put into
    the catalog: jobs' `register:` (with the quarantine and bad-records tables beside it), crawl entries and
    workflow crawlers. A table one of them makes is no typo even before it exists."""
    from ruamel.yaml import YAML

    from etl_framework.catalog.base import glue_name

    folders = {job_path.parent.resolve()}
    if project is not None and project.jobs_dir.is_dir():
        folders.add(project.jobs_dir.resolve())
    names: set[str] = set()
    open_dbs: set[str] = set()
    yaml = YAML(typ="safe")

    def add(db: Any, table: Any, path: Any = None) -> None:
        if not isinstance(db, str):
            return
        if isinstance(table, str) and "${" not in table and "${" not in db:
            names.add(f"{db}.{table}")
        elif table is None and isinstance(path, str) and "${" not in path and "${" not in db:
            names.add(f"{db}.{glue_name(path.rstrip('/').rsplit('/', 1)[-1])}")
        else:
            open_dbs.add(db)

    for folder in folders:
        for f in _yaml_files(folder):
            try:
                data = yaml.load(f.read_text(encoding="utf-8"))
                expansion(data)
            except Exception:  # noqa: BLE001, S112 - a broken file is reported when it is validated
                continue
            if not isinstance(data, dict):
                continue
            reg = data.get("register")
            if isinstance(reg, dict) and isinstance(reg.get("table"), str):
                for suffix in ("", "_quarantine", "_bad_records"):
                    add(reg.get("database"), reg["table"] + suffix)
            crawl = data.get("crawl")
            for c in crawl if isinstance(crawl, list) else []:
                if isinstance(c, dict):
                    src = (data.get("sources") or {}).get(c.get("source")) if isinstance(data.get("sources"),
                                                                                          dict) else None
                    add(c.get("database"), c.get("table"), c.get("path") or (src or {}).get("path"))
            crawlers = data.get("crawlers")
            if isinstance(crawlers, dict):
                for c in crawlers.values():
                    if isinstance(c, dict):
                        add(c.get("database"), c.get("table"), c.get("path"))
    return names, open_dbs


def _check_catalog_tables(loaded: LoadedJob, doc: YamlDoc, project: Project | None) -> list[ConfigError]:
    """Checks that need the env's catalog, when it is local: a catalog table name that neither the catalog nor a
    file of the project holds (with did-you-mean), and a `partition_by` column that the declared schemas and the
    transform cannot produce (columns followed by `lineage`; nothing is said where they cannot be known)."""
    from sqlglot import exp

    from etl_framework.catalog.base import did_you_mean
    from etl_framework.config.lineage import output_columns

    cfg = loaded.config
    errors: list[ConfigError] = []
    catalog = _local_catalog(project, loaded.env)
    tables: dict[str, Any] = {}
    try:
        if catalog is not None:
            tables = {t.full_name: t for t in catalog.list_tables()}
            made, open_dbs = project_tables(loaded.path, project)
            known = sorted(set(tables) | made)

            def check(ref: str, path: tuple, offset: int | None = None) -> None:
                db = ref.split(".", 1)[0]
                if ref in known or db in open_dbs or "${" in ref:
                    return
                msg = (f"catalog table '{ref}' is neither in the catalog ({display(catalog.path)}) nor registered "
                       "or crawled by a job or workflow of this project" + did_you_mean(ref, known))
                if offset is None:
                    errors.append(doc.error(path, msg))
                else:
                    line, col = doc.scalar_pos(path, offset)
                    errors.append(ConfigError(doc.file, line, col, msg))

            from etl_framework.config.project import display_path as display

            for name, src in cfg.sources.items():
                if src is not None and src.format == "catalog" and src.table and "." in src.table:
                    check(src.table, ("sources", name, "table"))
            ctx = _check_ctx(loaded, project.env_config(loaded.env).vars if project is not None else {})
            for i, step in enumerate(cfg.transform):
                if step is None or step.kind != "sql":
                    continue
                raw = _raw(doc, ("transform", i, "sql"))
                if not isinstance(raw, str):
                    continue
                text, back = substitute(raw, ctx)
                tree, msg, _ = parse_query(text)
                if msg or tree is None:
                    continue
                for t in tree.find_all(exp.Table):
                    if t.db and t.name and not t.catalog:
                        start = (t.args["db"].meta or {}).get("start", 0) if isinstance(
                            t.args.get("db"), exp.Expression) else 0
                        check(f"{t.db}.{t.name}", ("transform", i, "sql"), back(start))
    finally:
        if catalog is not None:
            catalog.close()

    def catalog_columns(ref: str) -> list[str] | None:
        t = tables.get(ref)
        return None if t is None else [c.name for c in [*t.columns, *t.partition_keys]]

    cols = output_columns(cfg, catalog_columns if catalog is not None else None)
    if cols is not None and cfg.target is not None:
        have = {c.lower() for c in cols}
        for j, col in enumerate(cfg.target.partition_by):
            if col.lower() not in have:
                errors.append(doc.error(("target", "partition_by", j), f"partition column '{col}' is not a column "
                                        f"the job produces (after the transform: {', '.join(cols)})"
                                        + suggest(col, cols)))
    return errors


# ----------------------------------------------------------------------------------------------- workflow


def check_workflow(loaded: LoadedWorkflow, project: Project | None) -> list[ConfigError]:
    doc = loaded.doc
    if doc is None:
        return []
    errors: list[ConfigError] = []
    _guard(errors, lambda: _check_names(loaded, doc))
    _guard(errors, lambda: _check_triggers(loaded, doc))
    _guard(errors, lambda: _check_graph(loaded, doc))
    _guard(errors, lambda: _check_orchestrator(loaded, doc, project))
    triggers = loaded.doc.data.get("triggers") if loaded.doc and isinstance(loaded.doc.data, dict) else None
    wf_props = {str(k) for k in loaded.config.run_properties} | set(trigger_run_properties(triggers))
    _guard(errors, lambda: check_run_refs(doc, set(RUN_BUILTINS) | wf_props,
                                          "built-ins, plus this workflow's run_properties"))
    return errors


def _check_orchestrator(loaded: LoadedWorkflow, doc: YamlDoc, project: Project | None) -> list[ConfigError]:
    """What the env's orchestrator cannot run: neither runs a `maintain:` action (table maintenance runs in the local
    engine); Glue Workflows cannot test run properties (conditions on data) nor start one workflow from different
    start triggers (`WorkflowGraph.glue_problems`); Step Functions cannot test a trigger that watches no node
    (`WorkflowGraph.sfn_problems`)."""
    from etl_framework.workflow_graph import WorkflowGraph, is_property

    def t_name(i: int) -> str:
        return loaded.config.triggers[i].name

    def job_file(job: str) -> str:  # as the project's own CLI is given it (relative to the project)
        path = loaded.job_paths.get(job)
        if path is None:
            return f"<{job}'s job file>"
        if project is not None:
            try:
                return Path(path).resolve().relative_to(Path(project.root).resolve()).as_posix()
            except ValueError:
                pass
        return str(path)

    deploy = None
    if project is not None:
        try:
            deploy = project.env_config(loaded.env).deploy
        except Exception:  # noqa: BLE001 - a broken env config is reported by its own check
            deploy = None
    if deploy is None:
        return []
    graph = WorkflowGraph(loaded.config)
    maintain = [doc.error(("triggers", i, "actions", j, "maintain"), f"trigger '{t_name(i)}': a maintain action "
                          f"cannot be deployed (env {loaded.env}: deploy.orchestrator {deploy.orchestrator}): "
                          "maintain actions run in the local engine and the scheduler (`etl workflow run`, "
                          "`etl scheduler`); on AWS run `etl maintain "
                          f"{job_file(a.maintain)} --env {loaded.env}` from a machine or scheduled task that reaches "
                          "the tables, and drop the action from this workflow", at_key=True)
                for i, j, a in graph.maintain_actions()]
    if deploy.orchestrator == "step_functions":
        return maintain + [doc.error(("triggers", i, "name"), f"{msg} (env {loaded.env}: deploy.orchestrator "
                                     "step_functions)") for i, msg in graph.sfn_problems()]
    starts = [doc.error(("triggers", i, "name"), f"{msg} (env {loaded.env}: deploy.orchestrator glue_workflows)")
              for i, msg in graph.glue_problems()]
    return maintain + starts + [
        doc.error(("triggers", i, "conditions", j, "property"), f"trigger '{t.name}': a condition on run property "
                  f"'{c.property}' cannot be deployed to Glue Workflows (env {loaded.env}: deploy.orchestrator "
                  "glue_workflows); it runs locally and on Step Functions: set deploy: {orchestrator: "
                  "step_functions} in the env config", at_key=True)
        for i, j, t, c in graph.each_condition() if is_property(c)]


def _check_names(loaded: LoadedWorkflow, doc: YamlDoc) -> list[ConfigError]:
    cfg = loaded.config
    errors: list[ConfigError] = []
    seen: dict[str, int] = {}
    for i, t in enumerate(cfg.triggers):
        if t is None:
            continue
        if t.name in seen:
            errors.append(doc.error(("triggers", i, "name"), f"duplicate trigger name '{t.name}' (also "
                                    f"triggers[{seen[t.name]}]): trigger names are unique in a workflow"))
        seen.setdefault(t.name, i)
    for name in cfg.crawlers:
        if name in cfg.jobs:
            errors.append(doc.error(("crawlers", name), f"'{name}' is both a job and a crawler: node names are "
                                    "unique in a workflow", at_key=True))
    for name in list(cfg.jobs) + list(cfg.crawlers):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            where = "jobs" if name in cfg.jobs else "crawlers"
            errors.append(doc.error((where, name), f"node name '{name}' may use letters, digits, '_', '.', '-' "
                                    "only", at_key=True))
    return errors


def _node_error(cfg: Any, doc: YamlDoc, path: tuple, job: str | None, crawler: str | None,
                maintain: str | None = None, maintained: set[str] | None = None) -> ConfigError | None:
    if maintain:
        if maintain in cfg.crawlers:
            return doc.error(path + ("maintain",), f"'{maintain}' is a crawler: 'maintain' names a job of this "
                             "workflow, whose tables it maintains")
        if maintain not in cfg.jobs:
            return doc.error(path + ("maintain",), f"unknown job '{maintain}': 'maintain' names a job under 'jobs:' "
                             f"of this workflow (jobs: {', '.join(cfg.jobs) or 'none'})"
                             + suggest(maintain, list(cfg.jobs)))
        if maintained is not None and maintain not in maintained:
            return doc.error(path + ("maintain",), f"no trigger maintains '{maintain}': a maintain condition watches "
                             f"a `maintain: {maintain}` action of this workflow")
        return None
    if job:
        if job in cfg.jobs:
            return None
        if job in cfg.crawlers:
            return doc.error(path + ("job",), f"'{job}' is a crawler: write 'crawler: {job}'")
        return doc.error(path + ("job",), f"unknown job '{job}': not under 'jobs:' of this workflow (jobs: "
                         f"{', '.join(cfg.jobs) or 'none'})" + suggest(job, list(cfg.jobs)))
    if crawler:
        if crawler in cfg.crawlers:
            return None
        if crawler in cfg.jobs:
            return doc.error(path + ("crawler",), f"'{crawler}' is a job: write 'job: {crawler}'")
        return doc.error(path + ("crawler",), f"unknown crawler '{crawler}': not under 'crawlers:' of this "
                         f"workflow (crawlers: {', '.join(cfg.crawlers) or 'none'})"
                         + suggest(crawler, list(cfg.crawlers)))
    return None


def _check_triggers(loaded: LoadedWorkflow, doc: YamlDoc) -> list[ConfigError]:
    from etl_framework.workflow_graph import NUMERIC_OPS, WorkflowGraph, as_number, kind_of

    cfg = loaded.config
    errors: list[ConfigError] = []
    graph = WorkflowGraph(cfg)
    maintained = {j for j in graph.maintain_nodes().values()}
    for i, t in graph.indexed:
        for where, msg, offset in kind_of(t).check(t):
            line, col = doc.scalar_pos(("triggers", i) + where, offset)
            errors.append(ConfigError(doc.file, line, col, msg))
    for i, j, t, c in graph.each_condition():
        path = ("triggers", i, "conditions", j)
        if c.property:
            if c.op in NUMERIC_OPS and as_number(c.value) is None:
                errors.append(doc.error(path + ("value",), f"trigger '{t.name}': '{c.op}' compares numbers, "
                                        f"but value {c.value!r} is not a number"))
            continue
        err = _node_error(cfg, doc, path, c.job, c.crawler, c.maintain, maintained)
        if err:
            errors.append(err)
            continue
        if c.maintain and c.state not in JOB_STATES:
            errors.append(doc.error(path + ("state",), f"a condition on maintain '{c.maintain}' cannot watch state "
                                    f"{c.state}: a maintain node ends {', '.join(JOB_STATES)}, as a job"))
        if c.job and c.state not in JOB_STATES:
            errors.append(doc.error(path + ("state",), f"a condition on job '{c.job}' cannot watch state "
                                    f"{c.state}: Glue watches jobs for {', '.join(JOB_STATES)}"))
        if c.crawler and c.state not in CRAWLER_STATES:
            errors.append(doc.error(path + ("state",), f"a condition on crawler '{c.crawler}' cannot watch "
                                    f"state {c.state}: Glue watches crawlers for {', '.join(CRAWLER_STATES)}"))
    for i, t in graph.indexed:
        base = ("triggers", i)
        seen_nodes: set[str] = set()
        for j, a in enumerate(t.actions):
            path = base + ("actions", j)
            err = _node_error(cfg, doc, path, a.job, a.crawler, a.maintain)
            if err:
                errors.append(err)
                continue
            if a.node in seen_nodes:
                errors.append(doc.error(path, f"trigger '{t.name}' starts '{a.node}' twice", at_key=True))
            seen_nodes.add(a.node)
            if a.job and a.job in loaded.jobs and a.arguments:
                params = loaded.jobs[a.job].config.params
                for k in a.arguments:
                    if k not in params:
                        errors.append(doc.error(path + ("arguments", k), f"job '{a.job}' has no param '{k}' "
                                                f"(params: {', '.join(params) or 'none'})"
                                                + suggest(str(k), list(params)), at_key=True))
    return errors


def _check_graph(loaded: LoadedWorkflow, doc: YamlDoc) -> list[ConfigError]:
    """Cycles, and conditions that can never be met (their node is started by no trigger, or only by triggers
    that can never fire)."""
    from etl_framework.workflow_graph import WorkflowGraph

    cfg = loaded.config
    errors: list[ConfigError] = []
    if not cfg.triggers:
        return errors
    graph = WorkflowGraph(cfg)
    if any(t is None for t in cfg.triggers):
        # some triggers are invalid: reachability would mislead, but a cycle among the valid ones is still one
        return _check_cycles(graph, doc)
    if not graph.starters():
        errors.append(doc.error(("triggers",), "no trigger starts this workflow: add an on_demand, scheduled or "
                                "event trigger", at_key=True))
    direct, later = graph.unmet()
    for i, j, node in direct:
        errors.append(doc.error(("triggers", i, "conditions", j), f"this condition can never be met: no "
                                f"trigger starts '{node}'", at_key=True))
    for i, nodes in later:
        errors.append(doc.error(("triggers", i, "name"), f"trigger '{cfg.triggers[i].name}' can never fire: "
                                f"{', '.join(nodes)} only start(s) after triggers that can never fire"))
    errors += _check_cycles(graph, doc)
    return errors


def _check_cycles(graph: Any, doc: YamlDoc) -> list[ConfigError]:
    """A cycle: node -> (a trigger watching it) -> node ... -> the first node; reported at the closing trigger."""
    out = []
    for cyc in graph.cycles():
        name = graph.config.triggers[cyc.trigger_index].name
        out.append(doc.error(("triggers", cyc.trigger_index, "name"), f"workflow cycle: {' -> '.join(cyc.nodes)} "
                             f"(trigger '{name}' closes it); Glue workflows are acyclic"))
    return out
