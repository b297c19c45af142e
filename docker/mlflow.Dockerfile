# The team MLflow server image: MLflow with the PostgreSQL driver and S3 support, pinned as in requirements.lock.
FROM python:3.11-slim
RUN pip install --no-cache-dir mlflow==3.17.2 "psycopg[binary]==3.3.9" boto3==1.43.117
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
EXPOSE 5000
CMD ["sh", "-c", "mlflow server --backend-store-uri \"$MLFLOW_BACKEND_STORE_URI\" --artifacts-destination \"$MLFLOW_ARTIFACTS_DESTINATION\" --host 0.0.0.0 --port 5000 --workers 1"]
