"""The International Patient Summary: `Patient/{id}/$summary` answers an IPS 2.0.0 document Bundle built
from the record the caller may see (docs/registries.md, "Patient summary and the citizen's twin")."""
