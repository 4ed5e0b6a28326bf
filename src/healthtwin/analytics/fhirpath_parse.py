"""Lexer and Pratt parser for the FHIRPath subset used by SQL on FHIR v2 views.

The parser produces a small tuple-based AST (cheap to build, easy to pattern-match in the two
back ends: the Python closure compiler in ``fhirpath_sof`` and the SQL compiler in
``duckdb_views``).  AST node shapes:

    ("lit", value)                 literal (str, int, float, bool) ; ("empty",) for ``{}``
    ("id", name)                   identifier evaluated on the input focus
    ("this",)                      $this
    ("index",)                     $index
    ("var", name)                  %name (constants, %resource, %rowIndex ...)
    ("member", target, name)       target.name
    ("call", target|None, name, [args])   function call, target None = on the input focus
    ("indexer", target, expr)      target[expr]
    ("bin", op, left, right)       binary operator (op is the FHIRPath spelling)
    ("neg", expr)                  unary minus
    ("type", op, expr, typename)   ``is`` / ``as`` operators
"""
from __future__ import annotations

import re
from typing import Any

Node = tuple[Any, ...]


class FhirPathSyntaxError(ValueError):
    """The expression is not valid FHIRPath (message includes the character position)."""


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<datetime>@T?\d{2,4}[-0-9T:.+Z]*[0-9Z])
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\\]|\\.)*`)
  | (?P<ext>%(?:[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*'))
  | (?P<special>\$this|\$index|\$total)
  | (?P<op><=|>=|!=|!~|[-+*/&|=~<>()\[\]{},.])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(body: str) -> str:
    # FHIRPath string escapes (\' \n \uXXXX ...); done by hand because Python's codecs differ.
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and i + 5 < len(body):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def tokenize(text: str) -> list[tuple[str, Any, int]]:
    """Split an expression into (kind, value, position) tokens; raises on any stray character."""
    tokens: list[tuple[str, Any, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise FhirPathSyntaxError(f"unexpected character {text[pos]!r} at position {pos}")
        kind = m.lastgroup or ""
        raw = m.group(kind)
        if kind == "number":
            tokens.append(("lit", float(raw) if "." in raw else int(raw), pos))
        elif kind == "string":
            tokens.append(("lit", _unescape(raw[1:-1]), pos))
        elif kind == "datetime":
            tokens.append(("lit", raw[1:], pos))  # dates are compared as ISO strings
        elif kind == "ident":
            tokens.append(("ident", _unescape(raw[1:-1]) if raw.startswith("`") else raw, pos))
        elif kind == "ext":
            name = raw[1:]
            if name[0] in "`'":
                name = _unescape(name[1:-1])
            tokens.append(("ext", name, pos))
        elif kind == "special":
            tokens.append(("special", raw, pos))
        elif kind == "op":
            tokens.append(("op", raw, pos))
        pos = m.end()
    tokens.append(("eof", None, len(text)))
    return tokens


