"""The web pages people use (日本語): projects, approvals, escalations, reports, people and
sign-in, over the same command and query layer as the REST routes (api/routers). Nothing
below this room imports it; api/main.py puts the rooms together."""
