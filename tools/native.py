"""Compile CommonWatch's hot pure-Python modules to C extensions with mypyc.

    python tools/native.py build    # compile NATIVE_MODULES next to their sources
    python tools/native.py clean    # remove the compiled modules (pure Python again)
    python tools/native.py sources  # the sources compiled (for make)

The modules below are where ingest (validation, indexing) and the export renderers
spend their time; compiled by mypyc (the compiler mypy and black ship with) they run
about 1.25-2 times faster, with the same code and the same tests. Everything works
without them: where no C compiler is found the build says so and CommonWatch runs as
pure Python.

A dataclass made once per object on these paths writes its ``__init__`` out
(``@dataclass(init=False, ...)``): the one ``dataclass`` generates runs interpreted even
in a compiled module, about ten times the cost of a compiled one, and a frozen one
twice that again. One that must not change after it is built (the pattern AST, shared
by the parse cache) declares its fields ``Final`` instead of ``frozen=True``: mypy
refuses any assignment to them, and the compiled class has no setter for them.

A compiled module is imported in place of its source, so one left behind by an edit
of the source would hide the edit: ``make`` compiles them again whenever a source
changes, and ``import commonwatch`` refuses a compiled module older than its source
(:func:`commonwatch.stale_native_modules`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

#: Dotted names of the compiled modules.
NATIVE_MODULES = (
    "commonwatch.domain.timestamps",
    "commonwatch.domain.stix_values",
    "commonwatch.domain.stix",
    "commonwatch.domain.pattern_ast",
    "commonwatch.domain.pattern_parser",
    "commonwatch.domain.patterns",
    "commonwatch.domain.observables",
    "commonwatch.domain.indexing",
    "commonwatch.domain.markings",
    "commonwatch.domain.warninglists",
    "commonwatch.services.status",
    "commonwatch.services.ingest_candidates",
    "commonwatch.services.ingest_rows",
    "commonwatch.domain.sco_ids",
    "commonwatch.formats.observables",
    "commonwatch.formats.stix_bundle",
    "commonwatch.formats.misp_tags",
    "commonwatch.formats.misp_parts",
    "commonwatch.formats.misp_objects",
    "commonwatch.formats.misp_galaxies",
    "commonwatch.formats.misp_sightings",
    "commonwatch.formats.misp",
    "commonwatch.formats.csv_export",
    "commonwatch.formats.misp_export",
)


def source_of(module: str) -> Path:
    return SRC / (module.replace(".", "/") + ".py")


def compiled(root: Path = SRC) -> list[Path]:
    """The compiled modules (and mypyc's shared runtime library) under ``root``."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return sorted((root / "commonwatch").rglob(f"*{suffix}")) + sorted(root.glob(f"*__mypyc{suffix}"))


def clean() -> None:
    for path in compiled():
        path.unlink()


def build() -> int:
    """Compile every module in a scratch copy of the sources, then move the results in
    place; on any failure nothing compiled is left (pure Python)."""
    clean()
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        print("native: no C compiler found; CommonWatch runs as pure Python", file=sys.stderr)
        return 0
    mypyc = Path(sys.executable).with_name("mypyc")
    if not mypyc.exists():
        print("native: mypyc (from mypy) is not installed; CommonWatch runs as pure Python", file=sys.stderr)
        return 0
    started = time.time()  # a source edited from now on is newer than what is compiled
    with tempfile.TemporaryDirectory(prefix="cw-native-") as scratch:
        work = Path(scratch)
        shutil.copytree(SRC / "commonwatch", work / "commonwatch",
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        paths = [str(Path(*m.split(".")).with_suffix(".py")) for m in NATIVE_MODULES]
        result = subprocess.run([str(mypyc), "--config-file", str(ROOT / "pyproject.toml"), *paths], cwd=work,
                                capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-4000:], sep="\n", file=sys.stderr)
            print("native: the compilation failed; CommonWatch runs as pure Python", file=sys.stderr)
            return 1
        for path in compiled(work):
            target = SRC / path.relative_to(work)
            shutil.copyfile(path, target)
            os.utime(target, (started, started))
    print(f"native: {len(NATIVE_MODULES)} modules compiled", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "build"
    if command == "build":
        return build()
    if command == "clean":
        clean()
        return 0
    if command == "sources":
        print(" ".join(str(source_of(m).relative_to(ROOT)) for m in NATIVE_MODULES))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
