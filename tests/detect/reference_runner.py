"""Run stix2-matcher on a batch of cases; executed by the reference interpreter.

Reads ``[{"pattern": ..., "observations": [...], "stix_version": "2.1"}, ...]`` as JSON
on stdin and writes ``[{"result": bool} | {"error": "..."}, ...]`` on stdout, so one
subprocess call evaluates a whole batch (see tests/detect/reference.py).
"""

import json
import sys

from stix2matcher.matcher import match


def main() -> None:
    cases = json.load(sys.stdin)
    results = []
    for case in cases:
        try:
            found = match(case["pattern"], case["observations"],
                          stix_version=case.get("stix_version", "2.1"))
            results.append({"result": bool(found)})
        except Exception as exc:  # noqa: BLE001 - any failure of the reference is reported
            results.append({"error": f"{type(exc).__name__}: {exc}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
