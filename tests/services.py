"""Real services for tests: a throwaway PostgreSQL cluster, a moto S3 server and a webhook receiver.

Each helper is a plain context manager (use it from a fixture of any scope, or from a script):

    with postgres_server() as url:       # "postgresql+psycopg://openai_dit:PW@127.0.0.1:PORT/openai_dit_test"
        engine = sqlalchemy.create_engine(url)
    with s3_server() as s3:              # s3.endpoint_url, s3.bucket, s3.env (AWS_* credentials), s3.client()
        ...
    with webhook_receiver(fail_first=2) as hooks:   # hooks.url; hooks.deliveries; hooks.wait_for(3)
        ...

A helper skips the test (pytest.skip, with the reason) only when what it needs is not installed: PostgreSQL's
server binaries or psycopg; moto[server] or boto3. Anything else that goes wrong (a cluster that does not start, a
server that never answers) fails loudly with the service's log. With OPENAI_DIT_REQUIRE_SERVICES=1 (for CI) a
missing service fails the test instead of skipping it. pytest is imported only when a skip or a failure is due.

PostgreSQL refuses to run as root. As root (CI, the dev machine) the cluster's processes run as an unprivileged user:
$OPENAI_DIT_PG_USER, else `postgres` (Debian's `postgresql` package creates it), else `nobody`. The drop is done by
subprocess's user=/group=/extra_groups= (setreuid in the child before exec): no sudo, su or runuser needed. The
cluster lives in a fresh directory under the system temporary directory (owned by that user), listens on 127.0.0.1
only (no Unix socket), with fsync, full-page writes and synchronous commit off, and is stopped and removed when the
block ends, however it ends. Binaries: $OPENAI_DIT_PG_BIN, else `initdb` on PATH, else the newest
/usr/lib/postgresql/*/bin (Debian's layout; those are not on PATH there).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["Delivery", "PostgresURL", "S3Service", "WebhookReceiver", "find_postgres_bin", "free_port",
           "postgres_server", "s3_server", "webhook_receiver"]

REQUIRE_ENV = "OPENAI_DIT_REQUIRE_SERVICES"
_START_TIMEOUT = 60.0


def _missing(reason: str):
    """Skip the current test because `reason` names something not installed (or fail, under REQUIRE_ENV)."""
    import pytest

    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason} (and {REQUIRE_ENV} is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def _has_modules(*names: str) -> list[str]:
    """The names among `names` that cannot be imported."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now (a server started on it may still lose a race: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"(no log: {exc})"


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        except ProcessLookupError:
            pass


# --- PostgreSQL -----------------------------------------------------------------------------------------------------

_PG_TOOLS = ("initdb", "postgres")


def find_postgres_bin() -> Path | None:
    """The directory with PostgreSQL's server binaries (initdb, postgres), or None when none is installed."""
    explicit = os.environ.get("OPENAI_DIT_PG_BIN")
    if explicit:
        return Path(explicit)  # trusted as given: a wrong path fails loudly later instead of skipping
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(on_path).resolve().parent

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path)) or (0,)

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    candidates += ["/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin"]
    for candidate in candidates:
        if all(os.access(Path(candidate) / tool, os.X_OK) for tool in _PG_TOOLS):
            return Path(candidate)
    return None


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int


