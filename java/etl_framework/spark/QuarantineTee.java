package etl_framework.spark;

import java.io.IOException;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.mapreduce.Job;
import org.apache.hadoop.mapreduce.JobID;
import org.apache.hadoop.mapreduce.TaskAttemptID;
import org.apache.hadoop.mapreduce.TaskID;
import org.apache.hadoop.mapreduce.TaskType;
import org.apache.hadoop.mapreduce.task.TaskAttemptContextImpl;
import org.apache.spark.TaskContext;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF2;
import org.apache.spark.sql.catalyst.encoders.ExpressionEncoder;
import org.apache.spark.sql.execution.datasources.OutputWriter;
import org.apache.spark.sql.execution.datasources.OutputWriterFactory;
import org.apache.spark.sql.execution.datasources.parquet.ParquetFileFormat;
import org.apache.spark.sql.expressions.UserDefinedFunction;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.util.SerializableConfiguration;
import org.apache.spark.util.TaskCompletionListener;
import org.apache.spark.util.TaskFailureListener;

/**
 * The quality gate's side output: lets the target write's single pass over the data also set aside the rows to
 * quarantine, instead of a second pass (or a cache) over the source.
 *
 * <p>{@code tee(dir, row)} writes {@code row} (one quarantined row, a struct of the quarantine table's columns) to
 * this task's Parquet file under {@code dir} and returns false, so the row is dropped from the target write. The
 * file is written by Spark's own Parquet writer (the factory {@code ParquetFileFormat.prepareWrite} makes for a
 * write, shipped with the function), so every type comes back exactly and the quarantine commit reads columns
 * instead of parsing text. Each task attempt writes {@code dir/_tmp/part-P-A.parquet}; when the attempt succeeds
 * the file is renamed to {@code dir/part-P.parquet} (a retried or speculative attempt of partition P replaces it
 * with the same rows), when it fails the file is deleted. Nothing here is committed: the quality stage commits the
 * staged rows to the quarantine table after the target commit, and deletes them when the target write fails.
 */
public final class QuarantineTee implements UDF2<String, Row, Boolean> {
  private static final long serialVersionUID = 3L;
  private static final Map<String, Sink> SINKS = new ConcurrentHashMap<>();

  /** The write's Hadoop configuration (s3a endpoint and credentials, Parquet settings), shipped with the function. */
  private final SerializableConfiguration conf;
  private final OutputWriterFactory factory;
  private final StructType schema;
  private final StructType passed;

  public QuarantineTee(SerializableConfiguration conf, OutputWriterFactory factory, StructType schema,
      StructType passed) {
    this.conf = conf;
    this.factory = factory;
    this.schema = schema;
    this.passed = passed;
  }

  /**
   * Register the function as {@code name} in this session (non-deterministic: never reordered or dropped), for rows
   * of the schema {@code schemaJson} (Spark's JSON form of a StructType) that arrive as rows of {@code passedJson}:
   * the same columns, where the caller may pass a timestamp as its microseconds ({@code unix_micros}, a long) and a
   * date as its days ({@code unix_date}, an int). Spark holds those types as exactly that long and int, so the rows
   * are written as the real types without the per-row trip through {@code java.sql.Timestamp} and its calendar
   * rebasing (half the side output's cost on 200,000 rows).
   */
  public static void register(SparkSession spark, String name, String schemaJson, String passedJson)
      throws IOException {
    StructType schema = (StructType) DataType.fromJson(schemaJson);
    StructType passed = (StructType) DataType.fromJson(passedJson);
    if (passed.fields().length != schema.fields().length) {
      throw new IllegalArgumentException("the passed row has " + passed.fields().length + " columns, the staged "
          + schema.fields().length);
    }
    Job job = Job.getInstance(spark.sessionState().newHadoopConf());
    OutputWriterFactory factory = new ParquetFileFormat().prepareWrite(
        spark, job, new scala.collection.immutable.HashMap<String, String>(), schema);
    QuarantineTee tee = new QuarantineTee(new SerializableConfiguration(job.getConfiguration()), factory, schema,
        passed);
    UserDefinedFunction f = functions.udf(tee, DataTypes.BooleanType).asNondeterministic();
    spark.udf().register(name, f);
  }

  @Override
  public Boolean call(String dir, Row row) throws Exception {
    if (row == null) {
      return Boolean.TRUE;
    }
    TaskContext tc = TaskContext.get();
    if (tc == null) {
      throw new IllegalStateException("etl quarantine tee called outside a Spark task");
    }
    String key = dir + "#" + tc.taskAttemptId();
    Sink sink = SINKS.get(key);
    if (sink == null) {
      sink = new Sink(dir, tc, conf.value(), factory, schema, passed);
      SINKS.put(key, sink);
      final Sink s = sink;
      tc.addTaskFailureListener(new TaskFailureListener() {
        @Override
        public void onTaskFailure(TaskContext context, Throwable error) {
          s.failed = true;
        }
      });
      tc.addTaskCompletionListener(new TaskCompletionListener() {
        @Override
        public void onTaskCompletion(TaskContext context) {
          SINKS.remove(key);
          try {
            s.finish(!s.failed && !context.isInterrupted());
          } catch (IOException e) {
            throw new RuntimeException("could not stage quarantined rows in " + s.dir + ": " + e, e);
          }
        }
      });
    }
    sink.write(row);
    return Boolean.FALSE;
  }

  /** One task attempt's file. */
  static final class Sink {
    final String dir;
    final FileSystem fs;
    final Path tmp;
    final Path dst;
    final OutputWriter out;
    final ExpressionEncoder.Serializer<Row> toInternal;
    volatile boolean failed;

    Sink(String dir, TaskContext tc, Configuration conf, OutputWriterFactory factory, StructType schema,
        StructType passed) throws IOException {
      this.dir = dir;
      Path root = new Path(dir);
      this.fs = root.getFileSystem(conf);
      String part = String.format("part-%05d", tc.partitionId());
      this.tmp = new Path(new Path(root, "_tmp"), part + "-" + tc.taskAttemptId() + ".parquet");
      this.dst = new Path(root, part + ".parquet");
      TaskAttemptID id = new TaskAttemptID(
          new TaskID(new JobID("etlquarantine", tc.stageId()), TaskType.MAP, tc.partitionId()), tc.attemptNumber());
      this.out = factory.newInstance(tmp.toString(), schema, new TaskAttemptContextImpl(conf, id));
      // lenient: java.time or java.sql values alike (spark.sql.datetime.java8API.enabled decides what a Row holds);
      // a passed long or int lands where the staged schema's timestamp or date reads it
      this.toInternal = ExpressionEncoder.apply(passed, true).createSerializer();
    }

    void write(Row row) {
      out.write(toInternal.apply(row));
    }

    void finish(boolean ok) throws IOException {
      try {
        out.close();
      } finally {
        if (ok) {
          fs.delete(dst, false);
          if (!fs.rename(tmp, dst)) {
            throw new IOException("cannot rename " + tmp + " to " + dst);
          }
        } else {
          fs.delete(tmp, false);
        }
      }
    }
  }
}
