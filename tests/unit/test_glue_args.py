"""Glue-style argument parsing against the documented behaviour of `awsglue.utils.getResolvedOptions`
(https://docs.aws.amazon.com/glue/latest/dg/aws-glue-api-crawler-pyspark-extensions-get-resolved-options.html and
its source in aws-glue-libs): argv[0] skipped, requested names required, unknown arguments ignored, no prefix
abbreviation, last occurrence wins, TempDir mirrored, bookmark option defaulted, reserved names refused."""

from __future__ import annotations

import pytest

from etl_framework.errors import UsageError
from etl_framework.runtime.args import (
    GlueArgumentError,
    coerce_param,
    pairs,
    parse_job_args,
    resolve_options,
    to_glue_arguments,
    typed_params,
)

# What Glue really passes to a job script (the shape of sys.argv in a Glue 5.0 job run).
GLUE_ARGV = [
    "script_2026-11-25-10-00-00.py", "--JOB_ID", "j_0123", "--JOB_RUN_ID", "jr_abc", "--JOB_NAME", "prod_trips_clean",
    "--job-bookmark-option", "job-bookmark-disable", "--TempDir", "s3://b/tmp/", "--enable-glue-datacatalog", "true",
    "--datalake-formats", "delta", "--conf", "spark.sql.extensions=x --conf spark.y=z",
    "--job_config", "s3://b/etl/project/jobs/trips_clean.yaml", "--env", "prod", "--project_dir",
    "s3://b/etl/project/", "--min_distance", "0.1", "--WORKFLOW_NAME", "prod_nightly", "--WORKFLOW_RUN_ID", "wr_1",
]


def test_the_example_from_the_glue_docs() -> None:
    argv = ["script.py", "--JOB_NAME", "my_job", "--day_partition_key", "partition_0", "--hour_partition_key",
            "partition_1", "--day_partition_value", "2026-11-25"]
    args = resolve_options(argv, ["JOB_NAME", "day_partition_key", "hour_partition_key", "day_partition_value"])
    assert args["JOB_NAME"] == "my_job"
    assert args["day_partition_value"] == "2026-11-25"
    assert args["job_bookmark_option"] == "job-bookmark-disable"  # Glue's default when not passed
    assert "TempDir" in args and args["TempDir"] is None


def test_a_requested_option_is_required() -> None:
    with pytest.raises(GlueArgumentError, match="--job_config"):
        resolve_options(["script.py", "--JOB_NAME", "x"], ["JOB_NAME", "job_config"])


def test_unknown_arguments_are_ignored_and_the_last_occurrence_wins() -> None:
    args = resolve_options(["s.py", "--other", "1", "--job_config", "a.yaml", "--job_config", "b.yaml"],
                           ["job_config"])
    assert args["job_config"] == "b.yaml"
    assert "other" not in args


def test_no_abbreviation_of_option_names() -> None:
    with pytest.raises(GlueArgumentError):
        resolve_options(["s.py", "--job_conf", "a.yaml"], ["job_config"])


def test_tempdir_is_mirrored_into_redshift_tempdir_and_back() -> None:
    a = resolve_options(["s.py", "--TempDir", "s3://t/"], [])
    assert a["RedshiftTempDir"] == "s3://t/"
    b = resolve_options(["s.py", "--RedshiftTempDir", "s3://r/"], [])
    assert b["TempDir"] == "s3://r/"


def test_old_continuation_option_maps_to_the_bookmark_option() -> None:
    a = resolve_options(["s.py", "--continuation-option", "continuation-enabled"], [])
    assert a["job_bookmark_option"] == "job-bookmark-enable"
    with pytest.raises(GlueArgumentError):
        resolve_options(["s.py", "--job-bookmark-option", "sometimes"], [])


def test_reserved_names_cannot_be_requested() -> None:
    for name in ("job-bookmark-option", "continuation-option", "job-bookmark-from"):
        with pytest.raises(RuntimeError, match="reserved"):
            resolve_options(["s.py"], [name])


def test_bookmark_range_needs_pause() -> None:
    argv = ["s.py", "--job-bookmark-from", "1", "--job-bookmark-to", "2"]
    with pytest.raises(GlueArgumentError, match="Invalid option"):
        resolve_options(argv, [])
    assert resolve_options([*argv, "--job-bookmark-option", "job-bookmark-pause"], [])["job_bookmark_to"] == "2"
    with pytest.raises(GlueArgumentError, match="--job-bookmark-to"):
        resolve_options(["s.py", "--job-bookmark-option", "job-bookmark-pause", "--job-bookmark-from", "1"], [])


def test_equals_form_is_accepted() -> None:
    assert resolve_options(["s.py", "--job_config=a.yaml"], ["job_config"])["job_config"] == "a.yaml"


def test_job_args_from_a_real_glue_argv() -> None:
    a = parse_job_args(GLUE_ARGV)
    assert a.job_config == "s3://b/etl/project/jobs/trips_clean.yaml"
    assert a.env == "prod"
    assert a.job_name == "prod_trips_clean"
    assert a.job_run_id == "jr_abc"
    assert (a.workflow_name, a.workflow_run_id) == ("prod_nightly", "wr_1")
    assert a.in_workflow
    # only the job's params: not Glue's dashed options, --conf, TempDir or the framework's own arguments
    assert a.params == {"min_distance": "0.1"}


def test_job_args_locally_default_env_and_no_workflow() -> None:
    a = parse_job_args(["etl_job.py", "--job_config", "jobs/a.yaml", "--limit", "-5"])
    assert a.env == "local" and a.job_name is None and not a.in_workflow
    assert a.params == {"limit": "-5"}  # a negative number is a value, not an option


def test_missing_job_config_is_a_usage_error_with_an_example() -> None:
    with pytest.raises(UsageError, match="--job_config") as e:
        parse_job_args(["etl_job.py", "--env", "prod"])
    assert "etl_job.py --JOB_NAME" in str(e.value)


def test_pairs_reads_flags_without_value_as_empty() -> None:
    assert pairs(["--a", "1", "--flag", "--b=2"]) == {"a": "1", "flag": "", "b": "2"}


def test_params_are_typed_like_their_defaults() -> None:
    assert typed_params({"n": "3", "x": "0.5", "on": "false", "s": "7", "new": "1"},
                        {"n": 0, "x": 0.0, "on": True, "s": "a"}) == {"n": 3, "x": 0.5, "on": False, "s": "7",
                                                                      "new": "1"}
    with pytest.raises(UsageError, match="not a int"):
        coerce_param("abc", 1)


def test_params_become_glue_arguments_as_strings() -> None:
    assert to_glue_arguments({"min_distance": 0.1, "full": True, "name": "x"}) == {
        "--min_distance": "0.1", "--full": "true", "--name": "x"}
    round_trip = parse_job_args(["s.py", "--job_config", "j.yaml",
                                 *[t for kv in to_glue_arguments({"a": 1, "b": "two"}).items() for t in kv]])
    assert round_trip.params == {"a": "1", "b": "two"}
