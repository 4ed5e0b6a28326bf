"""Compile FHIRPath search expressions into Python source that walks the resource's JSON dicts directly.

Why: evaluating ~40 FHIRPath expressions per resource with an interpreter (fhirpathpy) costs milliseconds;
indexing must cost microseconds. Search expressions use a small part of FHIRPath (paths, choice types,
`as`/`ofType`, `where(...)`, `extension(url)`, `resolve() is X`, `[n]`/`first()`, `|`, a few booleans), and the
element types are known from the StructureDefinitions, so each expression can be resolved at compile time into
*branches*: a root (the resource or a composite's focus), a sequence of JSON operations, and the FHIR type of
the values it yields. Choice elements (`Observation.value`) become one branch per type (`valueQuantity`,
`valueString` ...), and `as X` simply keeps the branches of type X, so no type test remains at run time.

`generate()` merges the branches of all parameters of a resource type into one tree (shared prefixes are
walked once; an absent element costs one dict lookup for its whole subtree) and emits a single function.

Expressions outside the supported subset raise `Unsupported` (the caller falls back to fhirpathpy); unknown
elements and syntax errors raise `InvalidExpression`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Callable

import orjson


class CompileError(Exception):
    """The expression cannot be compiled natively."""


class Unsupported(CompileError):
    """Valid FHIRPath outside the compiled subset: evaluate it with the interpreter instead."""


class InvalidExpression(CompileError):
    """Not valid for the resource type: syntax error, unknown element, navigation into a primitive."""


# --------------------------------------------------------------------------------------------------- parsing

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^'\\]|\\.)*')
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<var>%(?:[A-Za-z_]\w*|`[^`]*`|'[^']*'))
  | (?P<id>[A-Za-z_]\w*|`[^`]*`|\$\w+)
  | (?P<op><=|>=|!=|!~|[.()\[\],|=<>+\-*/&~])
)""", re.VERBOSE)

# Binary operator precedence (higher binds tighter), after the FHIRPath grammar.
_BINARY = {"implies": 1, "or": 2, "xor": 2, "and": 3, "in": 4, "contains": 4, "=": 5, "!=": 5, "~": 5, "!~": 5,
           "<": 6, ">": 6, "<=": 6, ">=": 6, "|": 7, "is": 8, "as": 8, "+": 9, "-": 9, "&": 9, "*": 10, "/": 10,
           "div": 10, "mod": 10}


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise InvalidExpression(f"cannot parse {text!r} at offset {pos}")
        kind = m.lastgroup or "op"
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    """Precedence-climbing parser producing tuples: ('this',) ('var', n) ('lit', v) ('path', base, name)
    ('fn', base, name, args) ('idx', base, expr) ('bin', op, a, b) ('type', 'is'|'as', base, TypeName)."""

    def __init__(self, text: str) -> None:
        self.toks, self.i, self.text = _tokens(text), 0, text

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks) or (expected is not None and self.toks[self.i][1] != expected):
            raise InvalidExpression(f"expected {expected or 'more'} in {self.text!r}")
        self.i += 1
        return self.toks[self.i - 1]

    def parse(self) -> tuple:
        node = self.expr(0)
        if self.i != len(self.toks):
            raise InvalidExpression(f"unexpected {self.peek()!r} in {self.text!r}")
        return node

    def expr(self, min_prec: int) -> tuple:
        left = self.postfix(self.term())
        while True:
            op = self.peek()
            prec = _BINARY.get(op or "")
            if prec is None or prec <= min_prec or self.toks[self.i][0] == "str":
                return left
            self.take()
            if op in ("is", "as"):
                left = ("type", op, left, self.type_name())
            else:
                left = ("bin", op, left, self.expr(prec))

    def type_name(self) -> str:
        kind, name = self.take()
        if kind != "id":
            raise InvalidExpression(f"expected a type name in {self.text!r}")
        if name in ("FHIR", "System") and self.peek() == ".":
            self.take(".")
            name = self.take()[1]
        return name.strip("`")

    def term(self) -> tuple:
        kind, tok = self.take()
        if kind == "str":
            return ("lit", tok[1:-1].replace("\\'", "'"))
        if kind == "num":
            return ("lit", float(tok) if "." in tok else int(tok))
        if kind == "var":
            return ("var", tok[1:].strip("`'"))
        if tok == "(":
            inner = self.expr(0)
            self.take(")")
            return inner
        if kind == "id":
            if tok in ("true", "false"):
                return ("lit", tok == "true")
            if tok == "$this":
                return ("this",)
            return self.invocation(("this",), tok)
        if tok == "-" and self.peek() is not None:
            value = self.term()
            if value[0] == "lit" and isinstance(value[1], (int, float)):
                return ("lit", -value[1])
        raise InvalidExpression(f"unexpected {tok!r} in {self.text!r}")

    def invocation(self, base: tuple, name: str) -> tuple:
        name = name.strip("`")
        if self.peek() != "(":
            return ("path", base, name)
        self.take("(")
        args: list[tuple] = []
        while self.peek() != ")":
            args.append(self.expr(0))
            if self.peek() == ",":
                self.take(",")
        self.take(")")
        return ("fn", base, name, tuple(args))

    def postfix(self, node: tuple) -> tuple:
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "id":
                    raise InvalidExpression(f"expected a name after '.' in {self.text!r}")
                node = self.invocation(node, name)
            else:
                node = ("idx", node, self.expr(0))
                self.take("]")
        return node


