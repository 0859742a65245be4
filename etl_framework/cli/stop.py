"""`etl stop RUN_ID`: stop a running job run or workflow run from another terminal.

Locally the run's owning process is signalled (SIGTERM), found through the run record's host and pid (a workflow
run's owner pid). A signal, rather than a stop flag in the state that the run would poll, because it reuses the one
stop path that Ctrl-C and a stopped Glue run already take (the job group cancelled, the run and its workflow node
recorded STOPPED, locks released, exit 130), acts at once even while the driver waits on a long Spark job, and
costs a run nothing while nobody stops it. The price: it works only from the run's own host, which the command
says. In an inline workflow run every job shares the workflow's process, so stopping one of its job runs stops the
workflow run; with the subprocess executor only that job stops.

On AWS (an env with a `deploy:` block and a run that is not a process of this host) Glue stops it:
`BatchStopJobRun` for a job run, `StopWorkflowRun` for a workflow run.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

import click

from etl_framework.cli.common import err


def register(group: click.Group) -> None:
    group.add_command(stop)


def _records(env_config: Any, run_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(job run record, workflow run record) of RUN_ID in the env's state; either may be None."""
    from etl_framework.state import open_state

    state = open_state(env_config)
    try:
        job_rec = None if run_id.startswith("wr_") else state.runs.get_run(run_id)
        wf_rec = state.workflows.get_run(run_id) if job_rec is None else None
    finally:
        state.close()
    return job_rec, wf_rec


def _signal_owner(what: str, host: str | None, pid: int | None) -> str | None:
    """SIGTERM the owning process when it lives on this host; None when it does not (or is gone)."""
    from etl_framework.errors import UsageError
    from etl_framework.state.db import pid_alive

    if not pid or host != socket.gethostname():
        return None
    if not pid_alive(pid):
        raise UsageError(f"{what} is recorded RUNNING but its process (pid {pid}) is gone\n  what to do: `etl resume` "
                         "(job) or `etl workflow resume` (workflow) records it and finishes it")
    os.kill(int(pid), signal.SIGTERM)
    return f"sent SIGTERM to pid {pid} on {host}"


def _glue_stop(env_config: Any, run_id: str, job: str | None, workflow: str | None) -> str:
    from etl_framework.aws import client
    from etl_framework.errors import UsageError

    prefix = env_config.deploy.name_prefix if env_config.deploy is not None else ""
    glue = client("glue", env_config.aws.region, env_config.aws.endpoint_url)
    if workflow or run_id.startswith("wr_"):
        if not workflow:
            raise UsageError(f"which workflow does {run_id} belong to?\n  what to do: etl stop {run_id} --workflow NAME")
        glue.stop_workflow_run(Name=prefix + workflow, RunId=run_id)
        return f"asked Glue to stop workflow run {run_id} of {prefix + workflow} (StopWorkflowRun)"
    if not job:
        raise UsageError(f"which job does {run_id} belong to?\n  what to do: etl stop {run_id} --job NAME")
    res = glue.batch_stop_job_run(JobName=prefix + job, JobRunIds=[run_id])
    errors = res.get("Errors") or []
    if errors:
        detail = (errors[0].get("ErrorDetail") or {}).get("ErrorMessage") or errors[0]
        raise UsageError(f"Glue did not stop job run {run_id} of {prefix + job}: {detail}")
    return f"asked Glue to stop job run {run_id} of {prefix + job} (BatchStopJobRun)"


@click.command()
@click.argument("run_id")
@click.option("--job", default=None, metavar="NAME", help="the run's job, on Glue when the state does not know it")
@click.option("--workflow", default=None, metavar="NAME", help="the run's workflow, on Glue when the state does not")
@click.pass_context
def stop(ctx: click.Context, run_id: str, job: str | None, workflow: str | None) -> None:
    """Stop the running job run or workflow run RUN_ID (recorded STOPPED, locks released; resumable)."""
    from etl_framework.config.project import Project
    from etl_framework.errors import UsageError

    env = ctx.obj.get("env", "local")
    env_config = Project.discover(ctx.obj.get("project_dir")).env_config(env)
    job_rec, wf_rec = _records(env_config, run_id)
    if job_rec is not None:
        if job_rec.get("status") != "RUNNING":
            raise UsageError(f"job run {run_id} of job {job_rec.get('job')} is {job_rec.get('status')}, not RUNNING: "
                             "there is nothing to stop")
        done = _signal_owner(f"job run {run_id}", job_rec.get("host"), job_rec.get("pid"))
        job = job or job_rec.get("job")
    elif wf_rec is not None:
        if wf_rec.get("state") != "RUNNING":
            raise UsageError(f"workflow run {run_id} of {wf_rec.get('workflow')} is {wf_rec.get('state')}, not "
                             "RUNNING: there is nothing to stop")
        done = _signal_owner(f"workflow run {run_id}", wf_rec.get("owner_host"), wf_rec.get("owner_pid"))
        workflow = workflow or wf_rec.get("workflow")
    else:
        done = None
    if done is None:
        if env_config.deploy is None:
            where = (job_rec or {}).get("host") or (wf_rec or {}).get("owner_host")
            if where:
                raise UsageError(f"run {run_id} runs on host {where}, not here\n  what to do: run `etl stop "
                                 f"{run_id}` on {where}")
            raise UsageError(f"no job run or workflow run {run_id} in env {env}\n  what to do: `etl runs` and "
                             "`etl workflow status` list the runs")
        done = _glue_stop(env_config, run_id, job, workflow)
    err(f"stopping run {run_id}: {done}")
