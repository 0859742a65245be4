"""`format: jdbc` sources (SPEC §4.3): a table or a SELECT of any database with a JDBC driver, read by Spark's JDBC
source, optionally in parallel strides, optionally incremental on a watermark key that the database filters.

How a read goes (every query runs in the database; nothing is read in full and filtered in Spark):
1. the schema: Spark's own `SELECT * FROM <table> WHERE 1=0` — it also proves the connection, user and password,
   and lets the watermark and stride columns be checked by name before any data moves;
2. incremental only: the high end of this run, `hi`, with one cheap `max(key)` query (a compound key
   `[updated_at, id]` asks for the next column's max at the previous one's max). The run reads exactly
   `low < key <= hi` (lexicographic on a compound key) where `low` is the bookmark: every parallel query sees the
   same fixed range, so a row inserted or updated while the job reads gets a key above `hi` and is read by the
   next run — never lost between two runs, never read twice. `hi` is the watermark carried in the target's commit;
3. parallel only: `lower_bound`/`upper_bound` of the stride column with one `min/max` query when not given, then
   Spark's `partitionColumn/lowerBound/upperBound/numPartitions` (Glue's `hashfield`/`hashexpression`/
   `hashpartitions` reader options are taken as those).

The password is a `${secret:NAME}`, resolved here, at the moment of use; it goes to the driver only (Spark redacts
`password` in plans). Errors name the host and the user, never the password.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_framework.errors import JobFailed

if TYPE_CHECKING:
    from etl_framework.config.model import Source
    from etl_framework.engine.job import JobRunState

STAGE = "extract"
DEFAULT_FETCHSIZE = 1000
GLUE_KEYS = ("hashfield", "hashexpression", "hashpartitions")


# subprotocol -> the driver JAR `make` resolves into .jars/ (scripts/jars-pom.xml), by file-name prefix
BUNDLED_JARS = {"postgresql": "postgresql-", "mysql": "mysql-connector-j-", "mariadb": "mariadb-java-client-",
                "sqlite": "sqlite-jdbc-"}


def source_jars(config: Any, root: Path | None) -> list[Path]:
    """The `jars:` of a job's jdbc sources (drivers that do not come with `make`), as absolute paths (the loader
    made them absolute against the job file; `root` only for configs built in code)."""
    out: list[Path] = []
    for src in config.sources.values():
        for jar in getattr(src, "jars", None) or []:
            p = Path(jar)
            p = p if p.is_absolute() else (root or Path.cwd()) / p
            if p not in out:
                out.append(p)
    return out


def driver_jars(config: Any, root: Path | None, jars_dir: Path) -> list[Path]:
    """Every driver JAR a job's jdbc sources need on Glue: the bundled one of each url's database (from .jars/)
    and the sources' own `jars:`."""
    out: list[Path] = []
    for src in config.sources.values():
        if src.format != "jdbc":
            continue
        m = re.match(r"jdbc:([a-z0-9]+):", src.url or "")
        prefix = BUNDLED_JARS.get(m.group(1)) if m else None
        if prefix:
            found = sorted(jars_dir.glob(prefix + "[0-9]*.jar"))
            if found and found[-1] not in out:
                out.append(found[-1])
    return out + [j for j in source_jars(config, root) if j not in out]


def driver_class(src: Source) -> str | None:
    from etl_framework.config.checks import JDBC_DRIVERS

    if src.driver:
        return src.driver
    m = re.match(r"jdbc:([a-z0-9]+):", src.url or "")
    return JDBC_DRIVERS.get(m.group(1)) if m else None


def where_of(url: str) -> str:
    """host:port/database of a JDBC url, with anything after '?' or ';' left out (it may hold credentials)."""
    rest = re.sub(r"^jdbc:[a-z0-9]+:", "", url)
    rest = re.split(r"[?;]", rest, maxsplit=1)[0]
    rest = re.sub(r"^//[^/@]*@", "//", rest)  # user:password@ never printed
    return rest.removeprefix("//") or url.split(":", 2)[1]


