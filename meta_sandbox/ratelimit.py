"""Meta's throughput limit: accepted sends per phone number in any 1-second window.

A sliding window of the accepted sends' times per number. Only accepted sends count, so a
client that keeps knocking still gets `rate` messages a second through, as with Meta. The
largest count ever seen in one window is kept, so a benchmark can prove a sender never went
above its rate.
"""

from __future__ import annotations

import bisect
from collections import deque

WINDOW_SECONDS = 1.0


class SendWindows:
    def __init__(self) -> None:
        self._times: dict[str, deque[float]] = {}
        self.max_in_one_second: dict[str, int] = {}

    def _window(self, phone_number_id: str, now: float) -> deque[float]:
        """The number's times in the 1-s window ending at `now` or its latest time, if later:
        requests are handled in about, not exactly, the order they arrived (`arrivals`)."""
        times = self._times.get(phone_number_id)
        if times is None:
            times = self._times[phone_number_id] = deque()
        horizon = max(now, times[-1] if times else now) - WINDOW_SECONDS
        while times and times[0] <= horizon:
            times.popleft()
        return times

    def count(self, phone_number_id: str, now: float) -> int:
        return len(self._window(phone_number_id, now))

    def record(self, phone_number_id: str, now: float) -> None:
        times = self._window(phone_number_id, now)
        if times and now <= times[-1] - WINDOW_SECONDS:
            return  # handled over a second after later ones: its windows are all past
        bisect.insort(times, now)
        if len(times) > self.max_in_one_second.get(phone_number_id, 0):
            self.max_in_one_second[phone_number_id] = len(times)

    def clear(self) -> None:
        self._times.clear()
        self.max_in_one_second.clear()
