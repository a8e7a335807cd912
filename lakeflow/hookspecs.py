"""The plugin author's reference: every hook lakeflow calls, one docstring each.

A plugin is a module (or object) with functions decorated by ``lakeflow.hookimpl``,
named after these hooks, exposed through the ``lakeflow`` entry-point group::

    [project.entry-points.lakeflow]
    my_exchange = "lakeflow_my_exchange.plugin"

Every hook is a *registration* hook: it is called once when the plugin manager loads,
receives a ``register`` callback (or the CLI, for commands) and calls it with classes,
schemas or commands. Hooks must not block or do I/O; the async runtime does the I/O
later, through the classes registered. An implementation may take fewer arguments than
the spec, so hooks only ever grow.

Every ``lakeflow`` command, ``--help`` included, imports each plugin's entry-point module
to learn its commands: keep that module light (import polars, aiohttp or matplotlib
inside the hook implementations or where they are used, not at its top).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # only named in annotations: importing them here would load polars
    import click

    from lakeflow.schema import TableSchema
    from lakeflow.sinks import Sink
    from lakeflow.sources import Source

hookspec = pluggy.HookspecMarker("lakeflow")
#: Decorate a plugin's hook implementations with this (also ``lakeflow.hookimpl``).
hookimpl = pluggy.HookimplMarker("lakeflow")


@hookspec
def register_sources(register: Callable[[type[Source]], None]) -> None:
    """Register source classes.

    Call ``register(SourceClass)`` once per source type. The class subclasses
    ``lakeflow.StreamingSource`` (a long-lived connection that pushes payloads) or
    ``lakeflow.PollingSource`` (called every ``interval`` seconds), and sets the class
    attributes ``type`` (the name a pipeline's ``type = "..."`` uses, unique across
    plugins), ``schema`` (the name of a registered record schema), ``description`` (one
    line, shown by ``lakeflow list-sources``) and ``Config`` (a ``lakeflow.SourceConfig``
    subclass, ``lakeflow.StreamingConfig`` for a streaming source: the keys its
    ``[sources.NAME]`` section accepts).

    What the source declares is also what the core checks arrivals against (drift,
    recorded in ``_drift``): the fields its decoder reads (``lakeflow.Field``, with a
    ``domain`` of allowed values or a plausible ``window``; keys sent but deliberately
    not read go in ``decode_json(..., known=...)``), its reference lists
    (``reference_data()`` returning ``lakeflow.Reference``, kept fresh by the core and
    read with ``self.reference(name)``) and the column naming each row's instrument
    (``instrument_column``). A key no field reads, a value outside its domain, a symbol
    no list names: each is logged once, counted and recorded, never dropped.

    Example::

        @lakeflow.hookimpl
        def register_sources(register):
            register(MyTradesSource)
    """


@hookspec
def register_schemas(register: Callable[[TableSchema], None]) -> None:
    """Register record schemas, the shape of the rows that sources produce.

    Call ``register(TableSchema(...))`` once per schema. A schema is registered once and
    may be shared by several sources and plugins (one exchange's plugin may write the
    schema another's registers, into the same table; an ``exchange`` column tells the rows
    apart). Column names are snake_case; prices and quantities use
    ``lakeflow.DECIMAL``, times ``lakeflow.TIMESTAMP`` (UTC); ``partition_by`` defaults to
    ``("date",)``, a UTC date column the decoder fills.

    Example::

        @lakeflow.hookimpl
        def register_schemas(register):
            register(TableSchema(name="trade", table="trades", columns={...}))
    """


@hookspec
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    """Register sink classes, the stores that tables are written to.

    Call ``register(SinkClass)``; the class subclasses ``lakeflow.Sink`` and sets
    ``type``, the name that ``[sink] type = "..."`` selects (``"delta"`` is built in
    and is the default). A sink commits one batch of rows per call, atomically, and
    records the batch's sequence number for its source so that a retried batch is
    recognised and skipped (exactly once). It adds the columns a record schema gained
    to an existing table, and raises ``lakeflow.SchemaMismatch`` from ``check_schema``
    (called before a source starts) and ``commit`` for any other change. When its store
    refuses or cannot be reached it raises ``lakeflow.SinkError`` (``config=True`` when a
    person must change something): the CLI reports it and the runtime stops or retries.
    A sink that can compact its tables sets ``maintains = True`` and implements
    ``maintain``: ``lakeflow run`` then maintains them on ``[maintenance]``'s schedule and
    ``lakeflow maintain`` by hand; other sinks are never asked to.

    Its ``Config`` (a ``lakeflow.SinkSettings`` subclass) declares the keys of ``[sink]``
    beyond the generic ones (``type``, ``uri``, ``flush_*``, ``max_buffered*``), validated
    like a source's; the instance reads them as ``self.settings``. Test a sink with
    ``lakeflow.testing.check_sink``: exactly-once, retries, schema evolution and
    maintenance, the properties the runtime relies on.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``lakeflow`` command line.

    ``cli`` is the ``lakeflow`` click group: add ``click`` commands to it with
    ``cli.add_command(command)`` or the ``@cli.command()`` decorator. A command whose name
    a built-in command or another plugin already has is refused and reported by
    ``lakeflow list-sources``. Open the pipeline with ``lakeflow.Lake(path)``; for bad
    input raise a ``click.ClickException`` (its message is printed as ``Error: ...``).

    Example::

        @lakeflow.hookimpl
        def register_commands(cli):
            @cli.command(help="Print trades per symbol.")
            @click.argument("pipeline", default="lakeflow.toml")
            def trades_summary(pipeline):
                click.echo(lakeflow.Lake(pipeline).sql("SELECT ..."))
    """