def _literal(v: Any) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int | float):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def after(keys: list[str], values: list[Any]) -> str:
    """SQL for `(k1, k2, ...) > (v1, v2, ...)` (lexicographic), written without row values so every database
    takes it."""
    terms = []
    for i, (k, v) in enumerate(zip(keys, values, strict=True)):
        eq = [f"{keys[j]} = {_literal(values[j])}" for j in range(i)]
        terms.append("(" + " AND ".join([*eq, f"{k} > {_literal(v)}"]) + ")")
    return "(" + " OR ".join(terms) + ")"


def up_to(keys: list[str], values: list[Any]) -> str:
    """SQL for `(k1, ...) <= (v1, ...)` with no key NULL."""
    terms = []
    for i, (k, v) in enumerate(zip(keys, values, strict=True)):
        eq = [f"{keys[j]} = {_literal(values[j])}" for j in range(i)]
        terms.append("(" + " AND ".join([*eq, f"{k} < {_literal(v)}"]) + ")")
    terms.append("(" + " AND ".join(f"{k} = {_literal(v)}" for k, v in zip(keys, values, strict=True)) + ")")
    return "(" + " OR ".join(terms) + ")"


class JdbcReader:
    """One jdbc source's connection settings; every query goes through Spark's JDBC source."""

    def __init__(self, state: JobRunState, name: str, src: Source) -> None:
        from etl_framework.config.interpolate import resolve_secrets
        from etl_framework.stages.extract import option_value

        self.state, self.name, self.src = state, name, src
        self.url = str(resolve_secrets(src.url or ""))
        self.where = where_of(src.url or "")
        self.user = src.user
        opts = {k: option_value(v) for k, v in resolve_secrets(dict(src.options)).items() if k not in GLUE_KEYS}
        opts.setdefault("fetchsize", str(src.fetchsize or DEFAULT_FETCHSIZE))
        driver = driver_class(src)
        if driver:
            opts["driver"] = driver
        if src.user:
            opts["user"] = src.user
        self._password = str(resolve_secrets(src.password)) if src.password is not None else None
        self.opts = opts
        self.base = src.table if src.table else f"({src.query.strip().rstrip(';')}) etl_query"  # type: ignore[union-attr]

    def reader(self) -> Any:
        r = self.state.spark.read.format("jdbc").option("url", self.url).options(**self.opts)
        if self._password is not None:
            r = r.option("password", self._password)
        return r

    def load(self, dbtable: str, **extra: str) -> Any:
        try:
            return self.reader().option("dbtable", dbtable).options(**extra).load()
        except Exception as e:  # noqa: BLE001 - made readable: host, user, the database's own words
            raise self.failure(e) from None

    def first(self, sql: str, columns: list[str]) -> Any:
        """The one row of a small query (min/max), run by the database; every value read as the driver's text
        (`customSchema`: exact digits, and no type guess on an expression's result, which SQLite lacks)."""
        try:
            return self.load(f"({sql}) etl_stats",
                             customSchema=", ".join(f"{c} STRING" for c in columns)).first()
        except JobFailed:
            raise
        except Exception as e:  # noqa: BLE001
            raise self.failure(e) from None

    def failure(self, e: BaseException) -> JobFailed:
        from etl_framework.config.interpolate import redact
        from etl_framework.engine.errors import error_text

        text = error_text(e)
        if self._password:
            text = text.replace(self._password, "***")
        text = str(redact(text))
        reason = _db_reason(text)
        who = f" as user '{self.user}'" if self.user else ""
        low = text.lower()
        if "no suitable driver" in low or "classnotfoundexception" in low:
            return JobFailed(self.state.job, STAGE, f"source '{self.name}': no JDBC driver for {self.where} "
                             f"({self.opts.get('driver', 'driver not given')}): {reason}",
                             "PostgreSQL, MySQL and MariaDB drivers come with `make install` (.jars/); for another "
                             "database give 'driver:' and its JAR under the source's 'jars:'")
        connect = any(w in low for w in ("connection refused", "authentication failed", "access denied",
                                         "could not connect", "communications link failure", "unknownhost",
                                         "connection attempt failed", "no pg_hba.conf entry")) or bool(
            re.search(r'database "?[^"\s]*"? does not exist|unknown database', low))
        if connect:
            return JobFailed(self.state.job, STAGE, f"source '{self.name}': cannot connect to the database at "
                             f"{self.where}{who}: {reason}",
                             "check that the database is up and reachable from here, the url, the user and the "
                             "secret that holds the password; nothing was read, the bookmark did not move")
        return JobFailed(self.state.job, STAGE, f"source '{self.name}': the database at {self.where}{who} "
                         f"refused the read: {reason}", "check the source's table/query and columns")


