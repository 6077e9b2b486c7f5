"""The Graph API version the service calls unless `META_GRAPH_VERSION` pins another."""

from __future__ import annotations

# Meta's current version: v27.0, released November 4, 2026 (Meta's changelog,
# developers.facebook.com/docs/graph-api/changelog). Meta serves each version about two years
# after the next one is out, so a pinned version keeps working that long.
GRAPH_VERSION = "v27.0"
