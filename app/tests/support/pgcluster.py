"""A throwaway PostgreSQL cluster in a temporary directory, for tests and benchmarks.

Uses Debian's server binaries (initdb, pg_ctl); as root it runs them as the postgres system
user, since PostgreSQL refuses to run as root. Listens on a free loopback port and a private
socket directory; everything is removed on stop().
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "sql" / "schema.sql"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bin_dir() -> Path:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    except (OSError, subprocess.CalledProcessError):
        pass
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
    return Path(candidates[-1]).parent


@dataclass
class PgCluster:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dw-pg-")))
    port: int = field(default_factory=free_port)
    bin_dir: Path = field(default_factory=_bin_dir)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    def _as_owner(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)

    def init(self) -> PgCluster:
        self.socket_dir.mkdir(parents=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for path in (self.root, self.socket_dir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self._as_owner(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--data-checksums",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        self.start()
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.socket_dir} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._as_owner(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"])

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres", *, file: Path | None = None) -> str:
        argv = [
            str(self.bin_dir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
        ]
        if file is None:
            return self._as_owner([*argv, "-c", sql]).stdout.strip()
        # Through stdin: the postgres user may not be able to read a checkout under /root.
        return self._as_owner([*argv, "-f", "-"], input=file.read_text()).stdout.strip()

    def create_database(self, name: str, apply_schema: bool = True) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        if apply_schema:
            self.psql("", name, file=SCHEMA_FILE)
        return self.url(name)

    def set_read_only(self, on: bool, *, now: bool = True) -> None:
        """default_transaction_read_only for every session, open ones included from their next
        statement: the server then answers SHOW transaction_read_only with on and refuses writes
        (ReadOnlySQLTransactionError), as a hot standby or a demoted leader does. Kept across
        restarts; with now=False it takes effect only at the next start."""
        value = "on" if on else "off"
        self.psql(f"ALTER SYSTEM SET default_transaction_read_only = {value}")
        if now:
            self.psql("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 10
            while self.psql("SHOW transaction_read_only") != value:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"default_transaction_read_only is not {value} after reload")
                time.sleep(0.05)

    def terminate_backends(self, application_name: str) -> int:
        """Ends the sessions of one application, as a server shutting down ends them."""
        literal = "'" + application_name.replace("'", "''") + "'"
        sql = f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = {literal}"
        return int(self.psql(sql))

    def url(self, database: str, scheme: str = "postgresql") -> str:
        return f"{scheme}://postgres@127.0.0.1:{self.port}/{database}"
