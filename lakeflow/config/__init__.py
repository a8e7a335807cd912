"""The pipeline file (``lakeflow.toml``): its models and its loader.

:mod:`lakeflow.config.models` holds the sections as pydantic models and the validated
:class:`Pipeline`; :mod:`lakeflow.config.loader` reads a file, substitutes ``${VAR}``
and binds its sources to the installed plugins. The sink, maintenance and the runtime
import the models only. Names are imported when first used, so that importing the
models does not load the loader.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakeflow.config.loader import load_pipeline, read_pipeline_file, state_dir_of
    from lakeflow.config.models import (
        STREAMING_KEYS,
        LogConfig,
        MaintenanceConfig,
        MetricsConfig,
        Pipeline,
        PipelineFile,
        RuntimeConfig,
        SinkConfig,
        SourceSpec,
        check_table_name,
    )

_MODELS = "lakeflow.config.models"
_LOADER = "lakeflow.config.loader"
_EXPORTS = {
    "STREAMING_KEYS": _MODELS,
    "LogConfig": _MODELS,
    "MaintenanceConfig": _MODELS,
    "MetricsConfig": _MODELS,
    "Pipeline": _MODELS,
    "PipelineFile": _MODELS,
    "RuntimeConfig": _MODELS,
    "SinkConfig": _MODELS,
    "SourceSpec": _MODELS,
    "check_table_name": _MODELS,
    "load_pipeline": _LOADER,
    "read_pipeline_file": _LOADER,
    "state_dir_of": _LOADER,
}

__all__ = [
    "STREAMING_KEYS",
    "LogConfig",
    "MaintenanceConfig",
    "MetricsConfig",
    "Pipeline",
    "PipelineFile",
    "RuntimeConfig",
    "SinkConfig",
    "SourceSpec",
    "check_table_name",
    "load_pipeline",
    "read_pipeline_file",
    "state_dir_of",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lakeflow.config' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
