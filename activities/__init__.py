"""Every side effect of the workflows: the read model, notifications. Built by the worker."""
