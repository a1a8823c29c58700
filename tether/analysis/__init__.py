"""Investigation and comparison over the ledger: run summaries, incident reports, behavioural baselines,
anomaly rules and least-privilege policy suggestions. Plain Python; the CLI, the control API and the
live anomaly monitor call into it."""
