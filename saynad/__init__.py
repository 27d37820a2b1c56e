"""saynad: a trio-native Sayna client library, and a daemon that supervises Sayna sessions.

The public surface is listed in ``__all__`` and pinned by a test. Names are imported
lazily, so ``import saynad.protocol`` stays free of trio and httpx (the protocol layer is
sans-IO) while ``from saynad import RestClient`` works as users expect.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from saynad._version import __version__

if TYPE_CHECKING:
    from saynad.client.rest import RestClient
    from saynad.client.session import Session, open_session
    from saynad.errors import SaynadError
    from saynad.protocol.messages import (
        ApiKeyAuth,
        AudioFrame,
        AzureAuth,
        ClearFrame,
        ClientFrame,
        ConfigFrame,
        Error,
        GoogleAuth,
        LiveKitConfig,
        LoadingAudioConfig,
        LoadingStartFrame,
        LoadingStopFrame,
        Message,
        Participant,
        ParticipantConnected,
        ParticipantDisconnected,
        Pronunciation,
        ProviderAuth,
        Ready,
        RoomMessage,
        SendMessageFrame,
        ServerEvent,
        SessionCommand,
        SipTransferError,
        SipTransferFrame,
        SpeakFrame,
        STTConfig,
        STTResult,
        Track,
        TrackSubscribed,
        TTSAudio,
        TTSConfig,
        TTSPlaybackComplete,
        TurnDetectSettings,
        UpdateConfigFrame,
        VADEvent,
        VadSettings,
    )
    from saynad.protocol.rest import (
        HealthResponse,
        LiveKitParticipantInfo,
        LiveKitRoomDetails,
        LiveKitRoomsResponse,
        LiveKitRoomSummary,
        LiveKitTokenResponse,
        MuteParticipantResponse,
        RemoveParticipantResponse,
        SipCallResponse,
        SipCallSipConfig,
        SipHook,
        SipHooksResponse,
        SipTransferResponse,
        VoiceDescriptor,
    )
    from saynad.protocol.webhooks import (
        SipWebhook,
        VerifiedSipWebhook,
        WebhookParticipant,
        WebhookRoom,
        WebhookVerifier,
        sign_webhook,
    )

__all__ = [
    "ApiKeyAuth",
    "AudioFrame",
    "AzureAuth",
    "ClearFrame",
    "ClientFrame",
    "ConfigFrame",
    "Error",
    "GoogleAuth",
    "HealthResponse",
    "LiveKitConfig",
    "LiveKitParticipantInfo",
    "LiveKitRoomDetails",
    "LiveKitRoomSummary",
    "LiveKitRoomsResponse",
    "LiveKitTokenResponse",
    "LoadingAudioConfig",
    "LoadingStartFrame",
    "LoadingStopFrame",
    "Message",
    "MuteParticipantResponse",
    "Participant",
    "ParticipantConnected",
    "ParticipantDisconnected",
    "Pronunciation",
    "ProviderAuth",
    "Ready",
    "RemoveParticipantResponse",
    "RestClient",
    "RoomMessage",
    "STTConfig",
    "STTResult",
    "SaynadError",
    "SendMessageFrame",
    "ServerEvent",
    "Session",
    "SessionCommand",
    "SipCallResponse",
    "SipCallSipConfig",
    "SipHook",
    "SipHooksResponse",
    "SipTransferError",
    "SipTransferFrame",
    "SipTransferResponse",
    "SipWebhook",
    "SpeakFrame",
    "TTSAudio",
    "TTSConfig",
    "TTSPlaybackComplete",
    "Track",
    "TrackSubscribed",
    "TurnDetectSettings",
    "UpdateConfigFrame",
    "VADEvent",
    "VadSettings",
    "VerifiedSipWebhook",
    "VoiceDescriptor",
    "WebhookParticipant",
    "WebhookRoom",
    "WebhookVerifier",
    "__version__",
    "open_session",
    "sign_webhook",
]

# Where each public name lives; resolved on first access by __getattr__.
_WHERE: dict[str, str] = {
    "RestClient": "saynad.client.rest",
    "Session": "saynad.client.session",
    "open_session": "saynad.client.session",
    "SaynadError": "saynad.errors",
    "ApiKeyAuth": "saynad.protocol.messages",
    "AudioFrame": "saynad.protocol.messages",
    "AzureAuth": "saynad.protocol.messages",
    "ClearFrame": "saynad.protocol.messages",
    "ClientFrame": "saynad.protocol.messages",
    "ConfigFrame": "saynad.protocol.messages",
    "Error": "saynad.protocol.messages",
    "GoogleAuth": "saynad.protocol.messages",
    "LiveKitConfig": "saynad.protocol.messages",
    "LoadingAudioConfig": "saynad.protocol.messages",
    "LoadingStartFrame": "saynad.protocol.messages",
    "LoadingStopFrame": "saynad.protocol.messages",
    "Message": "saynad.protocol.messages",
    "Participant": "saynad.protocol.messages",
    "ParticipantConnected": "saynad.protocol.messages",
    "ParticipantDisconnected": "saynad.protocol.messages",
    "Pronunciation": "saynad.protocol.messages",
    "ProviderAuth": "saynad.protocol.messages",
    "Ready": "saynad.protocol.messages",
    "RoomMessage": "saynad.protocol.messages",
    "SendMessageFrame": "saynad.protocol.messages",
    "ServerEvent": "saynad.protocol.messages",
    "SessionCommand": "saynad.protocol.messages",
    "SipTransferError": "saynad.protocol.messages",
    "SipTransferFrame": "saynad.protocol.messages",
    "SpeakFrame": "saynad.protocol.messages",
    "STTConfig": "saynad.protocol.messages",
    "STTResult": "saynad.protocol.messages",
    "Track": "saynad.protocol.messages",
    "TrackSubscribed": "saynad.protocol.messages",
    "TTSAudio": "saynad.protocol.messages",
    "TTSConfig": "saynad.protocol.messages",
    "TTSPlaybackComplete": "saynad.protocol.messages",
    "TurnDetectSettings": "saynad.protocol.messages",
    "UpdateConfigFrame": "saynad.protocol.messages",
    "VadSettings": "saynad.protocol.messages",
    "VADEvent": "saynad.protocol.messages",
    "HealthResponse": "saynad.protocol.rest",
    "LiveKitParticipantInfo": "saynad.protocol.rest",
    "LiveKitRoomDetails": "saynad.protocol.rest",
    "LiveKitRoomsResponse": "saynad.protocol.rest",
    "LiveKitRoomSummary": "saynad.protocol.rest",
    "LiveKitTokenResponse": "saynad.protocol.rest",
    "MuteParticipantResponse": "saynad.protocol.rest",
    "RemoveParticipantResponse": "saynad.protocol.rest",
    "SipCallResponse": "saynad.protocol.rest",
    "SipCallSipConfig": "saynad.protocol.rest",
    "SipHook": "saynad.protocol.rest",
    "SipHooksResponse": "saynad.protocol.rest",
    "SipTransferResponse": "saynad.protocol.rest",
    "VoiceDescriptor": "saynad.protocol.rest",
    "SipWebhook": "saynad.protocol.webhooks",
    "VerifiedSipWebhook": "saynad.protocol.webhooks",
    "WebhookParticipant": "saynad.protocol.webhooks",
    "WebhookRoom": "saynad.protocol.webhooks",
    "WebhookVerifier": "saynad.protocol.webhooks",
    "sign_webhook": "saynad.protocol.webhooks",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'saynad' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
