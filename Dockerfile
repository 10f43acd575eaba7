# The project's Airflow image: the official image plus our pinned requirements (never
# _PIP_ADDITIONAL_REQUIREMENTS, which reinstalls on every container start).
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}

ENV PYTHONPATH=/opt/airflow/include:/opt/airflow/plugins \
    GX_ANALYTICS_ENABLED=False \
    DO_NOT_TRACK=1 \
    EVIDENTLY_DISABLE_TELEMETRY=1 \
    SCARF_ANALYTICS=false

COPY --chown=airflow:0 requirements.txt /requirements.txt
# pgserver (an embedded PostgreSQL for machines without one) is not needed in the image.
RUN grep -v '^pgserver' /requirements.txt > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt
