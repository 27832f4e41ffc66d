"""
The ways in: each front end turns its bytes or frames into commands for a
session, and the session's events into its bytes or frames, and nothing more.
"""
