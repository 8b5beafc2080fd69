"""The read-only web dashboard (aiohttp + Jinja2), /metrics and /healthz."""