@cache
def parse(text: str) -> tuple:
    return _Parser(text).parse()


# ----------------------------------------------------------------------------------------------- type model

class ElementTypes:
    """The generated element-type table: which FHIR type(s) each element of each type has."""

    def __init__(self, table: dict[str, Any]) -> None:
        self.kinds: dict[str, str] = table["kinds"]
        self.bases: dict[str, str] = table["bases"]
        self.elements: dict[str, Any] = table["elements"]

    @classmethod
    @cache
    def default(cls) -> "ElementTypes":
        data = resources.files("healthtwin.fhir").joinpath("definitions/element_types.json").read_bytes()
        return cls(orjson.loads(data))

    def is_a(self, type_name: str, ancestor: str) -> bool:
        """Subtype test along baseDefinition: Age is a Quantity, code is a string, Patient a DomainResource."""
        while type_name:
            if type_name == ancestor:
                return True
            type_name = self.bases.get(type_name, "")
        return False

    def children(self, ctx: str, name: str) -> list[tuple[str, str, str]]:
        """(json key, type, ctx) for element `name` under `ctx` (a type name, or a backbone element's path).

        Choice elements yield one entry per type, keyed `valueQuantity` etc. Raises InvalidExpression if unknown.
        """
        path = f"{ctx}.{name}"
        spec = self.elements.get(path)
        choice = spec is None
        if choice:
            spec = self.elements.get(path + "[x]")
            if spec is None:
                raise InvalidExpression(f"{ctx} has no element {name!r}")
        if isinstance(spec, str):  # contentReference "#Questionnaire.item": a recursive backbone element
            return [(name, "BackboneElement", spec[1:])]
        out = []
        for t in spec:
            key = name + t[0].upper() + t[1:] if choice else name
            out.append((key, t, path if t in ("BackboneElement", "Element") else t))
        return out


# ------------------------------------------------------------------------------------------------- branches

@dataclass(frozen=True)
class Branch:
    """Values reached from `root` ("res" = the resource, "focus" = a composite's focus item) through `ops`,
    all of FHIR type `type`; `ctx` is where the type's children are looked up."""
    root: str
    ops: tuple[tuple, ...]
    type: str
    ctx: str


@dataclass
class Scope:
    this: list[Branch]
    resource_type: str
    types: ElementTypes
    top: bool = True  # at the start of a search expression, a leading type name (`Observation.`) is the root
    nested: bool = False  # where() may filter inside a boolean operand (`coding.where(...).exists()`)


def compile_branches(expression: str | tuple, scope: Scope) -> list[Branch]:
    node = parse(expression) if isinstance(expression, str) else expression
    return _collection(node, scope)


