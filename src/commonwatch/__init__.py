"""CommonWatch: a multilateral threat-intelligence exchange.

Members share STIX 2.1 objects over TAXII 2.1; TLP 2.0 markings are enforced on
every read by one visibility-filtered query service (see docs/sharing-model.md).
"""

__version__ = "0.2.0"
