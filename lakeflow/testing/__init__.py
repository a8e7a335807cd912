"""The plugin author's test kit: run one source offline and get its table back.

Without pytest, from any script or test runner::

    from lakeflow.testing import WebSocketStandIn, collect

    with WebSocketStandIn([b'{"s": "BTCUSDT", "p": "1.5"}']) as server:
        result = collect("my_trades", {"url": server.url}, tmp_folder, payloads=1)
    assert result.rows.height == 1

With pytest, installing lakeflow also installs a pytest plugin (entry point ``pytest11``,
module :mod:`lakeflow.testing.plugin`) with the fixtures ``lakeflow_tables``,
``lakeflow_collect``, ``ws_standin`` and ``http_standin``; see ``docs/plugins.md``.

To run the real ``lakeflow run`` against stand-ins at an exchange's own hostnames over
TLS, in a private network namespace: :func:`run_at_hostnames` and
:class:`HostnameStandIn` (:mod:`lakeflow.testing.hostnames`; Linux, needs the
``testing`` extra).
"""

from lakeflow.testing.collect import (
    Collected,
    Collector,
    collect,
    collect_async,
    read_table,
    write_pipeline,
)
from lakeflow.testing.hostnames import (
    HostnameRun,
    HostnamesError,
    HostnameStandIn,
    HostnamesTimeout,
    HostRequest,
    HttpRoute,
    Served,
    WebSocketRoute,
    hostnames_available,
    require_hostnames,
    run_at_hostnames,
)
from lakeflow.testing.standins import (
    Answer,
    HttpStandIn,
    Request,
    Response,
    ResponseLike,
    WebSocketStandIn,
)

__all__ = [
    "Answer",
    "Collected",
    "Collector",
    "HostRequest",
    "HostnameRun",
    "HostnameStandIn",
    "HostnamesError",
    "HostnamesTimeout",
    "HttpRoute",
    "HttpStandIn",
    "Request",
    "Response",
    "ResponseLike",
    "Served",
    "WebSocketRoute",
    "WebSocketStandIn",
    "collect",
    "collect_async",
    "hostnames_available",
    "read_table",
    "require_hostnames",
    "run_at_hostnames",
    "write_pipeline",
]
