"""MQTT brokers microbrain can run itself: the embedded one and generated Mosquitto configs."""
