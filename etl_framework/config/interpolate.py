"""Interpolation of SPEC §4.2: `${env.X}`, `${params.X}`, `${run.X}`, `${secret:NAME}`.

`${env.X}` and `${params.X}` are substituted when a file is loaded; `${run.X}` when a run is known (else left as
text); `${secret:NAME}` is always left as text and resolved only at the moment of use by `resolve_secrets`, so a
secret value never reaches a config object, a log, a run record or the catalog. `redact` hides both the
placeholders' resolved values and anything that looks like one. `$${` writes a literal `${`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from etl_framework.redaction import redact, register

__all__ = ["Context", "RefProblem", "interpolate", "interpolate_str", "redact", "references", "resolve_secrets"]

REF = re.compile(r"\$\$\{|\$\{([^{}]*)\}")
SECRET_REF = re.compile(r"\$\{secret:([A-Za-z0-9_./+=@-]+)\}")
RUN_BUILTINS = ("id", "date", "job", "env", "workflow")
MASK = "***"



@dataclass(frozen=True)
class RefProblem:
    """An unknown or malformed `${...}` at `offset` in the string (the caller maps it to a file position)."""

    offset: int
    length: int
    message: str


@dataclass
class Context:
    env: dict[str, Any]
    params: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    # when run is None: the run properties a later run may provide (None = accept any, leave as text)
    run_allowed: set[str] | None = None
    # placeholder text for ${run.X} and ${secret:X} when checking (None: leave as text)
    placeholder: Callable[[str, str], str] | None = None


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def interpolate_str(text: str, ctx: Context, problems: list[RefProblem] | None = None) -> Any:
    """Substitute references in one string. A string that is exactly one reference keeps the referenced value's
    type (so `max_value: ${params.max_fare}` stays a number)."""
    problems = problems if problems is not None else []
    if "${" not in text:
        return text
    whole = REF.fullmatch(text)
    if whole and whole.group(0) != "$${":
        value, ok = _resolve(whole.group(1), ctx, 0, len(text), problems)
        return value if ok else text
    out: list[str] = []
    pos = 0
    for m in REF.finditer(text):
        out.append(text[pos: m.start()])
        pos = m.end()
        if m.group(0) == "$${":
            out.append("${")
            continue
        value, ok = _resolve(m.group(1), ctx, m.start(), m.end() - m.start(), problems)
        out.append(_fmt(value) if ok else m.group(0))
    out.append(text[pos:])
    result = "".join(out)
    if "${" in text.replace("$${", "") and not problems:
        # an unterminated '${' is a mistake, not text
        for m in re.finditer(r"\$\{(?![^{}]*\})", text):
            if text[max(0, m.start() - 1): m.start()] != "$":
                problems.append(RefProblem(m.start(), 2, "unterminated '${': close it with '}' (or write '$${' "
                                                         "for a literal '${')"))
    return result


def _resolve(ref: str, ctx: Context, offset: int, length: int, problems: list[RefProblem]) -> tuple[Any, bool]:
    ref = ref.strip()
    if ref.startswith("secret:"):
        name = ref[len("secret:"):]
        if not re.fullmatch(r"[A-Za-z0-9_./+=@-]+", name):
            problems.append(RefProblem(offset, length, f"bad secret name {name!r} in '${{{ref}}}'"))
            return None, False
        if ctx.placeholder:
            return ctx.placeholder("secret", name), True
        return None, False  # left as text until the moment of use
    scope, dot, name = ref.partition(".")
    if not dot or not name:
        problems.append(RefProblem(offset, length, f"unknown reference '${{{ref}}}': use ${{env.NAME}}, "
                                                   "${params.NAME}, ${run.NAME} or ${secret:NAME}"))
        return None, False
    if scope == "env":
        if name in ctx.env:
            return ctx.env[name], True
        problems.append(RefProblem(offset, length, f"unknown env var '${{env.{name}}}': not in the environment "
                                                   f"config's vars" + _did_you_mean(name, ctx.env)))
        return None, False
    if scope == "params":
        if ctx.params is None:
            problems.append(RefProblem(offset, length, f"'${{params.{name}}}' is only available in job files"))
            return None, False
        if name in ctx.params:
            return ctx.params[name], True
        problems.append(RefProblem(offset, length, f"unknown param '${{params.{name}}}': declare it under "
                                                   f"'params:' with a default" + _did_you_mean(name, ctx.params)))
        return None, False
    if scope == "run":
        if ctx.run is not None:
            if name in ctx.run:
                return ctx.run[name], True
            problems.append(RefProblem(offset, length, f"unknown run property '${{run.{name}}}': this run has "
                                                       f"{', '.join(sorted(ctx.run)) or 'none'}"
                                                       + _did_you_mean(name, ctx.run)))
            return None, False
        if ctx.run_allowed is not None and name not in ctx.run_allowed:
            problems.append(RefProblem(offset, length, f"unknown run property '${{run.{name}}}': valid are "
                                                       f"{', '.join(sorted(ctx.run_allowed))} (built-ins, plus "
                                                       "run_properties of the workflows that use this job)"
                                                       + _did_you_mean(name, ctx.run_allowed)))
            return None, False
        if ctx.placeholder:
            return ctx.placeholder("run", name), True
        return None, False
    problems.append(RefProblem(offset, length, f"unknown reference '${{{ref}}}': use ${{env.NAME}}, "
                                               "${params.NAME}, ${run.NAME} or ${secret:NAME}"
                                               + _did_you_mean(scope, ["env", "params", "run", "secret"])))
    return None, False


def _did_you_mean(name: str, options: Any) -> str:
    import difflib

    match = difflib.get_close_matches(name, [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def interpolate(value: Any, ctx: Context, on_problem: Callable[[tuple, RefProblem], None] | None = None,
                path: tuple = ()) -> Any:
    """Interpolate every string in a nested structure (keys are left alone); problems go to `on_problem` with
    the path of the string."""
    if isinstance(value, str):
        problems: list[RefProblem] = []
        out = interpolate_str(value, ctx, problems)
        if on_problem:
            for p in problems:
                on_problem(path, p)
        return out
    if isinstance(value, dict):
        return {k: interpolate(v, ctx, on_problem, path + (k,)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, ctx, on_problem, path + (i,)) for i, v in enumerate(value)]
    return value


def references(text: str) -> list[tuple[str, str, int]]:
    """(scope, name, offset) of every reference in a string."""
    out = []
    for m in REF.finditer(text):
        if m.group(0) == "$${":
            continue
        ref = m.group(1).strip()
        if ref.startswith("secret:"):
            out.append(("secret", ref[7:], m.start()))
        else:
            scope, _, name = ref.partition(".")
            out.append((scope, name, m.start()))
    return out


# ------------------------------------------------------------------------------------------------- secrets


def _fetch_secret(name: str) -> str:
    if name in os.environ:
        return os.environ[name]
    try:  # only when a secret is not in the environment
        from botocore.exceptions import BotoCoreError, ClientError

        from etl_framework.aws import client
    except ImportError as e:  # pragma: no cover
        raise _secret_error(name, f"boto3 is not installed ({e})") from None
    endpoint = os.environ.get("ETL_AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    try:
        resp = client("secretsmanager", None, endpoint).get_secret_value(SecretId=name)
    except (BotoCoreError, ClientError) as e:
        raise _secret_error(name, str(e)) from None
    value = resp.get("SecretString")
    if value is None:
        raise _secret_error(name, "the secret has no string value")
    return value


def _secret_error(name: str, why: str) -> Exception:
    from etl_framework.errors import EtlError

    return EtlError(f"secret '{name}' not found: {why}\n  what to do: set the environment variable {name} or "
                    f"create the secret '{name}' in AWS Secrets Manager")


def resolve_secrets(value: Any) -> Any:
    """Replace `${secret:NAME}` in strings (recursively in dicts and lists) by the secret's value, from the
    environment variable NAME, else AWS Secrets Manager. Call it only at the moment of use, never store the
    result; every resolved value is remembered so that `redact` can hide it."""
    if isinstance(value, str):
        if "${secret:" not in value:
            return value

        def sub(m: re.Match[str]) -> str:
            secret = _fetch_secret(m.group(1))
            register(secret)
            return secret

        return SECRET_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: resolve_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(v) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve_secrets(v) for v in value)
    return value
