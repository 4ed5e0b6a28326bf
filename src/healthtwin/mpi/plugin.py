"""What the patient index adds to the HTTP application (api/plugins.py).

* write rules on Patient: a FIN belongs to one active Patient (fin.py); the candidate index follows every
  write (keys.py); a create that matches a stored citizen is answered by configuration (`on_match`);
* a write rule on Task: a completed review recording "not the same person" (review.py);
* the operations `Patient/$match` (match.py), `Patient/$merge` and `Patient/$unmerge` (links.py).

`on_match` (HEALTHTWIN_MPI_ON_MATCH): "off" (the default: only the FIN is checked on create), "review" (a
probable or certain match is stored and queued for a data steward as a Task), "existing" (a certain match
answers the create with the stored citizen; a probable one is queued) or "refuse" (a certain match is a 409;
a probable one is queued)."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from ..api import guard
from ..api.plugins import Contribution
from ..api.write_rules import WriteEvent, WriteRule
from ..fhir.outcome import FHIRError
from . import features, fin, keys, links, match, model, review

ON_MATCH = ("off", "review", "existing", "refuse")


def weights_for(data_dir: Path | None) -> model.Weights:
    """The deployment's own EM estimates (<data>/mpi/weights.json, from `bench/mpi.py --weights-out`) or
    model.DEFAULT_WEIGHTS."""
    path = Path(data_dir) / "mpi" / "weights.json" if data_dir is not None else None
    if path is not None and path.exists():
        return model.Weights.from_json(json.loads(path.read_text()))
    return model.DEFAULT_WEIGHTS


def _keep_keys(event: WriteEvent) -> None:
    rid = event.stored.id if event.stored is not None else (event.previous.id if event.previous else None)
    if rid is not None:
        keys.write(event.tx, rid, event.resource if event.interaction != "delete" else None)


def _match_on_create(weights: model.Weights, on_match: str, event: WriteEvent) -> None:
    if event.interaction != "create" or event.resource is None or not fin.holds_identity(event.resource):
        return
    found = match.find(event.tx.store, features.of_patient(event.resource), weights, tx=event.tx)
    if not found:
        return
    row, weight, grade, evidence = found[0]
    if grade == "certain" and on_match in ("existing", "refuse"):
        visible = guard.release_one(event.services, event.ctx, row) is not None
        if on_match == "existing" and visible and event.resource.get("id") is None:  # not a PUT with its id
            event.existing = row
            return
        named = f" (Patient/{row.id})" if visible else ""
        raise FHIRError(409, f"This Patient is certainly a citizen already registered{named}: update that "
                             "record instead", "duplicate")
    if grade in ("certain", "probable"):
        event.notes["mpi-review"] = (row.id, weight - weights.prior, evidence)


def _queue_review(event: WriteEvent) -> None:
    pending = event.notes.get("mpi-review")
    if pending is not None and event.stored is not None:
        candidate, weight, evidence = pending
        event.tx.create("Task", review.review_task(event.stored.id, candidate, weight, evidence))


def contribution(services: Any, on_duplicate: str = "refuse", on_match: str = "off") -> Contribution:
    if on_duplicate not in fin.POLICIES:
        raise ValueError(f"HEALTHTWIN_MPI_ON_DUPLICATE is one of {', '.join(fin.POLICIES)}, not {on_duplicate!r}")
    if on_match not in ON_MATCH:
        raise ValueError(f"HEALTHTWIN_MPI_ON_MATCH is one of {', '.join(ON_MATCH)}, not {on_match!r}")
    keys.ensure_schema(services.store)
    review.ensure_schema(services.store)
    links.ensure_schema(services.store)
    weights = weights_for(getattr(services, "data_dir", None))
    rules = [WriteRule("mpi-fin-unique", ("Patient",), check=partial(fin.check_unique, policy=on_duplicate))]
    if on_match != "off":
        rules.append(WriteRule("mpi-match-on-create", ("Patient",), check=partial(_match_on_create, weights, on_match),
                               react=_queue_review))
    rules += [WriteRule("mpi-candidate-keys", ("Patient",), react=_keep_keys),
              WriteRule("mpi-review-decisions", ("Task",), react=review.on_task_written)]
    operations = [match.operation(lambda: weights), *links.operations()]
    return Contribution("mpi", operations=operations, write_rules=rules)
