"""A small UCUM canonicaliser: enough units to compare clinical quantities across units (5 mg/dL = 0.05 g/L).

`canonical(value, code)` rewrites a value in a UCUM unit into base units and returns `(canonical_value,
canonical_code)`, or None when the unit is not understood (the index then keeps only the original unit, and
only same-unit searches match). Both sides of a search go through the same function, so what matters is that
equal quantities get equal canonical forms, not that the base units are the SI ones for every dimension.

Base units: g, m, s, mol, K, eq, [iU] and the dimensionless "1". Volumes become m3 (1 L = 1e-3 m3), so a
concentration in mg/dL canonicalises to g.m-3. Pressure in mm[Hg] is converted to g.m-1.s-2 (Pa = 1000 of
those). Annotations ({beats}, {cells}) count as 1, as UCUM says. Metric prefixes are applied generically.
The canonical code lists base units in a fixed order with integer exponents: "g.m-3", "s-1", "1".
"""
from __future__ import annotations

import re

# atom → (factor to base, {base: exponent}, metric?) — only metric atoms accept a prefix.
_ATOMS: dict[str, tuple[float, dict[str, int], bool]] = {
    "g": (1.0, {"g": 1}, True),
    "m": (1.0, {"m": 1}, True),
    "s": (1.0, {"s": 1}, True),
    "mol": (1.0, {"mol": 1}, True),
    "K": (1.0, {"K": 1}, True),
    "eq": (1.0, {"eq": 1}, True),
    "Eq": (1.0, {"eq": 1}, True),  # "mEq/L" is not UCUM (that is "meq/L") but is what labs send
    "L": (1e-3, {"m": 3}, True),
    "l": (1e-3, {"m": 3}, True),
    "Pa": (1000.0, {"g": 1, "m": -1, "s": -2}, True),
    "bar": (1e8, {"g": 1, "m": -1, "s": -2}, True),
    "m[Hg]": (133322387.415, {"g": 1, "m": -1, "s": -2}, True),  # so mm[Hg] = 133322.387415 g.m-1.s-2 (133 Pa)
    "m[H2O]": (9806650.0, {"g": 1, "m": -1, "s": -2}, True),
    "Hz": (1.0, {"s": -1}, True),
    "U": (1e-6 / 60.0, {"mol": 1, "s": -1}, True),  # enzyme unit: umol/min
    "kat": (1.0, {"mol": 1, "s": -1}, True),
    "[iU]": (1.0, {"[iU]": 1}, True),
    "[IU]": (1.0, {"[iU]": 1}, True),
    "min": (60.0, {"s": 1}, False),
    "h": (3600.0, {"s": 1}, False),
    "d": (86400.0, {"s": 1}, False),
    "wk": (604800.0, {"s": 1}, False),
    "mo": (2629800.0, {"s": 1}, False),  # mean Julian month, as UCUM defines `mo`
    "a": (31557600.0, {"s": 1}, False),  # Julian year
    "%": (0.01, {}, False),
    "[ppm]": (1e-6, {}, False),
    "[lb_av]": (453.59237, {"g": 1}, False),
    "[oz_av]": (28.349523125, {"g": 1}, False),
    "[in_i]": (0.0254, {"m": 1}, False),
    "[ft_i]": (0.3048, {"m": 1}, False),
    "[mi_i]": (1609.344, {"m": 1}, False),
    "[gal_us]": (3.785411784e-3, {"m": 3}, False),
    "[foz_us]": (2.95735295625e-5, {"m": 3}, False),
    "[drp]": (5e-8, {"m": 3}, False),  # UCUM drop = 1/20 mL
    "1": (1.0, {}, False),
}

