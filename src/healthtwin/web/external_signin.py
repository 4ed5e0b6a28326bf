"""Signing a citizen in through an external OpenID Connect provider (security/oidc_login.py does the protocol).

/app/login/external keeps the sign-in's state, nonce and PKCE verifier on the server and sends the browser to
the provider with only an HttpOnly cookie binding it to that sign-in; /app/callback/external is where the
provider sends it back. There the code is redeemed and the id_token verified server to server, the person is
mapped to their record, and the session starts with an access token of this server's, minted as the built-in
login mints it, so every page then works exactly as after the built-in login. A refused sign-in (an unknown
or replayed state, a wrong nonce, an expired or badly signed id_token, a person with no record here, a
provider that cannot be reached) shows a page that says what happened, in the page's language, and is in the
audit trail."""
from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from . import session as sessions
from .frame import HEADERS, Page

BROWSER = "ht_oidc"  # the cookie binding the provider's answer to the browser that began the sign-in
CALLBACK = "/callback/external"
REASONS = ("state", "provider", "refused", "signature", "expired", "nonce", "token", "no_claim", "unknown_subject",
           "ambiguous", "disabled", "not_recorded", "slow")


def routes(client: Any, external: Any) -> list[Route]:
    if external is None:
        return []
    redirect_uri = client.public_url + sessions.PATH + CALLBACK

    def too_fast(request: Request) -> bool:
        """Each start keeps a row and each answer calls the provider: limited per address as the token
        endpoint is (a burst, then a few a second), so neither can be flooded."""
        address = request.client.host if request.client else "unknown"
        return external.smart.token_limiter.check("oidc:" + address) is not None

    async def begin(request: Request) -> Response:
        from ..security.oidc_provider import ProviderError
        pg = Page(request, None)
        if too_fast(request):
            return refused(pg, "slow")
        after = sessions.safe_next(request.query_params.get("next"))
        try:
            url, browser = await run_in_threadpool(external.begin, redirect_uri, after, pg.lang)
        except ProviderError:
            return refused(pg, "provider")
        response = RedirectResponse(url, 303, headers=HEADERS)
        response.set_cookie(BROWSER, browser, max_age=600, path=sessions.PATH + CALLBACK, httponly=True,
                            samesite="lax", secure=request.url.scheme == "https")
        return response

    async def callback(request: Request) -> Response:
        from ..security.audit import AuditError
        from ..security.oidc_login import SignInRefused
        pg = Page(request, None)
        if too_fast(request):
            return refused(pg, "slow")
        params = {k: v for k, v in request.query_params.items() if k in ("state", "code", "error", "error_description")}
        address = request.client.host if request.client else None
        try:
            body, after = await run_in_threadpool(external.finish, params, request.cookies.get(BROWSER), redirect_uri,
                                                  client.client_id, address)
        except SignInRefused as exc:
            return _to_refused(exc.reason, pg.lang)
        except AuditError:
            return _to_refused("not_recorded", pg.lang)
        token = body["access_token"]
        persona = sessions.Session(token, sessions.claims_of(token) or {}).persona
        from .signin import HOME
        if after == sessions.PATH + "/":
            after = HOME.get(persona, after)
        response = RedirectResponse(after, 303, headers=HEADERS)
        sessions.start(response, request, token)
        response.delete_cookie(BROWSER, path=sessions.PATH + CALLBACK)
        return response

    async def refused_page(request: Request) -> Response:
        reason = request.query_params.get("reason") or ""
        return refused(Page(request, None), reason if reason in REASONS else "token")

    return [Route("/login/external", begin, methods=["GET"]), Route(CALLBACK, callback, methods=["GET"]),
            Route("/login/refused", refused_page, methods=["GET"])]


def _to_refused(reason: str, lang: str) -> Response:
    """Away from the callback's URL (its code and state are spent: reloading it, or switching the page's
    language, would only say the state is unknown) to the page that says why."""
    response = RedirectResponse(f"{sessions.PATH}/login/refused?reason={reason}&lang={lang}", 303, headers=HEADERS)
    response.delete_cookie(BROWSER, path=sessions.PATH + CALLBACK)
    return response


def refused(pg: Page, reason: str, status: int | None = None) -> Response:
    """The page of a sign-in that did not go through: what happened and what to do, and a way to try again."""
    if status is None:
        status = 403 if reason in ("unknown_subject", "ambiguous", "disabled") else \
            503 if reason in ("provider", "not_recorded") else 429 if reason == "slow" else 400
    return pg.render("signin_refused.html", status, reason=reason)
