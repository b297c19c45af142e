-- A second database for Optuna studies beside MLflow's (their migration tables share a name).
CREATE DATABASE optuna OWNER steelflow;
