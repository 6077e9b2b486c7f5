"""Meta's WhatsApp Cloud API itself: what Meta sends, answers and expects, in plain Python.

The Graph client and its errors, the webhook signature and payload, template components and the
body of a template message, messaging-limit tiers and throughput. Every app of the project may
import this package; it imports none of them (tests/test_import_graph.py holds it to that), so
Meta's rules are stated here once and configuration comes in as arguments.
"""
