package etl_framework.spark;

import java.util.Collections;
import java.util.HashMap;
import java.util.Map;

import org.apache.iceberg.spark.CommitMetadata;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

/**
 * Iceberg commits that carry the framework's own snapshot summary properties (run id, bookmark, ...).
 *
 * <p>A DataFrameWriterV2 write takes them as {@code snapshot-property.<key>} options, but a SQL statement
 * ({@code MERGE INTO}, {@code UPDATE}, {@code DELETE FROM}) has no such option: Iceberg reads them from
 * {@link CommitMetadata}'s thread-local, which is set only around a call on the driver's calling thread. From
 * Python: {@code spark._jvm.etl_framework.spark.IcebergCommit.sql(spark._jsparkSession, text, props)} with
 * {@code props} a dict (py4j converts it to a {@code java.util.Map}).
 */
public final class IcebergCommit {
  private IcebergCommit() {}

  /**
   * Runs {@code spark.sql(sqlText)} (eager for a command such as MERGE INTO, whose commit then happens inside this
   * call) with {@code props} added to the summary of every Iceberg snapshot it commits. Returns its result.
   */
  public static Dataset<Row> sql(SparkSession spark, String sqlText, Map<String, String> props) {
    Map<String, String> copy =
        props == null ? Collections.<String, String>emptyMap() : new HashMap<String, String>(props);
    return CommitMetadata.withCommitProperties(copy, () -> spark.sql(sqlText), RuntimeException.class);
  }
}
