"""flanneld.core.control, driven by events and timers alone: start-up and its retries,
the watch (generations, re-listing after a compaction, backoff while etcd is away with the
last peers kept), this node's own lease (renewed, re-created, taken: LeaseLost), the
subnet file probe, health and stop. A property test plays random event sequences and
checks that the routes always follow the last listing plus the watch events since."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flanneld.core import config
from flanneld.core.control import (
    BACKOFF_MAX,
    BACKOFF_MIN,
    CONFIG_POLL,
    LIVENESS_CHECK,
    AcquireLease,
    CancelWatch,
    Command,
    ConfigRead,
    Control,
    ControlEvent,
    DataPlaneStarted,
    DataPlaneState,
    EtcdFailed,
    Exit,
    LeaseAcquired,
    Listed,
    ListLeases,
    Phase,
    Probe,
    Probed,
    ReadConfig,
    Recover,
    Recovered,
    Renew,
    Renewed,
    ResyncIptables,
    SetRoutes,
    Settings,
    StartDataPlane,
    StopRequested,
    SubnetFileFailed,
    SubnetFileWritten,
    Timer,
    Watch,
    Watched,
    WatchStarted,
    WriteSubnetFile,
)
from flanneld.core.errors import FlannelError, LeaseLost
from flanneld.core.lease import Lease
from flanneld.core.lease_watch import Delete, Put, WatchBatch, WatchBroken
from flanneld.core.routes import Routes
from flanneld.core.subnet_file import render

CFG = config.parse('{"Network": "10.244.0.0/16"}')
ME, PEER = IPv4Address("192.168.1.10"), IPv4Address("192.168.1.20")
OWN, OTHER = IPv4Network("10.244.1.0/24"), IPv4Network("10.244.2.0/24")
T0 = 1000.0
TTL = 60
SETTINGS = Settings(lease_ttl=TTL, renew_margin=3600.0, ip_masq=False, iptables_resync=5.0,
                    config_key="/coreos.com/network/config", subnet_file="/run/subnet.env")
WRITTEN = render(CFG.network, OWN, 1472, False)


def routes_of(commands: list[Command]) -> Routes | None:
    """The last routes set by `commands`, None when none were."""
    found = [c.routes for c in commands if isinstance(c, SetRoutes)]
    return found[-1] if found else None


MINE = Lease(OWN, ME, T0 + TTL)


def running(lease: Lease = MINE, settings_: Settings = SETTINGS
            ) -> tuple[Control, list[Command]]:
    """A control through start-up to its first timer (list and watch), and what it said."""
    control = Control(settings_)
    said = control.start()
    said += control.handle(ConfigRead(CFG), T0)
    said += control.handle(LeaseAcquired(lease), T0)
    said += control.handle(DataPlaneStarted(1472), T0)
    said += control.handle(SubnetFileWritten(), T0)
    return control, said


def listed(control: Control, *leases: Lease, revision: int = 7, now: float = T0
           ) -> list[Command]:
    """Re-list (as after a compaction, unless the watch timer is due already) and answer
    the listing; the commands that follow."""
    if control.due(Timer.WATCH) is None:
        control.handle(Watched(control.generation, WatchBroken(True, "compacted")), now)
    said = control.handle_timer(now)
    assert said[-2:] == [CancelWatch(), ListLeases()]
    return control.handle(Listed(leases, revision), now)


@pytest.fixture
def control() -> Control:
    """Running, having listed its own lease and one peer, and watching from revision 8."""
    control, _ = running()
    said = listed(control, Lease(OWN, ME, T0 + TTL), Lease(OTHER, PEER, T0 + TTL))
    assert said[-1] == Watch(control.generation, 8)
    assert control.handle(WatchStarted(control.generation), T0) == []
    return control


def peers(routes: Routes | None) -> set[str]:
    assert routes is not None
    return set(routes.peers)


# -- start-up

def test_start_up_reads_the_config_leases_starts_and_writes_the_subnet_file() -> None:
    control, said = running()
    lease = Lease(OWN, ME, T0 + TTL)
    assert said == [ReadConfig(), AcquireLease(CFG), StartDataPlane(CFG, lease),
                    WriteSubnetFile(WRITTEN, None)]
    assert control.phase is Phase.RUNNING and control.next_deadline() == T0


def test_a_missing_config_is_polled_and_warned_about_once(caplog) -> None:
    control = Control(SETTINGS)
    control.start()
    now = T0
    for _ in range(3):
        assert control.handle(ConfigRead(None), now) == []
        assert control.next_deadline() == now + CONFIG_POLL
        now += CONFIG_POLL
        assert control.handle_timer(now) == [ReadConfig()]
    assert caplog.text.count("no network config at /coreos.com/network/config yet") == 1


def test_etcd_away_at_start_up_backs_off_for_each_step(caplog) -> None:
    control = Control(SETTINGS)
    control.start()
    delays = []
    now = T0
    for _ in range(8):
        assert control.handle(EtcdFailed(ReadConfig(), "refused"), now) == []
        deadline = control.next_deadline()
        assert deadline is not None
        delays.append(deadline - now)
        now = deadline
        assert control.handle_timer(now) == [ReadConfig()]
    assert delays[:3] == pytest.approx([0.1, 0.2, 0.4]) and delays[-1] == BACKOFF_MAX
    assert "cannot read the network config yet: refused; retrying in 0.1 s" in caplog.text
    assert control.handle(ConfigRead(CFG), now) == [AcquireLease(CFG)]
    control.handle(EtcdFailed(AcquireLease(CFG), "refused"), now)  # a fresh backoff
    assert control.next_deadline() == pytest.approx(now + BACKOFF_MIN)
    assert control.handle_timer(now + BACKOFF_MIN) == [AcquireLease(CFG)]


def test_a_stop_request_ends_every_phase_and_nothing_follows() -> None:
    for steps in range(4):
        control = Control(SETTINGS)
        events: list[ControlEvent] = [ConfigRead(CFG), LeaseAcquired(Lease(OWN, ME, None)),
                                      DataPlaneStarted(1472)]
        control.start()
        for event in events[:steps]:
            control.handle(event, T0)
        assert control.handle(StopRequested(), T0) == [Exit(None)]
        assert control.next_deadline() is None and control.handle_timer(T0 + 9e9) == []
        assert control.handle(ConfigRead(CFG), T0) == []


def test_the_first_subnet_file_failing_is_fatal_later_ones_are_logged_once(caplog) -> None:
    control = Control(SETTINGS)
    control.start()
    control.handle(ConfigRead(CFG), T0)
    control.handle(LeaseAcquired(Lease(OWN, ME, None)), T0)
    control.handle(DataPlaneStarted(1472), T0)
    [exit_] = control.handle(SubnetFileFailed("Read-only file system"), T0)
    assert isinstance(exit_, Exit) and isinstance(exit_.error, FlannelError)
    assert str(exit_.error) == ("cannot write the subnet file /run/subnet.env: "
                                "Read-only file system")


# -- the watch

def test_the_first_listing_routes_to_peers_and_watches_from_the_next_revision(control) -> None:
    assert [lease.subnet for lease in control.peers()] == [OTHER]
    assert control.gauges(T0)["peers"] == 1 and control.etcd_ok


def test_watch_batches_change_the_routes(control) -> None:
    third = Lease(IPv4Network("10.244.3.0/24"), IPv4Address("192.168.1.30"), 3000.0)
    said = control.handle(Watched(control.generation, WatchBatch((Put(third), Delete(OTHER)),
                                                                 9)), T0)
    routes = routes_of(said)
    assert peers(routes) == {"192.168.1.30"}
    assert routes is not None
    assert routes.lookup(int(IPv4Address("10.244.3.7"))) == ("192.168.1.30", 8285)


def test_a_renewal_of_a_peer_changes_no_route(control) -> None:
    renewed = Lease(OTHER, PEER, T0 + 2 * TTL)
    assert control.handle(Watched(control.generation, WatchBatch((Put(renewed),), 9)), T0) == []


def test_a_compacted_watch_relists_at_once(control) -> None:
    said = control.handle(Watched(control.generation,
                                  WatchBroken(compacted=True, reason="compacted at 7")), T0)
    assert said == [] and control.due(Timer.WATCH) == T0
    said = listed(control, Lease(OWN, ME, T0 + TTL), revision=12)  # OTHER went meanwhile
    assert peers(routes_of(said)) == set() and said[-1] == Watch(control.generation, 13)


def test_etcd_away_keeps_the_last_peers_and_backs_off(control, caplog) -> None:
    caplog.set_level(logging.INFO)
    said = control.handle(Watched(control.generation,
                                  WatchBroken(compacted=False, reason="connection reset")), T0)
    assert said == [] and not control.etcd_ok
    assert "lost etcd (watch ended: connection reset); forwarding to the 1 known peers" \
        in caplog.text
    now, delays = T0, []
    for _ in range(8):
        deadline = control.due(Timer.WATCH)
        assert deadline is not None
        delays.append(deadline - now)
        now = deadline
        assert control.handle_timer(now)[-1] == ListLeases()
        assert control.handle(EtcdFailed(ListLeases(), "refused"), now) == []
    assert delays[:2] == pytest.approx([BACKOFF_MIN, BACKOFF_MIN * 2])
    assert delays[-1] == BACKOFF_MAX
    assert [lease.subnet for lease in control.peers()] == [OTHER]  # no route was dropped
    now = control.due(Timer.WATCH) or 0.0
    said = listed(control, Lease(OWN, ME, T0 + TTL), Lease(OTHER, PEER, T0 + TTL), now=now)
    assert said == [Watch(control.generation, 8)]  # nothing changed: no new routes
    control.handle(WatchStarted(control.generation), now)
    assert control.etcd_ok and "etcd is back: re-listed 1 peers" in caplog.text
    control.handle(EtcdFailed(Watch(control.generation, 8), "refused"), now)
    assert control.due(Timer.WATCH) == pytest.approx(now + BACKOFF_MIN)  # backoff reset


def test_messages_from_a_cancelled_watch_are_ignored(control) -> None:
    old = control.generation
    listed(control, Lease(OWN, ME, T0 + TTL), Lease(OTHER, PEER, T0 + TTL))
    assert control.generation == old + 1
    late = Watched(old, WatchBatch((Delete(OTHER),), 99))
    assert control.handle(late, T0) == [] and len(control.peers()) == 1
    assert control.handle(WatchStarted(old), T0) == []


# -- this node's own lease

def test_own_lease_deleted_is_recreated_and_renewed_at_half_its_life(control) -> None:
    said = control.handle(Watched(control.generation, WatchBatch((Delete(OWN),), 10)), T0)
    assert said == [Recover(Lease(OWN, ME, T0 + TTL), TTL)]
    fresh = Lease(OWN, ME, T0 + 5 + TTL)
    assert control.handle(Recovered(fresh), T0 + 5) == []
    assert control.lease == fresh
    assert control.due(Timer.RENEW) == T0 + 5 + TTL - TTL / 2  # short TTL: at half-life


def test_own_lease_missing_from_a_listing_is_recreated_then_watched(control) -> None:
    said = listed(control, Lease(OTHER, PEER, T0 + TTL), revision=20)
    assert said == [Recover(Lease(OWN, ME, T0 + TTL), TTL)]
    assert control.handle(Recovered(Lease(OWN, ME, T0 + TTL)), T0) == [
        Watch(control.generation, 21)]


def test_a_reservation_is_recreated_as_one_and_never_renewed() -> None:
    control, _ = running(lease=Lease(OWN, ME, None))
    assert control.due(Timer.WATCH) == T0 and control.due(Timer.RENEW) is None
    said = listed(control, revision=3)
    assert said == [Recover(Lease(OWN, ME, None), None)]


def test_own_subnet_taken_by_another_node_is_fatal(control) -> None:
    [exit_] = control.handle(Watched(control.generation,
                                     WatchBatch((Put(Lease(OWN, PEER, 5000.0)),), 11)), T0)
    assert isinstance(exit_, Exit) and isinstance(exit_.error, LeaseLost)
    assert "now belongs to 192.168.1.20" in str(exit_.error)
    assert control.next_deadline() is None


def test_own_subnet_taken_in_a_listing_is_fatal(control) -> None:
    [exit_] = listed(control, Lease(OWN, PEER, T0))
    assert isinstance(exit_, Exit) and isinstance(exit_.error, LeaseLost)


def test_recreating_while_etcd_is_away_waits_for_the_relist(control) -> None:
    old = control.generation
    [recover] = control.handle(Watched(old, WatchBatch((Delete(OWN),), 12)), T0)
    assert control.handle(EtcdFailed(recover, "refused"), T0) == [CancelWatch()]
    assert control.generation == old + 1 and not control.etcd_ok
    assert control.due(Timer.WATCH) == pytest.approx(T0 + BACKOFF_MIN)
    said = listed(control, Lease(OTHER, PEER, T0 + TTL), now=T0 + BACKOFF_MIN)
    assert said == [Recover(Lease(OWN, ME, T0 + TTL), TTL)]


def test_renewal_happens_before_expiry_and_retries_when_etcd_is_away(control, caplog) -> None:
    due = T0 + TTL / 2
    assert all(not isinstance(c, Renew) for c in control.handle_timer(due - 0.01))
    said = control.handle_timer(due)
    assert Renew(Lease(OWN, ME, T0 + TTL), TTL) in said
    control.handle(EtcdFailed(Renew(Lease(OWN, ME, T0 + TTL), TTL), "refused"), due)
    assert "error renewing lease 10.244.1.0/24 (trying again in 6.0 s): refused" in caplog.text
    assert Renew(Lease(OWN, ME, T0 + TTL), TTL) in control.handle_timer(due + 6.0)
    control.handle(Renewed(Lease(OWN, ME, due + 6 + TTL)), due + 6)
    assert control.lease == Lease(OWN, ME, due + 6 + TTL)


# -- probes, iptables, health

def test_the_probe_rewrites_a_missing_or_changed_subnet_file(control) -> None:
    assert control.handle_timer(T0 + LIVENESS_CHECK) == [Probe()]
    assert control.handle(Probed(True, None), T0 + 1) == [WriteSubnetFile(WRITTEN, "was missing")]
    assert control.handle(Probed(True, WRITTEN.replace("1472", "1400")), T0 + 1) == [
        WriteSubnetFile(WRITTEN, "had been changed")]
    assert control.handle(Probed(True, WRITTEN), T0 + 1) == []


def test_a_subnet_file_error_is_logged_once_until_it_changes(control, caplog) -> None:
    caplog.set_level(logging.ERROR)
    control.handle(Probed(True, None, "Is a directory"), T0)
    control.handle(SubnetFileFailed("Is a directory"), T0)
    errors = [r.message for r in caplog.records]
    assert errors == ["cannot check or write the subnet file /run/subnet.env: Is a directory; "
                      "trying again every 1 s"]
    control.handle(Probed(True, WRITTEN), T0)           # fixed: the next error is new
    control.handle(SubnetFileFailed("Is a directory"), T0)
    assert len(caplog.records) == 2


def test_a_dead_data_plane_is_fatal(control) -> None:
    [exit_] = control.handle(Probed(False, WRITTEN), T0)
    assert isinstance(exit_, Exit) and isinstance(exit_.error, FlannelError)
    assert str(exit_.error) == "the udp data plane stopped unexpectedly; exiting"


def test_iptables_are_resynced_on_their_interval_and_not_without_chains() -> None:
    control, _ = running()
    assert ResyncIptables() in control.handle_timer(T0 + 5.0)
    assert ResyncIptables() in control.handle_timer(T0 + 10.0)
    quiet, _ = running(settings_=Settings(TTL, 3600.0, False, None, "k", "f"))
    assert all(not isinstance(c, ResyncIptables) for c in quiet.handle_timer(T0 + 1e4))


def test_health(control) -> None:
    up = DataPlaneState(alive=True, tun_problem=None)
    assert Control(SETTINGS).health(T0, up) == "no lease yet"
    assert control.health(T0, up) is None
    assert control.health(T0, None) == "the data plane is not running"
    assert control.health(T0, DataPlaneState(False, None)) == "the data plane is not running"
    gone = "tun device flannel0 is gone; re-creating it: x"
    assert control.health(T0, DataPlaneState(True, gone)) == gone
    assert "has expired" in (control.health(T0 + TTL, up) or "")
    assert control.gauges(T0 + 10)["lease_expires_in_seconds"] == TTL - 10


# -- the property: routes follow the registry

SUBNETS = [IPv4Network(f"10.244.{i}.0/24") for i in range(1, 7)]  # [0] is OWN
IPS = [IPv4Address(f"192.168.1.{i}") for i in (20, 21, 22)]
changes = st.one_of(
    st.builds(lambda s, ip: Put(Lease(s, ip, T0 + TTL)), st.sampled_from(SUBNETS[1:]),
              st.sampled_from(IPS)),
    st.builds(Delete, st.sampled_from(SUBNETS[1:])))
listings = st.dictionaries(st.sampled_from(SUBNETS[1:]), st.sampled_from(IPS))
steps = st.one_of(
    st.tuples(st.just("list"), listings),
    st.tuples(st.just("batch"), st.lists(changes, max_size=4)),
    st.tuples(st.just("stale"), st.lists(changes, min_size=1, max_size=2)),
    st.tuples(st.just("broken"), st.booleans()),
    st.tuples(st.just("list_fails"), st.none()))


def table_of(routes: Routes) -> dict[IPv4Network, IPv4Address]:
    found = {}
    for subnet in SUBNETS:
        hop = routes.lookup(int(subnet.network_address) + 1)
        if hop is not None:
            found[subnet] = IPv4Address(hop[0])
    return found


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=25))
def test_routes_always_follow_the_last_listing_and_the_watch_events_since(script) -> None:
    control, _ = running()
    routes = Routes.EMPTY
    model: dict[IPv4Network, IPv4Address] = {}
    now = T0
    for kind, arg in script:
        now += 0.5
        stale = control.generation - 1
        if kind == "list":
            control.handle_timer(now)  # a new generation when the watch timer is due
            listing = {**arg, OWN: ME}
            said = control.handle(Listed(tuple(Lease(s, ip, now + TTL)
                                               for s, ip in listing.items()), 5), now)
            model = dict(arg)
        elif kind == "batch":
            said = control.handle(Watched(control.generation, WatchBatch(tuple(arg), 6)), now)
            for change in arg:
                if isinstance(change, Put):
                    model[change.lease.subnet] = change.lease.public_ip
                else:
                    model.pop(change.subnet, None)
        elif kind == "stale":
            said = control.handle(Watched(stale, WatchBatch(tuple(arg), 6)), now)
            assert said == []
        elif kind == "broken":
            said = control.handle(Watched(control.generation, WatchBroken(arg, "x")), now)
        else:
            said = control.handle(EtcdFailed(ListLeases(), "refused"), now)
        new = routes_of(said)
        routes = routes if new is None else new
        assert table_of(routes) == model
        assert {lease.subnet: lease.public_ip for lease in control.peers()} == model
