"""`etl iam show [JOB|crawlers|orchestrator] --env ENV`: the least-privilege policies `etl deploy` generates
(`deploy: {iam: generate}`), as JSON, for review before anything is deployed. Offline: the account id stays a
placeholder unless `--account` is given."""

from __future__ import annotations

from typing import Any

import click

from etl_framework.cli.common import err, print_json


def register(group: click.Group) -> None:
    @group.group("iam")
    def iam_group() -> None:
        """The IAM roles and policies generated from the project's YAML."""

    @iam_group.command("show")
    @click.argument("name", required=False)
    @click.option("--env", "env_opt", default=None, help="environment config conf/<env>.yaml (default: the global --env)")
    @click.option("--account", default="{account}", help="AWS account id to put in the ARNs")
    @click.pass_context
    def show(ctx: click.Context, name: str | None, env_opt: str | None, account: str) -> None:
        """Print the generated role(s): a job's (by job name), `crawlers` or `orchestrator`; all without NAME."""
        from etl_framework.config.project import Project
        from etl_framework.deploy.run import generated_roles
        from etl_framework.errors import UsageError

        obj = ctx.obj or {}
        env = env_opt or obj.get("env") or "local"
        project = Project.discover(obj.get("project_dir"))
        roles = generated_roles(project, env, account=account)
        if name:
            picked = [r for r in roles if r["purpose"] in (f"job:{name}", name)]
            if not picked:
                known = ", ".join(r["purpose"].removeprefix("job:") for r in roles)
                raise UsageError(f"no generated role for '{name}' in env {env}\n  what to do: name one of: {known}")
            roles = picked
        for r in roles:
            err(f"role {r['role']} ({r['purpose']}): {len(r['policy']['Statement'])} statements")
        out: Any = roles[0] if name and len(roles) == 1 else roles
        print_json(out)
