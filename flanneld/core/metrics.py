"""The Prometheus text rendering of the daemon's counters and gauges (GET /metrics)."""

from __future__ import annotations

from collections.abc import Mapping

DROP = "drop_"


def render(counters: Mapping[str, int], gauges: Mapping[str, float]) -> str:
    """Data-plane counters become `flanneld_udp_<name>_total`, except drops, which share
    `flanneld_udp_dropped_total{reason="..."}`; gauges become `flanneld_<name>`."""
    lines: list[str] = []
    drops = {k[len(DROP):]: v for k, v in counters.items() if k.startswith(DROP)}
    if drops:
        lines += ["# HELP flanneld_udp_dropped_total Packets the udp backend dropped, by reason.",
                  "# TYPE flanneld_udp_dropped_total counter"]
        lines += [f'flanneld_udp_dropped_total{{reason="{r}"}} {v}'
                  for r, v in sorted(drops.items())]
    for name, value in sorted(counters.items()):
        if not name.startswith(DROP):
            lines += [f"# TYPE flanneld_udp_{name}_total counter",
                      f"flanneld_udp_{name}_total {value}"]
    for name, level in sorted(gauges.items()):
        lines += [f"# TYPE flanneld_{name} gauge", f"flanneld_{name} {level:g}"]
    return "\n".join(lines) + "\n"
