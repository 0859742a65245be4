package etl_framework.spark;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.hadoop.ParquetFileReader;
import org.apache.parquet.hadoop.util.HadoopInputFile;
import org.apache.spark.sql.SaveMode;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.delta.DeltaLog;
import org.apache.spark.sql.delta.DeltaOperations;
import org.apache.spark.sql.delta.OptimisticTransaction;
import org.apache.spark.sql.delta.VersionChecksum;
import org.apache.spark.sql.delta.actions.Action;
import org.apache.spark.sql.delta.actions.AddFile;
import org.apache.spark.sql.delta.actions.Metadata;
import org.apache.spark.sql.delta.actions.Metadata$;
import org.apache.spark.sql.delta.actions.SetTransaction;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

import scala.Option;
import scala.collection.JavaConverters;

/**
 * Commits a run's staged quarantine rows to the quarantine Delta table by adding the staged Parquet files to the
 * table's log, instead of reading them back and writing them again (on 200,000 rows: most of the quarantine
 * commit's second).
 *
 * <p>{@code commit(spark, table, staging, runId, appId, txnVersion, userMetadata)}:
 * <ol>
 *   <li>the table's transaction version for {@code appId} says whether the run already committed: then nothing;
 *   <li>the staged files ({@code staging/part-P.parquet}, Spark's own Parquet) move into the table's folder as
 *       {@code part-P-<runId>.parquet}; files of that name already there were moved by an earlier attempt that
 *       stopped before its commit (the transaction version says nothing of the run was committed), and join;
 *   <li>one Delta commit adds them all, with the run's {@code SetTransaction}: exactly once, like the write it
 *       replaces. Until that commit, no reader sees the moved files (Delta reads only what its log names).
 * </ol>
 * When the table exists with other columns than the staged rows, the moved files go back to the staging folder and
 * the caller writes the rows the usual way (which evolves the schema).
 *
 * <p>Returns {@code [version, files, bytes]}; {@code version} is {@link #ALREADY}, {@link #NOTHING} or
 * {@link #FALLBACK} when nothing was committed.
 */
public final class DeltaAppendStaged {
  public static final long ALREADY = -1L;
  public static final long NOTHING = -2L;
  public static final long FALLBACK = -3L;

  /** Where Spark's Parquet writer stores the Spark schema in a file's footer. */
  private static final String SPARK_SCHEMA_KEY = "org.apache.spark.sql.parquet.row.metadata";

  private DeltaAppendStaged() {}

  public static long[] commit(SparkSession spark, String table, String staging, String runId, String appId,
      long txnVersion, String userMetadata) throws IOException {
    Path root = new Path(table);
    Path stage = new Path(staging);
    FileSystem fs = root.getFileSystem(spark.sessionState().newHadoopConf());
    OptimisticTransaction txn = DeltaLog.forTable(spark, root).startTransaction();
    if (committedVersion(txn, appId) >= txnVersion) {
      return new long[] {ALREADY, 0L, 0L};
    }
    String suffix = "-" + runId + ".parquet";
    List<FileStatus> staged = list(fs, stage, null);
    List<FileStatus> moved = list(fs, root, suffix);
    if (staged.isEmpty() && moved.isEmpty()) {
      return new long[] {NOTHING, 0L, 0L};
    }
    Path any = (staged.isEmpty() ? moved : staged).get(0).getPath();
    StructType schema = schemaOf(fs.getConf(), any, spark);
    boolean exists = txn.readVersion() >= 0;
    if (exists && !sameColumns(txn.metadata().schema(), schema)) {
      for (FileStatus f : moved) {
        String name = f.getPath().getName();
        rename(fs, f.getPath(), new Path(stage, name.substring(0, name.length() - suffix.length()) + ".parquet"));
      }
      return new long[] {FALLBACK, 0L, 0L};
    }
    for (FileStatus f : staged) {
      String name = f.getPath().getName();
      rename(fs, f.getPath(), new Path(root, name.substring(0, name.length() - ".parquet".length()) + suffix));
    }
    try {
      return add(txn, fs, root, suffix, schema, exists, appId, txnVersion, userMetadata);
    } catch (IOException | RuntimeException e) {
      // not committed (a fresh look at the log says so): the files go back, so a resume finds them staged
      if (DeltaLog.forTable(spark, root).startTransaction().txnVersion(appId) < txnVersion) {
        for (FileStatus f : list(fs, root, suffix)) {
          String name = f.getPath().getName();
          fs.rename(f.getPath(), new Path(stage, name.substring(0, name.length() - suffix.length()) + ".parquet"));
        }
      }
      throw e;
    }
  }

