"""The asyncio runtime: sources, buffers, flushes and commits.

Its names are imported when first used, so that reading a status file
(:mod:`lakeflow.runtime.status`, for ``lakeflow status``) does not load the whole runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakeflow.runtime.pipeline import RunResult, Runtime, run_pipeline
    from lakeflow.runtime.stats import SourceStats

_EXPORTS = {
    "RunResult": "lakeflow.runtime.pipeline",
    "Runtime": "lakeflow.runtime.pipeline",
    "run_pipeline": "lakeflow.runtime.pipeline",
    "SourceStats": "lakeflow.runtime.stats",
}

__all__ = ["RunResult", "Runtime", "SourceStats", "run_pipeline"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lakeflow.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
