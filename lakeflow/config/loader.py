"""Reading a pipeline file and binding it to the installed plugins.

Every error names the file, the TOML key path and the problem, and never the value
(a value may be a secret): secrets met on the way (``storage_options``' keys that name
one) are registered with :mod:`lakeflow.secrets`, so that logs redact them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from lakeflow.config.models import (
    STREAMING_KEYS,
    Pipeline,
    PipelineFile,
    SourceSpec,
    check_table_name,
)
from lakeflow.errors import ConfigError
from lakeflow.pipeline_file import read_toml
from lakeflow.secrets import add_secret, is_secret_key
from lakeflow.units import parse_duration

if TYPE_CHECKING:
    from lakeflow.plugins import Registry

_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def read_pipeline_file(path: str | Path) -> PipelineFile:
    """Read, substitute and validate a pipeline file's own keys, without any plugin.

    Sources are left as raw sections (their keys belong to their plugins): enough for
    what needs only the file, such as ``lakeflow status``. Raises :class:`ConfigError`.
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
    for key, value in parsed.sink.storage_options.items():
        if is_secret_key(key):
            add_secret(value)
    sink = parsed.sink
    if "://" not in sink.uri:
        sink = sink.model_copy(update={"uri": str((path.parent / sink.uri).resolve())})
    if sink.type not in registry.sinks:
        raise ConfigError(
            f"{where}: sink.type: unknown sink type {sink.type!r}"
            f"{_did_you_mean(sink.type, registry.sinks)}"
        )

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
        maintenance=parsed.maintenance,
    )


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
    streaming = cls.kind == "streaming"
    silence = None
    if "silence_timeout" in section and "silence_timeout" not in cls.Config.model_fields:
        if not streaming:
            raise ConfigError(
                f"{where}: {prefix}.silence_timeout: applies to streaming sources only; "
                f"{kind!r} polls, and its health follows its polls"
            )
        try:
            silence = _silence_timeout(section.pop("silence_timeout"))
        except ValueError as exc:
            raise ConfigError(f"{where}: {prefix}.silence_timeout: {exc}") from None
    try:
        config = cls.Config.model_validate(section)
    except ValidationError as exc:
        extra = ("type", *STREAMING_KEYS) if streaming else ("type",)
        raise ConfigError(
            _format_errors(where, exc, ("sources", name), cls.Config, extra_keys=extra)
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
    return SourceSpec(
        name=name, cls=cls, config=config, table=table, schema=schema, silence_timeout=silence
    )


def _silence_timeout(value: Any) -> float:
    """Seconds (a number or ``"10m"``); 0 turns the check off."""
    seconds = parse_duration(value)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError('must be seconds (300) or a duration ("5m", "2h"); 0 turns it off')
    if seconds < 0:
        raise ValueError("must not be negative (0 turns the check off)")
    return float(seconds)


def _format_errors(
    where: str,
    exc: ValidationError,
    prefix: tuple[str, ...],
    model: type[BaseModel],
    extra_keys: tuple[str, ...] = (),
) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join((*prefix, *loc)) or "(top level)"
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