def _collection(node: tuple, scope: Scope) -> list[Branch]:
    kind = node[0]
    if kind == "this":
        return scope.this
    if kind == "var":
        if node[1] in ("resource", "rootResource"):
            rt = scope.resource_type
            return [Branch("res", (), rt, rt)]
        if node[1] == "context":
            return scope.this
        raise Unsupported(f"variable %{node[1]}")
    if kind == "path":
        return _path(node, scope)
    if kind == "type":
        return _as(_collection(node[2], scope), node[3], scope) if node[1] == "as" else _computed(node, scope)
    if kind == "bin":
        if node[1] == "|":
            return _collection(node[2], scope) + _collection(node[3], scope)
        return _computed(node, scope)
    if kind == "idx":
        if node[2][0] != "lit" or not isinstance(node[2][1], int):
            raise Unsupported("computed indexer")
        return _positional(_collection(node[1], scope), ("index", node[2][1]))
    if kind == "fn":
        return _function(node, scope)
    raise Unsupported(f"{kind} expression as a collection")


def _path(node: tuple, scope: Scope) -> list[Branch]:
    _, base, name = node
    if base == ("this",) and scope.top and name[0].isupper():
        # `Observation.code` / `Resource.meta`: the type name selects the expression's applicable parts. A
        # multi-base expression lists every base type; parts for other types are empty for this one.
        if scope.types.is_a(scope.resource_type, name):
            return scope.this
        if name in scope.types.kinds:
            return []
    inner = Scope(scope.this, scope.resource_type, scope.types, top=False, nested=scope.nested)
    out = []
    for b in _collection(base, scope) if base != ("this",) else scope.this:
        if b.type == "Resource" or scope.types.kinds.get(b.type) == "primitive":
            raise Unsupported(f"navigating into a {b.type} ({name})")
        for key, t, ctx in inner.types.children(b.ctx, name):
            out.append(Branch(b.root, b.ops + (("get", key),), t, ctx))
    return out


def _as(branches: list[Branch], type_name: str, scope: Scope) -> list[Branch]:
    out = []
    for b in branches:
        if scope.types.is_a(b.type, type_name):
            out.append(b)
        elif b.type == "Resource" and scope.types.kinds.get(type_name) == "resource":
            out.append(Branch(b.root, b.ops + (("filter", f"_n.get('resourceType') == {type_name!r}"),),
                              type_name, type_name))
    return out


def _positional(branches: list[Branch], op: tuple) -> list[Branch]:
    if len(branches) > 1:  # an index over a union of differently-typed branches needs run-time ordering
        raise Unsupported("indexer over a choice or union")
    return [Branch(b.root, b.ops + (op,), b.type, b.ctx) for b in branches]


def _function(node: tuple, scope: Scope) -> list[Branch]:
    _, base, name, args = node
    if name in ("as", "ofType"):
        if len(args) != 1 or args[0][0] != "path" or args[0][1] != ("this",):
            raise InvalidExpression(f"{name}() needs a type name")
        return _as(_collection(base, scope), args[0][2], scope)
    if name in ("first", "last", "single") and not args:
        return _positional(_collection(base, scope), ("index", 0) if name != "last" else ("last",))
    if name == "extension" and len(args) == 1 and args[0][0] == "lit":
        out = []
        for b in _collection(base, scope):
            if scope.types.kinds.get(b.type) == "primitive" or b.type == "Resource":
                raise Unsupported(f"extension() on a {b.type}")  # primitive extensions live in `_name` keys
            for key, t, ctx in scope.types.children(b.ctx, "extension"):
                out.append(Branch(b.root, b.ops + (("get", key), ("filter", f"_n.get('url') == {args[0][1]!r}")),
                                  t, ctx))
        return out
    if name == "where" and len(args) == 1:
        out = []
        for b in _collection(base, scope):
            item = Scope([Branch("item", (), b.type, b.ctx)], scope.resource_type, scope.types, top=False,
                         nested=scope.nested)
            out.append(Branch(b.root, b.ops + (("filter", _boolean(args[0], item, "_n")),), b.type, b.ctx))
        return out
    if name in ("exists", "empty", "not", "hasExtension", "is"):
        return _computed(node, scope)
    raise Unsupported(f"function {name}()")


