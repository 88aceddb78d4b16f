"""The static dashboard: results rendered into pages, with templates and static files as package data."""
