"""Serving systems and the shared serving simulator (engine)."""