def _service_account() -> _Account | None:
    """Whom PostgreSQL runs as: None for the current user, an unprivileged account when we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    names = [os.environ.get("OPENAI_DIT_PG_USER", ""), "postgres", "nobody"]
    for name in filter(None, names):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return _Account(name, entry.pw_uid, entry.pw_gid)
    raise RuntimeError("running as root, and there is no unprivileged user to run PostgreSQL as (tried "
                       f"{', '.join(filter(None, names))}); create one (useradd --system postgres) or set "
                       "OPENAI_DIT_PG_USER")


def _reachable_by(path: Path, account: _Account) -> bool:
    """Whether `account` can traverse every directory above `path` (a cluster under a 0700 root-only folder fails)."""
    for parent in [path, *path.parents]:
        info = parent.stat()
        if info.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif info.st_gid == account.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def _cluster_parent(account: _Account | None) -> Path:
    parent = Path(tempfile.gettempdir()).resolve()
    if account is None or _reachable_by(parent, account):
        return parent
    if _reachable_by(Path("/tmp"), account):
        return Path("/tmp")
    raise RuntimeError(f"{account.name} cannot reach {parent} nor /tmp: set TMPDIR to a directory it can reach")


class PostgresURL(str):
    """The SQLAlchemy URL of a test cluster (a str), with the cluster's port, directory and a libpq DSN beside it."""

    port: int
    directory: Path

    def __new__(cls, url: str, *, port: int, directory: Path) -> PostgresURL:
        self = super().__new__(cls, url)
        self.port = port
        self.directory = directory
        return self

    @property
    def dsn(self) -> str:
        """The same URL for psycopg.connect() (libpq knows no `+psycopg`)."""
        return "postgresql://" + self.split("://", 1)[1]

    def new_database(self, name: str) -> PostgresURL:
        """Create the empty database `name` on this cluster; its URL (same user and cluster)."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return PostgresURL(self.rsplit("/", 1)[0] + "/" + name, port=self.port, directory=self.directory)


# fsync and friends off: a test cluster is thrown away, so durability buys nothing and costs seconds.
_PG_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "shared_buffers": "32MB",
    "max_wal_size": "256MB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",  # the tests provoke lock errors on purpose: keep the log short
    "timezone": "UTC",
    "lock_timeout": "10s",  # a test that deadlocks on a row lock fails instead of hanging to the suite's timeout
}


@contextmanager
def postgres_server(*, database: str = "openai_dit_test", user: str = "openai_dit",
                    settings: dict[str, str] | None = None) -> Iterator[PostgresURL]:
    """Start a throwaway PostgreSQL cluster; yield its `postgresql+psycopg://` URL; stop and remove it afterwards."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        _missing("PostgreSQL server binaries (initdb, postgres) are not installed: apt-get install postgresql")
    if _has_modules("psycopg"):
        _missing("psycopg is not installed: pip install 'psycopg[binary]'")
    import psycopg

    account = _service_account()
    password = secrets.token_hex(12)
    base = Path(tempfile.mkdtemp(prefix="openai-dit-pg-", dir=_cluster_parent(account)))
    proc: subprocess.Popen | None = None
    try:
        data = base / "data"
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        if account is not None:
            os.chown(base, account.uid, account.gid)
            os.chown(pwfile, account.uid, account.gid)
        as_account = {} if account is None else {"user": account.uid, "group": account.gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base), "LC_ALL": "C", "TZ": "UTC"}
        init = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
             "--auth-local=trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
            cwd=base, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
            **as_account)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}) as {account.name if account else 'this user'}:\n"
                               f"{init.stdout[-4000:]}")
        log_path = base / "postgres.log"
        for attempt in range(5):
            port = free_port()
            options = {**_PG_SETTINGS, **(settings or {}), "port": str(port)}
            args = [str(bin_dir / "postgres"), "-D", str(data)]
            for key, value in options.items():
                args += ["-c", f"{key}={value}"]
            with open(log_path, "ab") as log:
                # Same process group as the tests: a runner that kills the group kills the cluster too.
                proc = subprocess.Popen(args, cwd=base, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, **as_account)
            admin = f"host=127.0.0.1 port={port} user={user} password={password} dbname=postgres connect_timeout=2"
            deadline = time.monotonic() + _START_TIMEOUT
            while True:
                if proc.poll() is not None:
                    break
                try:
                    with psycopg.connect(admin, autocommit=True) as conn:
                        conn.execute(f'CREATE DATABASE "{database}"')
                    break
                except psycopg.OperationalError as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"PostgreSQL did not accept connections on port {port} within "
                                           f"{_START_TIMEOUT:.0f} s ({exc}); its log:\n{_log_tail(log_path)}") from None
                    time.sleep(0.05)
            if proc.poll() is None:
                break
            log_text = _log_tail(log_path)
            if "Address already in use" in log_text and attempt < 4:  # lost the port to another process: retry
                continue
            raise RuntimeError(f"PostgreSQL exited with {proc.returncode} at start-up; its log:\n{log_text}")
        url = f"postgresql+psycopg://{user}:{password}@127.0.0.1:{port}/{database}"
        yield PostgresURL(url, port=port, directory=base)
    finally:
        if proc is not None:
            _stop(proc, signal.SIGINT)  # "fast" shutdown: ends sessions, skips nothing we need
        shutil.rmtree(base, ignore_errors=True)


