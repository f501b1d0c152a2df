"""The daemon's one HTTP port: metrics, health, the task API and callbacks."""
