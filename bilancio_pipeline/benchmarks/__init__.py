"""Scripts that print timings of the pipeline's hot paths (python -m bilancio_pipeline.benchmarks.<name>)."""
