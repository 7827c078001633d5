"""The compound gateway: video analytics, IoT sensors, the durable uplink to the cloud."""
