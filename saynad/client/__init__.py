"""The I/O layer: talking to a Sayna server over REST and WebSocket."""

from saynad.client.rest import RestClient

__all__ = ["RestClient"]
