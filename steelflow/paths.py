"""Where each step reads and writes, relative to the project root.

These paths are part of steelflow's public contract (README, dvc.yaml, the Kubeflow components): change
them only together with those.
"""

from pathlib import Path

DATA = Path("data")
IMAGES = DATA / "images"  # the ingested dataset, one folder per class
MANIFEST = DATA / "manifest.csv"
SPLITS = DATA / "splits"  # train.csv, val.csv, test.csv
CORRUPTED = DATA / "corrupted"  # <condition>/<class>/<file>.png + index.csv
CACHE = DATA / "cache"  # decoded images, one shard set each: splits/<split>/, corrupted/<condition>/
CACHE_SPLITS = CACHE / "splits"
CACHE_CORRUPTED = CACHE / "corrupted"
TEST_CACHE = CACHE_SPLITS / "test"

REPORTS = Path("reports")
VALIDATION_JSON = REPORTS / "validation.json"
VALIDATION_DOCS = REPORTS / "validation"  # Great Expectations Data Docs (HTML)
SPLIT_JSON = REPORTS / "split.json"
CORRUPTIONS_PNG = REPORTS / "corruptions.png"

MODELS = Path("models")
MODEL = MODELS / "model.pt"  # best weights + what is needed to rebuild the network
CHECKPOINT = MODELS / "checkpoint.pt"  # last finished epoch, for --resume (not a DVC output)
CHECKPOINT_RUN = MODELS / "checkpoint_run_id.txt"  # the MLflow run the checkpoint's epochs went to
METRICS = Path("metrics")
TRAIN_METRICS = METRICS / "train.json"
TRAIN_HISTORY = METRICS / "train_history.csv"
EVALUATE_METRICS = METRICS / "evaluate.json"  # every metric of every condition
SUMMARY_METRICS = METRICS / "summary.json"  # the headline numbers: what `dvc metrics show` shows
ROBUSTNESS_MD = REPORTS / "robustness.md"
EVALUATION_DETAILS = REPORTS / "evaluation.json"  # per-class metrics and confusion matrices
GRADED_ERRORS = REPORTS / "graded_errors.json"  # errors per graded family and severity: an mCE baseline
PLOTS = REPORTS / "plots"
PREDICTIONS = REPORTS / "predictions.csv"  # per test image: actual and predicted class
MLFLOW_RUN = METRICS / "mlflow_run_id.txt"  # the MLflow run of the last training, which evaluate logs into
TUNING = REPORTS / "tuning"
BEST_PARAMS = TUNING / "best_params.yaml"  # what `train` applies when train.use_tuned is true
TUNED = f"{BEST_PARAMS}:"  # tune's values as params of their own file (dvc.yaml's `- file:` form)
TRIALS_CSV = TUNING / "trials.csv"
TUNING_PLOTS = TUNING / "plots"
OPTUNA_STORAGE_ENV = "STEELFLOW_OPTUNA_STORAGE"  # an SQLAlchemy URL; wins over tune.storage
GATES_JSON = REPORTS / "gates.json"  # the gate step's verdict: may register run, and every gate
GATES_MD = REPORTS / "gates.md"  # the gate table as Markdown
REGISTRATION = REPORTS / "registration.json"  # the version `steelflow register` created
MODEL_CARD = REPORTS / "model_card.md"
ONNX_MODEL = MODELS / "model.onnx"
ONNX_REPORT = REPORTS / "onnx.json"  # parity and CPU latency of the ONNX export against eager PyTorch

KFP_PACKAGE = Path("pipelines/steel_defect_pipeline.yaml")  # `steelflow pipeline compile` writes the IR here
KFP_MONITOR_PACKAGE = Path("pipelines/monitor_pipeline.yaml")  # ...and the drift watch's beside it
KFP_LOCAL = REPORTS / "kfp-local"  # `steelflow pipeline run --local`: <run>/<task>/<artifact>
PIPELINE_DIAGRAM = Path("docs/pipeline.png")  # `steelflow pipeline diagram`, shown in the README
