"""Runtime glue of archive-hub: settings, catalog, pipeline, quality gate, CLI and DAG factory."""
