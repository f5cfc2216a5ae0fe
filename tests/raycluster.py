"""A real local Ray head node started with `ray start --head`, token auth on, on free loopback ports,
torn down by killing only its own processes (never `ray stop`, which would stop every Ray on the box)."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalHead:
    def __init__(self, num_cpus: int = 2):
        # Short path: Ray's unix sockets live under the temp dir and must stay < 108 characters.
        self.root = Path(tempfile.mkdtemp(prefix="rayhead-", dir="/tmp"))
        self.token_path = self.root / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.dashboard_port = free_port()
        inherited = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RECSYS_HOME")}
        self.env = {**inherited, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path),
                    "RAY_USAGE_STATS_ENABLED": "0",
                    # the activated virtualenv, as a user would have it: the job's `python` is this one
                    "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        cmd = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               f"--port={free_port()}", f"--dashboard-port={self.dashboard_port}", "--include-dashboard=true",
               f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
               f"--ray-client-server-port={free_port()}", f"--num-cpus={num_cpus}",
               f"--temp-dir={self.root / 'tmp'}", "--disable-usage-stats"]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self._wait_ready()

    def get(self, path: str, token: str | None = None) -> int:
        req = urllib.request.Request(self.address + path)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.get("/api/version", self.token_path.read_text()) == 200:
                    # The job agent comes up a little after the dashboard.
                    r = self.ray("job", "list", check=False)
                    if r.returncode == 0:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("ray start --head exited early")
            time.sleep(1)
        raise TimeoutError(f"Ray head on {self.address} not ready in {timeout} s")

    def ray(self, *args: str, check: bool = True, timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
        cmd = [str(BIN / "ray"), *args]
        if args and args[0] == "job":
            cmd[3:3] = ["--address", self.address]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, check=check, cwd=cwd)

    def submit(self, entrypoint: list[str], cwd: Path, env_vars: dict | None = None, timeout: float = 600):
        import json

        runtime_env = json.dumps({"env_vars": env_vars or {}})
        for attempt in range(5):  # "No available agent to submit job" right after start: retry
            r = self.ray("job", "submit", "--working-dir", ".", "--runtime-env-json", runtime_env, "--",
                         *entrypoint, check=False, timeout=timeout, cwd=cwd)
            if "No available agent" not in r.stdout + r.stderr:
                return r
            time.sleep(3)
        return r

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        # Anything of this head's that outlived the group (workers re-parented elsewhere).
        subprocess.run(["pkill", "-9", "-f", str(self.root)], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
