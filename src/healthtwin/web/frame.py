"""What every page shares: the Jinja2 environment, the language, the security headers, the session check.

The Content-Security-Policy allows this server's own stylesheet, script and images and nothing else: no
inline script or style (templates carry neither; SVG charts use presentation attributes), no frame, forms only
to this server. Pages are never cached (they hold a person's record)."""
from __future__ import annotations

import functools
from urllib.parse import parse_qsl, urlencode
from pathlib import Path
from typing import Any, Awaitable, Callable

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from . import session as sessions
from .asgi_client import Api
from .i18n import LANGUAGES, Translator, choose

TEMPLATES = Path(__file__).parent / "templates"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "referrer-policy": "same-origin",
           "x-frame-options": "DENY", "cache-control": "no-store", "permissions-policy": "camera=(), microphone=()"}

env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "svg"]),
                  trim_blocks=True, lstrip_blocks=True)


def language(request: Request) -> str:
    return choose(request.query_params.get("lang") or request.cookies.get(sessions.LANG),
                  request.headers.get("accept-language"))


class Page:
    """One request's page context: the translator, the session (if signed in) and the API as that person."""

    def __init__(self, request: Request, session: sessions.Session | None) -> None:
        self.request = request
        self.session = session
        self.lang = language(request)
        self.tr = Translator(self.lang)
        self.api = Api(request, session.token if session else None)

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        here = self.request.url.path
        keep = [(k, v) for k, v in self.request.query_params.multi_items() if k != "lang"]
        lang_urls = {code: here + "?" + urlencode(keep + [("lang", code)]) for code in LANGUAGES}
        wanted = self.request.query_params.get("patient")
        pq = "?" + urlencode({"patient": wanted}) if wanted and self.session and wanted != self.session.patient else ""
        body = env.get_template(template).render(
            **self.tr.globals(), session=self.session, csrf=self.session.csrf() if self.session else "",
            here=here, lang_urls=lang_urls, session_ends=_ends(self.session), languages=LANGUAGES, pq=pq, qs=_qs, **values)
        response = HTMLResponse(body, status, headers=HEADERS)
        if self.request.query_params.get("lang") in ("az", "ru", "en"):
            response.set_cookie(sessions.LANG, self.lang, max_age=365 * 86400, path=sessions.PATH,
                                samesite="strict", secure=self.request.url.scheme == "https")
        return response

    def message(self, title_key: str, text: str, status: int = 400, **values: Any) -> HTMLResponse:
        return self.render("message.html", status, title_key=title_key, text=text, **values)


Handler = Callable[[Page], Awaitable[Response]]


def page(persona: str | None = None, public: bool = False) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A page handler: signed in (else to the sign-in), of the persona named (else a page that says the page is
    for someone else), and every POST carrying the CSRF token of the signed-in browser (else 403)."""
    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            session = sessions.current(request)
            pg = Page(request, session)
            if session is None and not public:
                target = sessions.safe_next(request.url.path)
                reason = "&expired=1" if sessions.expired(request) else ""
                from urllib.parse import quote
                return RedirectResponse(f"{sessions.PATH}/?next={quote(target)}{reason}", 303, headers=HEADERS)
            if request.method == "POST":
                if session is None:
                    return pg.message("error.title", pg.tr.t("error.csrf"), 403)
                form = await read_form(request)
                if form is None:
                    return pg.message("error.title", pg.tr.t("error.bad_form"), 400)
                request.state.form = form
                if not session.csrf_ok(form.get("csrf")) or not _same_origin(request):
                    return pg.message("error.title", pg.tr.t("error.csrf"), 403)
            if persona is not None and session is not None and session.persona != persona \
                    and not (persona == "ministry" and "administrator" in session.roles):
                return pg.message("error.forbidden_title", pg.tr.t("error.wrong_persona"), 403)
            return await handler(pg)
        return endpoint
    return wrap


MAX_FORM = 64 * 1024


async def read_form(request: Request) -> dict[str, str] | None:
    """A urlencoded form of at most 64 kB (the pages send no other kind), first value of each field; None if
    it is not one."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM:
            return None
    form: dict[str, str] = {}
    for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        form.setdefault(key, value)
    return form


def _ends(session: sessions.Session | None) -> Any:
    import datetime as dt
    return dt.datetime.fromtimestamp(session.expires, dt.timezone.utc) if session else None


def _qs(values: dict[str, Any]) -> str:
    """A query string from a dict (None values left out), for links that drill down."""
    return urlencode({k: v for k, v in values.items() if v not in (None, "")})


def _same_origin(request: Request) -> bool:
    """A browser names where a form came from (Origin); one from another site is refused whatever it carries."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
