"""The ``hyojunka`` command: runs the API, the worker or both with a Temporal dev server
(``up``), and the operator's chores. It is the one room that imports both the API and the
worker."""
