"""Probe: Apache Iceberg 1.7.1 in the project's local Spark (with Delta 3.3.0 in the same session), and pyiceberg.

Run: `ETL_SPARK_QUICK_START=1 .venv/bin/python scripts/iceberg_probe.py [--keep]`. It works in a temp dir and prints
what it proves: an Iceberg JdbcCatalog on a SQLite file declared at run time, table location outside the catalog's
warehouse, snapshot summary properties from writer options and (for MERGE INTO) the IcebergCommit Java helper,
pyiceberg reading the same table (StaticTable and SqlCatalog), Delta still working, the S3 classes loading, and what
an aborted Iceberg write leaves behind. Exits non-zero on the first failed check.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ETL_SPARK_QUICK_START", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T0 = time.time()


def check(cond: bool, what: str) -> None:
    print(("  OK   " if cond else "  FAIL ") + what, flush=True)
    if not cond:
        raise SystemExit(1)


def listing(root: Path) -> list[str]:
    if not root.exists():
        return ["<does not exist>"]
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        out.append(f"{rel}/" if p.is_dir() else str(rel))
    return out or ["<empty>"]


def show(title: str, root: Path) -> list[str]:
    files = listing(root)
    print(f"  {title} ({root}):")
    for f in files:
        print(f"    {f}")
    return files


def section(title: str) -> None:
    print(f"\n== {title}  [{time.time() - T0:.1f}s]", flush=True)


def iceberg_catalog_conf(name: str, db: Path, warehouse: Path) -> dict[str, str]:
    """The Spark confs of an Iceberg JdbcCatalog on a SQLite file (set at run time)."""
    p = f"spark.sql.catalog.{name}"
    return {
        p: "org.apache.iceberg.spark.SparkCatalog",
        f"{p}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        f"{p}.uri": f"jdbc:sqlite:{db}",
        f"{p}.warehouse": str(warehouse),
        # V1 adds iceberg_tables.iceberg_type (views), the schema pyiceberg's SqlCatalog creates and queries
        f"{p}.jdbc.schema-version": "V1",
        # one pooled connection: SQLite has one writer at a time anyway
        f"{p}.clients": "1",
    }


def main() -> None:
    keep = "--keep" in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="iceberg_probe_"))
    print(f"temp dir: {tmp}")
    from pyspark.sql import functions as F

    from etl_framework.runtime.spark import get_spark

    section("Spark session")
    spark = get_spark(ROOT)
    jvm = spark._jvm
    conf = spark.sparkContext.getConf()
    print("  spark", spark.version, "| extensions:", spark.conf.get("spark.sql.extensions"))
    print("  spark_catalog:", spark.conf.get("spark.sql.catalog.spark_catalog"))
    print("  jars:", ", ".join(Path(j).name for j in conf.get("spark.jars").split(",")))
    print(f"  session up after {time.time() - T0:.1f}s")

    section("S3 classes: hadoop-aws (AWS SDK v1) next to iceberg-aws-bundle (AWS SDK v2)")
    loader = jvm.Thread.currentThread().getContextClassLoader()
    for cls in [
        "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "com.amazonaws.services.s3.AmazonS3Client",
        "org.apache.iceberg.aws.s3.S3FileIO",
        "org.apache.iceberg.aws.glue.GlueCatalog",
        "software.amazon.awssdk.services.glue.GlueClient",
        "org.sqlite.JDBC",
    ]:
        jvm.java.lang.Class.forName(cls, True, loader)
        print(f"  loaded {cls}")
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    hconf.set("fs.s3a.endpoint", "http://127.0.0.1:1")
    hconf.set("fs.s3a.access.key", "x")
    hconf.set("fs.s3a.secret.key", "y")
    hconf.set("fs.s3a.bucket.probe", "0")
    s3a = jvm.org.apache.hadoop.fs.Path("s3a://probe-bucket/x").getFileSystem(hconf)
    check(s3a.getClass().getName() == "org.apache.hadoop.fs.s3a.S3AFileSystem", "s3a FileSystem initializes")
    s3io = jvm.org.apache.iceberg.aws.s3.S3FileIO()
    s3io.initialize({"s3.endpoint": "http://127.0.0.1:1", "client.region": "us-east-1",
                     "s3.access-key-id": "x", "s3.secret-access-key": "y", "s3.path-style-access": "true"})
    check("S3Client" in s3io.client().getClass().getName(), "Iceberg S3FileIO builds its AWS SDK v2 S3 client")
    s3io.close()

    section("runtime-declared Iceberg JdbcCatalog on SQLite")
    db = tmp / "catalog.db"
    warehouse = tmp / "warehouse"
    cat = "ice_" + hashlib.sha1(str(db).encode()).hexdigest()[:10]  # one catalog name per SQLite file
    for k, v in iceberg_catalog_conf(cat, db, warehouse).items():
        spark.conf.set(k, v)
        print(f"  spark.conf.set({k!r}, {v!r})")
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {cat}.ns")
    check(db.is_file(), f"SQLite catalog file created: {db}")
    tname = f"{cat}.ns.t"
    loc = tmp / "x" / "tbl"

    def count() -> int:
        return spark.table(tname).count()

    section("(a) writeTo().create() with location + partitionedBy + snapshot-property")
    df = spark.range(0, 12).select(F.col("id"), (F.col("id") % 3).alias("part"),
                                   F.concat(F.lit("v"), F.col("id")).alias("v"))
    (df.writeTo(tname).using("iceberg").tableProperty("location", str(loc)).partitionedBy(F.col("part"))
     .option("snapshot-property.etl_run_id", "r1").create())
    files = show("table location", loc)
    check(any(f.startswith("data/part=") and f.endswith(".parquet") for f in files), "data files under location")
    check(any(f.startswith("metadata/") and f.endswith(".metadata.json") for f in files),
          "metadata under location")
    check(listing(warehouse) in (["<does not exist>"], ["<empty>"]), "nothing under the catalog warehouse")
    check(count() == 12, "12 rows")

    section("(b) append")
    spark.range(100, 105).select(F.col("id"), (F.col("id") % 3).alias("part"), F.lit("b").alias("v")) \
        .writeTo(tname).option("snapshot-property.etl_run_id", "r2").append()
    check(count() == 17, "17 rows")

    section("(c) overwritePartitions (dynamic): replaces partition part=1 only")
    spark.createDataFrame([(1000, 1, "c")], "id long, part long, v string") \
        .writeTo(tname).option("snapshot-property.etl_run_id", "r3").overwritePartitions()
    n1 = spark.table(tname).where("part = 1").count()
    check(n1 == 1 and count() == 17 - 4 - 2 + 1, f"part=1 has 1 row, total {count()}")

    section("(d) overwrite(lit(True)): replaces everything")
    spark.range(0, 6).select(F.col("id"), (F.col("id") % 3).alias("part"), F.lit("d").alias("v")) \
        .writeTo(tname).option("snapshot-property.etl_run_id", "r4").overwrite(F.lit(True))
    check(count() == 6, "6 rows")

    section("(e) MERGE INTO via etl_framework.spark.IcebergCommit.sql with commit properties")
    spark.createDataFrame([(0, 0, "upd"), (50, 2, "new")], "id long, part long, v string") \
        .createOrReplaceTempView("probe_src")
    props = {"etl_run_id": "r5", "etl_bookmark": json.dumps({"json": 1})}
    jvm.etl_framework.spark.IcebergCommit.sql(
        spark._jsparkSession,
        f"MERGE INTO {tname} t USING probe_src s ON t.id = s.id "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
        props,
    )
    check(count() == 7, "7 rows")
    check(spark.table(tname).where("id = 0").first()["v"] == "upd", "row 0 updated")

    section("(f) snapshot summaries via Spark metadata table")
    snaps = spark.sql(f"SELECT snapshot_id, operation, summary FROM {tname}.snapshots ORDER BY committed_at").collect()
    for r in snaps:
        print(f"    {r.snapshot_id} {r.operation:10s} etl_run_id={r.summary.get('etl_run_id')} "
              f"etl_bookmark={r.summary.get('etl_bookmark')}")
    run_ids = [r.summary.get("etl_run_id") for r in snaps]
    check(run_ids == ["r1", "r2", "r3", "r4", "r5"], f"run ids in order: {run_ids}")
    check(snaps[-1].summary.get("etl_bookmark") == '{"json": 1}', "MERGE snapshot carries etl_bookmark")
    after_merge = spark.table(tname).count()

    section("(g) pyiceberg reads the same table")
    con = sqlite3.connect(db)
    rows = con.execute("SELECT catalog_name, table_namespace, table_name, metadata_location, iceberg_type "
                       "FROM iceberg_tables").fetchall()
    con.close()
    for r in rows:
        print("    iceberg_tables row:", r)
    metadata_location = rows[0][3]
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import StaticTable

    st = StaticTable.from_metadata(metadata_location)
    check(st.scan().to_arrow().num_rows == after_merge, f"StaticTable rows == Spark rows ({after_merge})")
    check([s.summary["etl_run_id"] for s in st.snapshots()] == run_ids, "StaticTable snapshot summaries: run ids")
    check(st.current_snapshot().summary["etl_bookmark"] == '{"json": 1}', "StaticTable current summary bookmark")
    t_py0 = time.time()
    sc = SqlCatalog(cat, uri=f"sqlite:///{db}", warehouse=f"file://{warehouse}")
    pt = sc.load_table(("ns", "t"))
    check(pt.scan().to_arrow().num_rows == after_merge, "SqlCatalog.load_table rows == Spark rows")
    check(pt.metadata_location == metadata_location, "SqlCatalog sees the same metadata_location")
    check(pt.current_snapshot().summary["etl_run_id"] == "r5", "SqlCatalog current snapshot etl_run_id=r5")
    check(sc.list_tables("ns") == [("ns", "t")], "SqlCatalog.list_tables")
    print(f"  pyiceberg load+scan: {time.time() - t_py0:.2f}s")
    # and Spark can write again after pyiceberg held the SQLite file open
    spark.range(900, 901).select(F.col("id"), F.lit(0).cast("long").alias("part"), F.lit("g").alias("v")) \
        .writeTo(tname).option("snapshot-property.etl_run_id", "r6").append()
    check(count() == after_merge + 1, "Spark append after pyiceberg read (no SQLite lock problem)")
    pt = sc.load_table(("ns", "t"))
    check(pt.current_snapshot().summary["etl_run_id"] == "r6", "pyiceberg sees Spark's new commit")
    sc.engine.dispose()

    section("(h) Delta in the same session (path table, DeltaTable.merge)")
    dpath = str(tmp / "delta_t")
    spark.range(0, 5).withColumn("v", F.lit("a")).write.format("delta").save(dpath)
    check(spark.read.format("delta").load(dpath).count() == 5, "Delta write+read by path")
    from delta.tables import DeltaTable

    src = spark.createDataFrame([(1, "m"), (7, "n")], "id long, v string")
    DeltaTable.forPath(spark, dpath).alias("t").merge(src.alias("s"), "t.id = s.id") \
        .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
    d = spark.read.format("delta").load(dpath)
    check(d.count() == 6 and d.where("id = 1").first()["v"] == "m", "Delta MERGE by path")
    spark.sql(f"MERGE INTO delta.`{dpath}` t USING probe_src s ON t.id = s.id "
              "WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v)")
    check(spark.read.format("delta").load(dpath).count() == 7, "Delta SQL MERGE INTO delta.`path`")

    section("(i) aborted Iceberg writes (F.raise_error on one row of the last of 4 input tasks)")
    spark.sparkContext.setLogLevel("OFF")
    sc_ = spark.sparkContext

    def failing():
        # ids 0..39 in 4 tasks; the one holding id 39 (its last row) fails, after the other tasks ran
        return (spark.range(0, 40, numPartitions=4)
                .select(F.when(F.col("id") == 39, F.raise_error(F.lit("probe boom")))
                        .otherwise(F.col("id")).cast("long").alias("id"),
                        (F.col("id") % 3).alias("part"), F.lit("x").alias("v")))

    # default: Iceberg asks for a hash distribution by partition, so the raise_error runs in the shuffle's map
    # stage before any write task; "none" + fanout: the error hits inside the write stage, after 3 write tasks
    # have committed their data files
    modes = {"default (hash)": {}, "distribution-mode=none, fanout": {"distribution-mode": "none",
                                                                        "fanout-enabled": "true"}}

    def run_failing(what: str, write) -> None:
        group = f"probe-{what}"
        sc_.setJobGroup(group, group)
        try:
            write()
            check(False, f"{what} should fail")
        except Exception as exc:  # noqa: BLE001
            msg = next((ln for ln in str(exc).splitlines() if "probe boom" in ln), str(exc).splitlines()[0])
            print(f"  {what} failed as expected: {msg.strip()[:140]}")
        st = sc_.statusTracker()
        for jid in sorted(st.getJobIdsForGroup(group)):
            for sid in sorted(st.getJobInfo(jid).stageIds):
                info = st.getStageInfo(sid)
                if info:
                    print(f"    job {jid} stage {sid} ({info.name[:40]}): {info.numTasks} tasks, "
                          f"{info.numCompletedTasks} completed, {info.numFailedTasks} failed")
        sc_.setJobGroup("", "")

    for i, (mode, opts) in enumerate(modes.items()):
        print(f"  -- {mode}")
        before = listing(loc)
        snaps_before = spark.sql(f"SELECT count(*) c FROM {tname}.snapshots").first().c
        rows_before = count()

        def append(opts=opts):
            w = failing().writeTo(tname).option("snapshot-property.etl_run_id", "bad")
            for k, v in opts.items():
                w = w.option(k, v)
            w.append()

        run_failing(f"append-{i}", append)
        after = listing(loc)
        print("  new paths under the existing table's location after the failed append:")
        for f in sorted(set(after) - set(before)) or ["<none>"]:
            print(f"    {f}")
        snaps_after = spark.sql(f"SELECT count(*) c FROM {tname}.snapshots").first().c
        check(snaps_after == snaps_before and count() == rows_before, "no snapshot committed, rows unchanged")

        new_loc = tmp / "x" / f"tbl_new{i}"

        def create(opts=opts, new_loc=new_loc, i=i):
            w = (failing().writeTo(f"{cat}.ns.t_new{i}").using("iceberg").tableProperty("location", str(new_loc))
                 .partitionedBy(F.col("part")).option("snapshot-property.etl_run_id", "bad"))
            for k, v in opts.items():
                w = w.option(k, v)
            w.create()

        run_failing(f"create-{i}", create)
        show("new table's location after the failed create()", new_loc)
        exists = spark.sql(f"SHOW TABLES IN {cat}.ns").where(f"tableName = 't_new{i}'").count() > 0
        check(not exists, f"t_new{i} not in the catalog")
    print("  orphans anywhere under the temp dir's Iceberg locations (x/, warehouse/):")
    for f in [*listing(tmp / "warehouse")]:
        print(f"    warehouse/{f}")
    spark.sparkContext.setLogLevel("ERROR")

    section("done")
    print(f"  probe took {time.time() - T0:.1f}s in all")
    spark.stop()
    if keep:
        print(f"  kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
