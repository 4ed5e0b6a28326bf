"""The master patient index: one citizen, one record (matching, links, merges, review). docs/mpi.md."""
