"""Private Mosquitto broker fixture (to be written)."""
