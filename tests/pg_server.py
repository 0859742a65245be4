"""A real PostgreSQL server for the JDBC tests: Debian's binaries (`make postgres` installs them when missing),
its data in a temp folder, listening on a free port of 127.0.0.1 only, every statement logged (so tests can
assert what the database was asked), stopped and removed at the end.

initdb refuses to run as root: as root the server runs as the `postgres` user (`runuser`). Local socket
connections (psql, used by the tests to change data) are trusted; TCP connections (the framework's JDBC reads)
need the password (scram-sha-256), so a wrong password is refused as on a real database.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "etl"
PASSWORD = "Pg-t3st-s3cr3t-7f2c9a"  # the test database's: checked to leak nowhere
DATABASE = "shop"


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self) -> None:
        bin_dir = pg_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed: run `make postgres` (apt-get install postgresql)")
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="etl-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", "postgres", "--"] if self.as_root else []) + list(args)

    def start(self) -> PgServer:
        pwfile = self.root / "pw"
        pwfile.write_text("unused\n")
        if self.as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run(self._cmd(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                                 "--auth-host=scram-sha-256", "--pwfile", str(pwfile), "-E", "UTF8",
                                 "--no-sync"), check=True, capture_output=True)
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c log_statement=all "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB "
                "-c max_connections=30 -c timezone=UTC")
        subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts,
                                 "-w", "-t", "60", "start"), check=True, capture_output=True)
        self.psql(f"CREATE USER {USER} PASSWORD '{PASSWORD}'", db="postgres")
        self.psql(f"CREATE DATABASE {DATABASE} OWNER {USER}", db="postgres")
        self.psql(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {USER}")
        return self

    def stop(self) -> None:
        subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                       capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{DATABASE}"

    def psql(self, sql: str, db: str = DATABASE) -> list[list[str]]:
        """Run SQL through the local socket as the superuser; rows of the last statement, as text."""
        out = subprocess.run([str(self.bin / "psql"), "-h", str(self.root), "-p", str(self.port), "-U", "postgres",
                              "-d", db, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    def statements(self) -> list[str]:
        """Every statement the server logged so far (log_statement=all)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        out = []
        for line in text.splitlines():
            m = re.search(r"LOG:  (?:statement|execute [^:]*): (.*)$", line)
            if m and "execute fetch from" not in line:  # the next batch of a cursor, not a new query
                out.append(m.group(1))
        return out

    def wait_gone(self, timeout: float = 10) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)
