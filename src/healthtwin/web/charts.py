"""Charts drawn on the server as SVG: no script needed to see them, nothing fetched, printable, and the same
markup downloads as an .svg file (app.js turns it into a PNG where scripts run).

Colours are presentation attributes, not style attributes (the page's CSP allows no inline style). Each chart
has a <title> and <desc> for screen readers and is drawn beside a table of the same figures."""
from __future__ import annotations

from html import escape
from typing import Sequence

from markupsafe import Markup

INK, BAR, ACCENT, BAND, GRID = "#1b1b1b", "#1d5fa8", "#b3261e", "#c9dcf2", "#cccccc"
INNER_BAND = "#93b8e3"


def _svg(width: int, height: int, title: str, desc: str, body: str, ident: str = "") -> Markup:
    label = f' id="{escape(ident)}"' if ident else ""
    # Markup of our own making: every text put into the SVG (labels, titles, figures) went through escape()
    # and every coordinate is a number this module computed.
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg"{label} viewBox="0 0 {width} {height}" '  # nosec B704
                  f'width="100%" role="img" aria-labelledby="{escape(ident)}-t {escape(ident)}-d" '
                  f'font-family="sans-serif" font-size="12">'
                  f'<title id="{escape(ident)}-t">{escape(title)}</title><desc id="{escape(ident)}-d">{escape(desc)}</desc>'
                  f'<rect width="{width}" height="{height}" fill="#ffffff"/>{body}</svg>')


def sparkline(values: Sequence[float], low: float | None = None, high: float | None = None, title: str = "",
              ident: str = "s") -> Markup:
    """A small trend of one result over time, with its reference range as a band."""
    width, height, pad = 120, 32, 3
    if not values:
        return Markup("")
    lo = min([*values, *(v for v in (low, high) if v is not None)])
    hi = max([*values, *(v for v in (low, high) if v is not None)])
    span = (hi - lo) or 1.0

    def y(v: float) -> float:
        return height - pad - (v - lo) / span * (height - 2 * pad)

    step = (width - 2 * pad) / max(len(values) - 1, 1)
    points = " ".join(f"{pad + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values))
    band = ""
    if low is not None and high is not None:
        band = f'<rect x="0" y="{y(high):.1f}" width="{width}" height="{max(y(low) - y(high), 1):.1f}" fill="{BAND}"/>'
    last = f'<circle cx="{pad + (len(values) - 1) * step:.1f}" cy="{y(values[-1]):.1f}" r="2.5" fill="{ACCENT}"/>'
    return _svg(width, height, title, title, band + f'<polyline points="{points}" fill="none" stroke="{BAR}" '
                f'stroke-width="1.5"/>' + last, ident)


def bars(labels: Sequence[str], values: Sequence[float | None], title: str, desc: str, fmt=str,
         ident: str = "chart") -> Markup:
    """Horizontal bars, one per label (suppressed cells drawn as an empty row marked '—')."""
    row, left, width = 22, 170, 640
    height = row * len(labels) + 30
    top = max((v for v in values if v is not None), default=0) or 1.0
    body = []
    for i, (label, value) in enumerate(zip(labels, values)):
        yy = 10 + i * row
        body.append(f'<text x="{left - 6}" y="{yy + 14}" text-anchor="end" fill="{INK}">{escape(label[:26])}</text>')
        if value is None:
            body.append(f'<text x="{left + 4}" y="{yy + 14}" fill="{INK}">—</text>')
            continue
        w = (width - left - 70) * value / top
        body.append(f'<rect x="{left}" y="{yy + 3}" width="{max(w, 1):.1f}" height="{row - 6}" fill="{BAR}"/>'
                    f'<text x="{left + w + 4:.1f}" y="{yy + 14}" fill="{INK}">{escape(fmt(value))}</text>')
    return _svg(width, height, title, desc, "".join(body), ident)


def lines(periods: Sequence[str], series: dict[str, Sequence[float | None]], title: str, desc: str,
          band: tuple[Sequence[float | None], Sequence[float | None]] | None = None, fmt=str,
          ident: str = "curve",
          inner: tuple[Sequence[float | None], Sequence[float | None]] | None = None) -> Markup:
    """Values over periods (an epidemic curve, a trend), one line per series, with an optional band (a
    forecast's interval, e.g. 95%) drawn beneath and an optional inner band (e.g. 50%) in a darker shade."""
    width, height, left, bottom, top_pad = 640, 260, 60, 40, 16
    every = [v for s in series.values() for v in s if v is not None]
    if band:
        every += [v for v in (*band[0], *band[1]) if v is not None]
    if inner:
        every += [v for v in (*inner[0], *inner[1]) if v is not None]
    if not periods or not every:
        return Markup("")
    hi = max(every) or 1.0
    lo = min(0.0, min(every))
    n = len(periods)
    step = (width - left - 20) / max(n - 1, 1)

    def x(i: int) -> float:
        return left + i * step

    def y(v: float) -> float:
        return top_pad + (hi - v) / ((hi - lo) or 1.0) * (height - bottom - top_pad)

    body = [f'<line x1="{left}" y1="{y(lo):.1f}" x2="{width - 10}" y2="{y(lo):.1f}" stroke="{GRID}"/>',
            f'<text x="{left - 6}" y="{y(hi) + 4:.1f}" text-anchor="end" fill="{INK}">{escape(fmt(hi))}</text>',
            f'<text x="{left - 6}" y="{y(lo) + 4:.1f}" text-anchor="end" fill="{INK}">{escape(fmt(lo))}</text>']
    for shade, edges in ((BAND, band), (INNER_BAND, inner)):
        if not edges:
            continue
        upper = [(i, v) for i, v in enumerate(edges[1]) if v is not None]
        lower = [(i, v) for i, v in enumerate(edges[0]) if v is not None]
        if upper and lower:
            pts = [f"{x(i):.1f},{y(v):.1f}" for i, v in upper] + [f"{x(i):.1f},{y(v):.1f}" for i, v in reversed(lower)]
            body.append(f'<polygon points="{" ".join(pts)}" fill="{shade}"/>')
    labels_every = max(1, n // 8)
    for i, p in enumerate(periods):
        if i % labels_every == 0:
            body.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                        f'fill="{INK}">{escape(str(p))}</text>')
    colours = [BAR, ACCENT, "#2e7d32", "#6a1b9a"]
    for k, (name, values) in enumerate(series.items()):
        pts = [f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values) if v is not None]
        colour = colours[k % len(colours)]
        if pts:
            body.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{colour}" stroke-width="2"/>')
        body.append(f'<rect x="{left + k * 150}" y="{height - 14}" width="10" height="10" fill="{colour}"/>'
                    f'<text x="{left + k * 150 + 14}" y="{height - 5}" fill="{INK}">{escape(name[:20])}</text>')
    return _svg(width, height, title, desc, "".join(body), ident)
