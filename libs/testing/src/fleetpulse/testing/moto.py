"""moto server fixture (to be written)."""
