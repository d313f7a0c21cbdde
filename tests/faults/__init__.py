"""Fault-test infrastructure: private RabbitMQ nodes, a private PostgreSQL, a TCP proxy, a cluster.

Nothing here ever touches the machine's shared broker (127.0.0.1:5672) or database
(127.0.0.1:5432): a test that breaks a dependency breaks a private one it started itself.
"""
