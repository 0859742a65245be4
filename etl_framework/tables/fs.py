"""Where tables live: the file-system plumbing every table format and every caller shares (SPEC §11).

Spark-side code goes through `filesystem(spark, path)`: POSIX calls for local paths (rename is atomic), Hadoop's
FileSystem through Spark's JVM for `s3a://` (one client, the same credentials and endpoint as Spark's readers).
Code that runs without a JVM (`etl query`, resume, bookmark reconciliation, the crawler) reaches the same places
through `Storage`: a pyarrow file system and delta-rs storage options built from the env config's `aws` block.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from dataclasses import dataclass
from typing import Any


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def strip_scheme(path: str) -> str:
    return path.removeprefix("file://")


def target_key(path: str) -> str:
    """The identity of a table for locking and ownership: absolute local path with symlinks resolved (two spellings of
    one folder are one table), or URI with `s3a://` spelled `s3://`; no trailing slash."""
    if is_local(path):
        return os.path.realpath(strip_scheme(path)).rstrip("/") or "/"
    return path.rstrip("/").replace("s3a://", "s3://").replace("s3n://", "s3://")



# ---------------------------------------------------------------------------------------------- Spark side


class LocalFS:
    """Local files (POSIX rename is atomic within one file system)."""

    def exists(self, p: str) -> bool:
        return os.path.exists(strip_scheme(p))

    def is_file(self, p: str) -> bool:
        return os.path.isfile(strip_scheme(p))

    def list_files(self, root: str) -> list[tuple[str, int]]:
        """Data files under root, relative, skipping hidden names (`_x`, `.x`) at every level."""
        base = strip_scheme(root)
        out = []
        for dirpath, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
            for f in sorted(files):
                if f.startswith(("_", ".")):
                    continue
                full = os.path.join(dirpath, f)
                out.append((os.path.relpath(full, base).replace(os.sep, "/"), os.path.getsize(full)))
        return out

    def rename(self, src: str, dst: str) -> None:
        d = strip_scheme(dst)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        os.rename(strip_scheme(src), d)

    def delete(self, p: str) -> None:
        q = strip_scheme(p)
        if os.path.isdir(q):
            shutil.rmtree(q, ignore_errors=True)
        elif os.path.lexists(q):
            os.remove(q)

    def read_text(self, p: str) -> str | None:
        try:
            with open(strip_scheme(p), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_atomic(self, p: str, text: str) -> None:
        q = strip_scheme(p)
        os.makedirs(os.path.dirname(q), exist_ok=True)
        tmp = os.path.join(os.path.dirname(q), f".{os.path.basename(q)}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, q)
        try:
            dfd = os.open(os.path.dirname(q), os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass

    def remove_if_empty(self, p: str) -> None:
        try:
            os.rmdir(strip_scheme(p))
        except OSError:
            pass

    def remove_empty_dirs(self, root: str) -> None:
        base = strip_scheme(root)
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda t: -len(t[0])):
            if dirpath != base and not os.listdir(dirpath):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass


class HadoopFS:
    """Any Hadoop file system (s3a://, hdfs://) through Spark's JVM; S3 object puts are atomic."""

    def __init__(self, spark: Any, path: str) -> None:
        self.jvm = spark._jvm
        self.conf = spark._jsc.hadoopConfiguration()
        self.fs = self._p(path).getFileSystem(self.conf)

    def _p(self, p: str) -> Any:
        return self.jvm.org.apache.hadoop.fs.Path(p)

    def exists(self, p: str) -> bool:
        return bool(self.fs.exists(self._p(p)))

    def is_file(self, p: str) -> bool:
        return bool(self.fs.isFile(self._p(p)))

    def list_files(self, root: str) -> list[tuple[str, int]]:
        if not self.exists(root):
            return []
        base = str(self.fs.makeQualified(self._p(root)).toString()).rstrip("/")
        it = self.fs.listFiles(self._p(root), True)
        out = []
        while it.hasNext():
            st = it.next()
            full = str(st.getPath().toString())
            rel = full[len(base) + 1:] if full.startswith(base + "/") else full
            if any(part.startswith(("_", ".")) for part in rel.split("/")):
                continue
            out.append((rel, int(st.getLen())))
        return sorted(out)

    def rename(self, src: str, dst: str) -> None:
        d = self._p(dst)
        self.fs.mkdirs(d.getParent())
        if not self.fs.rename(self._p(src), d):
            raise OSError(f"cannot move {src} to {dst}")

    def delete(self, p: str) -> None:
        self.fs.delete(self._p(p), True)

    def read_text(self, p: str) -> str | None:
        if not self.exists(p):
            return None
        stream = self.fs.open(self._p(p))
        try:
            return str(self.jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()

    def write_atomic(self, p: str, text: str) -> None:
        tmp = posixpath.join(posixpath.dirname(p), f".{posixpath.basename(p)}.{uuid.uuid4().hex}.tmp")
        if p.startswith(("s3://", "s3a://", "s3n://")):
            tmp = p  # an S3 PUT replaces the object atomically
        out = self.fs.create(self._p(tmp), True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()
        if tmp != p:
            self.fs.delete(self._p(p), False)
            self.fs.rename(self._p(tmp), self._p(p))

    def remove_empty_dirs(self, root: str) -> None:
        return None  # object stores have no empty folders to leave behind

    def remove_if_empty(self, p: str) -> None:
        return None


def filesystem(spark: Any, path: str) -> LocalFS | HadoopFS:
    return LocalFS() if is_local(path) else HadoopFS(spark, path)


def path_exists(spark: Any, path: str) -> bool:
    """Whether `path` exists, through Hadoop's FileSystem (local paths and s3a:// alike)."""
    hpath = spark._jvm.org.apache.hadoop.fs.Path(path)
    return bool(hpath.getFileSystem(spark._jsc.hadoopConfiguration()).exists(hpath))


def delete_path(spark: Any, path: str) -> None:
    """Delete a file or folder through Hadoop's FileSystem."""
    hpath = spark._jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark._jsc.hadoopConfiguration())
    if fs.exists(hpath):
        fs.delete(hpath, True)


def is_s3(path: str) -> bool:
    return path.startswith(("s3://", "s3a://", "s3n://"))


def s3_uri(path: str) -> str:
    """`s3://` spelling of an S3 location (Hadoop's s3a:// names the same object)."""
    return "s3://" + path.split("://", 1)[1] if is_s3(path) else path


@dataclass(frozen=True)
class Storage:
    """How to reach tables without Spark: the env's AWS endpoint/region, and the embedded Iceberg catalog file
    (local envs). Built once per run from the env config by `tables.storage_for`."""

    region: str = "us-east-1"
    endpoint_url: str | None = None
    iceberg_catalog: str | None = None  # SQLite file of the local Iceberg JDBC catalog
    glue_catalog: bool = False  # Iceberg tables are cataloged in the Glue Data Catalog (cloud envs)

    @classmethod
    def from_aws(cls, aws: Any) -> Storage:
        """From an env config's `aws` block (model or dict) or None."""
        if aws is None:
            return cls()
        get = aws.get if isinstance(aws, dict) else lambda k, d=None: getattr(aws, k, d)
        return cls(region=get("region") or "us-east-1", endpoint_url=get("endpoint_url"))

    def delta_options(self) -> dict[str, str] | None:
        """delta-rs storage options for s3 targets (a custom endpoint such as a local moto: path-style, HTTP)."""
        if not self.endpoint_url:
            return None
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_REGION": self.region, "AWS_ALLOW_HTTP": "true",
                "AWS_S3_ALLOW_UNSAFE_RENAME": "true", "AWS_FORCE_PATH_STYLE": "true"}

    def arrow_fs(self, path: str) -> tuple[Any, str]:
        """(pyarrow file system, path inside it) for a local path or an s3:// / s3a:// URI."""
        from pyarrow import fs as pafs

        if is_s3(path):
            kwargs: dict[str, Any] = {"region": self.region or os.environ.get("AWS_REGION", "us-east-1")}
            if self.endpoint_url:
                scheme, _, host = self.endpoint_url.partition("://")
                kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme or "http")
            return pafs.S3FileSystem(**kwargs), path.split("://", 1)[1].rstrip("/")
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(strip_scheme(path))).rstrip("/") or "/"

    def read_text(self, path: str) -> str | None:
        fs, p = self.arrow_fs(path)
        try:
            with fs.open_input_stream(p) as f:
                return f.read().decode("utf-8")
        except (FileNotFoundError, OSError):
            return None

    def list_all(self, path: str, limit: int | None = None) -> list[str]:
        """Every file under `path` (hidden ones too), relative, sorted; at most `limit` (a folder that is not a
        table: a few names say enough). [] for no folder."""
        from pyarrow import fs as pafs

        fs, root = self.arrow_fs(path)
        out: list[str] = []
        if is_s3(path):
            try:
                infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
            except OSError:
                return []
            out = [i.path[len(root) + 1:] for i in infos if i.type == pafs.FileType.File]
        else:
            for dirpath, dirs, files in os.walk(root):
                dirs.sort()
                out += [os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/") for f in sorted(files)]
                if limit is not None and len(out) >= limit:
                    break
        out.sort()
        return out[:limit] if limit is not None else out

    def exists(self, path: str) -> bool:
        from pyarrow import fs as pafs

        fs, p = self.arrow_fs(path)
        try:
            return fs.get_file_info(p).type != pafs.FileType.NotFound
        except OSError:
            return False

    def pyiceberg_properties(self) -> dict[str, str]:
        """pyiceberg FileIO properties for this env (S3 endpoint of a local moto)."""
        props = {"s3.region": self.region}
        if self.endpoint_url:
            props.update({"s3.endpoint": self.endpoint_url, "s3.path-style-access": "true"})
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if key and secret:
            props.update({"s3.access-key-id": key, "s3.secret-access-key": secret})
        return props