  private static long[] add(OptimisticTransaction txn, FileSystem fs, Path root, String suffix, StructType schema,
      boolean exists, String appId, long txnVersion, String userMetadata) throws IOException {
    if (!exists) {
      Metadata$ m = Metadata$.MODULE$;
      txn.updateMetadata(new Metadata(m.apply$default$1(), m.apply$default$2(), m.apply$default$3(),
          m.apply$default$4(), schema.json(), m.apply$default$6(), m.apply$default$7(), m.apply$default$8()), false);
    }
    List<Action> actions = new ArrayList<>();
    long bytes = 0L;
    List<FileStatus> files = list(fs, root, suffix);
    for (FileStatus f : files) {
      bytes += f.getLen();
      actions.add(new AddFile(f.getPath().getName(), emptyMap(), f.getLen(), f.getModificationTime(), true, null,
          null, null, Option.empty(), Option.empty(), Option.empty()));
    }
    actions.add(new SetTransaction(appId, txnVersion, Option.apply((Object) System.currentTimeMillis())));
    long version = txn.commit(JavaConverters.asScalaBuffer(actions).toSeq(),
        new DeltaOperations.Write(SaveMode.Append, Option.empty(), Option.empty(), Option.apply(userMetadata)));
    return new long[] {version, files.size(), bytes};
  }

  /**
   * The table's transaction version for {@code appId}, from the snapshot's checksum file when it carries the
   * table's SetTransactions (Delta 3.3 writes them there on each commit, below a threshold, but reads them only
   * from the table's state). {@code txn.txnVersion} rebuilds that whole state for it: three Spark jobs on every
   * run, as each run's commit makes a new snapshot. The id is recorded as read either way, as {@code txnVersion}
   * does, so a concurrent commit of the same id still conflicts.
   */
  static long committedVersion(OptimisticTransaction txn, String appId) {
    Option<VersionChecksum> crc = txn.snapshot().checksumOpt();
    if (!crc.isDefined() || !crc.get().setTransactions().isDefined()) {
      return txn.txnVersion(appId);
    }
    txn.readTxn().$plus$eq(appId);
    for (SetTransaction t : JavaConverters.seqAsJavaList(crc.get().setTransactions().get())) {
      if (t.appId().equals(appId)) {
        return t.version();
      }
    }
    return -1L;
  }

  /**
   * The staged rows' columns, from the file's footer, where Spark's Parquet writer keeps its own schema (no Spark
   * job); read through Spark for a file without it. Nullable, as a Parquet read gives them.
   */
  private static StructType schemaOf(Configuration conf, Path file, SparkSession spark) throws IOException {
    String json;
    try (ParquetFileReader reader = ParquetFileReader.open(HadoopInputFile.fromPath(file, conf))) {
      json = reader.getFooter().getFileMetaData().getKeyValueMetaData().get(SPARK_SCHEMA_KEY);
    }
    if (json == null) {
      return spark.read().parquet(file.toString()).schema();
    }
    return ((StructType) DataType.fromJson(json)).asNullable();
  }

  /** Data files in {@code dir}: every visible {@code .parquet} file, or those ending with {@code suffix}. */
  private static List<FileStatus> list(FileSystem fs, Path dir, String suffix) throws IOException {
    List<FileStatus> out = new ArrayList<>();
    if (!fs.exists(dir)) {
      return out;
    }
    for (FileStatus f : fs.listStatus(dir)) {
      String name = f.getPath().getName();
      if (f.isFile() && !name.startsWith("_") && !name.startsWith(".") && name.endsWith(".parquet")
          && (suffix == null || name.endsWith(suffix))) {
        out.add(f);
      }
    }
    return out;
  }

  private static void rename(FileSystem fs, Path src, Path dst) throws IOException {
    if (!fs.rename(src, dst)) {
      throw new IOException("cannot move " + src + " to " + dst);
    }
  }

  /** The same column names and types in the same order (nullability aside: Parquet's footer reads nullable). */
  private static boolean sameColumns(StructType a, StructType b) {
    StructField[] x = a.fields();
    StructField[] y = b.fields();
    if (x.length != y.length) {
      return false;
    }
    for (int i = 0; i < x.length; i++) {
      if (!x[i].name().equals(y[i].name()) || !x[i].dataType().sameType(y[i].dataType())) {
        return false;
      }
    }
    return true;
  }

  @SuppressWarnings("unchecked")
  private static scala.collection.immutable.Map<String, String> emptyMap() {
    Object empty = scala.collection.immutable.Map$.MODULE$.empty();
    return (scala.collection.immutable.Map<String, String>) empty;
  }
}
