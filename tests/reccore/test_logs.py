"""Quiet mode turns framework notices off at their source, and RECSYS_LOG=debug leaves them alone."""
import logging
import os
import subprocess
import sys

from reccore import logs


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_quiet_mode_silences_rllibs_import_warning_and_mlflow_info():
    code = ("from reccore import logs; logs.configure()\n"
            "import logging, os; os.environ['RLLIB_TEST_NO_TF_IMPORT'] = '1'\n"
            "from ray.rllib.utils.framework import try_import_tf; try_import_tf()\n"
            "import mlflow\n"
            "logging.getLogger('mlflow.store.db.utils').info('Creating initial MLflow database tables')\n"
            "print('levels', os.environ['TF_CPP_MIN_LOG_LEVEL'], logging.getLogger('mlflow').level)")
    quiet = _run(code, RECSYS_LOG="")
    assert quiet.returncode == 0, quiet.stderr
    assert "Not importing TensorFlow" not in quiet.stderr + quiet.stdout
    assert "Creating initial MLflow" not in quiet.stderr + quiet.stdout
    assert f"levels 3 {logging.WARNING}" in quiet.stdout
    loud = _run(code, RECSYS_LOG="debug", TF_CPP_MIN_LOG_LEVEL="0")
    assert "Not importing TensorFlow" in loud.stderr + loud.stdout  # --verbose brings it back


def test_runtime_env_carries_quiet_mode_to_ray_workers(monkeypatch):
    monkeypatch.delenv("RECSYS_LOG", raising=False)
    env = logs.ray_runtime_env({"RECSYS_HOME": "/x"})
    assert env["worker_process_setup_hook"] == "reccore.logs.worker_setup"
    assert env["env_vars"]["RECSYS_HOME"] == "/x" and env["env_vars"]["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setenv("RECSYS_LOG", "debug")
    env = logs.ray_runtime_env({"RECSYS_HOME": "/x"})
    assert "worker_process_setup_hook" not in env and env["env_vars"] == {"RECSYS_HOME": "/x", "RECSYS_LOG": "debug"}


def test_native_stderr_is_silenced_only_in_quiet_mode():
    code = ("import os; from reccore import logs\n"
            "with logs.quiet_native_stderr():\n    os.write(2, b'native noise\\n')\n"
            "os.write(2, b'after\\n')")
    quiet = _run(code, RECSYS_LOG="")
    assert quiet.stderr == "after\n"
    assert _run(code, RECSYS_LOG="debug").stderr == "native noise\nafter\n"
