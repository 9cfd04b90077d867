"""The Kafka side of the service: clients, the consume-process-commit pipeline, restore,
rebalance handling, the fleet view of other instances' engines, topics and output records.

Nothing outside this package talks to Kafka except the tools (simulate, replay), which build
their clients with :mod:`service.kafka.clients` too. Private kafka-python attributes are used
only in :mod:`service.kafka.compat`.
"""
