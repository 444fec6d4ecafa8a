"""FastAPI application: REST under /api/v1, web pages, auth and problem+json errors."""
