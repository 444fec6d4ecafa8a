"""What the API and the activities share: settings, the SQL read model, the local-body registry."""
