"""Sensors: files landing (start runs) and run failures (record and alert)."""
