"""A schematic tile map of Azerbaijan: the 14 economic regions as tiles placed roughly where they lie
(Nakhchivan apart in the south-west, Bakı and Abşeron on the east coast), and a region's districts as a grid.

Why tiles rather than boundaries: no openly licensed package on npm or PyPI that we could find carries
Azerbaijan's districts (Natural Earth's admin-1 units in the npm packages we checked are countries only; see
docs/web.md), and equal tiles also keep Bakı's twelve small city districts as readable as the large rural
ones. Values are shaded in five classes of one hue; every tile carries its name and figure as text, so colour
is never the only carrier of the value (WCAG 1.4.1)."""
from __future__ import annotations

from html import escape
from typing import Callable

from markupsafe import Markup

from ..population.geography import DISTRICTS, REGION_NAMES

# (column, row) of each economic region on a 6 × 4 grid, north-west to south-east
REGION_TILES = {
    "saki-zaqatala": (2, 0), "quba-xacmaz": (4, 0),
    "qazax-tovuz": (0, 1), "ganca-daskasan": (1, 1), "markazi-aran": (2, 1), "dagliq-sirvan": (3, 1),
    "abseron-xizi": (4, 1), "baki": (5, 1),
    "sarqi-zangazur": (1, 2), "qarabag": (2, 2), "mil-mugan": (3, 2), "sirvan-salyan": (4, 2),
    "naxcivan": (0, 3), "lankaran-astara": (4, 3),
}
SHADES = ["#e3eef9", "#b5d0ee", "#6f9fd8", "#2f6db5", "#123f7a"]  # light to dark; text dark on the first two


# The analytics name a region by its name ("Bakı") and a district by its label ("Nəsimi rayonu")
_TILE_OF_REGION = {REGION_NAMES[slug]: place for slug, place in REGION_TILES.items()}


def region_name(value: str) -> str:
    return value


def district_name(value: str) -> str:
    return value


def districts_of(region: str) -> list[str]:
    return [d.label for d in DISTRICTS if d.region_name == region]


def region_of(district: str) -> str | None:
    return next((d.region_name for d in DISTRICTS if d.label == district), None)


def _shade(value: float | None, values: list[float]) -> tuple[str, str]:
    if value is None or not values:
        return "#f4f4f4", "#1b1b1b"
    lo, hi = min(values), max(values)
    k = 0 if hi == lo else min(4, int((value - lo) / (hi - lo) * 5))
    return SHADES[k], "#1b1b1b" if k < 2 else "#ffffff"


def tile_map(values: dict[str, float | None], level: str, title: str, fmt: Callable[[float], str],
             region: str | None = None, ident: str = "map") -> Markup:
    """`level` "region": the 14 regions; "district": the districts of `region` (all of them if None); `values`
    by region name or district label, as the analytics name them."""
    if level == "region":
        places = [(name, name, col, row) for name, (col, row) in _TILE_OF_REGION.items()]
    else:
        names = districts_of(region) if region else [d.label for d in DISTRICTS]
        cols = 6
        places = [(name, name.removesuffix(" rayonu"), i % cols, i // cols) for i, name in enumerate(names)]
    w, h, gap = 104, 62, 4
    width = 6 * (w + gap) + gap
    height = (max((p[3] for p in places), default=0) + 1) * (h + gap) + gap
    present = [v for v in values.values() if v is not None]
    body = []
    for slug, name, col, row in places:
        value = values.get(slug)
        fill, ink = _shade(value, present)
        x, y = gap + col * (w + gap), gap + row * (h + gap)
        body.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="4" fill="{fill}" stroke="#555555"/>'
                    f'<text x="{x + 6}" y="{y + 20}" fill="{ink}" font-size="11">{escape(name[:17])}</text>'
                    f'<text x="{x + 6}" y="{y + 44}" fill="{ink}" font-size="15" font-weight="bold">'
                    f'{escape(fmt(value) if value is not None else "—")}</text>')
    # Markup of our own making: names and figures went through escape(), coordinates are computed numbers
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(ident)}" viewBox="0 0 {width} {height}" '  # nosec B704
                  f'width="100%" role="img" aria-labelledby="{ident}-t" font-family="sans-serif">'
                  f'<title id="{ident}-t">{escape(title)}</title>'
                  f'<rect width="{width}" height="{height}" fill="#ffffff"/>{"".join(body)}</svg>')
