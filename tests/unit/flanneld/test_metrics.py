"""flanneld.core.metrics: the Prometheus text of counters and gauges."""

from __future__ import annotations

from flanneld.core.metrics import render


def test_drops_share_one_metric_with_a_reason_label() -> None:
    text = render({"tx_packets": 5, "drop_unknown_peer": 2, "drop_no_route": 0},
                  {"peers": 2, "lease_expires_in_seconds": 12.5})
    lines = text.splitlines()
    assert 'flanneld_udp_dropped_total{reason="unknown_peer"} 2' in lines
    assert 'flanneld_udp_dropped_total{reason="no_route"} 0' in lines
    assert "flanneld_udp_tx_packets_total 5" in lines
    assert "flanneld_peers 2" in lines and "flanneld_lease_expires_in_seconds 12.5" in lines
    assert lines.count("# TYPE flanneld_udp_dropped_total counter") == 1
    assert text.endswith("\n")
