"""bench.throughput's summary: medians per mode and the ratios, from made-up samples."""

from __future__ import annotations

import json

import pytest

from bench.throughput import Sample, per_round_ratios, print_summary, summary


def sample(mode: str, rnd: int, **figures) -> Sample:
    base = {"tcp1_mbps": 100.0, "retransmits": 0, "cpu_client": 10.0, "cpu_server": 20.0,
            "tcp4_mbps": 100.0, "udp_mbps": 100.0, "udp_loss_pct": 0.0, "rtt_ms": 1.0}
    return Sample(mode, rnd, **{**base, **figures})


def test_medians_per_mode_over_the_rounds():
    samples = [sample("udp", 1, tcp1_mbps=900, rtt_ms=0.5, tunnel_cpu=[60, 70],
                      cpu_s_per_gbit=1.5, pps=80_000),
               sample("udp", 2, tcp1_mbps=1100, rtt_ms=0.9, tunnel_cpu=[80, 50],
                      cpu_s_per_gbit=1.2, pps=90_000),
               sample("udp", 3, tcp1_mbps=1000, rtt_ms=0.7, tunnel_cpu=[70, 60],
                      cpu_s_per_gbit=1.3, pps=100_000)]
    udp = summary(samples)["modes"]["udp"]
    assert udp["tcp1_mbps_median"] == 1000
    assert udp["tcp1_mbps_rounds"] == [900, 1100, 1000]
    assert udp["rtt_ms_median"] == 0.7
    assert udp["tunnel_cpu_median"] == [70, 60]          # per process, not per sample
    assert udp["cpu_s_per_gbit_median"] == 1.3
    assert udp["pps_median"] == 90_000


def test_kernel_modes_have_no_tunnel_figures():
    vxlan = summary([sample("vxlan", 1)])["modes"]["vxlan"]
    assert vxlan["tunnel_cpu_median"] is None
    assert vxlan["cpu_s_per_gbit_median"] is None
    assert vxlan["pps_median"] is None


def test_modes_in_benchmark_order_and_only_those_measured():
    result = summary([sample("host-gw", 1), sample("udp", 1), sample("flanneld", 1)])
    assert list(result["modes"]) == ["flanneld", "udp", "host-gw"]
    assert result["vs_openvpn"] == {}
    assert result["vs"] == {}


def test_ratio_of_medians_against_the_kernel_modes():
    samples = [sample("flanneld", r, tcp1_mbps=m) for r, m in ((1, 700), (2, 800), (3, 750))]
    samples += [sample("vxlan", r, tcp1_mbps=m) for r, m in ((1, 15000), (2, 14000), (3, 1))]
    samples += [sample("host-gw", r, tcp1_mbps=16000) for r in (1, 2, 3)]
    ratios = summary(samples)["ratios_of_medians"]
    assert ratios == {"flanneld/vxlan": pytest.approx(750 / 14000),
                      "flanneld/host-gw": pytest.approx(750 / 16000)}


def test_against_openvpn_the_median_of_per_round_ratios_not_the_ratio_of_medians():
    # Each round is paired with openvpn's in the same round: 0.8, 1.2 and 3.0, median 1.2;
    # the ratio of the medians (400 / 500) would be 0.8.
    samples = [sample("udp", r, tcp1_mbps=m) for r, m in ((1, 400), (2, 1200), (3, 300))]
    samples += [sample("openvpn", r, tcp1_mbps=m) for r, m in ((1, 500), (2, 1000), (3, 100))]
    tcp1 = summary(samples)["vs_openvpn"]["udp"]["tcp1_mbps"]
    assert tcp1["rounds"] == pytest.approx([0.8, 1.2, 3.0])
    assert tcp1["median"] == pytest.approx(1.2)


def test_every_compared_figure_and_every_pyflannel_mode():
    samples = [sample("openvpn", 1, tcp1_mbps=400, tcp4_mbps=500, udp_mbps=300, rtt_ms=0.25)]
    samples += [sample(mode, 1, tcp1_mbps=800, tcp4_mbps=250, udp_mbps=600, rtt_ms=0.75)
                for mode in ("flanneld", "udp", "udp-plain")]
    vs = summary(samples)["vs_openvpn"]
    assert list(vs) == ["flanneld", "udp", "udp-plain"]
    for mode in vs:
        assert {f: r["median"] for f, r in vs[mode].items()} == {
            "tcp1_mbps": 2.0, "tcp4_mbps": 0.5, "udp_mbps": 2.0,
            "rtt_ms": 3.0}                             # ours/theirs: RTT 3x longer


