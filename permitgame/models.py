"""Game, Seat, Move and RoundRecord arrive with the game server (STYLE.md section 2)."""
