"""The asyncio runtime: sources, buffers, flushes and commits."""

from lakeflow.runtime.pipeline import RunResult, Runtime, run_pipeline
from lakeflow.runtime.stats import SourceStats

__all__ = ["RunResult", "Runtime", "SourceStats", "run_pipeline"]
