"""The `bilancio-pipeline` command line."""
