"""One HTTP GET for JSON, as every source and reference list makes it: a deadline,
retries with backoff, ``Retry-After`` honoured, a refused location said in words, and a
body cap that refuses a huge answer while it streams.

:class:`~lakeflow.HttpPollingSource` (:mod:`lakeflow.sources.http`) polls through these
rules, and the reference lists (:mod:`lakeflow.references`) fetch through
:func:`fetch_json`; this module depends on neither, so both can import it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from lakeflow.errors import RequestFailed
from lakeflow.secrets import mask_uri
from lakeflow.units import format_size

if TYPE_CHECKING:
    # Imported where a request is made: `lakeflow validate` and `list-sources` load the
    # plugins' modules but never fetch, and aiohttp is ~0.3 s of their start-up.
    import aiohttp

#: HTTP 451: the server refuses this client's location.
REFUSED_LOCATION = 451
#: The largest answer body read by default (64 MiB): a poll's answer, a reference list.
#: A larger one is refused while it streams, never read whole (a 500 MB answer read
#: whole peaked at 3.1 GB); a plugin whose service answers more raises its own limit.
MAX_BODY = 64 << 20
#: Error bodies are only quoted (their first 200 characters): more than this is cut.
ERROR_BODY_LIMIT = 64 << 10
#: Bytes read from the socket per step while a body streams.
READ_CHUNK = 1 << 16

try:
    USER_AGENT = f"lakeflow/{version('lakeflow-core')}"
except PackageNotFoundError:  # running from a source tree without metadata
    USER_AGENT = "lakeflow"


async def read_body(
    response: aiohttp.ClientResponse,
    limit: int,
    url: str,
    *,
    truncate: bool = False,
    error: type[RequestFailed] = RequestFailed,
    remedy: str = "",
) -> bytes:
    """The body of ``response``, never more than ``limit`` bytes of it read.

    A declared Content-Length past ``limit`` is refused before a byte of the body is
    read; without one (a chunked answer, or one that sends more than it declared), the
    body is read in chunks and refused at the first chunk past ``limit``, so what is
    held stays within ``limit`` plus one chunk. The refusal is ``error`` (a
    :class:`lakeflow.RequestFailed`) naming ``url`` (masked), the limit and what was
    received, then ``remedy`` (how to allow more). With ``truncate`` (error bodies,
    only quoted), the first ``limit`` bytes are returned instead.
    """
    declared = response.content_length
    if declared is not None and declared > limit and not truncate:
        raise error(
            f"answer from {mask_uri(url)} is larger than {format_size(limit)}; refused "
            f"(its Content-Length of {declared} bytes exceeds the {limit}-byte limit"
            + (f"; {remedy})" if remedy else ")"),
            status=response.status,
        )
    body = bytearray()
    async for chunk in response.content.iter_chunked(READ_CHUNK):
        body += chunk
        if len(body) > limit:
            if truncate:
                return bytes(body[:limit])
            # Leaving the response unread closes its connection (aiohttp does not reuse
            # one with a body pending), so the rest is never read.
            raise error(
                f"answer from {mask_uri(url)} is larger than {format_size(limit)}; refused "
                f"(reading stopped at {len(body)} bytes, which exceeds the {limit}-byte "
                "limit" + (f"; {remedy})" if remedy else ")"),
                status=response.status,
            )
    return bytes(body)


def retry_after(response: aiohttp.ClientResponse, default: float) -> float:
    """The ``Retry-After`` header in seconds, else ``default``.

    Only the delay-seconds form is read: the HTTP-date form is rare on APIs and a clock
    skew would make it wrong anyway.
    """
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return default


def url_path(url: str) -> str:
    """The URL's path, for messages (the host is in the source's endpoints)."""
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    return rest[slash:].split("?", 1)[0] if slash >= 0 else "/"


def url_origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


async def fetch_json(
    url: str,
    params: Mapping[str, str] | None = None,
    *,
    session: aiohttp.ClientSession | None = None,
    within: float = 10.0,
    attempts: int = 4,
    retry_base: float = 0.5,
    log: logging.Logger | logging.LoggerAdapter | None = None,
    on_refusal: Callable[[int, float | None], None] | None = None,
    max_body: int = MAX_BODY,
) -> Any:
    """GET ``url`` and return its JSON body parsed; for reference data, not for the feed.

    What a streaming source needs beside its stream (an instrument list, contract
    sizes) and reads once in a while. 5xx answers, timeouts and broken connections are
    retried with backoff, a 429 waits its ``Retry-After`` when that fits in ``within``
    (seconds for all attempts together). Anything else raises
    :class:`lakeflow.RequestFailed`, saying the status and the start of the body.
    ``session`` reuses an open ``aiohttp`` session; without one, a session is made for
    the call. ``on_refusal(status, retry_after)`` sees every non-200 answer first (a
    shared budget is held there, before a 429 is waited out here).

    An answer past ``max_body`` bytes (64 MiB by default; raise it for a list known to
    be larger) is refused at once, not retried: from its Content-Length, or while it
    streams, never read whole. The :class:`lakeflow.RequestFailed` names the URL, the
    limit and what was received.
    """
    import json

    import aiohttp

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    own = session is None
    if session is None:
        session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
    last = "no attempt"
    cause: BaseException | None = None  # the last attempt's error, when it raised one
    status: int | None = None
    wait_asked: float | None = None
    try:
        for attempt in range(1, attempts + 1):
            left = deadline - loop.time()
            if left <= 0:
                break
            delay = retry_base * 2 ** (attempt - 1)
            try:
                limit = aiohttp.ClientTimeout(total=left)
                async with session.get(url, params=params, timeout=limit) as response:
                    status = response.status
                    if status == 200:
                        # Refused like a 4xx (raised, not retried): the same list would
                        # come back as large.
                        body = await read_body(
                            response, max_body, url, remedy="raise max_body to accept it"
                        )
                        try:
                            return json.loads(body)
                        except ValueError as exc:
                            raise RequestFailed(
                                f"GET {url_path(url)}: the answer is not JSON ({exc})", status=200
                            ) from None
                    body = await read_body(response, ERROR_BODY_LIMIT, url, truncate=True)
                    detail = body[:200].decode("utf-8", "replace").strip()
                    last = f"HTTP {status}" + (f" body {detail!r}" if detail else "")
                    asked = retry_after(response, -1.0)
                    wait_asked = None if asked < 0 else asked
                    if on_refusal is not None:
                        on_refusal(status, wait_asked)
                    if status == 429:
                        delay = retry_after(response, delay)
                    elif status < 500:
                        raise RequestFailed(
                            f"GET {url_path(url)} refused: {last}",
                            status=status,
                            retry_after=wait_asked,
                        )
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc or 'no complete answer in time'}"
                cause = exc
            else:
                cause = None
            if attempt == attempts or loop.time() + delay >= deadline:
                break
            if log is not None:
                # A host nobody can reach is said once for every source (the runtime).
                say = log.debug if cause is not None and unreachable_host(cause) else log.warning
                say("GET %s failed (%s); retrying in %.1fs", url_path(url), last, delay)
            await asyncio.sleep(delay)
        raise RequestFailed(
            f"GET {url_path(url)} failed within {within:g}s; last: {last}",
            status=status,
            retry_after=wait_asked,
        ) from cause
    finally:
        if own:
            await session.close()


def unreachable_host(exc: BaseException) -> str | None:
    """The host a failure could not reach (its name did not resolve, or no connection
    could be made to it), from ``exc`` or the errors that caused it; None otherwise.

    A machine that is offline fails this way for every source at once: the runtime then
    says so once for all of them instead of once per source per reconnect.
    """
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        # aiohttp's ClientConnectorError (and its DNS variant) names the host it tried.
        host = getattr(error, "host", None)
        if isinstance(error, OSError) and isinstance(host, str) and host:
            return host
        error = error.__cause__ or error.__context__
    return None
