"""Local infrastructure: the Kafka broker, topics and the test PostgreSQL server."""
