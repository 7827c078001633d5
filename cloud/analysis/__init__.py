"""Data analysis of alerts (issue #12): counts grouped by place, kind, level, severity,
local day and hour; time to acknowledge and resolve; daily trends beside the period
before; top places; the latest readings of sensors. Every query is scoped by the user
(:func:`cloud.auth.scope_clause`) and bounded by an indexed range (``queries.py``)."""
