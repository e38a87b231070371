"""Publishing events into Kafka: the typed publisher, the JSONL tools and the platform simulator."""
