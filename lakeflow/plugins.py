"""The plugin manager: loads the ``lakeflow`` entry points, then the built-ins, the same way.

A plugin that fails to import or to register is recorded in ``Registry.errors`` by name
and skipped; the others and the CLI go on. ``LAKEFLOW_PLUGINS`` limits which
entry-point plugins load: a comma-separated list of names, or empty for none (the
way out when a broken plugin gets in the way).
"""

from __future__ import annotations

import importlib.metadata
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from lakeflow import hookspecs

if TYPE_CHECKING:
    # Not imported at run time: `load_commands` runs for every command, `--help`
    # included, and these bring polars.
    import click

    from lakeflow.schema import TableSchema
    from lakeflow.sinks import Sink
    from lakeflow.sources import Source

GROUP = "lakeflow"
BUILTINS = ("lakeflow.sinks.delta", "lakeflow.system_tables")


@dataclass(frozen=True)
class SourceInfo:
    """A registered source type and where it came from."""

    cls: type[Source]
    plugin: str
    distribution: str | None
    version: str | None


@dataclass
class Registry:
    """Everything the loaded plugins registered, and the plugins that failed."""

    sources: dict[str, SourceInfo] = field(default_factory=dict)
    schemas: dict[str, TableSchema] = field(default_factory=dict)
    sinks: dict[str, type[Sink]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    plugins: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    #: Commands added by :func:`load_commands`, and the plugin each came from.
    commands: dict[str, str] = field(default_factory=dict)


def make_manager() -> pluggy.PluginManager:
    """A plugin manager that knows lakeflow's hook specifications and nothing else."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def _register(
    pm: pluggy.PluginManager, registry: Registry, *, entry_points: bool, builtins: bool
) -> list[str]:
    """Register the entry-point plugins (unless disabled) and the built-ins on ``pm``.

    Returns the plugins' names in the order their hooks are called: built-ins first, so
    that a plugin claiming a built-in's name is the one refused, then the order loaded.
    """
    dist_of: dict[str, tuple[str | None, str | None]] = {}
    if entry_points:
        wanted = os.environ.get("LAKEFLOW_PLUGINS")
        allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
        for ep in importlib.metadata.entry_points(group=GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            dist = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
            dist_of[ep.name] = dist
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:
                _record(registry, ep.name, _describe(exc))
                registry.plugins[ep.name] = dist
    if builtins:
        for module_name in BUILTINS:
            if pm.get_plugin(module_name) is None:
                pm.register(importlib.import_module(module_name), name=module_name)
    # check_pending() stops at the first plugin with an unknown hook: ask again until
    # every such plugin is reported and unloaded, not only the first.
    while True:
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or str(exc.plugin)
            _record(registry, name, f"implements an unknown hook: {exc}")
            pm.unregister(exc.plugin)
        else:
            break
    for name, _plugin in pm.list_name_plugin():
        registry.plugins[name] = dist_of.get(name, ("lakeflow-core", _core_version()))
    order = [name for name, _ in pm.list_name_plugin()]
    order.sort(key=lambda name: name not in BUILTINS)
    return order


def _call_each(
    pm: pluggy.PluginManager,
    registry: Registry,
    order: list[str],
    hook_name: str,
    arguments: Callable[[str], dict[str, Any]],
) -> None:
    """Call ``hook_name`` of each plugin in ``order`` with ``arguments(plugin name)``.

    One plugin at a time through pluggy's own caller, so that an implementation taking
    fewer arguments than the spec works (hooks only ever grow) and one plugin's error
    does not stop the others' registrations.
    """
    for plugin_name in order:
        plugin = pm.get_plugin(plugin_name)
        hook = getattr(pm.hook, hook_name)
        if plugin is None or not any(impl.plugin is plugin for impl in hook.get_hookimpls()):
            continue
        others = [p for name, p in pm.list_name_plugin() if name != plugin_name]
        caller = pm.subset_hook_caller(hook_name, remove_plugins=others)
        try:
            caller(**arguments(plugin_name))
        except Exception as exc:
            _record(registry, plugin_name, _describe(exc))


def load(pm: pluggy.PluginManager | None = None, *, entry_points: bool = True) -> Registry:
    """Load the entry-point plugins (unless disabled) and the built-ins into a registry."""
    from lakeflow.config.models import SinkConfig
    from lakeflow.schema import TableSchema
    from lakeflow.sinks import Sink
    from lakeflow.sources import PollingSource, StreamingConfig, StreamingSource

    pm = pm or make_manager()
    registry = Registry()
    order = _register(pm, registry, entry_points=entry_points, builtins=True)

    def each(hook_name: str, register: Callable[[str, Any], None]) -> None:
        _call_each(
            pm,
            registry,
            order,
            hook_name,
            lambda plugin: {"register": lambda item: register(plugin, item)},
        )

    def add_schema(_plugin: str, schema: TableSchema) -> None:
        if not isinstance(schema, TableSchema):
            raise TypeError(f"register_schemas got {schema!r}, not a TableSchema")
        known = registry.schemas.get(schema.name)
        if known is not None and known != schema:
            raise ValueError(f"schema {schema.name!r} is already registered with other columns")
        registry.schemas[schema.name] = schema

    def add_source(plugin: str, cls: type[Source]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, StreamingSource | PollingSource)):
            raise TypeError(
                f"register_sources got {cls!r}: subclass lakeflow.StreamingSource or PollingSource"
            )
        for attr in ("type", "schema"):
            if not isinstance(getattr(cls, attr, None), str):
                raise TypeError(
                    f"source class {cls.__name__} must set the class attribute {attr!r}"
                )
        config = cls.Config
        if issubclass(cls, StreamingSource) and not (
            isinstance(config, type) and issubclass(config, StreamingConfig)
        ):
            # The runtime reads a stream's silence limit from its config: one without
            # StreamingConfig's silence_timeout would fail at run time, not here.
            raise TypeError(
                f"plugin {plugin!r}: streaming source {cls.__module__}.{cls.__qualname__} has "
                f"Config {getattr(config, '__qualname__', config)!r}, which is not a "
                "lakeflow.StreamingConfig; derive its Config from lakeflow.StreamingConfig"
            )
        if issubclass(cls, StreamingSource) and "silence_timeout" in vars(cls):
            # Read from there before: left on the class, it would now be silently ignored.
            raise TypeError(
                f"plugin {plugin!r}: streaming source {cls.__module__}.{cls.__qualname__} "
                "sets silence_timeout on the class; the runtime reads it from the config: "
                "declare it on its Config instead (silence_timeout: float | None = ...)"
            )
        if cls.type in registry.sources:
            other = registry.sources[cls.type].plugin
            raise ValueError(f"source type {cls.type!r} is already registered by plugin {other!r}")
        dist, version = registry.plugins.get(plugin, (None, None))
        registry.sources[cls.type] = SourceInfo(cls, plugin, dist, version)

    sink_plugins: dict[str, str] = {}

    def add_sink(plugin: str, cls: type[Sink]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Sink)):
            raise TypeError(f"register_sinks got {cls!r}: subclass lakeflow.Sink")
        generic = set(cls.Config.model_fields) & set(SinkConfig.model_fields)
        if generic:
            # [sink]'s generic keys are the core's: the sink's Config never sees them.
            raise TypeError(
                f"plugin {plugin!r}: sink {cls.__module__}.{cls.__qualname__}'s Config declares "
                f"{', '.join(sorted(generic))}, which [sink] keeps for every sink type; "
                "read them from self.config instead"
            )
        if cls.type in registry.sinks and registry.sinks[cls.type] is not cls:
            raise ValueError(
                f"sink type {cls.type!r} is already registered by plugin {sink_plugins[cls.type]!r}"
            )
        registry.sinks[cls.type] = cls
        sink_plugins[cls.type] = plugin

    each("register_schemas", add_schema)
    each("register_sinks", add_sink)
    each("register_sources", add_source)
    # A source whose schema nobody registered cannot run: say so by plugin, not at run time.
    for kind, info in list(registry.sources.items()):
        if info.cls.schema not in registry.schemas:
            _record(
                registry,
                info.plugin,
                f"source {kind!r} writes schema {info.cls.schema!r}, which is not registered",
            )
    return registry


def load_commands(
    cli: click.Group, pm: pluggy.PluginManager | None = None, *, entry_points: bool = True
) -> Registry:
    """Add the plugins' commands (their ``register_commands`` hook) to ``cli``.

    Only the entry-point plugins are loaded (the built-ins add no command) and no other
    hook is called, since every command, ``--help`` included, does this. A command whose
    name is taken (a built-in, an earlier plugin's) is refused and recorded as the
    plugin's error. ``Registry.commands`` maps each added command to its plugin.
    """
    import click

    pm = pm or make_manager()
    registry = Registry()
    for plugin in _register(pm, registry, entry_points=entry_points, builtins=False):
        staging = click.Group(name=cli.name)
        _call_each(pm, registry, [plugin], "register_commands", _arguments({"cli": staging}))
        for name, command in staging.commands.items():
            if name in cli.commands:
                owner = registry.commands.get(name, "lakeflow itself")
                _record(registry, plugin, f"command {name!r} is already one of {owner}'s")
                continue
            cli.add_command(command, name)
            registry.commands[name] = plugin
    return registry


def _arguments(arguments: dict[str, Any]) -> Callable[[str], dict[str, Any]]:
    """The same hook arguments for whichever plugin is called."""
    return lambda _plugin: arguments


def _record(registry: Registry, plugin: str, error: str) -> None:
    """Add ``error`` to what is reported for ``plugin``, after any earlier one."""
    known = registry.errors.get(plugin)
    registry.errors[plugin] = error if known is None else f"{known}; {error}"


def _describe(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({frame[0].filename}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _core_version() -> str | None:
    try:
        return importlib.metadata.version("lakeflow-core")
    except importlib.metadata.PackageNotFoundError:
        return None
