# Airflow with airflow-provider-jetbase installed from this working tree (see docker-compose.airflow.yml).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2
FROM ${AIRFLOW_IMAGE}
COPY --chown=airflow:root pyproject.toml README.md LICENSE CHANGELOG.md /opt/airflow/provider-src/
COPY --chown=airflow:root airflow_provider_jetbase /opt/airflow/provider-src/airflow_provider_jetbase
# Pin Airflow to the image's own version so pip cannot up- or downgrade it while resolving extras.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/airflow/provider-src[postgres]"
