"""Native-only serving: the static server for `dist/` (and, later, the optional agent server)."""
