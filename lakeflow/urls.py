"""Checks for the base URLs a plugin's config lets a user replace.

Every exchange plugin lets ``ws_url`` or ``rest_url`` point at a testnet, a proxy or a
test server, and appends its own path to it. The mistakes users make with them are the
same everywhere (the wrong scheme, a query, the path copied in too, so that it would be
doubled), so the check and its messages are here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def base_url(
    url: str,
    *,
    schemes: Iterable[str],
    example: str,
    appended: str,
    reserved: Iterable[str] = (),
    hint: str = "",
) -> str:
    """``url`` without its trailing ``/``, if it can be a base that ``appended`` goes after.

    It must use one of ``schemes`` and name a host; it may carry a path prefix (a
    proxy's) but no query or fragment; and no part of its path may be one of
    ``reserved``, the parts of ``appended`` a user would copy in. Raises ``ValueError``
    with a message that says how to fix it (pydantic shows it under the key); ``example``
    is the default base, ``hint`` ends the message where the plugin has a key for what
    the user tried to choose by the path (``"choose the stream with `category`"``).
    """
    allowed = tuple(schemes)
    parts = urlsplit(url)
    if parts.scheme not in allowed or not parts.netloc:
        said = " or ".join(f"{scheme}://" for scheme in allowed)
        article = "an" if said[0] in "aeiouh" else "a"
        raise ValueError(f"must be {article} {said} URL such as {example}")
    if parts.query or parts.fragment:
        raise ValueError(f"give the base URL only, without '?' or '#': {appended} is appended")
    words = set(reserved)
    taken = next((part for part in parts.path.split("/") if part in words), None)
    if taken is not None:
        raise ValueError(
            f"contains '/{taken}', a part of the path that the source appends itself: give "
            f"the scheme and host only ({example}), plus any prefix your proxy needs; "
            f"{appended} is appended" + (f"; {hint}" if hint else "")
        )
    return url.rstrip("/")
