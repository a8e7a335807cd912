"""Sources: what a plugin implements to bring data into lakeflow, and the bases it builds on.

- :mod:`lakeflow.sources.base`: the contract (:class:`Source`, :class:`StreamingSource`,
  :class:`PollingSource`, their configs, :class:`Batch`, :class:`Decoded`, :class:`Feed`).
- :mod:`lakeflow.sources.websocket`: :class:`~lakeflow.WebSocketSource`, a streaming source
  over one WebSocket, with endpoint fail-over, and :class:`~lakeflow.WebSocket`, the
  connection its hooks get.
- :mod:`lakeflow.sources.http`: :class:`~lakeflow.HttpPollingSource`, a polling source over
  HTTP GET, with deadlines, backoff, ``Retry-After`` and a body cap.

The contract's names are re-exported here; the two bases are imported from their modules
(or, by plugins, from :mod:`lakeflow`), so that importing the contract does not import
websockets or aiohttp.
"""

from lakeflow.sources.base import (
    Batch,
    Decoded,
    Drift,
    Feed,
    PollingConfig,
    PollingSource,
    Source,
    SourceConfig,
    StreamingConfig,
    StreamingSource,
)

__all__ = [
    "Batch",
    "Decoded",
    "Drift",
    "Feed",
    "PollingConfig",
    "PollingSource",
    "Source",
    "SourceConfig",
    "StreamingConfig",
    "StreamingSource",
]
