"""Per-deployment network settings against real loopback servers: an HTTP forward proxy
(absolute-form requests for http://, CONNECT tunnels for https://), a TLS upstream whose
certificate a throwaway CA (trustme) signed, proxies from the environment, and
``verify=False``.

Chat bodies follow https://platform.openai.com/docs/api-reference/chat/create (the
fakes speak it); the proxy follows RFC 9110 §9.3.6 (CONNECT) and §7.1 (absolute-form).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from interlock import APIConnectionError, ConfigError, Deployment, RetryPolicy, Router
from interlock.providers.network import Network, environment_proxy, network_for
from interlock.testing import FakeUpstream

USER = [{"role": "user", "content": "hi"}]
ONCE = RetryPolicy(max_attempts=1, max_wait=0)
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class ForwardProxy:
    """A minimal HTTP proxy on 127.0.0.1: relays absolute-form requests and CONNECT
    tunnels byte for byte, and logs what it was asked (method, target, auth header)."""

    def __init__(self, credentials: str | None = None) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        self._credentials = credentials
        self._server: asyncio.Server | None = None
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        close_all(self.writers)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        auth = next((v for k, v in headers.items() if k.lower() == "proxy-authorization"), None)
        self.requests.append((method, target, auth))
        if self._credentials is not None:
            expected = "Basic " + base64.b64encode(self._credentials.encode()).decode()
            if auth != expected:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")  # fmt: skip
                await writer.drain()
                writer.close()
                return
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            self.writers.add(up_writer)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            rest = b""
        else:
            # absolute-form: http://host:port/path -> origin-form to the upstream
            without_scheme = target.split("://", 1)[1]
            hostport, _, path = without_scheme.partition("/")
            host, port = hostport.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            self.writers.add(up_writer)
            kept = [ln for ln in lines[1:] if not ln.lower().startswith("proxy-")]
            rest = (f"{method} /{path} HTTP/1.1\r\n" + "\r\n".join(kept)).encode("latin-1")
        up_writer.write(rest)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            dst.close()


def close_all(writers: set[asyncio.StreamWriter]) -> None:
    # Python 3.11's Server has no close_clients(): close the connections we relay.
    for w in writers:
        with contextlib.suppress(RuntimeError):
            w.close()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@contextlib.asynccontextmanager
async def tls_upstream(ca: trustme.CA) -> AsyncIterator[tuple[FakeUpstream, str]]:
    """A FakeUpstream behind a TLS terminator on 127.0.0.1 with a certificate for
    ``localhost`` signed by `ca`; yields the fake and the https api_base."""
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    writers: set[asyncio.StreamWriter] = set()
    async with FakeUpstream() as up:

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.add(writer)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", up.port)
            writers.add(up_writer)
            await asyncio.gather(
                ForwardProxy._pipe(reader, up_writer), ForwardProxy._pipe(up_reader, writer)
            )

        server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            yield up, f"https://localhost:{port}/v1"
        finally:
            server.close()
            close_all(writers)
            await server.wait_closed()


async def ask(router: Router, group: str = "g") -> str:
    r = await router.acompletion(group, USER)
    return str(r.choices[0].message.content)


async def test_a_deployment_proxy_carries_its_requests(no_proxy_env: None) -> None:
    async with FakeUpstream() as up, ForwardProxy() as proxy:
        router = Router(
            [
                Deployment(group="g", model="m", api_base=up.url, proxy=proxy.url, id="via"),
                Deployment(group="d", model="m", api_base=up.url, id="direct"),
            ],
            retry=ONCE,
        )
        async with router:
            assert await ask(router) == "Hello from FakeUpstream."
            assert await ask(router, "d") == "Hello from FakeUpstream."
    # Only the proxied deployment's request went through the proxy, in absolute form.
    assert [(m, t) for m, t, _ in proxy.requests] == [("POST", f"{up.url}/chat/completions")]
    assert up.request_count == 2


async def test_proxy_credentials_are_sent_and_never_shown(no_proxy_env: None) -> None:
    async with FakeUpstream() as up, ForwardProxy("alice:pr0xy-s3cret-pw") as proxy:
        url = f"http://alice:pr0xy-s3cret-pw@127.0.0.1:{proxy.port}"
        d = Deployment(group="g", model="m", api_base=up.url, proxy=url)
        assert "pr0xy-s3cret-pw" not in repr(d)
        router = Router([d], retry=ONCE)
        async with router:
            assert await ask(router) == "Hello from FakeUpstream."
        assert "pr0xy-s3cret-pw" not in repr(router)
        assert "pr0xy-s3cret-pw" not in repr(network_for(d, True))
    assert proxy.requests[0][2] == "Basic " + base64.b64encode(b"alice:pr0xy-s3cret-pw").decode()


async def test_a_refused_proxy_is_a_connection_error_naming_no_password(
    no_proxy_env: None,
) -> None:
    async with FakeUpstream() as up, ForwardProxy() as proxy:
        port = proxy.port
    url = f"http://bob:an0ther-s3cret@127.0.0.1:{port}"  # nothing listens there now
    async with Router([Deployment(group="g", model="m", api_base=up.url, proxy=url)],
                      retry=ONCE) as router:  # fmt: skip
        with pytest.raises(APIConnectionError) as info:
            await ask(router)
    assert "an0ther-s3cret" not in str(info.value)


async def test_environment_proxies_are_honoured_by_default(
    monkeypatch: pytest.MonkeyPatch, no_proxy_env: None
) -> None:
    async with FakeUpstream() as up, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        deployments = [
            Deployment(group="g", model="m", api_base=up.url),
            Deployment(group="x", model="m", api_base=up.url, proxy="direct"),
        ]
        async with Router(deployments, retry=ONCE) as router:
            await ask(router)
            await ask(router, "x")  # "direct": never the environment's proxy
        assert len(proxy.requests) == 1
        async with Router(deployments, retry=ONCE, trust_env=False) as router:
            await ask(router)
        assert len(proxy.requests) == 1
        # NO_PROXY names the host: direct.
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        async with Router(deployments, retry=ONCE) as router:
            await ask(router)
        assert len(proxy.requests) == 1
    assert up.request_count == 4


def test_environment_proxy_resolution(monkeypatch: pytest.MonkeyPatch, no_proxy_env: None) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", ".internal")
    assert environment_proxy("https://api.openai.com/v1") == "http://proxy.corp:3128"
    assert environment_proxy("http://api.openai.com/v1") is None  # no HTTP_PROXY
    assert environment_proxy("https://llm.internal/v1") is None
    d = Deployment(group="g", model="m")
    assert network_for(d, True) == Network("http://proxy.corp:3128")
    assert network_for(d, False) == Network()
    assert network_for(d.model_copy(update={"proxy": "direct"}), True).is_default


@pytest.fixture
def bundle(ca: trustme.CA, tmp_path: Path) -> Path:
    """`ca`'s certificate as a CA bundle file."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


