"""The agent SDK: publish intents, await decisions, guard tool functions.

```python
async with Client("sqlite:///ordinance.db", agent_id="billing-bot", roles=["billing"]) as c:
    decision = await c.decide({"tool": "payments.transfer", "args": {...}})


@guard(tool="fs.read", client=sync_client)
def read_file(path: str) -> str: ...
```
"""

from ordinance.client.client import (
    DEFAULT_CLOSE_TIMEOUT_S,
    DEFAULT_OPEN_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    Client,
    SyncClient,
)
from ordinance.client.decision import (
    CLIENT_CLOSED,
    CLIENT_CODES,
    CLIENT_INVALID_REQUEST,
    CLIENT_TIMEOUT,
    TRANSPORT_ERROR,
    ClientDecision,
)
from ordinance.client.errors import ActionDenied, ApprovalRequired, GuardError
from ordinance.client.guard import guard

__all__ = [
    "CLIENT_CLOSED",
    "CLIENT_CODES",
    "CLIENT_INVALID_REQUEST",
    "CLIENT_TIMEOUT",
    "DEFAULT_CLOSE_TIMEOUT_S",
    "DEFAULT_OPEN_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "TRANSPORT_ERROR",
    "ActionDenied",
    "ApprovalRequired",
    "Client",
    "ClientDecision",
    "GuardError",
    "SyncClient",
    "guard",
]
