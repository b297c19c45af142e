# The team MLflow server image: MLflow with the PostgreSQL driver, S3 support and its basic-auth app
# (Flask-WTF), pinned as in requirements.lock. docker compose builds it (docker/compose.yaml); `make
# image-mlflow` too. BASE as in docker/Dockerfile.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
# Only for the build's pip, and only where docker/build.sh mounts a machine's settings (HOST_PIP=1).
ARG PIP_CONFIG_FILE
RUN pip install --no-cache-dir mlflow==3.17.2 Flask-WTF==1.3.0 WTForms==3.3.2 "psycopg[binary]==3.3.9" \
        boto3==1.43.117 \
    && useradd --uid 1000 --user-group --create-home --shell /bin/sh mlflow
COPY mlflow-server.sh /usr/local/bin/mlflow-server
# MLFLOW_HOST and MLFLOW_PORT say where the server listens (and where the health check asks). The server
# needs MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION and MLFLOW_AUTH_ADMIN_PASSWORD (or
# MLFLOW_AUTH_ADMIN_PASSWORD_FILE); it refuses to start without the admin's password.
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    MLFLOW_HOST=0.0.0.0 \
    MLFLOW_PORT=5000 \
    MLFLOW_AUTH_CONFIG_PATH=/tmp/mlflow-auth/basic_auth.ini
EXPOSE 5000
USER 1000:1000
# The server's own liveness route, open without credentials; Python, because the slim base has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['MLFLOW_PORT'] + '/health', timeout=4)"]
CMD ["sh", "/usr/local/bin/mlflow-server"]