async def test_a_private_ca_bundle_is_trusted(
    ca: trustme.CA, bundle: Path, no_proxy_env: None
) -> None:
    async with tls_upstream(ca) as (up, base):
        trusted = Deployment(group="g", model="m", api_base=base, ca_bundle=str(bundle))
        untrusted = Deployment(group="u", model="m", api_base=base)
        async with Router([trusted, untrusted], retry=ONCE) as router:
            assert await ask(router) == "Hello from FakeUpstream."
            # The system's trust store does not know the private CA.
            with pytest.raises(APIConnectionError, match=r"(?i)certificate|ssl"):
                await ask(router, "u")
    assert up.request_count == 1


async def test_requests_on_a_kept_tls_connection_take_the_direct_send(
    ca: trustme.CA, bundle: Path, no_proxy_env: None
) -> None:
    async with tls_upstream(ca) as (up, base):
        d = Deployment(group="g", model="m", id="tls", api_base=base, ca_bundle=str(bundle))
        async with Router([d], retry=ONCE) as router:
            for _ in range(3):  # the first opens the session; the rest go out directly
                assert await ask(router) == "Hello from FakeUpstream."
            networks = router.parts.http.networks
            assert networks is not None
            assert networks["tls"].direct is not None
            r = await router.acompletion("g", USER, stream=True)
            assert [c async for c in r]  # a stream, on the same kept connection
    assert up.request_count == 4


async def test_verify_false_accepts_an_unknown_certificate(
    ca: trustme.CA, no_proxy_env: None
) -> None:
    async with tls_upstream(ca) as (_, base):
        d = Deployment(group="g", model="m", api_base=base, verify=False)
        async with Router([d], retry=ONCE) as router:
            assert await ask(router) == "Hello from FakeUpstream."


async def test_https_through_a_proxy_tunnel_with_a_ca_bundle(
    ca: trustme.CA, tmp_path: Path, no_proxy_env: None
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    async with tls_upstream(ca) as (_, base), ForwardProxy() as proxy:
        d = Deployment(group="g", model="m", api_base=base, ca_bundle=str(bundle),
                       proxy=proxy.url)  # fmt: skip
        async with Router([d], retry=ONCE) as router:
            for _ in range(3):
                assert await ask(router) == "Hello from FakeUpstream."
    # One tunnel, reused by the keep-alive pool.
    assert [m for m, _, _ in proxy.requests] == ["CONNECT"]
    assert proxy.requests[0][1] == base.removeprefix("https://").removesuffix("/v1")


def test_network_settings_are_checked_when_the_router_is_built(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"deployments\[0\].ca_bundle"):
        Router([Deployment(group="g", model="m", ca_bundle=str(tmp_path / "missing.pem"))])
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="ca_bundle"):
        Router([Deployment(group="g", model="m", ca_bundle=str(tmp_path / "junk.pem"))])
    with pytest.raises(ConfigError, match="verify=false"):
        Deployment(group="g", model="m", ca_bundle="/x.pem", verify=False)
    with pytest.raises(ConfigError, match="proxy") as info:
        Deployment(group="g", model="m", proxy="socks5://u:hunter2-secret@h:1080")
    assert "hunter2" not in str(info.value)


def test_one_session_per_distinct_network_setting(tmp_path: Path) -> None:
    deployments = [
        Deployment(group="g", model="m", id=f"p{i}", proxy="http://127.0.0.1:9") for i in range(3)
    ] + [Deployment(group="g", model="m", id="plain")]
    router = Router(deployments)
    http = router.parts.http
    assert http.networks is not None
    assert set(http.networks) == {"p0", "p1", "p2"}  # the plain one uses the shared session
    assert len({id(c) for c in http.networks.values()}) == 1
    assert Router([Deployment(group="g", model="m")], trust_env=False).parts.http.networks is None
