"""The pipeline file (``lakeflow.toml``): its models and its loader.

:mod:`lakeflow.config.models` holds the sections as pydantic models and the validated
:class:`Pipeline`; :mod:`lakeflow.config.loader` reads a file, substitutes ``${VAR}``
and binds its sources to the installed plugins. The sink, maintenance and the runtime
import the models only. Names are imported when first used, so that importing the
models does not load the loader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeflow.exports import lazy_exports

if TYPE_CHECKING:
    # `X as X`: an explicit re-export, since `__all__` is built from the table below.
    from lakeflow.config.loader import load_pipeline as load_pipeline
    from lakeflow.config.loader import read_pipeline_file as read_pipeline_file
    from lakeflow.config.loader import state_dir_of as state_dir_of
    from lakeflow.config.models import LogConfig as LogConfig
    from lakeflow.config.models import MaintenanceConfig as MaintenanceConfig
    from lakeflow.config.models import MetricsConfig as MetricsConfig
    from lakeflow.config.models import Pipeline as Pipeline
    from lakeflow.config.models import PipelineFile as PipelineFile
    from lakeflow.config.models import RuntimeConfig as RuntimeConfig
    from lakeflow.config.models import SinkConfig as SinkConfig
    from lakeflow.config.models import SourceSpec as SourceSpec
    from lakeflow.config.models import check_table_name as check_table_name

_MODELS = "lakeflow.config.models"
_LOADER = "lakeflow.config.loader"
#: Every public name and the module it lives in: ``__getattr__``, ``__dir__`` and
#: ``__all__`` read it.
_EXPORTS = {
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

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