def _db_reason(text: str) -> str:
    """The database's own message (PSQLException: ..., SQLException: ...), one line."""
    for line in text.splitlines():
        m = re.search(r"(?:PSQLException|SQL\w*Exception|SQLException|ConnectException|UnknownHostException)"
                      r":\s*(.+)", line)
        if m:
            return m.group(1).strip()[:400]
    from etl_framework.engine.errors import first_line

    return first_line(text)


def read_jdbc(state: JobRunState, name: str, src: Source) -> Any:
    """The source as a DataFrame; an incremental source reads `low < key <= hi` and records `hi`."""
    r = JdbcReader(state, name, src)
    schema_df = r.load(r.base)  # the schema (WHERE 1=0): connection, user and password proven here
    columns = {c.lower(): c for c in schema_df.columns}

    def column(col: str, what: str) -> str:
        if col.lower() not in columns and not re.search(r"[()+\-*/ ]", col):
            raise JobFailed(state.job, STAGE, f"source '{name}' has no {what} column '{col}' (columns: "
                            f"{', '.join(schema_df.columns)})", f"fix the source's {what} column, or its table/query")
        return col

    dbtable = r.base
    inc = src.incremental
    plan = state.extras.get("incremental_plan")
    where = None
    if inc is not None and inc.mode == "watermark" and plan is not None:
        keys = [column(k, "watermark") for k in inc.columns]
        kinds = [_kind(schema_df, columns.get(k.lower())) for k in keys]
        where = _watermark_range(state, r, name, keys, kinds, inc.column, plan)
    if where is not None:
        dbtable = f"(SELECT * FROM {r.base} WHERE {where}) etl_src"
    extra: dict[str, str] = {}
    parallel = _parallel(src)
    if parallel is not None:
        col, n, lo, hi = parallel
        column(col, "parallel")
        if col.lower() in columns:
            kind = schema_df.schema[columns[col.lower()]].dataType.typeName()
            if kind not in ("byte", "short", "integer", "long", "float", "double", "decimal", "date", "timestamp"):
                raise JobFailed(state.job, STAGE, f"source '{name}': the parallel column '{col}' is {kind}; a "
                                "parallel read strides a numeric, date or timestamp column",
                                "pick another column, or a numeric SQL expression of your database (e.g. "
                                "hashexpression: abs(hashtext(customer_id)) on PostgreSQL)")
        if lo is None or hi is None:
            row = r.first(f"SELECT min({col}) AS lo, max({col}) AS hi FROM {dbtable}", ["lo", "hi"])
            kind = _kind(schema_df, columns.get(col.lower()))
            lo, hi = _typed(row["lo"], kind), _typed(row["hi"], kind)
            if kind in ("float", "double", "decimal", "") and lo is not None and hi is not None:
                lo, hi = _whole(lo, math.floor), _whole(hi, math.ceil)  # Spark strides numbers on whole bounds
        if lo is not None and hi is not None and n > 1:
            extra = {"partitionColumn": col, "lowerBound": str(lo), "upperBound": str(hi), "numPartitions": str(n)}
        state.metrics.setdefault(STAGE, {}).setdefault("jdbc", {})[name] = {
            "partitions": int(extra.get("numPartitions", 1)), "column": col, "lower_bound": lo, "upper_bound": hi}
    if extra:
        state.log.info(f"source {name}: {extra['numPartitions']} parallel queries on {col} "
                       f"({extra['lowerBound']} .. {extra['upperBound']})", STAGE)
    # CHAR(n)/VARCHAR(n) columns come back as plain strings, as Glue's DynamicFrame gives them: their length is the
    # database's rule, and as Spark's char/varchar types a Delta target would enforce it (SQLite's TEXT is n=0)
    df = r.load(dbtable, **extra)
    fixed = {f.name for f in df.schema.fields if "__CHAR_VARCHAR_TYPE_STRING" in f.metadata}
    if fixed:
        from pyspark.sql import functions as F

        df = df.select([F.col(f"`{c}`").cast("string").alias(c) if c in fixed else F.col(f"`{c}`")
                        for c in df.columns])
    return df


