"""polycrowd: crowdsourcing through chat."""

__version__ = "0.1.0"
