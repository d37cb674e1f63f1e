"""gRPC adapters: the alliance PKI, mutual-TLS credentials, the identity interceptor and thin servicers.

Identity always comes from the peer's certificate, checked before any handler runs; never from a
request field.
"""
