"""What the commands share: the pipeline argument, loading it, and how a command fails.

A command fails by raising a :class:`~lakeflow.LakeflowError` (any, or :class:`Failed`
and :class:`Refused` here); the group turns it into ``Error: MESSAGE`` and the error's
``exit_code`` (:class:`lakeflow.cli.group.LakeflowGroup`). No command calls ``sys.exit``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from lakeflow.errors import RUNTIME_FAILURE, USAGE_ERROR, ConfigError, LakeflowError

if TYPE_CHECKING:
    from lakeflow.config import Pipeline
    from lakeflow.lake import Lake
    from lakeflow.plugins import Registry
    from lakeflow.sinks import Sink

#: The pipeline a command reads when none is named.
DEFAULT_PIPELINE = "lakeflow.toml"

pipeline_argument = click.argument(
    "pipeline", required=False, default=DEFAULT_PIPELINE, type=click.Path(dir_okay=False)
)


#: Warnings about the pipeline file (its notices) come from the command line.
logger = logging.getLogger("lakeflow")


class Failed(LakeflowError):
    """A command could not do its work: ``Error: MESSAGE`` (secrets redacted), exit 1.

    Or ``exit_code``, when the failure is another error's (see :func:`failing`).
    """

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class Refused(Failed):
    """A command that a person must change something for: as :class:`Failed`, exit 2."""

    exit_code = USAGE_ERROR


class AlreadyReported(LakeflowError):
    """The command has said what went wrong (printed or logged it): exit 1, and no more words.

    ``lakeflow status`` with a source down, ``lakeflow run`` with a source stopped by an error.
    """

    def __init__(self) -> None:
        super().__init__("")


@contextmanager
def failing(
    prefix: str = "",
    *,
    catch: type[Exception] | tuple[type[Exception], ...] = LakeflowError,
    raise_as: type[Failed] | None = None,
) -> Iterator[None]:
    """Re-raise the ``catch`` errors raised inside as a :class:`Failed` saying ``PREFIX + message``.

    Its exit code is ``raise_as``'s when given, else the caught error's own (1 for an error
    that is not a :class:`~lakeflow.LakeflowError`). Errors not caught reach the group's
    handler as they are: a LakeflowError with its own message and code, anything else in
    ``main``, which names its type (it is a bug, not a person's mistake).
    """
    try:
        yield
    except Failed:
        raise
    except catch as exc:
        message = f"{prefix}{exc}"
        if raise_as is not None:
            raise raise_as(message) from exc
        code = exc.exit_code if isinstance(exc, LakeflowError) else RUNTIME_FAILURE
        raise Failed(message, exit_code=code) from exc


def load(path: str, *, announce: bool = True) -> tuple[Registry, Pipeline]:
    """The installed plugins and the pipeline file at ``path``; a :class:`ConfigError` if wrong.

    With ``announce``, the file's notices (deprecated keys) are logged as warnings now; a
    command that sets up logging from the file first (``run``) logs them itself after.
    """
    from lakeflow.config import load_pipeline
    from lakeflow.plugins import load

    registry = load()
    pipeline = load_pipeline(path, registry)
    if announce:
        announce_notices(pipeline)
    return registry, pipeline


def announce_notices(pipeline: Pipeline) -> None:
    """Log each of the pipeline file's notices (a deprecated key) as a warning."""
    for notice in pipeline.notices:
        logger.warning("%s", notice)


def open_sink(registry: Registry, pipeline: Pipeline, *, check: bool = True) -> Sink:
    """The pipeline's sink; with ``check``, after one round trip to its store.

    A missing bucket or refused credentials exit 2 here, before a command starts (a run
    before it opens any source, so nothing received can be lost).
    """
    with failing(f"{pipeline.path}: ", catch=ConfigError):
        sink = registry.sinks[pipeline.sink.type](pipeline.sink)
    if check:
        sink.check()  # a SinkError says itself whether a person must act (exit 2) or not
    return sink


def open_lake(path: str) -> Lake:
    """The pipeline's tables for reading, after one round trip to the sink's store."""
    from lakeflow.lake import Lake

    registry, spec = load(path)
    return Lake.of(spec, open_sink(registry, spec))
