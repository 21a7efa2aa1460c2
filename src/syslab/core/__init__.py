"""The lab equipment every system shares: claims, runs, reports, hardware and model specs, data."""
