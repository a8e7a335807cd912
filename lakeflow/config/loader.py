"""Reading a pipeline file and binding it to the installed plugins.

Every error names the file, the TOML key path and the problem, and never the value
(a value may be a secret): secrets met on the way (values of the sink's settings under a
key that names one, such as ``storage_options``' credentials) are registered with
:mod:`lakeflow.secrets`, so that logs redact them.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from lakeflow.config.file import read_toml
from lakeflow.config.models import (
    MOVED_MAINTENANCE_KEYS,
    MaintenanceConfig,
    Pipeline,
    PipelineFile,
    SinkConfig,
    SourceSpec,
    check_table_name,
)
from lakeflow.errors import ConfigError
from lakeflow.secrets import add_secret, is_secret_key

if TYPE_CHECKING:
    from lakeflow.plugins import Registry

logger = logging.getLogger(__name__)

_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def read_pipeline_file(path: str | Path) -> PipelineFile:
    """Read, substitute and validate a pipeline file's own keys, without any plugin.

    Sources are left as raw sections, and ``[sink]``'s keys beyond the generic ones as
    written (their keys belong to their plugins): enough for what needs only the file,
    such as ``lakeflow status``. Raises :class:`ConfigError`.
    """
    where = str(path)
    data = read_toml(path)
    try:
        return PipelineFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(where, exc, (), PipelineFile)) from None


def state_dir_of(path: str | Path, parsed: PipelineFile) -> str:
    """The pipeline's state folder, resolved against the pipeline file's folder."""
    return str((Path(path).parent / parsed.runtime.state_dir).resolve())


def load_pipeline(path: str | Path, registry: Registry) -> Pipeline:
    """Read, substitute and validate a pipeline file. Raises :class:`ConfigError`."""
    path = Path(path)
    where = str(path)
    parsed = read_pipeline_file(path)
    notices: list[str] = []
    sink, maintenance = _load_sink(where, parsed, registry, notices)
    if "://" not in sink.uri:
        sink = sink.model_copy(update={"uri": str((path.parent / sink.uri).resolve())})

    sources = {
        name: _load_source(where, name, section, registry)
        for name, section in parsed.sources.items()
    }
    runtime = parsed.runtime.model_copy(update={"state_dir": state_dir_of(path, parsed)})
    return Pipeline(
        path=path,
        sink=sink,
        log=parsed.log,
        runtime=runtime,
        sources=sources,
        metrics=parsed.metrics,
        maintenance=maintenance,
        notices=tuple(notices),
    )


def _load_sink(
    where: str, parsed: PipelineFile, registry: Registry, notices: list[str]
) -> tuple[SinkConfig, MaintenanceConfig]:
    """``[sink]`` bound to its sink type, and ``[maintenance]`` without the keys it lost.

    The sink type's own keys are validated by its ``Config``. The keys ``[maintenance]``
    had before they became the Delta sink's settings are moved to ``[sink]``, with a
    notice (added to ``notices``), if the sink type has them.
    """
    sink = parsed.sink
    _register_secrets(sink.options)
    if sink.type not in registry.sinks:
        raise ConfigError(
            f"{where}: sink.type: unknown sink type {sink.type!r}"
            f"{_did_you_mean(sink.type, registry.sinks)}"
        )
    model = registry.sinks[sink.type].Config
    moved = parsed.maintenance.moved()
    for key in moved:
        if key not in model.model_fields:
            raise ConfigError(
                f"{where}: maintenance.{key}: no longer a [maintenance] key (it was a setting "
                f"of the delta sink), and sink type {sink.type!r} has no such setting; remove it"
            )
        if key in sink.options:
            raise ConfigError(
                f"{where}: maintenance.{key}: also set as sink.{key}; remove it from "
                "[maintenance], where it is deprecated"
            )
        notices.append(
            f"{where}: [maintenance] {key} is deprecated: it is a setting of the "
            f"{sink.type} sink now; move it to [sink] {key}"
        )
    try:
        model.model_validate({**sink.options, **moved})
    except ValidationError as exc:
        # A moved key's error is named where it was written.
        raise ConfigError(
            _format_errors(
                where,
                exc,
                ("sink",),
                model,
                extra_keys=tuple(SinkConfig.model_fields),
                written_in=dict.fromkeys(moved, ("maintenance",)),
            )
        ) from None
    if moved:
        sink = sink.model_copy(update=moved)
    schedule = parsed.maintenance.model_dump(exclude=set(MOVED_MAINTENANCE_KEYS))
    return sink, MaintenanceConfig.model_validate(schedule)


def _register_secrets(settings: Mapping[str, Any]) -> None:
    """Register every string under a key that names a credential, at any depth."""
    for key, value in settings.items():
        if isinstance(value, Mapping):
            _register_secrets(value)
        elif isinstance(value, str) and is_secret_key(key):
            add_secret(value)


def _load_source(
    where: str, name: str, section: Mapping[str, Any], registry: Registry
) -> SourceSpec:
    prefix = f"sources.{name}"
    if not _SOURCE_NAME.match(name):
        raise ConfigError(
            f"{where}: {prefix}: a source name may hold only letters, digits, '_' and '-'"
        )
    section = dict(section)
    kind = section.pop("type", None)
    if kind is None:
        raise ConfigError(
            f"{where}: {prefix}.type: missing; say which source this is "
            f"(installed: {', '.join(sorted(registry.sources)) or 'none'})"
        )
    if not isinstance(kind, str) or kind not in registry.sources:
        hint = _did_you_mean(str(kind), registry.sources)
        installed = ", ".join(sorted(registry.sources)) or "none"
        raise ConfigError(
            f"{where}: {prefix}.type: unknown source type {kind!r}{hint} "
            f"(installed: {installed}; `lakeflow list-sources` shows them)"
        )
    cls = registry.sources[kind].cls
    if "silence_timeout" in section and cls.kind == "polling":
        # A hint, not a route: otherwise the key would be "unknown", with a lookalike.
        raise ConfigError(
            f"{where}: {prefix}.silence_timeout: applies to streaming sources only; "
            f"{kind!r} polls, and its health follows its polls"
        )
    try:
        config = cls.Config.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(
            _format_errors(where, exc, ("sources", name), cls.Config, extra_keys=("type",))
        ) from None
    schema = registry.schemas.get(cls.schema)
    if schema is None:
        raise ConfigError(
            f"{where}: {prefix}.type: source type {kind!r} writes schema {cls.schema!r}, "
            "which no installed plugin registers"
        )
    table = config.table or schema.table
    try:
        check_table_name(table)
    except ValueError as exc:
        raise ConfigError(f"{where}: {prefix}.table: {exc}") from None
    if table.startswith("_"):
        raise ConfigError(
            f"{where}: {prefix}.table: names starting with '_' are reserved "
            "for lakeflow's own tables"
        )
    return SourceSpec(name=name, cls=cls, config=config, table=table, schema=schema)


def _format_errors(
    where: str,
    exc: ValidationError,
    prefix: tuple[str, ...],
    model: type[BaseModel],
    extra_keys: tuple[str, ...] = (),
    written_in: Mapping[str, tuple[str, ...]] | None = None,
) -> str:
    """One line per error: file, key path, problem. ``written_in`` maps a top-level key
    to the section it was written in when that is not ``prefix``."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        head = (written_in or {}).get(loc[0], prefix) if loc else prefix
        key = ".".join((*head, *loc)) or "(top level)"
        if error["type"] == "extra_forbidden":
            known = [*_known_keys(model, loc[:-1]), *extra_keys]
            message = f"unknown key{_did_you_mean(loc[-1], known)}"
            if known:
                message += f" (allowed: {', '.join(sorted(known))})"
        else:
            message = error["msg"]
        lines.append(f"{where}: {key}: {message}")
    return "\n".join(lines)


def _known_keys(model: type[BaseModel], parents: tuple[str, ...]) -> list[str]:
    for name in parents:
        field = model.model_fields.get(name)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
