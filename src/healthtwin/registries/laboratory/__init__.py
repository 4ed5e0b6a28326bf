"""The laboratory registry: an order (ServiceRequest) is fulfilled through a Task the laboratory owns
(requested → accepted → in-progress → completed), reported as a DiagnosticReport with its Observations; each
result is interpreted against its reference range, and a critical one raises a Flag and a Communication to
the practitioner who ordered it, in the transaction that stores the result (docs/registries.md)."""
