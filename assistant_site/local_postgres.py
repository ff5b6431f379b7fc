"""The bundled PostgreSQL server: Debian's, started by the repo like Redis, data under VAR_DIR.

    python -m assistant_site.local_postgres start   # initdb the first time, start, create the app's role and database
    python -m assistant_site.local_postgres serve   # the same, then stay up until stopped (the Procfile's `postgres`)
    python -m assistant_site.local_postgres wait    # until the app's database answers (the Procfile's `web`)

The server listens on 127.0.0.1:POSTGRES_PORT only, with trust authentication (loopback, one
machine's development and test data). PostgreSQL refuses to run as root, so when we are root the
data directory belongs to the `postgres` user and the server runs as that user. tests/services.py
starts one on the test port the same way.
"""

import argparse
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

HOST = "127.0.0.1"
SUPERUSER = "postgres"


def bin_dir() -> Path:
    """Debian installs each major version's server programs in /usr/lib/postgresql/<major>/bin."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl): run `make install`")
    return versions[-1].parent


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SUPERUSER, "--", *command] if os.geteuid() == 0 else command


def _reachable_by_server_user(directory: Path) -> bool:
    if os.geteuid() != 0:
        return True
    return subprocess.run(_as_server_user(["test", "-x", str(directory)]), check=False).returncode == 0


class LocalPostgres:
    """One server: its data directory and port. `durable=False` (the tests) trades crash safety for
    speed: no fsync, so a machine crash may lose the data, which the tests recreate anyway."""

    def __init__(self, data_dir: Path, port: int, *, durable: bool = True):
        data_dir = data_dir.resolve()
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        if not _reachable_by_server_user(data_dir.parent):
            # e.g. a checkout under /root (mode 700): the postgres user cannot reach var/ there.
            digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:10]
            fallback = Path(tempfile.gettempdir()) / f"whisper-assistant-{digest}" / data_dir.name
            print(f"{data_dir.parent} is not reachable by the {SUPERUSER} user; data in {fallback}", file=sys.stderr)
            data_dir = fallback
        self.data_dir = data_dir
        self.port = port
        self.durable = durable
        self.log = data_dir / "server.log"

    def __repr__(self) -> str:
        return f"LocalPostgres({HOST}:{self.port}, {self.data_dir})"

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = _as_server_user([str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args])
        return subprocess.run(command, check=check, capture_output=True, text=True)

    def initialise(self) -> None:
        """initdb once: an empty directory owned by the server's user becomes a cluster."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, SUPERUSER, SUPERUSER)
        initdb = [str(bin_dir() / "initdb"), "-D", str(self.data_dir), "--auth=trust", f"--username={SUPERUSER}"]
        initdb += ["--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"]
        if not self.durable:
            initdb.append("--no-sync")
        result = subprocess.run(_as_server_user(initdb), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def is_ready(self) -> bool:
        try:
            with psycopg.connect(host=HOST, port=self.port, user=SUPERUSER, dbname="postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def server_options(self) -> str:
        options = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": str(self.data_dir),
        }
        if not self.durable:
            options |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        return " ".join(f"-c {name}={shlex.quote(value)}" for name, value in options.items())

    def start(self) -> bool:
        """Start the server unless it already answers on its port. True if this call started it."""
        if self.is_ready():
            return False
        self.initialise()
        result = self._pg_ctl("-o", self.server_options(), "-l", str(self.log), "-w", "-t", "60", "start", check=False)
        if result.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start on {HOST}:{self.port}:\n{result.stderr}{log}")
        return True

    def stop(self) -> None:
        """Fast shutdown: open transactions are rolled back, clients disconnected."""
        self._pg_ctl("-m", "fast", "-w", "stop", check=False)

    def server_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def ensure_database(self, user: str, name: str) -> None:
        """The app's role (allowed to create databases: the tests make `test_<name>`) and its database."""
        with psycopg.connect(host=HOST, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [user]).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(user)))
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(user)))

    def serve(self) -> None:
        """Start (or adopt a server `start` left running), show its log, stop it on SIGTERM/SIGINT."""
        self.start()
        pid = self.server_pid()
        print(
            f"PostgreSQL {bin_dir().parent.name} on {HOST}:{self.port} (pid {pid}), data in {self.data_dir}", flush=True
        )
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, stop)
        with self.log.open() as log:
            log.seek(0, os.SEEK_END)
            while not stopping and self.server_pid():
                sys.stdout.write(log.read())
                sys.stdout.flush()
                time.sleep(0.5)
            if stopping:
                self.stop()
            sys.stdout.write(log.read())
        if not stopping:
            sys.exit(f"PostgreSQL stopped; see {self.log}")


def bundled_database(databases: dict, port: int) -> tuple[str, str] | None:
    """(user, database name) when the default database is on the bundled server, else None."""
    default = databases["default"]
    on_bundled_server = default["HOST"] in (HOST, "localhost") and int(default.get("PORT") or 5432) == port
    if default["ENGINE"] == "django.db.backends.postgresql" and on_bundled_server:
        return default["USER"] or SUPERUSER, default["NAME"]
    return None


def wait_for_database(databases: dict, timeout: float) -> None:
    """Until the default database accepts connections (nothing to wait for with SQLite)."""
    default = databases["default"]
    if default["ENGINE"] != "django.db.backends.postgresql":
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            params = {"host": default["HOST"], "port": default["PORT"] or 5432, "dbname": default["NAME"]}
            with psycopg.connect(user=default["USER"], password=default["PASSWORD"], connect_timeout=2, **params):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"the database did not answer within {timeout:.0f} s: {exc}") from None
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "serve", "wait", "stop"])
    parser.add_argument("--timeout", type=float, default=60, help="wait: seconds before giving up")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings")
    from django.conf import settings

    if args.action == "wait":
        wait_for_database(settings.DATABASES, args.timeout)
        return
    server = LocalPostgres(settings.VAR_DIR / "postgres", settings.POSTGRES_PORT)
    if args.action == "stop":
        server.stop()
        return
    server.start()
    if app_database := bundled_database(settings.DATABASES, server.port):
        server.ensure_database(*app_database)
    if args.action == "serve":
        server.serve()


if __name__ == "__main__":
    main()
