package etl_framework.spark;

import java.io.IOException;
import java.io.UncheckedIOException;
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
import org.apache.spark.sql.Column;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.codegen.CodeBlock;
import org.apache.spark.sql.catalyst.expressions.codegen.CodegenContext;
import org.apache.spark.sql.catalyst.expressions.codegen.ExprCode;
import org.apache.spark.sql.catalyst.expressions.codegen.FalseLiteral$;
import org.apache.spark.sql.execution.datasources.OutputWriter;
import org.apache.spark.sql.execution.datasources.OutputWriterFactory;
import org.apache.spark.sql.execution.datasources.parquet.ParquetFileFormat;
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
 * <p>{@code tee(row)} writes {@code row} (one quarantined row, a struct of the quarantine table's columns) to this
 * task's Parquet file under the staging folder and returns false, so the row is dropped from the target write. It is
 * a Catalyst expression, not a UDF: it takes the row as Spark holds it ({@code InternalRow}) inside the write's
 * generated code, and hands it as it is to Spark's own Parquet writer (the factory
 * {@code ParquetFileFormat.prepareWrite} makes for a write, shipped with the expression). A UDF would convert each
 * row to a {@code Row} of Java objects and the writer would convert it back, the largest part of the side output's
 * cost. Every type comes back exactly and the quarantine commit reads columns instead of parsing text.
 *
 * <p>Each task attempt writes {@code dir/_tmp/part-P-A.parquet}; when the attempt succeeds the file is renamed to
 * {@code dir/part-P.parquet} (a retried or speculative attempt of partition P replaces it with the same rows), when
 * it fails the file is deleted. Nothing here is committed: the quality stage commits the staged rows to the
 * quarantine table after the target commit, and deletes them when the target write fails.
 *
 * <p>Non-deterministic: never reordered, merged with another call or dropped by the optimizer.
 */
public final class QuarantineTee extends Expression implements java.io.Serializable {
  private static final long serialVersionUID = 4L;

  private final Expression child;
  private final String dir;
  /** The write's Hadoop configuration (s3a endpoint and credentials, Parquet settings), shipped with the plan. */
  private final SerializableConfiguration conf;
  private final OutputWriterFactory factory;
  private final StructType schema;
  /** The last task attempt's file: each task deserializes its own copy of the plan, so this is the usual hit. */
  private transient Sink sink;
  /** Every open attempt's file, for an instance shared by concurrent tasks. */
  private static final Map<String, Sink> SINKS = new ConcurrentHashMap<>();

  private QuarantineTee(Expression child, String dir, SerializableConfiguration conf, OutputWriterFactory factory,
      StructType schema) {
    this.child = child;
    this.dir = dir;
    this.conf = conf;
    this.factory = factory;
    this.schema = schema;
  }

  /**
   * The side output for rows of the schema {@code schemaJson} (Spark's JSON form of a StructType), given as the
   * struct column {@code row}, staged under {@code dir}. Returns the column that writes a row and is false.
   */
  public static Column column(SparkSession spark, String dir, String schemaJson, Column row) throws IOException {
    StructType schema = (StructType) DataType.fromJson(schemaJson);
    Job job = Job.getInstance(spark.sessionState().newHadoopConf());
    OutputWriterFactory factory = new ParquetFileFormat().prepareWrite(
        spark, job, new scala.collection.immutable.HashMap<String, String>(), schema);
    return new Column(new QuarantineTee(row.expr(), dir, new SerializableConfiguration(job.getConfiguration()),
        factory, schema));
  }

  /** Stage one row (called from the generated code); false: the row leaves the target write. */
  public boolean write(InternalRow row) throws IOException {
    TaskContext tc = TaskContext.get();
    if (tc == null) {
      throw new IllegalStateException("etl quarantine tee called outside a Spark task");
    }
    Sink s = sink;
    if (s == null || s.attempt != tc.taskAttemptId()) {
      s = SINKS.computeIfAbsent(dir + "#" + tc.taskAttemptId(), key -> open(tc, key));
      sink = s;
    }
    s.out.write(row);
    return false;
  }

  private Sink open(TaskContext tc, String key) {
    final Sink s;
    try {
      s = new Sink(dir, tc, conf.value(), factory, schema);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
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
    return s;
  }

  @Override
  public Object eval(InternalRow input) {
    Object row = child.eval(input);
    if (row == null) {
      return Boolean.TRUE;
    }
    try {
      return write((InternalRow) row);
    } catch (IOException e) {
      throw new UncheckedIOException("could not stage a quarantined row in " + dir, e);
    }
  }

  /** {@code value = row == null || tee.write(row)}, written out: Spark's code-building helpers are Scala only. */
  @Override
  public ExprCode doGenCode(CodegenContext ctx, ExprCode ev) {
    String tee = ctx.addReferenceObj("etlQuarantineTee", this, QuarantineTee.class.getName());
    ExprCode row = child.genCode(ctx);
    String code = row.code() + "\nboolean " + ev.value() + " = " + row.isNull() + " || " + tee + ".write("
        + row.value() + ");\n";
    return new ExprCode(new CodeBlock(seq(code), seq()), FalseLiteral$.MODULE$, ev.value());
  }

  @SafeVarargs
  private static <T> scala.collection.Seq<T> seq(T... items) {
    return scala.collection.JavaConverters.asScalaBuffer(java.util.Arrays.asList(items)).toList();
  }

  @Override
  public scala.collection.Seq<Expression> children() {
    return seq(child);
  }

  @Override
  public Expression withNewChildrenInternal(scala.collection.IndexedSeq<Expression> newChildren) {
    return new QuarantineTee(newChildren.apply(0), dir, conf, factory, schema);
  }

  @Override
  public boolean nullable() {
    return false;
  }

  @Override
  public DataType dataType() {
    return DataTypes.BooleanType;
  }

  @Override
  public boolean deterministic() {
    return false;
  }

  @Override
  public boolean foldable() {
    return false;
  }

  @Override
  public String prettyName() {
    return "etl_quarantine_tee";
  }

  @Override
  public int productArity() {
    return 2;
  }

  @Override
  public Object productElement(int n) {
    switch (n) {
      case 0:
        return child;
      case 1:
        return dir;
      default:
        throw new IndexOutOfBoundsException(String.valueOf(n));
    }
  }

  @Override
  public boolean canEqual(Object other) {
    return other instanceof QuarantineTee;
  }

  /** One task attempt's file. */
  static final class Sink {
    final String dir;
    final long attempt;
    final FileSystem fs;
    final Path tmp;
    final Path dst;
    final OutputWriter out;
    volatile boolean failed;

    Sink(String dir, TaskContext tc, Configuration conf, OutputWriterFactory factory, StructType schema)
        throws IOException {
      this.dir = dir;
      this.attempt = tc.taskAttemptId();
      Path root = new Path(dir);
      this.fs = root.getFileSystem(conf);
      String part = String.format("part-%05d", tc.partitionId());
      this.tmp = new Path(new Path(root, "_tmp"), part + "-" + tc.taskAttemptId() + ".parquet");
      this.dst = new Path(root, part + ".parquet");
      TaskAttemptID id = new TaskAttemptID(
          new TaskID(new JobID("etlquarantine", tc.stageId()), TaskType.MAP, tc.partitionId()), tc.attemptNumber());
      this.out = factory.newInstance(tmp.toString(), schema, new TaskAttemptContextImpl(conf, id));
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