def _computed(node: tuple, scope: Scope) -> list[Branch]:
    """A boolean-valued expression (`Patient.deceased.exists() and Patient.deceased != false`)."""
    if [b.root for b in scope.this] != ["res"] or scope.this[0].ops:
        raise Unsupported("boolean expression below the resource")
    return [Branch("res", (("compute", _boolean(node, scope, "res")),), "boolean", "boolean")]


# Boolean sub-expressions compile to Python expressions in FHIRPath's three-valued logic (None = empty).

def _values(node: tuple, scope: Scope, var: str) -> str:
    """A Python expression for the list of values of a plain path, relative to `var` (or the resource)."""
    parts = []
    for b in _collection(node, scope):
        root = "res" if b.root == "res" else var
        if all(op[0] == "get" for op in b.ops):
            parts.append(f"_walk({root}, {tuple(op[1] for op in b.ops)!r})" if b.ops else f"[{root}]")
            continue
        if not scope.nested or any(op[0] not in ("get", "filter") for op in b.ops):
            raise Unsupported("filter inside a where() criterion")
        code = f"[{root}]"
        for op in b.ops:  # each filter is a where() criterion over `_n`, the item it keeps or drops
            code = f"_step({code}, {op[1]!r})" if op[0] == "get" else f"[_n for _n in {code} if {op[1]}]"
        parts.append(code)
    return " + ".join(parts) or "[]"


def _boolean(node: tuple, scope: Scope, var: str) -> str:
    kind = node[0]
    if kind == "lit" and isinstance(node[1], bool):
        return repr(node[1])
    if kind == "bin" and node[1] in ("and", "or"):
        return f"_{node[1]}3({_boolean(node[2], scope, var)}, {_boolean(node[3], scope, var)})"
    if kind == "bin" and node[1] in ("=", "!="):
        left, right = node[2], node[3]
        if left[0] == "lit":
            left, right = right, left
        if right[0] != "lit":
            raise Unsupported("comparison of two paths")
        return f"_{'eq' if node[1] == '=' else 'ne'}3({_values(left, scope, var)}, {right[1]!r})"
    if kind == "type" and node[1] == "is" or kind == "fn" and node[2] == "is":
        base, type_name = (node[2], node[3]) if kind == "type" else (node[1], node[3][0][2])
        if base[0] == "fn" and base[2] == "resolve" and base[1] == ("this",):
            if not all(scope.types.is_a(b.type, "Reference") for b in scope.this):
                raise Unsupported("resolve() on a non-Reference")
            return f"_ref_is({var}, res, {type_name!r})"
        raise Unsupported("'is' other than resolve() is X")
    if kind == "fn":
        _, base, name, args = node
        if name in ("exists", "empty") and not args:
            test = f"bool({_values(base, scope, var)})"
            return test if name == "exists" else f"not {test}"
        if name == "not" and not args:
            return f"_not3({_boolean(base, scope, var)})"
        if name == "hasExtension" and len(args) == 1 and args[0][0] == "lit":
            target = _values(base, scope, var)
            return f"_has_ext({target}, {args[0][1]!r})"
    if kind == "path":
        return f"_single3({_values(node, scope, var)})"
    raise Unsupported(f"boolean {kind} {node[1] if len(node) > 1 else ''}")


def compile_boolean(expression: str, type_name: str, types: ElementTypes | None = None) -> Callable[[Any, Any], Any]:
    """A boolean FHIRPath expression (an invariant) on a node of `type_name` (a type, or a backbone element's
    path such as `Timing.repeat`) as a Python function (node, resource) -> True, False or None (empty).

    Raises CompileError outside the subset `_boolean` knows (the caller keeps the interpreter for those)."""
    types = types or ElementTypes.default()
    scope = Scope([Branch("item", (), type_name, type_name)], "Resource", types, top=False, nested=True)
    code = _boolean(parse(expression), scope, "node")
    namespace = dict(RUNTIME)
    # Source generated from the parsed expression (names from the element table, literals through repr).
    source = f"def _invariant(node, res):\n    return {code}\n"
    exec(compile(source, f"<invariant {expression[:60]}>", "exec"), namespace)  # nosec B102
    return namespace["_invariant"]


# Run-time helpers referenced by the generated code.

