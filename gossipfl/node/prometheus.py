"""A peer's counters and exchange-latency histogram, in Prometheus text exposition format.

Small enough to write out by hand: no client library, no global registry, one instance
per peer, so many peers in one process keep separate numbers.
"""

from __future__ import annotations

import bisect
import collections

__all__ = ["PeerMetrics"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PeerMetrics:
    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.rounds = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.rejected: collections.Counter[str] = collections.Counter()
        self.failures: collections.Counter[str] = collections.Counter()
        self._bucket_counts = [0] * (len(_BUCKETS) + 1)
        self._latency_sum = 0.0

    def observe_exchange(self, seconds: float) -> None:
        self._bucket_counts[bisect.bisect_left(_BUCKETS, seconds)] += 1
        self._latency_sum += seconds

    def render(self) -> str:
        label = f'peer="{self.peer}"'
        lines = [
            "# HELP gossipfl_rounds_total Rounds this peer has completed.",
            "# TYPE gossipfl_rounds_total counter",
            f"gossipfl_rounds_total{{{label}}} {self.rounds}",
            "# HELP gossipfl_bytes_received_total Bytes of model messages received.",
            "# TYPE gossipfl_bytes_received_total counter",
            f"gossipfl_bytes_received_total{{{label}}} {self.bytes_in}",
            "# HELP gossipfl_bytes_sent_total Bytes of model messages sent.",
            "# TYPE gossipfl_bytes_sent_total counter",
            f"gossipfl_bytes_sent_total{{{label}}} {self.bytes_out}",
            "# HELP gossipfl_rejected_requests_total Requests refused, by reason.",
            "# TYPE gossipfl_rejected_requests_total counter",
        ]
        lines += [
            f'gossipfl_rejected_requests_total{{{label},reason="{reason}"}} {count}'
            for reason, count in sorted(self.rejected.items())
        ]
        lines += [
            "# HELP gossipfl_neighbour_failures_total Failed exchanges, by neighbour.",
            "# TYPE gossipfl_neighbour_failures_total counter",
        ]
        lines += [
            f'gossipfl_neighbour_failures_total{{{label},neighbour="{n}"}} {count}'
            for n, count in sorted(self.failures.items())
        ]
        lines += [
            "# HELP gossipfl_exchange_seconds Duration of one exchange with a neighbour.",
            "# TYPE gossipfl_exchange_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip((*_BUCKETS, float("inf")), self._bucket_counts, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'gossipfl_exchange_seconds_bucket{{{label},le="{le}"}} {cumulative}')
        lines.append(f"gossipfl_exchange_seconds_sum{{{label}}} {self._latency_sum}")
        lines.append(f"gossipfl_exchange_seconds_count{{{label}}} {cumulative}")
        return "\n".join(lines) + "\n"
