"""Flask web layer."""
