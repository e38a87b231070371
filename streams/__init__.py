"""faust-streaming processors: validate, dead-letter, de-duplicate, enrich, lifecycles, live aggregates."""