_PREFIXES = {"Y": 1e24, "Z": 1e21, "E": 1e18, "P": 1e15, "T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3, "h": 1e2,
             "da": 1e1, "d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}

_ORDER = ("g", "m", "s", "mol", "K", "eq", "[iU]")

# Affine units cannot be multiplied into others; they are only understood standing alone.
_AFFINE = {"Cel": lambda v: v + 273.15, "[degF]": lambda v: (v - 32.0) * 5.0 / 9.0 + 273.15}

_TOKEN = re.compile(r"\{[^}]*\}|\(|\)|[./]|[^./(){}]+(?:\{[^}]*\})?")
_FACTOR = re.compile(r"(\d+)(?:[*^]([+-]?\d+))?")
_ATOM_EXP = re.compile(r"(.*?[^\d+-])([+-]?\d+)?")

_CACHE: dict[str, tuple[float, str] | None] = {}
MAX_UNIT = 128  # characters: longer codes are not units this table understands (caller input, on every write)


def _atom(text: str) -> tuple[float, dict[str, int]] | None:
    """One unit symbol with optional exponent ("cm3", "s-1", "10*3", "mm[Hg]") → (factor, dims)."""
    m = _FACTOR.fullmatch(text)
    if m is not None:  # 10*3, 10^-6, 1000
        base, exp = int(m.group(1)), int(m.group(2) or 1)
        return float(base) ** exp if m.group(2) else float(base), {}
    if "{" in text:  # an annotation glued to a unit: "{RBC}" alone was handled by the tokenizer, "g{total}"
        text = re.sub(r"\{[^}]*\}", "", text)
        if not text:
            return 1.0, {}
    m = _ATOM_EXP.fullmatch(text)
    if m is None:
        return None
    symbol, exp = m.group(1), int(m.group(2) or 1)
    found = _ATOMS.get(symbol)
    if found is None:
        for plen in (2, 1):  # "da" before "d"
            prefix, rest = symbol[:plen], symbol[plen:]
            if prefix in _PREFIXES and rest in _ATOMS and _ATOMS[rest][2]:
                f, dims, _ = _ATOMS[rest]
                found = (f * _PREFIXES[prefix], dims, True)
                break
    if found is None:
        return None
    factor, dims, _ = found
    return factor ** exp, {b: e * exp for b, e in dims.items()}


def _expression(tokens: list[str], pos: int) -> tuple[float, dict[str, int], int] | None:
    """term (('.' | '/') term)* with parentheses; returns (factor, dims, next position)."""
    factor, dims, sign = 1.0, {}, 1
    if pos < len(tokens) and tokens[pos] == "/":  # leading "/min"
        sign, pos = -1, pos + 1
    while pos < len(tokens):
        tok = tokens[pos]
        if tok == "(":
            inner = _expression(tokens, pos + 1)
            if inner is None or inner[2] >= len(tokens) or tokens[inner[2]] != ")":
                return None
            f, d, pos = inner[0], inner[1], inner[2] + 1
        elif tok.startswith("{"):
            f, d, pos = 1.0, {}, pos + 1
        else:
            parsed = _atom(tok)
            if parsed is None:
                return None
            (f, d), pos = parsed, pos + 1
        factor = factor * f if sign > 0 else factor / f
        for base, exp in d.items():
            dims[base] = dims.get(base, 0) + exp * sign
        if pos >= len(tokens) or tokens[pos] == ")":
            break
        if tokens[pos] not in "./":
            return None
        sign = 1 if tokens[pos] == "." else -1
        pos += 1
        if pos >= len(tokens) or tokens[pos] in ").":  # an operator needs a term after it: "mg/" is invalid
            return None
    return factor, dims, pos


def _unit(code: str) -> tuple[float, str] | None:
    tokens = _TOKEN.findall(code)
    if "".join(tokens) != code:
        return None
    parsed = _expression(tokens, 0)
    if parsed is None or parsed[2] != len(tokens):
        return None
    factor, dims, _ = parsed
    parts = [f"{b}{'' if e == 1 else e}" for b in sorted(dims, key=lambda b: (_ORDER + (b,)).index(b))
             if (e := dims[b]) != 0]
    return factor, ".".join(parts) or "1"


def canonical(value: float | int, code: str | None) -> tuple[float, str] | None:
    """(value in base units, canonical unit code), or None if `code` is not a unit this table understands."""
    if not code or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if code in _AFFINE:
        return _round(_AFFINE[code](value)), "K"
    if len(code) > MAX_UNIT:  # no real unit is this long; tokenizing one costs time quadratic in its length
        return None
    if code not in _CACHE:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        try:
            _CACHE[code] = _unit(code)
        except (ValueError, OverflowError):  # "10*400" overflows a float; huge exponents exceed int parsing
            _CACHE[code] = None
    unit = _CACHE[code]
    if unit is None:
        return None
    return _round(value * unit[0]), unit[1]


def _round(number: float) -> float:
    # 12 significant digits hide float noise (0.1 * 1000 = 100.00000000000001) so equal quantities compare equal.
    return float(f"{number:.12g}")
