# The team MLflow server image: MLflow with the PostgreSQL driver and S3 support, pinned as in requirements.lock.
# docker compose builds it (docker/compose.yaml); `make image-mlflow` too. BASE as in docker/Dockerfile.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
# Only for the build's pip, and only where docker/build.sh mounts a machine's settings (HOST_PIP=1).
ARG PIP_CONFIG_FILE
RUN pip install --no-cache-dir mlflow==3.17.2 "psycopg[binary]==3.3.9" boto3==1.43.117 \
    && useradd --uid 1000 --user-group --create-home --shell /bin/sh mlflow
# MLFLOW_HOST and MLFLOW_PORT say where the server listens (and where the health check asks).
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    MLFLOW_HOST=0.0.0.0 \
    MLFLOW_PORT=5000
EXPOSE 5000
USER 1000:1000
# The server's own liveness route; Python, because the slim base has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['MLFLOW_PORT'] + '/health', timeout=4)"]
CMD ["sh", "-c", "exec mlflow server --backend-store-uri \"$MLFLOW_BACKEND_STORE_URI\" --artifacts-destination \"$MLFLOW_ARTIFACTS_DESTINATION\" --host \"$MLFLOW_HOST\" --port \"$MLFLOW_PORT\" --workers 1"]
