"""Forwarded headers, believed only from the proxies the operator names (`serve --forwarded-allow-ips`).

Why: the client address keys the rate limit and the audit trail, and the Host header builds `Location`, Bundle
links and paging URLs. A caller who could set `X-Forwarded-For` would get a fresh rate-limit bucket per request
and write any address into the trail; one who could set `Host` would have the server hand out links to a site
of theirs. So, for each request (ASGI middleware, outside the whole application):

* from a trusted proxy: the client address is the right-most `X-Forwarded-For` entry that is not itself a
  trusted proxy, the scheme comes from `X-Forwarded-Proto` and the host from `X-Forwarded-Host` (else the
  proxy's `Host`);
* from anyone else (the default: no proxy is trusted): forwarded headers are dropped, the address is the
  connection's, and the scheme and host are those of the public URL, whatever `Host` said.
"""
from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

_FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded")


def parse_trusted(text: str | None) -> tuple[bool, tuple]:
    """`--forwarded-allow-ips`: comma-separated addresses or networks (CIDR), or `*` for any peer."""
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    if "*" in items:
        return True, ()
    nets = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"--forwarded-allow-ips takes IP addresses or networks (10.0.0.0/8) or '*', "
                             f"not {item!r}") from None
    return False, tuple(nets)


class TrustedProxies:
    def __init__(self, app: Any, public_url: str, trusted: str | None = None) -> None:
        self.app = app
        self.any, self.nets = parse_trusted(trusted)
        url = urlsplit(public_url)
        self.scheme, self.host = url.scheme or "http", url.netloc.encode("latin-1")

    def trusts(self, address: str | None) -> bool:
        if self.any:
            return True
        if not address or not self.nets:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.nets)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = self.rewrite(scope)
        await self.app(scope, receive, send)

    def rewrite(self, scope: dict) -> dict:
        scope = dict(scope)
        peer = scope.get("client")
        headers = scope.get("headers") or []
        ws = scope["type"] == "websocket"
        if peer and self.trusts(peer[0]):
            values: dict[bytes, list[str]] = {}
            for k, v in headers:
                if k in _FORWARDED:
                    values.setdefault(k, []).append(v.decode("latin-1"))
            hops = [h.strip() for v in values.get(b"x-forwarded-for", []) for h in v.split(",") if h.strip()]
            while hops and self.trusts(hops[-1]):
                hops.pop()
            if hops:
                scope["client"] = (hops[-1], 0)
            proto = ",".join(values.get(b"x-forwarded-proto", [])).split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = ("wss" if proto == "https" else "ws") if ws else proto
            host = ",".join(values.get(b"x-forwarded-host", [])).split(",")[-1].strip()
            if host:
                scope["headers"] = [(k, v) for k, v in headers if k != b"host"] + [(b"host", host.encode("latin-1"))]
            return scope
        scope["headers"] = [(k, v) for k, v in headers if k != b"host" and k not in _FORWARDED] + [(b"host", self.host)]
        scope["scheme"] = ("wss" if self.scheme == "https" else "ws") if ws else self.scheme
        return scope
