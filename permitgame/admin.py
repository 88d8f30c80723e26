"""Admin registrations (none yet: models arrive with the game server)."""
