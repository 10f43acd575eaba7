# The project's Airflow image: the official image plus the exact runtime pins of requirements.txt,
# then the project itself installed as a package (`pip install .`: the `airtrain` core and the
# `airtrain_airflow` plugin package, whose Airflow plugin is registered by an entry point). No
# source is bind-mounted and no PYTHONPATH is set; never _PIP_ADDITIONAL_REQUIREMENTS (it
# reinstalls on every container start). Dev tools (tests, ruff, the embedded PostgreSQL in dev/)
# are not in the image.
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}

ENV GX_ANALYTICS_ENABLED=False \
    DO_NOT_TRACK=1 \
    EVIDENTLY_DISABLE_TELEMETRY=1 \
    SCARF_ANALYTICS=false \
    AIRTRAIN_SPEC_DIR=/opt/airflow/pipelines

# 1. the runtime lock (its own layer: rebuilt only when the pins change)
COPY --chown=airflow:0 requirements.txt /opt/airtrain/requirements.txt
RUN pip install --no-cache-dir -r /opt/airtrain/requirements.txt

# 2. the project as a package (no dependency resolution: step 1 installed the exact pins)
COPY --chown=airflow:0 pyproject.toml README.md requirements.in /opt/airtrain/
COPY --chown=airflow:0 include/airtrain /opt/airtrain/include/airtrain
COPY --chown=airflow:0 plugins/airtrain_airflow /opt/airtrain/plugins/airtrain_airflow
RUN pip install --no-cache-dir --no-deps /opt/airtrain

# 3. the DAG files (wiring only) and the pipeline specs (configuration; compose may mount newer ones)
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 include/pipelines /opt/airflow/pipelines
