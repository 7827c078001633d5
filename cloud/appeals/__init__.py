"""Residents' appeals (居民诉求), from intake to answer.

==================  ===========================================================
module              job
==================  ===========================================================
``categories``      the categories file (configs/appeal_categories.yaml)
``classify``        a category from the Chinese text (the resident's choice wins)
``config``          ``MB_CLOUD_APPEALS_*``: photos, rate limit, deadlines by category
``tokens``          tickets, access keys, the contact's HMAC, phone numbers
``routing``         who answers: building leader, property company or a department
``linking``         the live camera/sensor alert of the same matter and place
``photos``          size and sniffed-type checks, kept on disk per ticket
``throttle``        appeals per contact per window, counted in the database
``intake``          one appeal in: check, count, classify, route, deadline, link
``lifecycle``       the MOVES table, the audit log, overdue escalation
``access``          the reporter's view (ticket + key or phone), staff scope, rating
``queries``         the staff's list
``hotline``         12345 work orders imported from JSON or CSV
``scheduling``      the scheduler's steps (escalation, tidy-up)
``views``           what the reporter and the staff see
==================  ===========================================================
"""
