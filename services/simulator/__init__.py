"""Nuvemshop (Tiendanube) API simulator: the store API (orders, webhooks) with Nuvemshop's
auth, rate limit, paging and type quirks, the OAuth install, signed webhook delivery with the real
retry schedule, and a `/_sim/` control API. Used by the demo, the tests and the benchmark; see
`state.SimState`, `app.create_app` and `runner.start_simulator`.
"""

from services.simulator.app import create_app
from services.simulator.runner import Running, start_simulator
from services.simulator.state import SimState
from services.simulator.webhooks import WebhookDispatcher, send_webhook, sign

__all__ = [
    "Running",
    "SimState",
    "WebhookDispatcher",
    "create_app",
    "send_webhook",
    "sign",
    "start_simulator",
]
