"""Pulumi components of the AI-IA host: one ComponentResource per concept."""
