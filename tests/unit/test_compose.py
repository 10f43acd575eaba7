"""docker-compose.yaml cannot run here (no Docker engine), so its structure is checked by parsing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
RAW = (ROOT / "docker-compose.yaml").read_text()
SERVICES = COMPOSE["services"]
AIRFLOW = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer",
           "airflow-init"]


@pytest.mark.parametrize("name", ["postgres", "warehouse", "redis", *AIRFLOW])
def test_required_services_exist(name):
    assert name in SERVICES


@pytest.mark.parametrize("name, command", [
    pytest.param("airflow-apiserver", "api-server", id="api-server"),
    pytest.param("airflow-scheduler", "scheduler", id="scheduler"),
    pytest.param("airflow-dag-processor", "dag-processor", id="dag-processor"),
    pytest.param("airflow-worker", "celery worker", id="worker"),
    pytest.param("airflow-triggerer", "triggerer", id="triggerer"),
])
def test_airflow_commands(name, command):
    assert SERVICES[name]["command"] == command


def test_celery_executor_with_redis_broker():
    env = SERVICES["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def test_warehouse_is_a_separate_postgres_with_its_own_volume():
    wh, meta = SERVICES["warehouse"], SERVICES["postgres"]
    assert wh["image"].startswith("postgres:")
    wh_vol = {v.split(":")[0] for v in wh["volumes"]}
    meta_vol = {v.split(":")[0] for v in meta["volumes"]}
    assert wh_vol and not wh_vol & meta_vol
    assert wh_vol <= set(COMPOSE["volumes"])
    conn = SERVICES["airflow-worker"]["environment"]["AIRFLOW_CONN_WAREHOUSE"]
    assert "@warehouse:5432/" in conn


def test_workers_can_scale():
    worker = SERVICES["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker


@pytest.mark.parametrize("name", AIRFLOW)
def test_airflow_services_build_the_project_image_and_mount_the_project(name):
    svc = SERVICES[name]
    assert svc["build"] == "." and svc["image"].startswith("${AIRFLOW_IMAGE_NAME")
    targets = {v.split(":")[1] for v in svc["volumes"]}
    assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= targets


def test_depends_on_conditions_reference_existing_services():
    allowed = {"service_healthy", "service_completed_successfully", "service_started"}
    for name, svc in SERVICES.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, (name, dep)
            assert cond["condition"] in allowed, (name, dep)
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dep], (name, dep)


def test_every_variable_is_documented_in_env_example():
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", RAW))  # $${X} is the container's own variable
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert used, "no variables found"
    assert used <= documented, sorted(used - documented)


def test_no_literal_secrets_and_no_pip_additional_requirements():
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in RAW
    for name, svc in SERVICES.items():
        for key, value in (svc.get("environment") or {}).items():
            if any(w in key for w in ("PASSWORD", "SECRET", "FERNET")) and not key.endswith("_FILE"):
                assert str(value).startswith("${"), (name, key)
    assert not re.search(r"://[^:$\s]+:[^@${\s]+@", RAW), "a URL with a literal password"


def test_dockerfile_matches_the_pinned_airflow():
    pin = re.search(r"^apache-airflow==([\d.]+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    docker = (ROOT / "Dockerfile").read_text()
    assert f"ARG AIRFLOW_VERSION={pin}" in docker
    assert "FROM apache/airflow:${AIRFLOW_VERSION}" in docker
    assert "requirements.txt" in docker
