"""Deterministic workflow code: the procedure model, the workflows, calendar arithmetic."""
