"""CommonWatch: a multilateral threat-intelligence exchange.

Members share STIX 2.1 objects over TAXII 2.1; TLP 2.0 markings are enforced on
every read by one visibility-filtered query service (see docs/sharing-model.md).
"""

from pathlib import Path

__version__ = "0.2.0"


def stale_native_modules(root: Path = Path(__file__).parent) -> list[str]:
    """The modules compiled by ``tools/native.py`` whose source changed since: Python
    imports a compiled module in place of its source, so running one would run code
    that is no longer there."""
    stale = []
    for built in root.rglob("*.so"):
        source = built.with_name(built.name.partition(".")[0] + ".py")
        if source.exists() and source.stat().st_mtime > built.stat().st_mtime:
            stale.append(str(source.relative_to(root.parent)))
    return sorted(stale)


if _stale := stale_native_modules():
    raise ImportError(
        "compiled modules are older than their sources (" + ", ".join(_stale) + "): run `make native` "
        "to compile them again, or `python tools/native.py clean` to run the sources as they are")
