"""The reference matcher (stix2-matcher 3.0.0) run in its own interpreter.

It needs stix2-patterns 2.0.0, which conflicts with the project's pin, so it lives in
``.venv-ref`` (``make .venv-ref/.installed``); ``COMMONWATCH_REFERENCE_PYTHON``
overrides the interpreter. Cases go in batches over one subprocess (JSON on
stdin/stdout). Without the interpreter the differential tests are skipped loudly,
except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("reference_runner.py")


def reference_python() -> str:
    """The reference interpreter, or skip (fail under CI) when it is missing."""
    path = os.environ.get("COMMONWATCH_REFERENCE_PYTHON", str(ROOT / ".venv-ref" / "bin" / "python"))
    if Path(path).exists():
        return path
    message = (f"reference matcher interpreter {path} not found: run `make .venv-ref/.installed` "
               "or set COMMONWATCH_REFERENCE_PYTHON")
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    warnings.warn(f"differential tests SKIPPED: {message}", stacklevel=2)
    print(f"\n*** differential tests SKIPPED: {message} ***\n", file=sys.stderr)
    pytest.skip(message)


def run_reference(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"result": bool} | {"error": str}]`` of stix2-matcher for each case, in order."""
    python = reference_python()
    done = subprocess.run([python, str(RUNNER)], input=json.dumps(cases), capture_output=True,
                          text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"reference runner failed: {done.stderr[-2000:]}")
    results: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(results) == len(cases)
    return results
