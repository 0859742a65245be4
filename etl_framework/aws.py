"""The one factory of boto3 clients: every client gets connect/read timeouts and bounded retries, so a hung or
unreachable endpoint fails a call in seconds, naming the endpoint, instead of hanging a run (SPEC §10).

Defaults: 3 s to connect, 5 s per read (AWS control-plane and DynamoDB calls answer in milliseconds; large S3
reads stream through pyarrow, not here), 3 attempts in all (botocore's `standard` retry mode): a black-holed endpoint
fails after about 3 x 5 s. `ETL_AWS_CONNECT_TIMEOUT`, `ETL_AWS_READ_TIMEOUT` and `ETL_AWS_MAX_ATTEMPTS` change
them for a process (e.g. a slow link).
"""

from __future__ import annotations

import os
import threading
from typing import Any

DEFAULTS: dict[str, float] = {"connect_timeout": 3.0, "read_timeout": 5.0, "max_attempts": 3}


def settings() -> dict[str, Any]:
    """The timeouts and attempts clients get now (environment overrides applied)."""
    out: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        raw = os.environ.get(f"ETL_AWS_{key.upper()}")
        try:
            value = float(raw) if raw else default
        except ValueError:
            value = default
        out[key] = max(1, int(value)) if key == "max_attempts" else max(0.1, value)
    return out


def client_config(**overrides: Any) -> Any:
    """A `botocore.config.Config` with this framework's timeouts and retries."""
    from botocore.config import Config

    s = settings()
    return Config(connect_timeout=s["connect_timeout"], read_timeout=s["read_timeout"],
                  retries={"total_max_attempts": s["max_attempts"], "mode": "standard"}, **overrides)


_SESSIONS: dict[tuple[str | None, ...], Any] = {}
_LOCK = threading.Lock()
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def session() -> Any:
    """A boto3 session for the credentials the environment names now. boto3's default session resolves credentials
    once per process and keeps them: a process that switches identity (an assumed role, a test) would go on
    signing with the first one. One session per set of credential variables, reused while they stay."""
    import boto3

    key = tuple(os.environ.get(k) for k in CREDENTIAL_ENV)
    with _LOCK:
        s = _SESSIONS.get(key)
        if s is None:
            s = _SESSIONS[key] = boto3.session.Session()
        return s


def client(service: str, region: str | None = None, endpoint_url: str | None = None, **kwargs: Any) -> Any:
    """`boto3.client(service)` with the env's region and endpoint override and `client_config()`; a `config=`
    given by the caller is merged over it."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = client_config()
    if kwargs.get("config") is not None:
        config = config.merge(kwargs.pop("config"))
    else:
        kwargs.pop("config", None)
    s = session()
    with _LOCK:  # a boto3 session is not thread-safe while it makes clients; the clients are
        return s.client(service, region_name=region, endpoint_url=endpoint_url or None, config=config, **kwargs)
