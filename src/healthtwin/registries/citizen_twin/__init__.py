"""The citizen's twin as data: `Patient/{id}/$twin` answers risks with their inputs, kidney function, due
care and the trends of key indicators, each figure naming the records and the model it came from
(docs/registries.md, "Patient summary and the citizen's twin")."""