# --- S3 (moto) ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class S3Service:
    """A moto S3 endpoint with one bucket, and the credentials that go with it."""

    endpoint_url: str
    bucket: str
    region: str = "us-east-1"
    access_key: str = "testing"
    secret_key: str = "testing"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a process (a server under test) that should reach this endpoint with boto3's defaults."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT_URL_S3": self.endpoint_url,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self):
        """A boto3 S3 client for this endpoint (path-style addressing, SigV4)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def reset(self) -> None:
        """Forget every bucket and object (moto's reset), then create the bucket again: a clean slate between tests."""
        request = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
        self.client().create_bucket(Bucket=self.bucket)


@contextmanager
def s3_server(*, bucket: str = "openai-dit-test") -> Iterator[S3Service]:
    """Start `python -m moto.server` on a free 127.0.0.1 port, create `bucket`, yield an S3Service; stop it after.

    A subprocess rather than moto's ThreadedMotoServer: its state is its own (in-process moto backends are global,
    shared with any mock_aws in the test process), it holds no GIL of the tests', and a server under test (another
    process) reaches it just the same.
    """
    missing = _has_modules("moto", "flask", "flask_cors", "boto3")
    if missing:
        _missing(f"{', '.join(missing)} not installed: pip install 'moto[server]' boto3")
    base = Path(tempfile.mkdtemp(prefix="openai-dit-s3-"))
    log_path = base / "moto.log"
    proc: subprocess.Popen | None = None
    try:
        service = None
        for attempt in range(5):
            port = free_port()
            env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1", "PYTHONUNBUFFERED": "1"}
            with open(log_path, "ab") as log:
                proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                        cwd=base, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT)
            endpoint = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + _START_TIMEOUT
            while proc.poll() is None:
                try:
                    with urllib.request.urlopen(endpoint + "/moto-api/data.json", timeout=2):
                        pass
                    break
                except urllib.error.HTTPError:
                    break  # it answered
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"moto did not answer on {endpoint} within {_START_TIMEOUT:.0f} s ({exc});"
                                           f" its log:\n{_log_tail(log_path)}") from None
                    time.sleep(0.05)
            if proc.poll() is None:
                service = S3Service(endpoint_url=endpoint, bucket=bucket)
                break
            log_text = _log_tail(log_path)
            if "Address already in use" in log_text and attempt < 4:
                continue
            raise RuntimeError(f"moto exited with {proc.returncode} at start-up; its log:\n{log_text}")
        assert service is not None
        service.client().create_bucket(Bucket=bucket)
        yield service
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(base, ignore_errors=True)


# --- Webhook receiver -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Delivery:
    """One request the receiver got: headers with lower-case names, the body's exact bytes, the status it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    received_at: float

    def json(self):
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    url: str
    fail_first: int = 0
    fail_status: int = 500
    delay: float = 0.0
    deliveries: list[Delivery] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @property
    def succeeded(self) -> list[Delivery]:
        """The deliveries answered with a 2xx."""
        with self._changed:
            return [d for d in self.deliveries if 200 <= d.status < 300]

    def wait_for(self, count: int, *, timeout: float = 10.0, succeeded: bool = False) -> list[Delivery]:
        """Wait until `count` deliveries (or `count` answered 2xx) have arrived; return them all, or fail."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                got = [d for d in self.deliveries if not succeeded or 200 <= d.status < 300]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} {'successful ' if succeeded else ''}webhook deliveries "
                                         f"within {timeout} s, got {len(got)}: {self.deliveries!r}")
                self._changed.wait(left)

    def _record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._changed:
            status = self.fail_status if len(self.deliveries) < self.fail_first else 200
            self.deliveries.append(Delivery(method, path, headers, body, status, time.time()))
            self._changed.notify_all()
            return status


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


@contextmanager
def webhook_receiver(*, fail_first: int = 0, fail_status: int = 500, delay: float = 0.0,
                     path: str = "/webhook") -> Iterator[WebhookReceiver]:
    """An HTTP server on 127.0.0.1 recording every request; it answers `fail_status` to the first `fail_first`.

    Any method and path is recorded (`url` points at `path`); `delay` seconds pass before each answer (a slow
    endpoint). Nothing to install, so it never skips.
    """
    receiver = WebhookReceiver(url="", fail_first=fail_first, fail_status=fail_status, delay=delay)

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            body = _read_body(self)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status = receiver._record(self.command, self.path, headers, body)
            if receiver.delay:
                time.sleep(receiver.delay)
            reply = b"ok" if status < 400 else b"failing on purpose"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _handle

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-receiver",
                              daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
