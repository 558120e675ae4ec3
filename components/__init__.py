"""Pulumi components of the AI-IA host, in four wings whose imports run one way:
release → platform → host → settings (names.py beside them)."""
