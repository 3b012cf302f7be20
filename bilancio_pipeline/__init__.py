"""bilancio_pipeline: run, keep and query Kalecki-ring simulation sweeps."""

__version__ = "0.1.0"
