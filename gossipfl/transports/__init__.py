"""How peers reach each other: the wire format (``wire``), mutual TLS (``tls``), the client
and server interfaces with their HTTP and in-memory implementations (``channels``), and the
peer's HTTP API (``server``)."""
