"""Calls to this application's own HTTP API made in-process, as a browser's request would be made over the
network: through the same FHIR router, the same /analytics routes, the same token check, access policy and
audit. The pages never read the store: they can show nothing the signed-in person's token could not fetch.

The call goes to the outer application (`request.scope["app"]`) with the person's access token as a bearer
header and the browser's own address, so the audit trail records the person and where they were."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            return None

    def problem(self) -> str:
        """The diagnostics of an OperationOutcome (or an OAuth error's description), for the page to show."""
        data = self.json()
        if isinstance(data, dict):
            issues = data.get("issue") or []
            text = "; ".join(str(i.get("diagnostics") or i.get("code") or "") for i in issues if isinstance(i, dict))
            return text or str(data.get("error_description") or data.get("error") or "")
        return ""


class Api:
    """The API as the signed-in person reaches it. `token` None: an anonymous caller."""

    def __init__(self, request: Request, token: str | None) -> None:
        self.app = request.scope["app"]
        self.token = token
        self.host = request.headers.get("host", "localhost").encode("latin-1")
        self.scheme = request.url.scheme
        self.client = request.scope.get("client")

    async def call(self, method: str, path: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None,
                   body: Any = None, headers: dict[str, str] | None = None, form: bool = False) -> Answer:
        query = urlencode(params or [], doseq=True).encode("ascii")
        head: list[tuple[bytes, bytes]] = [(b"host", self.host), (b"accept", b"application/fhir+json")]
        if self.token:
            head.append((b"authorization", b"Bearer " + self.token.encode("ascii")))
        payload = b""
        if body is not None:
            if form:
                payload = urlencode(body).encode("utf-8")
                head.append((b"content-type", b"application/x-www-form-urlencoded"))
            else:
                payload = orjson.dumps(body)
                head.append((b"content-type", b"application/fhir+json"))
            head.append((b"content-length", str(len(payload)).encode()))
        for key, value in (headers or {}).items():
            head.append((key.lower().encode("latin-1"), value.encode("utf-8")))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": self.scheme, "path": path, "raw_path": path.encode("utf-8"), "query_string": query,
                 "root_path": "", "headers": head, "client": self.client, "server": None}
        sent = False
        status, chunks, ctype = 500, [], ""

        async def receive() -> dict:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        async def send(message: dict) -> None:
            nonlocal status, ctype
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers") or []:
                    if key.lower() == b"content-type":
                        ctype = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return Answer(status, b"".join(chunks), ctype)

    def serves(self, path: str, method: str = "GET") -> bool:
        """Whether the application has a route for `method path` (a path without parameters), read from its
        route table: a page asks this rather than sending a request it knows to be incomplete, which would
        be answered, and audited, as a refusal."""
        return any(p == path and method in (m or ()) for p, m in _routes(getattr(self.app, "routes", []), ""))

    async def get(self, path: str, params: Any = None, headers: dict[str, str] | None = None) -> Answer:
        return await self.call("GET", path, params, headers=headers)

    async def fhir(self, path: str, params: Any = None, headers: dict[str, str] | None = None) -> Answer:
        return await self.get("/fhir/" + path.lstrip("/"), params, headers)

    async def entries(self, path: str, params: Any = None) -> tuple[list[dict[str, Any]], Answer]:
        """The resources a FHIR search answers (matches only, not included ones), and the answer."""
        answer = await self.fhir(path, params)
        data = answer.json() if answer.ok else None
        found = [e["resource"] for e in (data or {}).get("entry") or []
                 if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                 and (e.get("search") or {}).get("mode", "match") == "match"]
        return found, answer


def _routes(routes: list[Any], prefix: str) -> list[tuple[str, set[str] | None]]:
    """(path, methods) of every route, those of mounted applications with their mount's prefix."""
    found: list[tuple[str, set[str] | None]] = []
    for route in routes:
        path = getattr(route, "path", None)
        if path is None:
            continue
        if hasattr(route, "methods") and not hasattr(route, "routes"):
            found.append((prefix + path, route.methods))
        else:  # a Mount: its application's own routes, when it has them
            inner = getattr(route, "routes", None) or getattr(getattr(route, "app", None), "routes", None) or []
            found.extend(_routes(inner, prefix + path))
    return found


def unavailable(answer: Answer) -> bool:
    """Whether an answer means the operation or route is not on this server (yet): the page then says the
    feature is not available rather than that something failed."""
    if answer.status == 404 and "json" in answer.content_type:
        text = answer.problem().lower()
        return not text or "operation" in text or "unknown" in text or "not found" in text or "no route" in text
    return answer.status in (404, 405, 501)
