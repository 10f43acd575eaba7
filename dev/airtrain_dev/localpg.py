"""An embedded, real PostgreSQL server for local runs and tests.

``make run`` and the test-suite use this to start a PostgreSQL server the project owns: its data
lives in a folder of the project (git-ignored) or a temporary folder, it listens on 127.0.0.1
only, and it is stopped by ``make stop`` / at the end of the tests.

Binaries are taken from, in order: ``$PG_BIN``; ``pg_config --bindir``; ``pg_ctl`` on the PATH;
``/usr/lib/postgresql/<version>/bin``; the ``pgserver`` wheel (which ships PostgreSQL for Linux and
macOS, so a machine with no PostgreSQL installed still works). PostgreSQL refuses to run as root,
so when started by root the server runs as an unprivileged user (``$LOCALPG_RUN_AS``, else
``postgres`` if it exists, else a ``airtrain-pg`` user created on the spot).

Command line::

    python -m airtrain_dev.localpg start  --data .local/pgdata --port 5433 --password-file F
    python -m airtrain_dev.localpg stop   --data .local/pgdata
    python -m airtrain_dev.localpg status --data .local/pgdata
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "airtrain"


class LocalPgError(RuntimeError):
    """The embedded server could not be found, initialised or started."""


def find_bindir() -> Path:
    """Locate a directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates: list[Path] = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(Path(out.stdout.strip()))
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        candidates.append(Path(os.path.realpath(pg_ctl)).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    candidates += [Path(p) for p in sorted(glob.glob("/opt/homebrew/opt/postgresql@*/bin"), reverse=True)]
    for c in candidates:
        if all((c / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return c
    try:  # the pgserver wheel ships binaries for machines with no PostgreSQL at all
        import importlib.util

        spec = importlib.util.find_spec("pgserver")
        if spec is not None and spec.submodule_search_locations:
            candidates.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    except (ImportError, ValueError):
        pass
    for c in candidates:
        if all((c / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return c
    raise LocalPgError(
        "no PostgreSQL binaries found: install PostgreSQL (e.g. `apt-get install postgresql` or "
        "`brew install postgresql@16`), set PG_BIN to its bin folder, or `pip install pgserver`"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    name = os.environ.get("LOCALPG_RUN_AS") or "postgres"
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if os.environ.get("LOCALPG_RUN_AS"):
            raise LocalPgError(f"LOCALPG_RUN_AS={name!r} is not a user on this machine") from None
    name = "airtrain-pg"
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
    return pwd.getpwnam(name)


def _make_traversable(path: Path) -> None:
    """Let the unprivileged server user reach ``path`` (root only)."""
    for parent in list(path.parents)[:-1]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


@dataclass
class LocalPostgres:
    data_dir: Path
    port: int
    password: str = field(repr=False)  # pytest prints reprs in tracebacks: never the password
    host: str = "127.0.0.1"
    fast_unsafe: bool = False  # fsync off: for throw-away test clusters only

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://{SUPERUSER}:{self.password}@{self.host}:{self.port}/{database}"

    # -- process helpers ------------------------------------------------------------------
    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL binary (as the unprivileged server user when we are root)."""
        user = _run_as_user()
        kwargs: dict[str, object] = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        proc = subprocess.run(args, capture_output=True, text=True, check=False, cwd="/", **kwargs)  # type: ignore[call-overload]
        if check and proc.returncode != 0:
            tail = ""
            if self.log_file.exists():
                with contextlib.suppress(OSError):
                    tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise LocalPgError(
                f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}\n{tail}"
            )
        return proc

    # -- lifecycle ------------------------------------------------------------------------
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialised():
            return
        bindir = find_bindir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = _run_as_user()
        with tempfile.NamedTemporaryFile("w", delete=False, suffix=".pw") as fh:
            fh.write(self.password + "\n")
            pwfile = fh.name
        try:
            if user is not None:
                _make_traversable(self.data_dir)
                os.chown(self.data_dir, user.pw_uid, user.pw_gid)
                os.chown(pwfile, user.pw_uid, user.pw_gid)
            self.data_dir.chmod(0o700)
            self._run([
                str(bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                "--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={pwfile}",
                "-E", "UTF8", "--locale=C", "--no-instructions",
            ])
        finally:
            os.unlink(pwfile)
        settings = [
            "# --- added by airtrain_dev.localpg ---",
            f"listen_addresses = '{self.host}'",
            f"port = {self.port}",
            "unix_socket_directories = ''",
            "max_connections = 200",
            "shared_buffers = 256MB",
            "max_wal_size = 2GB",
            "log_min_messages = warning",
            "timezone = 'UTC'",
        ]
        if self.fast_unsafe:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write("\n".join(settings) + "\n")

    def running(self) -> bool:
        if not self.initialised():
            return False
        proc = self._run([str(find_bindir() / "pg_ctl"), "-D", str(self.data_dir), "status"], check=False)
        return proc.returncode == 0

    def start(self, timeout: int = 60) -> None:
        self.init()
        if self.running():
            return
        user = _run_as_user()
        if user is not None and not self.log_file.exists():
            self.log_file.touch()
            os.chown(self.log_file, user.pw_uid, user.pw_gid)
        self._run([
            str(find_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
            "-o", f"-p {self.port}", "-w", "-t", str(timeout), "start",
        ])
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            time.sleep(0.2)
        raise LocalPgError(f"PostgreSQL did not accept connections on {self.host}:{self.port}")

    def stop(self) -> None:
        if not self.initialised():
            return
        self._run([str(find_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
                  check=False)

    def create_database(self, name: str) -> None:
        """Create database ``name`` if it does not exist (idempotent)."""
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(self.url("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists (closing its connections first)."""
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(self.url("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airtrain_dev.localpg", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status", "url", "createdb"])
    parser.add_argument("--data", default=".local/pgdata", help="data folder (default .local/pgdata)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_PG_PORT", "5433")))
    # the password only from the environment: a command line is visible to every user of the machine
    parser.add_argument("--password", default=os.environ.get("LOCAL_PG_PASSWORD", ""), help=argparse.SUPPRESS)
    parser.add_argument("--db", action="append", default=[], help="database to create (createdb)")
    args = parser.parse_args(argv)
    pg = LocalPostgres(Path(args.data).resolve(), args.port, args.password)
    try:
        if args.command == "start":
            if not args.password:
                raise LocalPgError("LOCAL_PG_PASSWORD is empty; set it in .env (see .env.example)")
            pg.start()
            print(f"PostgreSQL running on {pg.host}:{pg.port} (data in {pg.data_dir})")
        elif args.command == "stop":
            pg.stop()
            print("PostgreSQL stopped")
        elif args.command == "status":
            up = pg.running()
            print("running" if up else "stopped")
            return 0 if up else 3
        elif args.command == "createdb":
            for db in args.db:
                pg.create_database(db)
        else:  # the URL without its password (LOCAL_PG_PASSWORD): output ends up in logs and terminals
            print(pg.url().replace(f":{pg.password}@", "@") if pg.password else pg.url())
    except LocalPgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
