"""MIC event pipeline: shared configuration, the `mic-pipeline` command and local infrastructure."""
