"""AWS credentials and Signature Version 4, for Bedrock, done by botocore itself.

Credentials come from botocore's own chain (environment, shared config and credentials
files, assumed roles, SSO, web identity, container and instance metadata) or from a
profile or explicit keys on the deployment (``interlock[bedrock]``). botocore resolves
and refreshes them with blocking I/O, so that runs in a worker thread, and one
`CredentialCache` per source refreshes temporary credentials in the background inside
botocore's own advisory window; requests sign with the frozen credentials they got.
Signing is `botocore.auth.SigV4Auth` over exactly the URL and bytes that are sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from interlock.config import Deployment
from interlock.providers.credentials import CredentialCache, Lease, require

__all__ = ["SIGNING_NAME", "AwsCredentials", "FrozenCredentials", "sign"]

SIGNING_NAME = "bedrock"
"""The SigV4 service name of bedrock-runtime (its endpoint prefix differs)."""
MIN_VALID = 60.0
"""Temporary credentials with less than this left are not used: requests wait for the
refresh (botocore refreshes in the background from 15 minutes before expiry)."""


class FrozenCredentials(NamedTuple):
    """One consistent set of credentials (botocore's ReadOnlyCredentials)."""

    access_key: str
    secret_key: str
    token: str | None

    def __repr__(self) -> str:
        return "FrozenCredentials(…)"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.secret_key, self.token) if s)


def _source(d: Deployment) -> Any:
    """botocore credentials for the deployment: explicit keys, a profile, or the chain."""
    if d.aws_access_key_id is not None and d.aws_secret_access_key is not None:
        credentials = require("botocore.credentials", "bedrock")
        token = d.aws_session_token.get_secret_value() if d.aws_session_token else None
        return credentials.Credentials(
            d.aws_access_key_id, d.aws_secret_access_key.get_secret_value(), token
        )
    session = require("botocore.session", "bedrock").Session(profile=d.aws_profile)
    found = session.get_credentials()
    if found is None:
        raise LookupError(
            "no AWS credentials found (environment, config files, roles); set them there, "
            "or aws_profile / aws_access_key_id on the deployment"
        )
    return found


class AwsCredentials:
    """One `CredentialCache` per credential source (profile or access key), shared by
    the deployments that use it."""

    __slots__ = ("_caches",)

    def __init__(self) -> None:
        self._caches: dict[tuple[str | None, str | None], CredentialCache[FrozenCredentials]] = {}

    def for_deployment(self, d: Deployment) -> CredentialCache[FrozenCredentials]:
        key = (d.aws_profile, d.aws_access_key_id)
        cache = self._caches.get(key)
        if cache is None:
            what = "aws credentials" + (f" (profile {d.aws_profile})" if d.aws_profile else "")
            cache = self._caches[key] = CredentialCache(what, _fetcher(d))
        return cache

    def close(self) -> None:
        for cache in self._caches.values():
            cache.close()

    def __repr__(self) -> str:
        return f"AwsCredentials({len(self._caches)} source(s))"


def _fetcher(d: Deployment) -> Any:
    state: dict[str, Any] = {}

    def load() -> tuple[Any, FrozenCredentials]:
        source = state.get("source")
        if source is None:
            source = state["source"] = _source(d)
        # For temporary credentials this refreshes them when botocore says they are due.
        frozen = source.get_frozen_credentials()
        return source, FrozenCredentials(frozen.access_key, frozen.secret_key, frozen.token)

    async def fetch() -> Lease[FrozenCredentials]:
        source, frozen = await asyncio.to_thread(load)
        refresh_needed = getattr(source, "refresh_needed", None)
        if refresh_needed is None:  # long-term keys never expire
            return Lease(frozen)
        return Lease(frozen, refresh_needed, lambda: bool(refresh_needed(MIN_VALID)))

    return fetch


class _NoSigningDetails(logging.Filter):
    """Drops botocore's debug records of the canonical request and the string to sign:
    they hold the session token (the ``x-amz-security-token`` header) in clear text."""

    _PREFIXES = ("CanonicalRequest", "StringToSign", "Signature")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self._PREFIXES))


_FILTER = _NoSigningDetails()


def _quiet_signer() -> None:
    logger = logging.getLogger("botocore.auth")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def sign(
    credentials: FrozenCredentials, region: str, url: str, body: bytes, headers: Mapping[str, str]
) -> dict[str, str]:
    """`headers` plus the SigV4 ones (Authorization, X-Amz-Date, X-Amz-Security-Token)
    for a POST of `body` to `url`, which must be exactly the URL that goes on the wire
    (already percent-encoded: the signature covers the path as sent)."""
    auth = require("botocore.auth", "bedrock")
    _quiet_signer()
    awsrequest = require("botocore.awsrequest", "bedrock")
    request = awsrequest.AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    auth.SigV4Auth(credentials, SIGNING_NAME, region).add_auth(request)
    return dict(request.headers.items())
