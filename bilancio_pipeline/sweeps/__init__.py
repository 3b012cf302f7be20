"""Sweeps: specs, the runs they expand to, and the job lifecycle."""
