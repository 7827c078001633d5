"""The wire contract between gateways and the cloud: topics and payloads."""

from microbrain.protocol.codec import MAX_CLOCK_SKEW, Message, Payload, decode, decode_payload, encode
from microbrain.protocol.errors import ProtocolError
from microbrain.protocol.payloads import (
    COMMAND_NAMES,
    MAX_ACK_RANGES,
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    Ack,
    Announce,
    Command,
    ConfigReload,
    Event,
    EventState,
    EvidenceKind,
    EvidenceRef,
    GatewayState,
    Health,
    ModelPush,
    ModelRef,
    Reading,
    Recheck,
    Reply,
    Severity,
    Status,
    new_id,
    utc_now,
)
from microbrain.protocol.topics import (
    Channel,
    GatewayPath,
    Topic,
    check_id,
    cloud_subscription,
    is_valid_id,
    parse_topic,
)

__all__ = [
    "COMMAND_NAMES", "MAX_ACK_RANGES", "MAX_CLOCK_SKEW", "MAX_PAYLOAD_BYTES", "SCHEMA_VERSION",
    "Ack", "Announce", "Channel", "Command", "ConfigReload", "Event", "EventState",
    "EvidenceKind", "EvidenceRef", "GatewayPath", "GatewayState", "Health", "Message",
    "ModelPush", "ModelRef", "Payload", "ProtocolError", "Reading", "Recheck", "Reply",
    "Severity", "Status", "Topic", "check_id", "cloud_subscription", "decode",
    "decode_payload", "encode", "is_valid_id", "new_id", "parse_topic", "utc_now",
]
