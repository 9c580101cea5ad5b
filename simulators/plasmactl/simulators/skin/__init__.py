"""Skin thermal models (behind the SkinModel port)."""