def _step(items: list, key: str) -> list:
    """The values of `key` in each of `items` (lists flattened): one path step over a collection."""
    out: list = []
    for it in items:
        v = it.get(key) if type(it) is dict else None
        if v is not None:
            out.extend(v) if type(v) is list else out.append(v)
    return out


def _walk(node: Any, keys: tuple[str, ...]) -> list:
    items = [node]
    for key in keys:
        items = _step(items, key)
    return items


def _same(a: Any, b: Any) -> bool:
    if type(a) is bool or type(b) is bool:  # FHIRPath: true is not 1
        return type(a) is type(b) and a == b
    return a == b


def _eq3(values: list, lit: Any) -> bool | None:
    """FHIRPath `=` of a path's values and a literal: empty if there are none; else equal only as a collection
    of one item (a collection of several never equals a single value)."""
    return None if not values else len(values) == 1 and _same(values[0], lit)


def _ne3(values: list, lit: Any) -> bool | None:
    eq = _eq3(values, lit)
    return None if eq is None else not eq


def _and3(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or3(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _not3(a: bool | None) -> bool | None:
    return None if a is None else not a


def _single3(values: list) -> bool | None:
    return values[0] if len(values) == 1 and type(values[0]) is bool else None


def _has_ext(nodes: list, url: str) -> bool:
    return any(type(e) is dict and e.get("url") == url for n in nodes if type(n) is dict
               for e in (n.get("extension") or ()))


def reference_type(ref: Any, resource: dict) -> str | None:
    """The type `resolve()` would yield: from "Type/id", ".../Type/id[/_history/v]", or a contained "#id"."""
    if type(ref) is not dict:
        return None
    text = ref.get("reference")
    if type(text) is not str:
        return None
    if text.startswith("#"):
        for c in resource.get("contained") or ():
            if type(c) is dict and c.get("id") == text[1:]:
                return c.get("resourceType")
        return None
    parts = text.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return parts[-2] if len(parts) >= 2 else None


def _ref_is(ref: Any, resource: dict, type_name: str) -> bool:
    found = reference_type(ref, resource)
    return found is not None and (found == type_name or type_name in ("Resource", "DomainResource"))


RUNTIME = {"_walk": _walk, "_step": _step, "_eq3": _eq3, "_ne3": _ne3, "_and3": _and3, "_or3": _or3,
           "_not3": _not3, "_single3": _single3, "_has_ext": _has_ext, "_ref_is": _ref_is}


# --------------------------------------------------------------------------------------------------- codegen

@dataclass
class Use:
    """At a tree node: convert its values with `conv` (a name in the namespace), and give the bare rows to
    `codes` (as index rows of those parameter codes) and to `slots` (lists feeding composite products)."""
    conv: str
    codes: list[str] = field(default_factory=list)
    slots: list[str] = field(default_factory=list)


@dataclass
class CompositeLoop:
    """A composite whose focus is below the root: per focus item, fill `slots` from `tree`, then multiply."""
    code: str
    slots: list[str]
    tree: "Tree"


@dataclass
class Node:
    children: dict[tuple, "Node"] = field(default_factory=dict)
    uses: dict[str, Use] = field(default_factory=dict)
    loops: list[CompositeLoop] = field(default_factory=list)


class Tree:
    """Branches of many parameters merged by root and common operation prefix."""

    def __init__(self) -> None:
        self.roots: dict[str, Node] = {}
        self.products: list[tuple[str, list[str]]] = []  # composites fed from this tree's own slots

    def node(self, branch: Branch) -> Node:
        node = self.roots.setdefault(branch.root, Node())
        for op in branch.ops:
            node = node.children.setdefault(op, Node())
        return node

    def add(self, branch: Branch, conv: str, code: str | None = None, slot: str | None = None) -> None:
        use = self.node(branch).uses.setdefault(conv, Use(conv))
        if code is not None:
            use.codes.append(code)
        if slot is not None:
            use.slots.append(slot)


class _Emitter:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.n = 0

    def var(self, prefix: str = "_v") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def tree(self, tree: Tree, roots: dict[str, str], indent: int) -> None:
        slots = [s for _, ss in tree.products for s in ss]
        for s in slots:
            self.emit(indent, f"{s} = []")
        for root, node in tree.roots.items():
            self.node(node, roots[root], True, indent)
        for code, ss in tree.products:
            self.product(code, ss, indent)

    def product(self, code: str, slots: list[str], indent: int) -> None:
        self.emit(indent, f"if {' and '.join(slots)}:")
        self.emit(indent + 1, f"for _p in _product({', '.join(slots)}):")
        self.emit(indent + 2, f"comps[({code!r}, _p)] = None")

    def node(self, node: Node, var: str, single: bool, indent: int) -> None:
        """Emit uses and children of `node` whose values are in `var` (a list, or one dict if `single`)."""
        if (node.uses or node.loops) and single:
            listed = self.var()
            self.emit(indent, f"{listed} = [{var}]")
            var, single = listed, False
        for use in node.uses.values():
            self.use(use, var, indent)
        for loop in node.loops:
            f = self.var("_f")
            self.emit(indent, f"for {f} in {var}:")
            self.tree(loop.tree, {"focus": f, "res": "res"}, indent + 1)
            self.emit(indent + 1, "pass")
        for op, child in node.children.items():
            self.child(op, child, var, single, indent)

    def use(self, use: Use, var: str, indent: int) -> None:
        conv = use.conv
        if len(use.codes) == 1 and not use.slots:
            self.emit(indent, f"for _x in {var}:")
            self.emit(indent + 1, f"for _b in {conv}(_x):")
            self.emit(indent + 2, f"ap(({use.codes[0]!r},) + _b)")
            return
        rows = self.var("_r")
        self.emit(indent, f"{rows} = [_b for _x in {var} for _b in {conv}(_x)]")
        for code in use.codes:
            self.emit(indent, f"for _b in {rows}:")
            self.emit(indent + 1, f"ap(({code!r},) + _b)")
        for slot in use.slots:
            self.emit(indent, f"{slot}.extend({rows})")

    def child(self, op: tuple, node: Node, parent: str, single: bool, indent: int) -> None:
        v = self.var()
        kind = op[0]
        if kind == "get" and single:
            self.emit(indent, f"{v} = {parent}.get({op[1]!r})")
            self.emit(indent, f"if {v} is not None:")
            self.emit(indent + 1, f"if type({v}) is not list:")
            self.emit(indent + 2, f"{v} = [{v}]")
        else:
            if single:
                self.emit(indent, f"_l = [{parent}]")
                parent = "_l"
            if kind == "get":
                self.emit(indent, f"{v} = []")
                self.emit(indent, f"for _x in {parent}:")
                self.emit(indent + 1, f"_y = _x.get({op[1]!r})")
                self.emit(indent + 1, "if _y is not None:")
                self.emit(indent + 2, f"{v}.extend(_y) if type(_y) is list else {v}.append(_y)")
            elif kind == "filter":
                self.emit(indent, f"{v} = [_n for _n in {parent} if {op[1]}]")
            elif kind == "index":
                self.emit(indent, f"{v} = {parent}[{op[1]}:{op[1] + 1}]")
            elif kind == "last":
                self.emit(indent, f"{v} = {parent}[-1:]")
            elif kind == "compute":
                self.emit(indent, f"_t = {op[1]}")
                self.emit(indent, f"{v} = [] if _t is None else [_t]")
            else:
                raise AssertionError(op)
            self.emit(indent, f"if {v}:")
        self.node(node, v, False, indent + 1)
        self.emit(indent + 1, "pass")


def generate(name: str, tree: Tree, fallbacks: list[str]) -> str:
    """Python source of `def name(res) -> list[tuple]` producing every index row of `tree` (plus the calls in
    `fallbacks`, statements appending to `rows`), deduplicated in first-seen order."""
    e = _Emitter()
    e.emit(0, f"def {name}(res):")
    e.emit(1, "rows = []")
    e.emit(1, "ap = rows.append")
    e.emit(1, "comps = {}")
    e.tree(tree, {"res": "res"}, 1)
    for call in fallbacks:
        e.emit(1, call)
    e.emit(1, "out = list(dict.fromkeys(rows))")
    e.emit(1, "if comps:")
    e.emit(2, "out.extend([(_k[0], 'composite', list(_k[1])) for _k in comps])")
    e.emit(1, "return out")
    return "\n".join(e.lines) + "\n"
