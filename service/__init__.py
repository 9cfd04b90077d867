"""vibewatch service: Kafka in, per-engine LSTM state, anomaly scores out.

Stage modules (ingest, state, inference, scoring, outputs) depend only on the domain types
and their own library; ``service.kafka.pipeline`` wires them and ``service.api`` builds the app.
"""

__version__ = "0.1.0"
