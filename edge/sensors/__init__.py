"""IoT sensors on the gateway: vendor payloads → Readings → rule events."""
