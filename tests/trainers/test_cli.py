import json
import subprocess
import sys

from support import REPO, shared_data
from trainers.cli import app


def test_data_stats_json_last_line(capsys):
    path = shared_data("rees46-oct2019-head")
    assert app(["data", "stats", "--format", "rees46", "--path", str(path), "--json"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (last["users"], last["items"], last["interactions"], last["bad_rows"]) == (4505, 6493, 17435, 0)


def test_data_stats_reports_bad_rows(tmp_path, capsys):
    p = tmp_path / "x.txt"
    p.write_text("1 2\n1 oops\n2 3\n")
    assert app(["data", "stats", "--format", "sasrec", "--path", str(p), "--json"]) == 0
    out = capsys.readouterr().out
    assert "missing or bad item id: 1 (lines 2)" in out
    assert json.loads(out.strip().splitlines()[-1])["bad_rows"] == 1


def test_bad_path_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    assert app(["data", "stats", "--format", "rees46", "--path", str(tmp_path / "none.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_prints_table_and_logs_mlflow_run(recsys_home, capsys):
    path = shared_data("ml-100k")
    assert app(["evaluate", "--model", "popularity", "--format", "recbole", "--path", str(path)]) == 0
    out = capsys.readouterr().out
    assert "full ranking over all items, seen items filtered" in out
    res = json.loads(out.strip().splitlines()[-1])["popularity"]
    assert res["users"] == 943 and 0 < res["ndcg@10"] < res["hr@10"] < 1
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{recsys_home / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["evaluation"])
    assert len(runs) == 1 and runs["metrics.test_hr_at_10"][0] == res["hr@10"]


def test_trainers_run_as_modules():
    out = subprocess.run([sys.executable, "-m", "trainers.evaluate", "--help"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "--artifact" in out.stdout


def test_data_synth_writes_a_log_that_loads_clean(tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert app(["data", "synth", "--users", "50", "--items", "500", "--out", str(out)]) == 0
    assert app(["data", "stats", "--format", "rees46", "--path", str(out), "--json"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["users"] == 50 and last["bad_rows"] == 0 and last["interactions"] > 50 * 5
    assert app(["data", "synth", "--users", "50", "--items", "10", "--out", str(out)]) == 2
    assert "use --items" in capsys.readouterr().err