def _whole(v: Any, rnd: Any) -> Any:
    from decimal import Decimal, InvalidOperation

    try:
        return int(rnd(Decimal(str(v))))
    except (InvalidOperation, ValueError):
        return v  # not a number: a date or timestamp bound, as the database wrote it


def _kind(df: Any, column: str | None) -> str:
    """Spark's type name of a column of the source ('' for an expression)."""
    if column is None:
        return ""
    return str(df.schema[column].dataType.typeName())


def _typed(text: Any, kind: str) -> Any:
    """A value read as text, as a JSON value that goes back into SQL unchanged: integers and floats as numbers,
    everything else (timestamps, dates, decimals, strings) as the database's own text, exact to the digit."""
    if text is None:
        return None
    text = str(text).strip()
    try:
        if kind in ("byte", "short", "integer", "long"):
            return int(text)
        if kind in ("float", "double"):
            return float(text)
    except ValueError:
        pass
    return text


def _parallel(src: Source) -> tuple[str, int, Any, Any] | None:
    p = src.parallel
    if p is not None:
        return p.column, p.partitions, p.lower_bound, p.upper_bound
    field = src.options.get("hashexpression") or src.options.get("hashfield")
    if field:
        return str(field), int(src.options.get("hashpartitions", 7)), None, None  # Glue's default: 7
    return None


def _watermark_range(state: JobRunState, r: JdbcReader, name: str, keys: list[str], kinds: list[str],
                     column: Any, plan: Any) -> str:
    """`low < key <= hi` for this run; `hi` goes into the bookmark delta of the target's commit."""
    cursor = plan.bookmark.sources.get(name)
    low = cursor.watermark if cursor and cursor.mode == "watermark" and cursor.column == column else None
    lows = None if low is None else (list(low) if isinstance(low, list) else [low])
    if lows is not None and len(lows) != len(keys):
        lows = None
    above = after(keys, lows) if lows is not None else None
    nulls_where = " OR ".join(f"{k} IS NULL" for k in keys)
    nulls = int(float(r.first(f"SELECT count(*) AS n FROM {r.base} WHERE {nulls_where}", ["n"])["n"] or 0))
    if nulls:
        state.log.warning(f"source '{name}': {int(nulls):,} row(s) with NULL in watermark column(s) "
                          f"{', '.join(keys)} are skipped (a watermark cannot place them)", STAGE)
    his: list[Any] = []
    for i, k in enumerate(keys):
        conds = [above] if above else []
        conds += [f"{keys[j]} = {_literal(his[j])}" for j in range(i)]
        conds += [f"{kk} IS NOT NULL" for kk in keys]
        sql = f"SELECT max({k}) AS hi FROM {r.base} WHERE " + " AND ".join(conds)
        text = r.first(sql, ["hi"])["hi"]
        if text is None:
            break
        his.append(_typed(text, kinds[i]))
    before = lows if isinstance(column, list) else (lows[0] if lows else None)
    info = state.metrics.setdefault(STAGE, {}).setdefault("watermarks", {})
    if len(his) < len(keys):
        state.log.info(f"source '{name}': no rows above watermark {before!r}", STAGE)
        info[name] = {"column": column, "before": before, "after": before}
        return "1 = 0"
    hi_json = his if isinstance(column, list) else his[0]
    plan.delta.watermarks[name] = {"column": column, "watermark": hi_json}
    plan._set_commit(state)
    info[name] = {"column": column, "before": before, "after": hi_json}
    rng = [above] if above else []
    rng.append(up_to(keys, his))
    return " AND ".join(rng)
