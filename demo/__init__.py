"""``make run``: the whole system on this machine, and one renewal pushed through it."""
