"""The I/O layer: talking to a Sayna server over REST and WebSocket."""

from saynad.client.rest import RestClient
from saynad.client.session import Session, open_session

__all__ = ["RestClient", "Session", "open_session"]
