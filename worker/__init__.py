"""Builds the Temporal client and runs the worker; the ``hyojunka`` command line."""
