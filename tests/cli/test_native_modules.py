"""The compiled hot modules (tools/native.py): a compiled module older than its
source is refused at import, so an edit is never hidden by what was compiled before
it; what the build compiles is what runs."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import commonwatch
from commonwatch import stale_native_modules

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


def package(tmp_path: Path) -> Path:
    root = tmp_path / "commonwatch"
    (root / "domain").mkdir(parents=True)
    for name in ("stix", "indexing"):
        (root / "domain" / f"{name}.py").write_text("")
        (root / "domain" / f"{name}{SUFFIX}").write_bytes(b"")
    return root


def test_a_compiled_module_older_than_its_source_is_named(tmp_path):
    root = package(tmp_path)
    assert stale_native_modules(root) == []
    os.utime(root / "domain" / "stix.py", (2e9, 2e9))  # edited after the build
    assert stale_native_modules(root) == ["commonwatch/domain/stix.py"]


def test_import_refuses_a_stale_compiled_module(tmp_path):
    """A copy of the package with one compiled module older than its source: importing
    it fails with the way out, instead of running the old code."""
    copy = tmp_path / "src" / "commonwatch"
    copy.mkdir(parents=True)
    (copy / "__init__.py").write_text(Path(commonwatch.__file__).read_text())
    (copy / "hot.py").write_text("WHICH = 'source'\n")
    (copy / f"hot{SUFFIX}").write_bytes(b"")
    os.utime(copy / f"hot{SUFFIX}", (1e9, 1e9))
    run = subprocess.run([sys.executable, "-c", "import commonwatch"], cwd=copy.parent,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(copy.parent)})
    assert run.returncode != 0
    assert "commonwatch/hot.py" in run.stderr and "make native" in run.stderr


def test_the_compiled_modules_are_the_ones_imported_when_built():
    """Where the build left compiled modules, each is what ``import`` loads (none is
    shadowed by its source, none is left over from a module no longer compiled)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import native
    finally:
        sys.path.pop(0)
    built = {p for p in native.compiled() if p.parent != native.SRC}
    expected = {native.source_of(m).with_suffix(SUFFIX) for m in native.NATIVE_MODULES}
    assert built <= expected
    for module in native.NATIVE_MODULES:
        source = native.source_of(module)
        imported = Path(__import__(module, fromlist=["_"]).__file__)
        assert imported == (source.with_suffix(SUFFIX) if built else source)
