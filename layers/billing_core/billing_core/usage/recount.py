"""A recount: every window of one customer-meter counted again, serially and in memory, from the stored batch
documents, and set beside what the counters hold (docs/runbooks/usage.md, "Recount a window").

The counters are the sum of what each document's one commit added (ADR 0025), so a recount of the counted
documents must equal them window by window; a pending document is accepted but not counted yet (the aggregator
is behind: the difference it explains is not an error). Anything else is a fault to investigate before any
invoice is issued from the window."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from billing_core.usage.aggregation import EMPTY, Tally, aggregate, merge, periods_named_by, total
from billing_core.usage.model import Aggregation, BatchDocument
from billing_core.usage.ports import BatchState
from billing_core.usage.windows import WindowKey


@dataclass(frozen=True)
class WindowRecount:
    window: WindowKey
    counted: int  # a serial recount of the counted documents' events
    pending: int  # the same with the pending documents' events added: what the window will read once they count
    stored: int  # what the counters read

    @property
    def agrees(self) -> bool:
        return self.stored == self.counted


def _only(document: BatchDocument, customer_id: str, meter: str) -> BatchDocument | None:
    events = tuple(one for one in document.events if (one.customer_id, one.meter) == (customer_id, meter))
    if not events:
        return None
    return document.model_copy(update={"events": events})


def recount_tallies(
    documents: Iterable[tuple[BatchDocument, BatchState]], customer_id: str, meter: str
) -> tuple[dict[WindowKey, Tally], dict[WindowKey, Tally]]:
    """(counted, counted + pending) tallies per window of the customer-meter, from the documents' own periods."""
    counted: dict[WindowKey, Tally] = {}
    everything: dict[WindowKey, Tally] = {}
    for document, state in documents:
        own = _only(document, customer_id, meter)
        if own is None:
            continue
        for key, tally in aggregate([own], periods_named_by([own])).items():
            everything[key.window] = merge(everything.get(key.window, EMPTY), tally)
            if state is BatchState.COUNTED:
                counted[key.window] = merge(counted.get(key.window, EMPTY), tally)
    return counted, everything


def recount(
    documents: Iterable[tuple[BatchDocument, BatchState]],
    customer_id: str,
    meter: str,
    aggregation: Aggregation,
    stored: dict[WindowKey, int],
    since: datetime | None = None,
) -> list[WindowRecount]:
    """Every window the documents or `stored` name (starting at or after `since`), recounted, in window order."""
    counted, everything = recount_tallies(documents, customer_id, meter)
    windows = sorted(window for window in {*counted, *everything, *stored} if since is None or window.start >= since)
    return [
        WindowRecount(
            window=window,
            counted=total(counted.get(window, EMPTY), aggregation),
            pending=total(everything.get(window, EMPTY), aggregation),
            stored=stored.get(window, 0),
        )
        for window in windows
    ]
