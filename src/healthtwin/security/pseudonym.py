"""Research extracts: keyed pseudonyms, de-identified resources, and small-cell suppression.

A pseudonym is HMAC-SHA256(project key, value) where the project key is derived by HKDF from the server's
pseudonym root key and the project name. So: the same person gets the same pseudonym throughout one project
(longitudinal research works), different pseudonyms in different projects (two extracts cannot be joined),
and nobody without the root key can compute or reverse one (unlike a plain hash of a guessable national id).

`pseudonymize_resource` removes direct identifiers; it does not make data anonymous. Dates of events, rare
codes and free text in extensions remain quasi-identifiers: extracts still go to vetted researchers only,
and aggregates leave through `suppress_small_cells`.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import re
from typing import Any, Iterable, Sequence

import orjson

from .keys import hkdf

PERSON_TYPES = ("Patient", "Practitioner", "RelatedPerson", "Person")
_PERSON_FIELDS = ("name", "telecom", "photo", "contact", "communication")
_PERSON_EXTENSIONS = ("patient-mothersMaidenName", "patient-birthPlace", "humanname-mothers-family",
                      "patient-nationality")
_REF_RE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


class Pseudonymizer:
    def __init__(self, root_key: bytes) -> None:
        if len(root_key) < 32:
            raise ValueError("the pseudonym root key must be at least 32 bytes")
        self._root = root_key
        self._keys: dict[str, bytes] = {}

    def _key(self, project: str) -> bytes:
        if not project or not isinstance(project, str):
            raise ValueError("a pseudonym needs a project name")
        key = self._keys.get(project)
        if key is None:
            key = self._keys[project] = hkdf(self._root, "healthtwin pseudonym v1|" + project)
        return key

    def pseudonym(self, project: str, value: str) -> str:
        """32 hex characters: a valid FHIR id, 128 bits so collisions are negligible."""
        return hmac.new(self._key(project), value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    # -- resources ------------------------------------------------------------------------------------------
    def pseudonymize_resource(self, resource: dict[str, Any], project: str) -> dict[str, Any]:
        out = copy.deepcopy(resource)
        self._resource(out, project)
        return out

    def _resource(self, res: dict[str, Any], project: str) -> None:
        rtype = res.get("resourceType", "")
        if "id" in res:
            res["id"] = self.pseudonym(project, f"{rtype}/{res['id']}")
        meta = res.get("meta")
        res.pop("meta", None)
        if isinstance(meta, dict) and meta.get("profile"):
            res["meta"] = {"profile": meta["profile"]}  # versions, timestamps, sources could re-identify
        res.pop("text", None)  # narrative: names in clear
        res.pop("note", None)  # Annotations: free text, often naming people
        if rtype in PERSON_TYPES:
            for key in _PERSON_FIELDS:
                res.pop(key, None)
            if isinstance(res.get("extension"), list):  # a mother's maiden name or a birth place is a name
                res["extension"] = [e for e in res["extension"] if not (
                    isinstance(e, dict) and str(e.get("url", "")).endswith(_PERSON_EXTENSIONS))]
                if not res["extension"]:
                    del res["extension"]
            for key in ("birthDate", "deceasedDateTime"):
                if isinstance(res.get(key), str):
                    res[key] = res[key][:7]  # year-month
            if isinstance(res.get("address"), list):
                res["address"] = [self._address(a) for a in res["address"] if isinstance(a, dict)]
        if rtype == "Coverage" and isinstance(res.get("subscriberId"), str):  # the FIN, in Azerbaijan's data
            res["subscriberId"] = self.pseudonym(project, "subscriberId|" + res["subscriberId"])
        if isinstance(res.get("identifier"), list):
            res["identifier"] = [self._identifier(i, project) for i in res["identifier"] if isinstance(i, dict)]
        if rtype == "Bundle":
            for entry in res.get("entry") or ():
                if isinstance(entry, dict):
                    if isinstance(entry.get("fullUrl"), str):
                        entry["fullUrl"] = self._reference(entry["fullUrl"], project)
                    entry.pop("request", None)  # request URLs carry ids and search values
                    entry.pop("response", None)
                    if isinstance(entry.get("resource"), dict):
                        self._resource(entry["resource"], project)
        done = {"id", "identifier", "address", "meta", "subscriberId"} | ({"entry"} if rtype == "Bundle" else set())
        for key, value in list(res.items()):
            if key in done:
                continue
            if key == "contained" and isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        local_id = item.get("id")
                        self._resource(item, project)
                        if local_id is not None:
                            item["id"] = local_id  # only meaningful inside this resource ('#id'); kept
                continue
            res[key] = self._walk(value, project)

    def _walk(self, value: Any, project: str) -> Any:
        if isinstance(value, list):
            return [self._walk(v, project) for v in value]
        if not isinstance(value, dict):
            return value
        if isinstance(value.get("resourceType"), str):  # a nested resource (Parameters, Bundle entry, ...)
            nested = dict(value)
            self._resource(nested, project)
            return nested
        out: dict[str, Any] = {}
        is_reference = "reference" in value or ("identifier" in value and "type" in value)
        for key, item in value.items():
            if key == "note":
                continue  # Annotation: free text, often with names
            if key == "text" and isinstance(item, dict) and "div" in item:
                continue  # narrative
            if is_reference and key == "display":
                continue  # a reference's display is typically the person's name
            if is_reference and key == "reference" and isinstance(item, str):
                out[key] = self._reference(item, project)
            elif is_reference and key == "identifier" and isinstance(item, dict):
                out[key] = self._identifier(item, project)
            else:
                out[key] = self._walk(item, project)
        return out

    def _reference(self, ref: str, project: str) -> str:
        if ref.startswith("#"):
            return ref
        if ref.startswith("urn:uuid:"):
            h = self.pseudonym(project, ref)
            return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        if "?" in ref:  # a conditional reference carries search values (e.g. an identifier): keep the type only
            rtype = ref.split("?", 1)[0].rsplit("/", 1)[-1]
            return f"{rtype}/{self.pseudonym(project, ref)}"
        m = _REF_RE.search(ref)
        if m is None:
            return self.pseudonym(project, ref)
        return f"{m.group(1)}/{self.pseudonym(project, f'{m.group(1)}/{m.group(2)}')}"

    def _identifier(self, ident: dict[str, Any], project: str) -> dict[str, Any]:
        out = {k: v for k, v in ident.items() if k in ("system", "type", "use")}
        if "value" in ident:
            out["value"] = self.pseudonym(project, f"{ident.get('system', '')}|{ident['value']}")
        return out

    @staticmethod
    def _address(addr: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in addr.items() if k not in ("line", "text", "postalCode", "period")}
        if isinstance(addr.get("postalCode"), str):
            out["postalCode"] = addr["postalCode"][:3]  # postal region, not the street
        return out


def suppress_small_cells(rows: Sequence[dict[str, Any]], count_key: str, threshold: int = 5,
                         group_by: Sequence[str] | None = None, also: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Rows with 0 < count < threshold get count None and `suppressed: True` (and the `also` columns, e.g. a
    percentage derived from the count, None). Zero cells stay: they are not about anyone.

    With `group_by`, complementary suppression: a group with exactly one suppressed cell would let a reader
    recover it from the group total, so the next-smallest cell of that group is suppressed too."""
    also = tuple(also)
    out = [dict(r) for r in rows]

    def hide(row: dict[str, Any]) -> None:
        row[count_key] = None
        row["suppressed"] = True
        for key in also:
            row[key] = None

    for row in out:
        count = row.get(count_key)
        if isinstance(count, (int, float)) and 0 < count < threshold:
            hide(row)
    if group_by:
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for row in out:
            groups.setdefault(tuple(row.get(k) for k in group_by), []).append(row)
        for members in groups.values():
            if sum(1 for r in members if r.get("suppressed")) == 1:
                visible = [r for r in members if not r.get("suppressed") and isinstance(r.get(count_key), (int, float))
                           and r[count_key] > 0]
                if visible:
                    hide(min(visible, key=lambda r: r[count_key]))
    return out


