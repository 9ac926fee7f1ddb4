"""Per-deployment network settings: the proxy and the TLS trust a deployment's requests
use, resolved once when the router is built.

Each distinct setting gets its own aiohttp session and connection pool (made through
`HttpClient.route`); a request only picks its deployment's client. aiohttp's own
``trust_env=True`` was not used: it reads the environment and matches ``NO_PROXY`` on
every request, and it cannot be combined with a proxy of the deployment's own.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from interlock.config import Deployment
from interlock.errors import ConfigError
from interlock.providers.http import HttpClient

__all__ = ["Network", "configure_networks", "environment_proxy", "network_for"]


@dataclass(frozen=True, slots=True)
class Network:
    """How one deployment's requests reach it. The default (no proxy, the system's
    trust store) uses the router's shared session."""

    proxy: str | None = None
    ca_bundle: str | None = None
    verify: bool = True

    @property
    def is_default(self) -> bool:
        return self.proxy is None and self.ca_bundle is None and self.verify

    def __repr__(self) -> str:
        # The proxy URL may carry a password: show its host only.
        host = urlsplit(self.proxy).hostname if self.proxy else None
        return f"Network(proxy={host!r}, ca_bundle={self.ca_bundle!r}, verify={self.verify})"


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (``<scheme>_proxy`` or ``all_proxy``,
    upper or lower case, unless ``no_proxy`` matches its host), as urllib, requests and
    aiohttp read it."""
    proxies = urllib.request.getproxies()
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def network_for(d: Deployment, trust_env: bool) -> Network:
    if d.proxy == "direct":
        proxy = None
    elif d.proxy is not None:
        proxy = d.proxy
    else:
        proxy = environment_proxy(d.api_base) if trust_env else None
    return Network(proxy, d.ca_bundle, d.verify)


def _ssl(network: Network, index: int) -> ssl.SSLContext | bool:
    if not network.verify:
        return False
    if network.ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=network.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        problem = f"cannot be loaded as PEM certificates ({type(exc).__name__}: {exc})"
        raise ConfigError([(f"deployments[{index}].ca_bundle", problem)]) from None


def configure_networks(
    http: HttpClient, deployments: Sequence[Deployment], trust_env: bool
) -> None:
    """Give every deployment whose network is not the default a client of its own (one
    per distinct setting, sharing its pool)."""
    contexts: dict[tuple[str | None, bool], ssl.SSLContext | bool] = {}
    for i, d in enumerate(deployments):
        network = network_for(d, trust_env)
        if network.is_default:
            continue
        tls = (network.ca_bundle, network.verify)
        if tls not in contexts:
            contexts[tls] = _ssl(network, i)
        http.route(d.id or "", network, proxy=network.proxy, ssl=contexts[tls])
