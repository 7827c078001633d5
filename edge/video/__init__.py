"""The gateway's video pipeline: frame sources → motion gate → detector → tracker →
zones and rules → evidence-backed :class:`microbrain.protocol.Event` objects."""