# Binding powers, low to high, following the FHIRPath operator precedence table.
_BINARY: dict[str, int] = {
    "implies": 1,
    "or": 2, "xor": 2,
    "and": 3,
    "in": 4, "contains": 4,
    "=": 5, "~": 5, "!=": 5, "!~": 5,
    "<": 6, ">": 6, "<=": 6, ">=": 6,
    "|": 7,
    "is": 8, "as": 8,
    "+": 9, "-": 9, "&": 9,
    "*": 10, "/": 10, "div": 10, "mod": 10,
}
_WORD_OPS = {"implies", "or", "xor", "and", "in", "contains", "is", "as", "div", "mod"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, Any, int]:
        return self.toks[self.i]

    def next(self) -> tuple[str, Any, int]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, op: str) -> None:
        kind, val, pos = self.next()
        if kind != "op" or val != op:
            shown = "end of expression" if kind == "eof" else repr(val)
            raise FhirPathSyntaxError(f"expected {op!r} at position {pos}, found {shown}")

    def binary_op(self) -> str | None:
        kind, val, _ = self.peek()
        if kind == "op" and val in _BINARY:
            return str(val)
        if kind == "ident" and val in _WORD_OPS:
            return str(val)
        return None

    def expression(self, min_bp: int = 0) -> Node:
        left = self.unary()
        while True:
            op = self.binary_op()
            if op is None or _BINARY[op] <= min_bp:
                return left
            self.next()
            if op in ("is", "as"):
                left = ("type", op, left, self.type_name())
            else:
                left = ("bin", op, left, self.expression(_BINARY[op]))

    def type_name(self) -> str:
        kind, val, pos = self.next()
        if kind != "ident":
            raise FhirPathSyntaxError(f"expected a type name at position {pos}")
        name = str(val)
        while self.peek()[0] == "op" and self.peek()[1] == "." and self.toks[self.i + 1][0] == "ident":
            self.next()
            name += "." + str(self.next()[1])
        return name

    def unary(self) -> Node:
        kind, val, _ = self.peek()
        if kind == "op" and val in ("+", "-"):
            self.next()
            operand = self.unary()
            return operand if val == "+" else ("neg", operand)
        return self.postfix(self.term())

    def term(self) -> Node:
        kind, val, pos = self.next()
        if kind == "lit":
            return ("lit", val)
        if kind == "ext":
            return ("var", val)
        if kind == "special":
            return ("this",) if val == "$this" else ("index",)
        if kind == "ident":
            if val in ("true", "false"):
                return ("lit", val == "true")
            if self.peek()[0] == "op" and self.peek()[1] == "(":
                return ("call", None, val, self.arguments())
            return ("id", val)
        if kind == "op" and val == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if kind == "op" and val == "{":
            self.expect("}")
            return ("empty",)
        shown = "end of expression" if kind == "eof" else repr(val)
        raise FhirPathSyntaxError(f"unexpected {shown} at position {pos}")

    def arguments(self) -> list[Node]:
        self.expect("(")
        args: list[Node] = []
        if self.peek()[0] == "op" and self.peek()[1] == ")":
            self.next()
            return args
        while True:
            args.append(self.expression())
            kind, val, pos = self.next()
            if kind == "op" and val == ")":
                return args
            if not (kind == "op" and val == ","):
                raise FhirPathSyntaxError(f"expected ',' or ')' at position {pos}")

    def postfix(self, node: Node) -> Node:
        while True:
            kind, val, pos = self.peek()
            if kind == "op" and val == ".":
                self.next()
                k2, name, p2 = self.next()
                if k2 != "ident":
                    raise FhirPathSyntaxError(f"expected a name after '.' at position {p2}")
                if self.peek()[0] == "op" and self.peek()[1] == "(":
                    node = ("call", node, name, self.arguments())
                else:
                    node = ("member", node, name)
            elif kind == "op" and val == "[":
                self.next()
                idx = self.expression()
                self.expect("]")
                node = ("indexer", node, idx)
            else:
                return node


_CACHE: dict[str, Node] = {}


def parse(text: str) -> Node:
    """Parse a FHIRPath expression into the tuple AST (memoised: views reuse the same paths)."""
    if not isinstance(text, str):
        raise FhirPathSyntaxError(f"expression must be a string, got {type(text).__name__}")
    cached = _CACHE.get(text)
    if cached is not None:
        return cached
    if not text.strip():
        raise FhirPathSyntaxError("empty expression")
    parser = _Parser(text)
    node = parser.expression()
    kind, val, pos = parser.peek()
    if kind != "eof":
        raise FhirPathSyntaxError(f"unexpected {val!r} at position {pos}")
    if len(_CACHE) < 4096:
        _CACHE[text] = node
    return node


def type_name_of(node: Node) -> str | None:
    """The type name written as a function argument (``ofType(Quantity)``, ``ofType(FHIR.string)``)."""
    if node[0] == "id":
        return str(node[1])
    if node[0] == "member" and node[1][0] == "id":
        return f"{node[1][1]}.{node[2]}"
    return None
