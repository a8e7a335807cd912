"""What the commands share: the pipeline argument, loading it, and how a command fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from lakeflow.errors import ConfigError, LakeflowError, SchemaMismatch, SinkError
from lakeflow.secrets import redact

if TYPE_CHECKING:
    from lakeflow.config import Pipeline
    from lakeflow.lake import Lake
    from lakeflow.plugins import Registry
    from lakeflow.sinks import Sink

#: The pipeline a command reads when none is named.
DEFAULT_PIPELINE = "lakeflow.toml"

#: Exit code of a command that could not do its work (an outage, a failed query).
RUNTIME_FAILURE = 1
#: Exit code of a command that a person must change something for (the pipeline file,
#: the command line, the store's settings); click exits 2 on a usage error too.
USAGE_ERROR = 2

pipeline_argument = click.argument(
    "pipeline", required=False, default=DEFAULT_PIPELINE, type=click.Path(dir_okay=False)
)


class Failed(LakeflowError, click.ClickException):
    """A command could not do its work: ``Error: MESSAGE`` (secrets redacted), exit 1."""

    exit_code = RUNTIME_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class Refused(Failed):
    """A command that a person must change something for: as :class:`Failed`, exit 2."""

    exit_code = USAGE_ERROR


def failure(exc: Exception) -> type[Failed]:
    """:class:`Refused` when a person must act and retrying cannot help, else :class:`Failed`."""
    if isinstance(exc, SinkError):
        return Refused if exc.config else Failed
    if isinstance(exc, ConfigError | SchemaMismatch):
        return Refused
    # Only a run raises it, and a run has imported it: no other command pays for it.
    from lakeflow.runtime.pipeline import MetricsUnavailable

    return Refused if isinstance(exc, MetricsUnavailable) else Failed


@contextmanager
def failing(
    prefix: str = "",
    *,
    catch: type[Exception] | tuple[type[Exception], ...] = LakeflowError,
    raise_as: type[Failed] | None = None,
) -> Iterator[None]:
    """Turn the ``catch`` errors raised inside into ``PREFIX + message`` and an exit code.

    As :func:`failure` says, unless ``raise_as`` is given. Errors not caught reach
    ``main``, which names their type (they are bugs, not a person's mistake).
    """
    try:
        yield
    except Failed:
        raise
    except catch as exc:
        raise (raise_as or failure(exc))(f"{prefix}{exc}") from exc


def load(path: str) -> tuple[Registry, Pipeline]:
    """The installed plugins and the pipeline file at ``path``; exits 2 if it is wrong."""
    from lakeflow.config import load_pipeline
    from lakeflow.plugins import load

    registry = load()
    with failing(catch=ConfigError):
        return registry, load_pipeline(path, registry)


def open_sink(registry: Registry, pipeline: Pipeline, *, check: bool = True) -> Sink:
    """The pipeline's sink; with ``check``, after one round trip to its store.

    A missing bucket or refused credentials exit 2 here, before a command starts (a run
    before it opens any source, so nothing received can be lost).
    """
    with failing(f"{pipeline.path}: ", catch=ConfigError):
        sink = registry.sinks[pipeline.sink.type](pipeline.sink)
    if check:
        with failing(catch=SinkError):
            sink.check()
    return sink


def open_lake(path: str) -> Lake:
    """The pipeline's tables for reading, after one round trip to the sink's store."""
    from lakeflow.lake import Lake

    registry, spec = load(path)
    return Lake.of(spec, open_sink(registry, spec))
