"""The detection engine: STIX 2.1 patterns against observations and network telemetry.

:func:`match` is a drop-in for ``stix2matcher.matcher.match``: same arguments, truthy
exactly when the reference finds a match (it returns ``True``/``False`` rather than
the matching SDOs), and :class:`~commonwatch.errors.InvalidPattern` for a pattern
that is not valid STIX patterning. Switching is one import::

    from commonwatch.detect import match   # was: from stix2matcher.matcher import match

:mod:`commonwatch.detect.engine` compiles a whole indicator set into indexes and
:mod:`commonwatch.detect.scan` matches telemetry events against it (index first, full
semantics only for candidates); :mod:`commonwatch.detect.evaluate` holds the full
semantics.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from commonwatch.detect.evaluate import CompiledPattern, Observed, compile_pattern
from commonwatch.detect.observations import from_stix
from commonwatch.errors import InvalidPattern

__all__ = ["CompiledPattern", "InvalidPattern", "Observed", "compile_pattern", "match"]


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> CompiledPattern:
    return compile_pattern(pattern)


def match(
    pattern: str, observations: Sequence[Any], verbose: bool = False, stix_version: str = "2.1",
) -> bool:
    """Does ``pattern`` match ``observations`` (STIX 2.1 §9)?

    ``observations`` is what ``stix2matcher.matcher.match`` takes: for STIX 2.1 a list
    of bundles and/or objects holding ``observed-data`` and the SCOs they reference,
    for 2.0 a list of ``observed-data`` with embedded ``objects``. ``verbose`` is
    accepted for call compatibility and ignored. Raises InvalidPattern for an invalid
    pattern and InvalidStixObject / InvalidParameter for malformed observations.
    """
    if not isinstance(pattern, str):
        raise InvalidPattern(f"a pattern must be a string, not {type(pattern).__name__}")
    compiled = _compiled(pattern)
    return compiled.matches(from_stix(observations, stix_version))
