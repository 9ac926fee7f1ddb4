"""AWS credentials leases and signing."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from interlock import Deployment
from interlock.providers.aws import AwsCredentials, FrozenCredentials, sign

SECRET = "unit/secret/key/EXAMPLE"
TOKEN = "unit-session-token-EXAMPLE"


def test_sign_adds_sigv4_headers_and_never_logs_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    creds = FrozenCredentials("AKIDUNIT", SECRET, TOKEN)
    url = "https://bedrock-runtime.eu-west-1.amazonaws.com/model/a.b-v1%3A0/converse"
    headers = sign(creds, "eu-west-1", url, b"{}", {"Content-Type": "application/json"})
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDUNIT/")
    assert "/eu-west-1/bedrock/aws4_request" in headers["Authorization"]
    assert headers["X-Amz-Security-Token"] == TOKEN
    assert "X-Amz-Date" in headers
    assert TOKEN not in caplog.text
    assert SECRET not in repr(creds)
    assert creds.secrets == (SECRET, TOKEN)


class Refreshable:
    """Stands in for botocore's RefreshableCredentials."""

    def __init__(self) -> None:
        self.remaining = 3600.0
        self.calls = 0

    def get_frozen_credentials(self) -> Any:
        self.calls += 1
        return FrozenCredentials("AKID", f"secret-{self.calls}", "tok")

    def refresh_needed(self, refresh_in: float | None = None) -> bool:
        return self.remaining < (900 if refresh_in is None else refresh_in)


async def test_temporary_credentials_follow_botocores_refresh_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = Refreshable()
    monkeypatch.setattr("interlock.providers.aws._source", lambda d: source)
    d = Deployment(group="g", model="m", provider="bedrock", aws_region="us-east-1")
    cache = AwsCredentials().for_deployment(d)
    assert (await cache.get("b")).secret_key == "secret-1"
    source.remaining = 600  # in the advisory window: the old ones, a refresh started
    assert (await cache.get("b")).secret_key == "secret-1"
    for _ in range(20):
        if source.calls == 2:
            break
        await asyncio.sleep(0.01)
    assert source.calls == 2
    source.remaining = 30  # too close: requests wait for fresh ones
    assert (await cache.get("b")).secret_key == "secret-3"
