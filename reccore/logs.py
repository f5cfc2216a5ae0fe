"""Quiet by default, loud on demand: what the frameworks print that says nothing to a user is turned
off where it starts (environment variables read at import, logger levels, warning filters), never
grepped out of the output afterwards.

`RECSYS_LOG=debug` (or `recsys --verbose ...`) leaves every framework at its own defaults. Errors,
and warnings from loggers not named here, always show.

Ray worker processes (pipeline stages, RLlib env runners, Serve replicas, Tune trials) get the same
treatment through the job's runtime environment: `ray_runtime_env()` adds the environment variables
and `worker_setup` as Ray's `worker_process_setup_hook`, which runs in every worker before user code.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",              # TensorFlow's C++ INFO/WARNING lines (XLA, oneDNN, cpu features)
    "GRPC_VERBOSITY": "ERROR",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",      # "Loading weights" bars of a model that loads in a second
    "RAY_DEDUP_LOGS": "1",
    "MLFLOW_LOGGING_LEVEL": "WARNING",         # MLflow sets its loggers' level from this at import
}

# Loggers whose notices say nothing to a user of this product, and the level that still gets through.
QUIET_LOGGERS = {
    # RLLIB_TEST_NO_TF_IMPORT keeps TensorFlow (+0.9 GB) out of RLlib processes; RLlib then warns
    # "Not importing TensorFlow for test purposes" at every import site, dozens of times per process.
    "ray.rllib.utils.framework": logging.ERROR,
    "ray.rllib": logging.ERROR,
    "ray._common.deprecation": logging.ERROR,  # RLlib's own API deprecations, for its maintainers
    "ray.tune.utils.util": logging.ERROR,       # "Install gputil for GPU system monitoring." (no GPU here)
    "ray.tune": logging.WARNING,
    "ray.train": logging.WARNING,
    "ray.serve": logging.WARNING,
    "ray.data": logging.WARNING,
    # Ray 2.60 announces token authentication on every start; the commands print where the token is.
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
    "mlflow": logging.WARNING,                # "Creating initial MLflow database tables..."
    "alembic": logging.WARNING,
    "absl": logging.ERROR,
    "transformers": logging.ERROR,
    "httpx": logging.WARNING,
}
# Library deprecation notices (pydantic, numpy, RLlib's old API stack) are for the library's
# maintainers; a user can do nothing about them.
QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def verbose() -> bool:
    return os.environ.get("RECSYS_LOG", "").lower() in ("debug", "verbose", "1", "true")


def set_verbose(on: bool) -> None:
    if on:
        os.environ["RECSYS_LOG"] = "debug"


def quiet_loggers() -> None:
    """Logger levels and warning filters of quiet mode, in this process."""
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", category=category)
    with contextlib.suppress(ImportError):
        from pydantic.warnings import PydanticDeprecatedSince20

        warnings.filterwarnings("ignore", category=PydanticDeprecatedSince20)


def configure(verbose_flag: bool = False) -> None:
    """Call first thing in a command's main(): before TensorFlow, RLlib or transformers are imported."""
    set_verbose(verbose_flag)
    if verbose():
        logging.basicConfig(level=logging.INFO)
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    quiet_loggers()


def worker_setup() -> None:
    """Ray's `worker_process_setup_hook`: quiet mode in every worker process of the job."""
    if not verbose():
        quiet_loggers()


def ray_runtime_env(env_vars: dict[str, str] | None = None) -> dict:
    """A job-level runtime_env carrying quiet mode (or RECSYS_LOG=debug) to every worker."""
    env = {**({} if verbose() else QUIET_ENV), **(env_vars or {})}
    if verbose():
        env["RECSYS_LOG"] = "debug"
    out: dict = {"env_vars": env}
    if not verbose():
        out["worker_process_setup_hook"] = "reccore.logs.worker_setup"
    return out


def in_pipeline_stage() -> str | None:
    """The pipeline stage this process runs (set by the pipeline in its stage task), else None."""
    return os.environ.get("RECSYS_STAGE") or None


def rllib_log_level() -> str:
    """For `AlgorithmConfig.debugging(log_level=...)`: RLlib sets its loggers' level from the config when
    an algorithm is built, over whatever was set before."""
    return "INFO" if verbose() else "ERROR"


def ray_logging_level() -> int:
    return logging.INFO if verbose() else logging.WARNING


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence file descriptor 2 for the block, in quiet mode. TensorFlow's C++ runtime prints a few
    lines when it is imported, before it reads TF_CPP_MIN_LOG_LEVEL ("All log messages before
    absl::InitializeLog() ...", "oneDNN custom operations are on"); wrap the import in this."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
