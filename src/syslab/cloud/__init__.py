"""Cloud resource systems (OSDI'25 / ATC'25)."""
