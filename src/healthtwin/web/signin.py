"""Signing in and out: the SMART authorization-code flow with PKCE, run by the server for the browser.

/app/login makes a state and a PKCE verifier (kept in an HttpOnly cookie), and sends the browser to the
built-in SMART login (/auth/authorize) as the registered public client of these pages; /app/callback checks
the state, redeems the code at /auth/token (in-process, the verifier never leaves the server) and starts the
session; /app/logout revokes the token at /auth/revoke and ends the session. The pages' client is registered
once per public URL, with that URL's /app/callback as its only redirect URI.

A second way in, when an external OpenID Connect provider is configured: external_signin.py."""
from __future__ import annotations

import hashlib
import logging
import hmac
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from . import session as sessions
from .frame import HEADERS, Page, page

log = logging.getLogger("healthtwin.web")
SCOPES = "openid fhirUser launch/patient user/*.cruds"
HOME = {"citizen": "/app/me", "clinician": "/app/clinic", "ministry": "/app/ministry",
        "epidemiology": "/app/ministry/alerts"}


class WebClient:
    """The pages' public SMART client for one public URL (registered at start if absent)."""

    def __init__(self, store: Any, public_url: str) -> None:
        self.store = store
        self.public_url = public_url.rstrip("/")
        self.redirect_uri = self.public_url + "/app/callback"
        self.client_id = "healthtwin-web-" + hashlib.sha256(self.public_url.encode()).hexdigest()[:12]

    def ensure(self) -> None:
        from ..security.clients import add_client, get_client
        if get_client(self.store, self.client_id) is not None:
            return
        try:
            add_client(self.store, "Health Twin", scopes=SCOPES, redirect_uris=[self.redirect_uri],
                       client_id=self.client_id)
        except ValueError as exc:  # a public URL that is neither https nor localhost: no sign-in to the pages
            log.warning("the web pages cannot sign anyone in: %s (set HEALTHTWIN_PUBLIC_URL to an https URL)", exc)
        except Exception:  # another worker registered it at the same moment
            if get_client(self.store, self.client_id) is None:
                raise


def routes(client: WebClient, external: Any = None) -> list:
    from starlette.routing import Route

    @page(public=True)
    async def home(pg: Page) -> Response:
        if pg.session is not None:
            target = HOME.get(pg.session.persona)
            if target:
                return RedirectResponse(target, 303, headers=HEADERS)
        return pg.render("home.html", next=sessions.safe_next(pg.request.query_params.get("next")),
                         external=external.display_name if external is not None else None,
                         expired=pg.request.query_params.get("expired") == "1",
                         signed_out=pg.request.query_params.get("signed_out") == "1")

    async def login(request: Request) -> Response:
        pg = Page(request, None)
        state, verifier, challenge = sessions.new_login()
        params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
                  "scope": SCOPES, "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
                  "aud": client.public_url + "/fhir", "ui_locales": pg.lang}
        response = RedirectResponse("/auth/authorize?" + urlencode(params), 303, headers=HEADERS)
        sessions.remember_login(response, request, state, verifier,
                                sessions.safe_next(request.query_params.get("next")))
        return response

    async def callback(request: Request) -> Response:
        pg = Page(request, None)
        under_way = sessions.login_under_way(request)
        state = request.query_params.get("state") or ""
        if under_way is None or not hmac.compare_digest(under_way[0], state):
            return pg.message("signin.failed", pg.tr.t("signin.state_mismatch"))
        if request.query_params.get("error"):
            return pg.message("signin.failed", pg.tr.t("signin.refused"))
        answer = await pg.api.call("POST", "/auth/token", body={
            "grant_type": "authorization_code", "code": request.query_params.get("code") or "",
            "redirect_uri": client.redirect_uri, "code_verifier": under_way[1], "client_id": client.client_id},
            form=True)
        token = (answer.json() or {}).get("access_token") if answer.ok else None
        if not token:
            return pg.message("signin.failed", pg.tr.t("signin.refused"))
        after = under_way[2]
        persona = sessions.Session(token, sessions.claims_of(token) or {}).persona
        if after == sessions.PATH + "/":
            after = HOME.get(persona, after)
        response = RedirectResponse(after, 303, headers=HEADERS)
        sessions.start(response, request, token)
        return response

    @page()
    async def logout(pg: Page) -> Response:
        await pg.api.call("POST", "/auth/revoke", body={"token": pg.session.token, "client_id": client.client_id},
                          form=True)
        response = RedirectResponse(sessions.PATH + "/?signed_out=1", 303, headers=HEADERS)
        sessions.end(response)
        return response

    from .external_signin import routes as external_routes
    return [*external_routes(client, external), Route("/", home, methods=["GET"]), Route("/login", login, methods=["GET"]),
            Route("/callback", callback, methods=["GET"]), Route("/logout", logout, methods=["POST"])]
