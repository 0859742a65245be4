package etl_framework.spark;

import org.apache.spark.SparkContext;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.expressions.UserDefinedFunction;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.util.AccumulatorV2;

/**
 * The quality gate's counts, taken inside the target write's generated code.
 *
 * <p>A Spark {@code Observation} counts with a {@code CollectMetrics} node, which Spark runs outside whole-stage
 * code generation: on 4M rows it cost the write 1 to 1.5 s. Here {@code count(mask)} is a plain UDF call in the
 * write's projection: bit {@code i} of {@code mask} says the row breaks predicate {@code i}; the function adds the
 * row to the counts of its task and returns {@code mask}. The counts travel as an accumulator, which Spark merges
 * exactly as it merges an Observation's: once per partition of the write's (result) stage, and never from a failed
 * or a speculative duplicate attempt.
 *
 * <p>From Python: {@code acc = GateCounter.register(spark, name, bits, quarantineMask)}; after the write,
 * {@code acc.value()} is {@code [rows, quarantined, count of bit 0, ..., count of bit bits-1]}.
 */
public final class GateCounter implements UDF1<Long, Long> {
  private static final long serialVersionUID = 1L;
  public static final int MAX_BITS = 62;

  private final Counts counts;

  GateCounter(Counts counts) {
    this.counts = counts;
  }

  /** Register {@code name} (non-deterministic: never reordered, duplicated or dropped); returns its counts. */
  public static Counts register(SparkSession spark, String name, int bits, long quarantineMask) {
    if (bits < 0 || bits > MAX_BITS) {
      throw new IllegalArgumentException("a gate counts at most " + MAX_BITS + " predicates, not " + bits);
    }
    Counts counts = new Counts(bits, quarantineMask);
    SparkContext sc = spark.sparkContext();
    sc.register(counts);  // unnamed: not listed per task in Spark's UI and listener events
    UserDefinedFunction f = functions.udf(new GateCounter(counts), DataTypes.LongType)
        .asNondeterministic().asNonNullable();
    spark.udf().register(name, f);
    return counts;
  }

  @Override
  public Long call(Long mask) {
    long m = mask == null ? 0L : mask;
    counts.add(m);
    return m;
  }

  /** Row, quarantined and per-bit counts of one task (on an executor) or of the whole write (on the driver). */
  public static final class Counts extends AccumulatorV2<Long, long[]> {
    private static final long serialVersionUID = 1L;
    private final long[] n;
    private final long quarantineMask;

    public Counts(int bits, long quarantineMask) {
      this.n = new long[bits + 2];
      this.quarantineMask = quarantineMask;
    }

    /** One row; {@code mask} holds the predicates it breaks. */
    void add(long mask) {
      n[0]++;
      if ((mask & quarantineMask) != 0) {
        n[1]++;
      }
      long m = mask;
      while (m != 0) {
        n[2 + Long.numberOfTrailingZeros(m)]++;
        m &= m - 1;
      }
    }

    @Override
    public boolean isZero() {
      for (long v : n) {
        if (v != 0) {
          return false;
        }
      }
      return true;
    }

    @Override
    public Counts copy() {
      Counts c = new Counts(n.length - 2, quarantineMask);
      System.arraycopy(n, 0, c.n, 0, n.length);
      return c;
    }

    @Override
    public void reset() {
      java.util.Arrays.fill(n, 0L);
    }

    @Override
    public void add(Long mask) {
      add(mask == null ? 0L : mask.longValue());
    }

    @Override
    public void merge(AccumulatorV2<Long, long[]> other) {
      long[] o = ((Counts) other).n;
      for (int i = 0; i < n.length; i++) {
        n[i] += o[i];
      }
    }

    @Override
    public long[] value() {
      return n.clone();
    }
  }
}
