"""`recsys`: one entry point that routes to each job's own `main(argv)`.

Every job is also runnable as `python -m <module>` (and so under `ray job submit --working-dir .`);
this dispatcher only maps a command name to that module, so the two never disagree.
"""
from __future__ import annotations

import importlib
import sys

from reccore import logs

COMMANDS = {
    "data": ("trainers.data", "inspect, prepare or synthesize event logs (stats | prepare | synth)"),
    "evaluate": ("trainers.evaluate", "full-ranking evaluation of an engine beside popularity"),
    "train": (None, "train one engine: recsys train <popularity|sasrec|vae|ease|content|dqn> [options]"),
    "tune": ("trainers.tune", "Ray Tune sweep: recsys tune <sasrec|vae> --config tune_configs/..."),
    "pipeline": ("trainers.pipeline", "the whole training run as one Ray job"),
    "promote": ("trainers.promote", "move @champion to a version by hand (past the promotion gate, logged)"),
    "serve": ("serve_app.run", "start the Ray Serve application"),
    "demo": ("trainers.demo", "end to end on the embedded synthetic data"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return (f"usage: recsys [--verbose] <command> [options]\n\ncommands:\n{rows}\n\n`recsys <command> --help` for "
            "options. Quiet by default: --verbose (or RECSYS_LOG=debug) shows every framework's own logs.")


def app(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    loud = "--verbose" in argv  # a global flag, accepted anywhere on the line
    argv = [a for a in argv if a != "--verbose"]
    logs.configure(loud)  # before any framework is imported: most read their settings at import
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"recsys: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = COMMANDS[cmd][0]
    if cmd == "train":
        if not rest or rest[0].startswith("-"):
            print("usage: recsys train <popularity|sasrec|vae|ease|content|dqn> [options]", file=sys.stderr)
            return 2
        module, rest = f"trainers.train_{rest[0]}", rest[1:]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            print(f"recsys: {cmd} is not available in this build ({module} missing)", file=sys.stderr)
            return 2
        raise
    result = mod.main(rest)
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
