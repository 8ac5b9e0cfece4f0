"""Open-loop load generation: constant rates, steps, and replayed traces."""
