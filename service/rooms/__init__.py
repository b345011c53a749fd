"""Rooms: which namespace allows what, what a room remembers, and who is in it here."""
