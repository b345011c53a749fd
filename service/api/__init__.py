"""The chat HTTP API (`/api/…`, docs/api.md)."""
