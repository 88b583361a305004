"""HTTP routes of the API (thin: they delegate to the library)."""