def pseudonym(project: str, value: str, root_key: bytes) -> str:
    return Pseudonymizer(root_key).pseudonym(project, value)


def pseudonymize_resource(resource: dict[str, Any], project: str, root_key: bytes) -> dict[str, Any]:
    return Pseudonymizer(root_key).pseudonymize_resource(resource, project)


# -- the analytics store's keys ---------------------------------------------------------------------------------
ANALYTICS_INFO = "healthtwin analytics keys v1"  # its own HKDF label: no research project's pseudonyms match
_REFERENCE_VALUE = re.compile(rb'"reference":"((?:[^"\\]|\\.)*)"')
_ANALYTICS_DROP = ("name", "telecom", "photo", "contact", "identifier", "communication", "subscriberId", "text")


class AnalyticsKeys:
    """What the analytics store (DuckDB tables, Parquet files) holds instead of resource ids and birth dates.

    Every resource id becomes HMAC-SHA256(analytics key, "Type/id") (32 hex characters), in the resource and in
    every reference to it, so views still join a patient's encounters to the patient but hold no id of the
    store; the key is derived from the data folder's pseudonym.key under its own label. Birth dates keep the
    month, which is what the indicators need (age in completed years on 1 July, birth cohort), with the day
    reduced to a code that keeps their rules exact: 1, or 2 for a birth in July after the 1st (not yet a year
    older on 1 July), or, for a child who died in the month of its first birthday before reaching it, the day
    after the death's day. Names, telecom, identifiers, contacts and narrative are dropped before the views
    run; references lose their display and identifier."""

    def __init__(self, root_key: bytes) -> None:
        if len(root_key) < 32:
            raise ValueError("the analytics key root must be at least 32 bytes")
        self._key = hkdf(root_key, ANALYTICS_INFO)

    def key(self, rtype: str, rid: str) -> str:
        return hmac.new(self._key, f"{rtype}/{rid}".encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def resource(self, rtype: str, rid: str, content: bytes) -> bytes:
        """The resource `rtype/rid` as the analytics views read it."""
        from .at_rest import may_name_a_person
        if rtype not in PERSON_TYPES and rtype != "Coverage" and not may_name_a_person(content):
            # Most clinical resources: ids and references rewritten in the bytes, without parsing them.
            out = content.replace(b'"id":"' + rid.encode() + b'"', b'"id":"' + self.key(rtype, rid).encode() + b'"')
            return _REFERENCE_VALUE.sub(self._ref_bytes, out)
        doc = orjson.loads(content)
        if isinstance(doc.get("id"), str):
            doc["id"] = self.key(rtype, doc["id"])
        if rtype in PERSON_TYPES or rtype == "Coverage":
            for key in _ANALYTICS_DROP:
                doc.pop(key, None)
            if isinstance(doc.get("address"), list):
                doc["address"] = [Pseudonymizer._address(a) for a in doc["address"] if isinstance(a, dict)]
            if isinstance(doc.get("birthDate"), str):
                doc["birthDate"] = coarse_birth_date(doc["birthDate"], doc.get("deceasedDateTime"))
        self._refs(doc)
        return orjson.dumps(doc)

    def _ref_bytes(self, m: re.Match) -> bytes:
        return b'"reference":"' + self._reference(m.group(1).decode("utf-8")).encode("utf-8") + b'"'

    def _reference(self, ref: str) -> str:
        if ref.startswith("#"):
            return ref
        m = _REF_RE.search(ref)
        return f"{m.group(1)}/{self.key(m.group(1), m.group(2))}" if m is not None else self.key("", ref)

    def _refs(self, node: Any) -> None:
        if type(node) is dict:
            ref = node.get("reference")
            if type(ref) is str:
                node["reference"] = self._reference(ref)
                node.pop("display", None)
                node.pop("identifier", None)
            for value in node.values():
                if type(value) in (dict, list):
                    self._refs(value)
        elif type(node) is list:
            for item in node:
                if type(item) in (dict, list):
                    self._refs(item)


def coarse_birth_date(birth: str, death: Any = None) -> str:
    """A birth date reduced to its month, with the day coded so that age on 1 July, the birth cohort and
    survival to the first birthday come out as from the full date (AnalyticsKeys)."""
    try:
        born = dt.date.fromisoformat(birth[:10])
    except ValueError:
        return birth[:7]  # a partial date (year, year-month) is coarse already
    day = 2 if born.month == 7 and born.day > 1 else 1
    if isinstance(death, str):
        try:
            died = dt.date.fromisoformat(death[:10])
        except ValueError:
            died = None

        def first_birthday(d: dt.date) -> dt.date:  # 29 February: the 28th, as DuckDB's `+ INTERVAL 1 YEAR`
            return d.replace(year=d.year + 1, day=min(d.day, 28 if d.month == 2 else 31))
        pseudo = born.replace(day=day)
        if died is not None and first_birthday(pseudo) <= died < first_birthday(born):
            day = died.day + 1
    return f"{born.year:04d}-{born.month:02d}-{day:02d}"
