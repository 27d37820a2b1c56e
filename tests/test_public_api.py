"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import pytest

import saynad

PINNED = {
    "ApiKeyAuth", "AudioFrame", "AzureAuth", "ClearFrame", "ClientFrame", "ConfigFrame", "Error",
    "GoogleAuth",
    "HealthResponse", "LiveKitConfig", "LiveKitParticipantInfo", "LiveKitRoomDetails",
    "LiveKitRoomSummary", "LiveKitRoomsResponse", "LiveKitTokenResponse", "LoadingAudioConfig",
    "LoadingStartFrame", "LoadingStopFrame", "Message", "MuteParticipantResponse", "Participant",
    "ParticipantConnected", "ParticipantDisconnected", "Pronunciation", "ProviderAuth", "Ready",
    "RemoveParticipantResponse", "RestClient", "RoomMessage", "STTConfig", "STTResult",
    "SaynadError", "SendMessageFrame", "ServerEvent", "Session", "SessionCommand",
    "SipCallResponse",
    "SipCallSipConfig", "SipHook", "SipHooksResponse", "SipTransferError", "SipTransferFrame",
    "SipTransferResponse", "SipWebhook", "SpeakFrame", "TTSAudio", "TTSConfig",
    "TTSPlaybackComplete", "Track", "TrackSubscribed", "TurnDetectSettings", "UpdateConfigFrame",
    "VADEvent", "VadSettings", "VerifiedSipWebhook", "VoiceDescriptor", "WebhookParticipant",
    "WebhookRoom", "WebhookVerifier", "__version__", "open_session", "sign_webhook",
}  # fmt: skip


def test_public_names_are_pinned() -> None:
    assert set(saynad.__all__) == PINNED


def test_every_public_name_resolves() -> None:
    for name in saynad.__all__:
        assert getattr(saynad, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        saynad.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
