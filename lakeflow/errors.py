"""Exceptions that sources raise to tell the runtime what happened, and the config error.

Each carries the exit code a ``lakeflow`` command ends with when the error stops it: the
CLI maps every :class:`LakeflowError` to ``Error: MESSAGE`` and that code in one place
(:class:`lakeflow.cli.group.LakeflowGroup`), so a command only raises.
"""

from __future__ import annotations

#: Exit code of a command that could not do its work (an outage, a failed query).
RUNTIME_FAILURE = 1
#: Exit code of a command that a person must change something for (the pipeline file,
#: the command line, the store's settings); click exits 2 on a usage error too.
USAGE_ERROR = 2


class LakeflowError(Exception):
    """Base class of every error lakeflow raises on purpose.

    ``exit_code`` is what a command that this error stops exits with: 1 unless a subclass
    (or, for :class:`SinkError`, the instance) says a person must act first.
    """

    exit_code: int = RUNTIME_FAILURE


class ConfigError(LakeflowError):
    """The pipeline file (or a source's config) is wrong. The message says where and what."""

    exit_code = USAGE_ERROR


class SourceError(LakeflowError):
    """A source cannot go on with its configuration (an invalid symbol, a refused credential).

    Retrying would fail the same way, so the runtime stops this source, logs the message
    and lets the other sources run. Use it for errors that need a person, not for outages.
    """


class SourcePaused(LakeflowError):
    """The remote asked the source to stop for a while (an IP ban, maintenance).

    The runtime logs ``reason`` loudly, records the pause as a gap and calls the source
    again once ``seconds`` have passed.
    """

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(f"{reason} (paused for {seconds:g}s)")
        self.seconds = seconds
        self.reason = reason


class SchemaMismatch(LakeflowError):
    """A table's columns differ from its record schema beyond columns the schema added.

    A column whose type changed, a column the record schema no longer has (dropped or
    renamed), other partition columns: none is changed in place (that would rewrite or
    silently reinterpret what is stored). Found before a source starts, by ``lakeflow
    validate`` and ``lakeflow run``; the message names the table, the column, both types
    and what to do. Sinks raise it from :meth:`lakeflow.Sink.check_schema` and ``commit``.
    """

    # Migrating the table (or choosing another) is a person's decision: retrying cannot help.
    exit_code = USAGE_ERROR


class CommitRefused(LakeflowError):
    """A commit failed in a way retrying cannot fix (a schema mismatch, a refused permission).

    The source stops with this error; what it received stays in the spool, so that the
    next ``lakeflow run`` (or ``lakeflow replay``) lands it once the cause is fixed.
    """


class SinkError(LakeflowError):
    """A sink's store refused or could not be reached. The message says what to do.

    ``config`` is True when a person must change something (a missing bucket, refused
    credentials, a read-only folder) and retrying cannot help: ``lakeflow`` commands
    exit 2 before they start, and a commit that raises it stops its source instead of
    retrying (the payloads stay in the spool). False means it may pass (an outage): the
    commands exit 1 and commits are retried. A sink raises it from ``check`` and
    ``commit``.
    """

    def __init__(self, message: str, *, config: bool) -> None:
        super().__init__(message)
        self.config = config
        self.exit_code = USAGE_ERROR if config else RUNTIME_FAILURE


class RowsRefused(LakeflowError):
    """The sink cannot store some rows of a commit: the data is at fault, not the store.

    A value its writer rejects (out of the column type's range, a partition value it
    cannot write), a panic inside the writer. Retrying the same rows fails the same way,
    so the runtime splits the batch to find the payloads responsible, commits the rest
    and puts those in ``_dead_letters`` with this error's message. A sink raises it from
    ``commit``; so does the runtime's own check of the rows before a commit.
    """


class TableNotFound(LakeflowError, LookupError):
    """A table that does not exist (yet) in the pipeline's sink; the message lists those that do."""


class RequestFailed(LakeflowError):
    """A poll's request failed in a way that retrying within the poll could not fix.

    The runtime counts the poll as failed, records a gap and polls again at the next
    tick. ``status`` is the HTTP status, when the server answered at all;
    ``retry_after`` the seconds its ``Retry-After`` header asked to wait, if it sent one
    (a ban's length: wait it out before the next request).
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
