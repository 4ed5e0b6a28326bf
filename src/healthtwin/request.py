"""The one seam every request passes through: who is calling, and how they want the answer.

`RequestContext` is built once per request before any interaction runs and is handed to every
interaction, operation and store call that acts on the caller's behalf. Authorization and audit
(security/) hook in here: `Services.policy` decides, `Services.audit` records, and neither needs the
interactions rewritten. Until the trust work lands the policy in force is explicit: OpenPolicy.
"""
from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from typing import Any, Protocol


# Request ids: a random prefix per process and a counter, unique without a system call per request.
_PROCESS_ID = os.urandom(6).hex()
_REQUESTS = itertools.count(1)


def _new_process_id() -> None:  # a forked child must not repeat its parent's ids
    global _PROCESS_ID
    _PROCESS_ID = os.urandom(6).hex()


os.register_at_fork(after_in_child=_new_process_id)

PURPOSE_CODE = re.compile(r"^[A-Z]{2,12}$")  # an HL7 v3 ActReason code: what a purpose of use is stated as


@dataclass(frozen=True)
class Caller:
    """Who is asking: a person or a system, with their roles and granted scopes."""

    subject: str = "anonymous"
    kind: str = "anonymous"  # anonymous | person | system
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    organization: str | None = None
    client_id: str | None = None
    patient: str | None = None  # "Patient/123": the person's own record, or a patient-context launch
    fhir_user: str | None = None  # "Practitioner/9", "Patient/123", "RelatedPerson/5"
    purpose: str | None = None  # a purpose of use the token was issued for (IHE IUA): every request states it


@dataclass
class RequestContext:
    caller: Caller
    base_url: str
    method: str = "GET"
    path: str = "/"
    pretty: bool = False
    prefer_return: str = "representation"  # minimal | representation | OperationOutcome
    prefer_handling: str = "lenient"  # strict | lenient
    request_id: str = field(default_factory=lambda: f"{_PROCESS_ID}{next(_REQUESTS):010x}")
    headers: dict[str, str] = field(default_factory=dict)
    client_address: str | None = None
    # Filled while the request runs, read by the audit step: the interaction as BALP names it, the resource
    # it targets, and the purpose of use (e.g. BTG when break-the-glass access was used).
    interaction: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    purpose: str | None = None
    criteria: list[tuple[str, str]] | None = None  # search criteria read from a POST _search form body
    # Per-request memo of the policy (the caller's visible patients, label exclusions...), computed once.
    security: dict[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Policy(Protocol):
    """Decides whether `ctx.caller` may do `interaction` on `resource_type` (and the resource, if known).

    A policy may also implement (see api/guard.py, which falls back to "allow" when they are absent):
    * `restrict(ctx, query)`: add criteria to a SearchQuery so it only matches what the caller may see
      (totals then never count hidden resources);
    * `readable(ctx, stored, checked)`: filter (and mask) resources about to be released; `checked` says the
      search criteria already enforced visibility, so only masking is left. Only api/guard.release calls it,
      and responses accept only what release returns;
    * `check_existing(ctx, rtype, current, letter)`: may the caller update (`u`) or delete (`d`) this row.
    """

    def authorize(self, ctx: RequestContext, interaction: str, resource_type: str | None,
                  resource: dict[str, Any] | None = None) -> None: ...


class OpenPolicy:
    """Allows everything: for tests and `serve --insecure-open` only, which says so loudly."""

    open = True

    def authorize(self, ctx: RequestContext, interaction: str, resource_type: str | None,
                  resource: dict[str, Any] | None = None) -> None:
        return None
