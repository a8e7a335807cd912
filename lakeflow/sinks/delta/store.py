"""Where Delta tables live: a local folder or an object store, its options, its errors in words.

deltalake (delta-rs >= 1.0, the version lakeflow requires) commits to S3 with
put-if-absent (``If-None-Match: *``) by default: two writers that race for the same
log version cannot both win, so concurrent writers are safe on any store that honours
conditional writes (AWS S3, MinIO, Cloudflare R2, SeaweedFS). delta-rs 1.0 removed its
DynamoDB locking provider: ``AWS_S3_LOCKING_PROVIDER`` is now ignored (with a log line),
and ``conditional_put = "disabled"`` makes every commit fail. :func:`check_options`
refuses both before anything runs, naming the option to change.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from lakeflow.errors import ConfigError, SinkError
from lakeflow.secrets import mask_uri, redact

#: URI schemes deltalake writes to as object stores (``file://`` is a local folder).
REMOTE_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "azure")

#: Where each store family takes its credentials, for the error that says what to set.
_CREDENTIAL_OPTIONS = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    "gs": "GOOGLE_SERVICE_ACCOUNT (a key file) or GOOGLE_SERVICE_ACCOUNT_KEY",
    "az": "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or a SAS token)",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class StoreError(SinkError):
    """An object store or a local folder refused or could not be reached (credentials masked).

    ``config`` is True when a person must change something (a missing bucket, refused
    credentials) and retrying cannot help.
    """

    def __init__(self, message: str, *, config: bool) -> None:
        super().__init__(redact(message), config=config)


def is_remote(uri: str) -> bool:
    """True when ``uri`` names an object store rather than a local folder."""
    return urlsplit(uri).scheme.lower() in REMOTE_SCHEMES


def _family(uri: str) -> str:
    scheme = urlsplit(uri).scheme.lower()
    if scheme.startswith("s3"):
        return "s3"
    if scheme.startswith("g"):
        return "gs"
    return "az"


def _option(options: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of ``names`` set in ``options`` (keys compared case-insensitively)."""
    wanted = {name.lower() for name in names}
    for key, value in options.items():
        if key.lower() in wanted:
            return key, value
    return None


def check_options(uri: str, options: Mapping[str, str]) -> None:
    """Refuse storage options under which concurrent commits are unsafe or impossible.

    Raises :class:`ConfigError` naming the option and what to set instead. Looks at the
    environment too, where deltalake also reads ``AWS_S3_LOCKING_PROVIDER``.
    """
    if _family(uri) != "s3" or not is_remote(uri):
        return
    put = _option(options, "conditional_put", "aws_conditional_put")
    if put is not None and put[1].strip().lower() == "disabled":
        raise ConfigError(
            f"sink.storage_options.{put[0]}: 'disabled' leaves deltalake no safe way to "
            'commit (every commit would fail); set conditional_put = "etag", or remove it '
            "(put-if-absent is deltalake's default)"
        )
    lock = _option(options, "AWS_S3_LOCKING_PROVIDER", "aws_s3_locking_provider")
    where = f"sink.storage_options.{lock[0]}" if lock else None
    if lock is None and os.environ.get("AWS_S3_LOCKING_PROVIDER"):
        where = "environment variable AWS_S3_LOCKING_PROVIDER"
    if where is not None:
        raise ConfigError(
            f"{where}: deltalake >= 1.0 ignores the DynamoDB locking provider, so it would "
            "not protect concurrent writers; remove it: commits use the store's conditional "
            "writes (AWS S3, MinIO, Cloudflare R2 and SeaweedFS have them; with MinIO, R2 or "
            'SeaweedFS also set conditional_put = "etag")'
        )


#: What an operating system says when it refuses a write for good (permission, a
#: read-only mount), in the words deltalake passes on (Rust's `io::Error`, shown as
#: "Permission denied (os error 13)" or as `Os { code: 30, kind: ReadOnlyFilesystem }`).
_REFUSED_WRITES = (
    "Permission denied",
    "PermissionDenied",
    "Operation not permitted",
    "Read-only file system",
    "ReadOnlyFilesystem",
)


def writes_refused(text: str) -> bool:
    """True when an error's text says the filesystem refuses writes for good."""
    return any(marker in text for marker in _REFUSED_WRITES)


def explain(uri: str, exc: BaseException) -> StoreError:
    """A one-line :class:`StoreError` for an object-store failure of ``uri``.

    deltalake's errors are many lines of nested causes with colour codes and the
    server's XML; this keeps the cause and adds what to change. A failure it does not
    recognise (:func:`recognize`) is said as the store said it, with ``config`` False.
    """
    known = recognize(uri, exc)
    if known is not None:
        return known
    text = _ANSI.sub("", str(exc))
    # The first line that says something, without the nesting arrows; then the HTTP
    # status, which says most ("503 Service Unavailable"), else the first error line.
    lines = [line.strip(" ↳") for line in text.splitlines() if line.strip(" ↳")]
    first = lines[0] if lines else type(exc).__name__
    status = next((line for line in lines[1:] if re.match(r"^\d{3} [A-Za-z]", line)), "")
    detail = status or next((line for line in lines[1:] if "error" in line.lower()), "")
    return StoreError(f"{mask_uri(uri)}: {first}{'; ' + detail if detail else ''}", config=False)


def recognize(uri: str, exc: BaseException) -> StoreError | None:
    """The :class:`StoreError` for a failure of ``uri`` whose cause is the store's, or None.

    A missing bucket, refused credentials or a refused write (``config``: a person must
    act) and an unreachable store (an outage, retried). None when the words do not say
    the store is at fault: a writer's error may then be the rows' (the sink asks
    ``check_rows``).
    """
    text = _ANSI.sub("", str(exc))
    shown = mask_uri(uri)
    family = _family(uri)
    code = re.search(r"<Code>([^<]+)</Code>", text)
    code_name = code.group(1) if code else ""
    if code_name in ("NoSuchBucket", "ContainerNotFound") or (
        "bucket does not exist" in text.lower()
    ):
        bucket = urlsplit(uri).netloc
        return StoreError(
            f"{shown}: bucket {bucket!r} does not exist (create it, or correct sink.uri)",
            config=True,
        )
    if code_name in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AuthenticationFailed") or (
        "403 Forbidden" in text or "401 Unauthorized" in text or "necessary privileges" in text
    ):
        reason = code_name or "access denied"
        return StoreError(
            f"{shown}: the store refused the credentials ({reason}); check "
            f"{_CREDENTIAL_OPTIONS[family]} in [sink.storage_options] or the environment",
            config=True,
        )
    if "error sending request" in text or "Connection refused" in text or "dns error" in text:
        hint = "AWS_ENDPOINT_URL" if family == "s3" else "the endpoint"
        return StoreError(
            f"{shown}: cannot reach the object store; check {hint} in "
            "[sink.storage_options] (or the environment) and the network",
            config=False,
        )
    if writes_refused(text):
        lines = [line.strip(" ↳") for line in text.splitlines() if line.strip(" ↳")]
        first = lines[0] if lines else type(exc).__name__
        return StoreError(
            f"{shown}: writes are refused ({first}): make the folder writable (its "
            "permissions, a read-only mount) or point sink.uri elsewhere",
            config=True,
        )
    return None
