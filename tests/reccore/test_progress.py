"""Progress in logs (not a terminal): silent for short loops, a line at least every `every_s` for long
ones, and a closing line when anything was printed."""
import io
import time

from reccore.progress import Progress


def test_a_short_loop_prints_nothing_in_a_log():
    out = io.StringIO()
    with Progress(5, "short", every_s=30, stream=out) as bar:
        for _ in range(5):
            bar.update()
    assert out.getvalue() == ""


def test_a_long_loop_reports_steps_rate_eta_and_a_last_line():
    out = io.StringIO()
    with Progress(4, "epoch 1", unit="step", every_s=0.05, stream=out) as bar:
        for _ in range(4):
            time.sleep(0.06)
            bar.update(loss=0.5)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 4 and all(line.startswith("[epoch 1]") for line in lines)
    assert "1/4 step (25%)" in lines[0] and "ETA" in lines[0] and "loss 0.5" in lines[0]
    assert "done" in lines[-1] and "4/4 step (100%)" in lines[-1]


def test_disabled_progress_is_silent():
    out = io.StringIO()
    with Progress(3, "off", every_s=0, enabled=False, stream=out) as bar:
        bar.update(3)
    assert out.getvalue() == "" and bar.done == 3


def test_heartbeat_reports_a_step_that_outlasts_every_s():
    out = io.StringIO()
    with Progress(2, "ease lambda grid", unit="fit", every_s=0.05, stream=out, heartbeat=True) as bar:
        bar.update()
        time.sleep(0.3)  # one long, uninterruptible step (a matrix inversion)
        bar.update()
    lines = out.getvalue().splitlines()
    working = [line for line in lines if "working" in line]
    assert len(working) >= 3, lines
    assert "1/2 fit (50%)" in working[0] and "ETA" in working[0]
    printed = len(out.getvalue())
    time.sleep(0.15)  # closed: the heartbeat thread has stopped
    assert len(out.getvalue()) == printed


def test_the_eta_is_the_budget_when_the_budget_ends_the_loop_first():
    out = io.StringIO()
    with Progress(10**6, "dqn", unit="env step", every_s=0.05, stream=out, budget_s=100.0) as bar:
        time.sleep(0.06)
        bar.update(10)
    first = out.getvalue().splitlines()[0]
    assert "(budget)" in first and "ETA 100s" in first, first  # not the ~ 10^4 s the step count implies
