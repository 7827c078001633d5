"""microbrain: what the edge gateways and the cloud share.

The wire protocol (:mod:`microbrain.protocol`), the site hierarchy
(:mod:`microbrain.site`), locations of bundled resources and the ``microbrain`` CLI.
"""

__version__ = "0.1.0"
