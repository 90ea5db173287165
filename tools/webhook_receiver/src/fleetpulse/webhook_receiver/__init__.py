"""A sample receiver of FleetPulse webhooks that verifies their signatures."""
