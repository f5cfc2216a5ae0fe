#!/usr/bin/env bash
# The whole suite, as `make test` runs it: every module holding tests marked `ray_session` (they start
# and shut down their own Ray inside the test process) runs in a fresh interpreter; all the other tests
# run together in one. Why: Ray does not support init -> shutdown -> init in one process while the
# background threads of an earlier session (Train, Serve, Tune) linger (ray-project/ray#31145); CI saw the
# single pytest process segfault at exit after all 150 tests had passed. -X faulthandler prints the stack
# if a native crash happens anyway. Any pytest arguments given are passed to every run (e.g. -x, -k name).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
failed=()
# pytest itself lists the marked tests, so a mark set any way (module pytestmark, class or function
# decorator) is honoured: the shared run deselects them, so a module missed here would lose them.
listing=$("$PY" -m pytest --collect-only -q -m ray_session tests 2>&1)
rc=$?
if ((rc != 0 && rc != 5)); then  # 5 = no test is marked: nothing runs apart
    printf '%s\n' "$listing"
    echo "FAILED: listing the ray_session tests (pytest --collect-only exit $rc); see above"
    exit 1
fi
own=$(grep '::' <<<"$listing" | cut -d: -f1 | sort -u)
run() {
    echo "== pytest $*"
    "$PY" -X faulthandler -m pytest -q "$@"
    local rc=$?
    # 5 = nothing selected (e.g. a -k filter that matches nothing in this module)
    if ((rc != 0 && rc != 5)); then failed+=("$* (exit $rc)"); fi
}
run -m "not ray_session" "$@"
for module in $own; do
    run "$module" -m ray_session "$@"
done
if ((${#failed[@]})); then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "== all pytest runs passed (the shared one and $(wc -w <<<"$own") modules with their own Ray session)"
