"""OperationOutcome and the one exception type every layer raises to end a request with a FHIR error."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# HTTP status → the default OperationOutcome issue code when the raiser gives none.
_DEFAULT_CODE = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
                 406: "not-supported", 409: "conflict", 410: "deleted", 412: "conflict", 413: "too-costly",
                 415: "not-supported", 422: "processing", 429: "throttled", 500: "exception", 501: "not-supported"}


@dataclass
class OutcomeIssue:
    severity: str
    code: str
    diagnostics: str
    location: str | None = None

    def to_json(self) -> dict[str, Any]:
        issue: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.location:
            issue["expression"] = [self.location]
        return issue


@dataclass
class FHIRError(Exception):
    """Ends the current interaction with `status` and an OperationOutcome; raised from any layer."""

    status: int
    diagnostics: str
    code: str | None = None
    location: str | None = None
    issues: list[OutcomeIssue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)

    def outcome(self) -> dict[str, Any]:
        issues = self.issues or [OutcomeIssue("error", self.code or _DEFAULT_CODE.get(self.status, "processing"),
                                              self.diagnostics, self.location)]
        return operation_outcome(issues)


def operation_outcome(issues: list[OutcomeIssue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def information(message: str) -> dict[str, Any]:
    return operation_outcome([OutcomeIssue("information", "informational", message)])
