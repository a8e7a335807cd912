"""The plugin author's test kit: run one source offline and get its table back.

Without pytest, from any script or test runner::

    from lakeflow.testing import WebSocketStandIn, collect

    with WebSocketStandIn([b'{"s": "BTCUSDT", "p": "1.5"}']) as server:
        result = collect("my_trades", {"url": server.url}, tmp_folder, payloads=1)
    assert result.rows.height == 1

With pytest, installing lakeflow also installs a pytest plugin (entry point ``pytest11``,
module :mod:`lakeflow.testing.plugin`) with the fixtures ``lakeflow_tables``,
``lakeflow_collect``, ``ws_standin``, ``exchange_standin`` and ``http_standin``; see
``docs/plugins.md``. :class:`ExchangeStandIn` converses like an exchange (subscribe
acknowledgements, pings, topics sent only to their subscribers, silent clients dropped).

To run the real ``lakeflow run`` against stand-ins at an exchange's own hostnames over
TLS, in a private network namespace: :func:`run_at_hostnames` and
:class:`HostnameStandIn` (:mod:`lakeflow.testing.hostnames`; Linux, needs the
``testing`` extra).

For a sink plugin: :func:`check_sink` holds a sink type to the sink contract
(:mod:`lakeflow.testing.sink`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeflow.exports import lazy_exports

if TYPE_CHECKING:
    # `X as X`: an explicit re-export, since `__all__` is built from the table below.
    from lakeflow.testing.collect import Collected as Collected
    from lakeflow.testing.collect import Collector as Collector
    from lakeflow.testing.collect import Watched as Watched
    from lakeflow.testing.collect import collect as collect
    from lakeflow.testing.collect import collect_async as collect_async
    from lakeflow.testing.collect import read_table as read_table
    from lakeflow.testing.collect import write_pipeline as write_pipeline
    from lakeflow.testing.exchange import Connection as Connection
    from lakeflow.testing.exchange import ExchangeStandIn as ExchangeStandIn
    from lakeflow.testing.hostnames import HostnameRun as HostnameRun
    from lakeflow.testing.hostnames import HostnamesError as HostnamesError
    from lakeflow.testing.hostnames import HostnameStandIn as HostnameStandIn
    from lakeflow.testing.hostnames import HostnamesTimeout as HostnamesTimeout
    from lakeflow.testing.hostnames import HostRequest as HostRequest
    from lakeflow.testing.hostnames import HttpRoute as HttpRoute
    from lakeflow.testing.hostnames import Served as Served
    from lakeflow.testing.hostnames import WebSocketRoute as WebSocketRoute
    from lakeflow.testing.hostnames import hostnames_available as hostnames_available
    from lakeflow.testing.hostnames import require_hostnames as require_hostnames
    from lakeflow.testing.hostnames import run_at_hostnames as run_at_hostnames
    from lakeflow.testing.readme import code_blocks as code_blocks
    from lakeflow.testing.readme import table_after as table_after
    from lakeflow.testing.sink import check_sink as check_sink
    from lakeflow.testing.standins import Answer as Answer
    from lakeflow.testing.standins import HttpStandIn as HttpStandIn
    from lakeflow.testing.standins import Request as Request
    from lakeflow.testing.standins import Response as Response
    from lakeflow.testing.standins import ResponseLike as ResponseLike
    from lakeflow.testing.standins import WebSocketStandIn as WebSocketStandIn

#: Every public name and the module it lives in: ``__getattr__``, ``__dir__`` and
#: ``__all__`` read it. Imported on first use: the pytest plugin
#: (lakeflow.testing.plugin) loads with every pytest session of an environment that has
#: lakeflow-core, and these bring polars, deltalake and aiohttp.
_EXPORTS = {
    "Collected": "lakeflow.testing.collect",
    "Collector": "lakeflow.testing.collect",
    "Watched": "lakeflow.testing.collect",
    "Connection": "lakeflow.testing.exchange",
    "ExchangeStandIn": "lakeflow.testing.exchange",
    "collect": "lakeflow.testing.collect",
    "collect_async": "lakeflow.testing.collect",
    "read_table": "lakeflow.testing.collect",
    "write_pipeline": "lakeflow.testing.collect",
    "HostnameRun": "lakeflow.testing.hostnames",
    "HostnamesError": "lakeflow.testing.hostnames",
    "HostnameStandIn": "lakeflow.testing.hostnames",
    "HostnamesTimeout": "lakeflow.testing.hostnames",
    "HostRequest": "lakeflow.testing.hostnames",
    "HttpRoute": "lakeflow.testing.hostnames",
    "Served": "lakeflow.testing.hostnames",
    "WebSocketRoute": "lakeflow.testing.hostnames",
    "hostnames_available": "lakeflow.testing.hostnames",
    "require_hostnames": "lakeflow.testing.hostnames",
    "run_at_hostnames": "lakeflow.testing.hostnames",
    "Answer": "lakeflow.testing.standins",
    "HttpStandIn": "lakeflow.testing.standins",
    "Request": "lakeflow.testing.standins",
    "Response": "lakeflow.testing.standins",
    "ResponseLike": "lakeflow.testing.standins",
    "WebSocketStandIn": "lakeflow.testing.standins",
    "code_blocks": "lakeflow.testing.readme",
    "table_after": "lakeflow.testing.readme",
    "check_sink": "lakeflow.testing.sink",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
