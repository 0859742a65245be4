package etl_framework.spark;

import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.TaskContext;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF2;
import org.apache.spark.sql.expressions.UserDefinedFunction;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.util.SerializableConfiguration;
import org.apache.spark.util.TaskCompletionListener;
import org.apache.spark.util.TaskFailureListener;

/**
 * The quality gate's side output: lets the target write's single pass over the data also set aside the rows to
 * quarantine, instead of a second pass (or a cache) over the source.
 *
 * <p>{@code tee(dir, json)} appends {@code json} (one quarantined row) to this task's file under {@code dir} and
 * returns false, so the row is dropped from the target write. Each task attempt writes
 * {@code dir/_tmp/part-P-A.jsonl}; when the attempt succeeds the file is renamed to {@code dir/part-P.jsonl} (a
 * retried or speculative attempt of partition P replaces it with the same rows), when it fails the file is deleted.
 * Nothing here is committed: the quality stage commits the staged rows to the quarantine table after the target
 * commit, and deletes them when the target write fails.
 */
public final class QuarantineTee implements UDF2<String, String, Boolean> {
  private static final long serialVersionUID = 1L;
  private static final Map<String, Sink> SINKS = new ConcurrentHashMap<>();

  /** The driver's Hadoop configuration (s3a endpoint and credentials included), shipped with the function. */
  private final SerializableConfiguration conf;

  public QuarantineTee(SerializableConfiguration conf) {
    this.conf = conf;
  }

  /** Register the function as {@code name} in this session (non-deterministic: never reordered or dropped). */
  public static void register(SparkSession spark, String name) {
    SerializableConfiguration conf = new SerializableConfiguration(spark.sessionState().newHadoopConf());
    UserDefinedFunction f = functions.udf(new QuarantineTee(conf), DataTypes.BooleanType).asNondeterministic();
    spark.udf().register(name, f);
  }

  @Override
  public Boolean call(String dir, String json) throws Exception {
    if (json == null) {
      return Boolean.TRUE;
    }
    TaskContext tc = TaskContext.get();
    if (tc == null) {
      throw new IllegalStateException("etl quarantine tee called outside a Spark task");
    }
    String key = dir + "#" + tc.taskAttemptId();
    Sink sink = SINKS.get(key);
    if (sink == null) {
      sink = new Sink(dir, tc, conf.value());
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
    sink.write(json);
    return Boolean.FALSE;
  }

  /** One task attempt's file. */
  static final class Sink {
    final String dir;
    final FileSystem fs;
    final Path tmp;
    final Path dst;
    final Writer out;
    volatile boolean failed;

    Sink(String dir, TaskContext tc, Configuration conf) throws IOException {
      this.dir = dir;
      Path root = new Path(dir);
      this.fs = root.getFileSystem(conf);
      String part = String.format("part-%05d", tc.partitionId());
      this.tmp = new Path(new Path(root, "_tmp"), part + "-" + tc.taskAttemptId() + ".jsonl");
      this.dst = new Path(root, part + ".jsonl");
      this.out = new OutputStreamWriter(fs.create(tmp, true), StandardCharsets.UTF_8);
    }

    void write(String json) throws IOException {
      out.write(json);
      out.write('\n');
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