def test_rounds_pair_by_number_and_a_zero_reference_is_left_out():
    samples = [sample("udp", 1, udp_mbps=500), sample("udp", 2, udp_mbps=600),
               sample("udp", 3, udp_mbps=700),
               sample("openvpn", 2, udp_mbps=0), sample("openvpn", 3, udp_mbps=350)]
    ratios = per_round_ratios(samples, "udp", "openvpn")
    assert ratios["udp_mbps"] == {"median": 2.0, "rounds": [2.0]}   # round 1: no openvpn
    assert ratios["tcp1_mbps"]["rounds"] == [1.0, 1.0]


def test_no_pairs_gives_no_median():
    ratios = per_round_ratios([sample("udp", 1), sample("openvpn", 2)], "udp", "openvpn")
    assert ratios["rtt_ms"] == {"median": None, "rounds": []}


def test_a_table_per_reference_with_each_pyflannel_mode_and_each_later_reference():
    samples = [sample("openvpn", 1, tcp1_mbps=400), sample("openvpn-gcm", 1, tcp1_mbps=200),
               sample("wireguard-go", 1, tcp1_mbps=300), sample("udp", 1, tcp1_mbps=600),
               sample("flanneld", 1, tcp1_mbps=500), sample("vxlan", 1, tcp1_mbps=5000)]
    vs = summary(samples)["vs"]
    assert list(vs) == ["openvpn", "openvpn-gcm", "wireguard-go"]
    tcp1 = {ref: {mode: r["tcp1_mbps"]["median"] for mode, r in table.items()}
            for ref, table in vs.items()}
    assert tcp1 == {
        "openvpn": {"flanneld": 1.25, "udp": 1.5, "openvpn-gcm": 0.5, "wireguard-go": 0.75},
        "openvpn-gcm": {"flanneld": 2.5, "udp": 3.0, "wireguard-go": 1.5},
        "wireguard-go": {"flanneld": pytest.approx(5 / 3), "udp": 2.0}}


def test_vs_openvpn_keeps_to_the_pyflannel_modes():
    samples = [sample(mode, 1) for mode in ("udp", "openvpn", "openvpn-gcm", "wireguard-go")]
    result = summary(samples)
    assert list(result["vs_openvpn"]) == ["udp"]
    assert result["vs_openvpn"]["udp"] == result["vs"]["openvpn"]["udp"]


def test_only_the_references_measured_get_a_table():
    samples = [sample("udp", 1, tcp1_mbps=600), sample("openvpn-gcm", 1, tcp1_mbps=200)]
    result = summary(samples)
    assert list(result["vs"]) == ["openvpn-gcm"]
    assert result["vs"]["openvpn-gcm"]["udp"]["tcp1_mbps"]["median"] == 3.0
    assert result["vs_openvpn"] == {}


def test_the_printed_summary_has_a_table_per_reference(capsys):
    samples = [sample(mode, 1, tunnel_cpu=[50.0, 60.0], cpu_s_per_gbit=2.0)
               for mode in ("udp", "openvpn", "openvpn-gcm", "wireguard-go")]
    print_summary(summary(samples), rounds=1, seconds=2)
    out = capsys.readouterr().out
    assert [line.split(",")[0] for line in out.splitlines() if "per-round" in line] == [
        "mode/openvpn", "mode/openvpn-gcm", "mode/wireguard-go"]
    assert ["wireguard-go", "1.000", "1.000", "1.000", "1.000"] in [
        line.split() for line in out.splitlines()]                  # under mode/openvpn


def test_the_summary_is_json():
    samples = [sample(mode, r, tunnel_cpu=[50.0, 60.0], cpu_s_per_gbit=2.0)
               for mode in ("udp", "openvpn", "openvpn-gcm", "wireguard-go", "vxlan")
               for r in (1, 2)]
    assert json.loads(json.dumps(summary(samples))) == summary(samples)
