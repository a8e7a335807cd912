"""The asyncio runtime: sources, buffers, flushes and commits.

Its names are imported when first used, so that reading a status file
(:mod:`lakeflow.runtime.status`, for ``lakeflow status``) does not load the whole runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeflow.exports import lazy_exports

if TYPE_CHECKING:
    # `X as X`: an explicit re-export, since `__all__` is built from the table below.
    from lakeflow.runtime.runner import RunResult as RunResult
    from lakeflow.runtime.runner import Runtime as Runtime
    from lakeflow.runtime.stats import SourceStats as SourceStats

#: Every public name and the module it lives in: ``__getattr__``, ``__dir__`` and
#: ``__all__`` read it.
_EXPORTS = {
    "RunResult": "lakeflow.runtime.runner",
    "Runtime": "lakeflow.runtime.runner",
    "SourceStats": "lakeflow.runtime.stats",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
