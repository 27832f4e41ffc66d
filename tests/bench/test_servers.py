"""How the bench runs its servers for a scenario: limits lifted, TLS, variants."""

from pathlib import Path

from bench.servers import CHATROUTE_RELAXED, PEERS, Setup, servers_for, without_tls

ALL = list(PEERS)


def _argv(setup: Setup, column: str, tmp_path: Path) -> list[str]:
    return servers_for(setup, ALL)[column].command(4321, tmp_path)


def test_production_defaults_lift_only_flood_and_per_address() -> None:
    assert sorted(CHATROUTE_RELAXED) == ["--flood-rate=0", "--max-per-address=0"]


def test_plain_setup_runs_every_peer_as_it_is(tmp_path: Path) -> None:
    servers = servers_for(Setup(), ALL)
    assert list(servers) == ALL
    assert _argv(Setup(), "chatroute", tmp_path) == PEERS["chatroute"].command(4321, tmp_path)


def test_lifted_options_come_last(tmp_path: Path) -> None:
    argv = _argv(Setup(lifted=("--max-connections=0",)), "chatroute", tmp_path)
    assert argv[-1] == "--max-connections=0"
    assert "--idle-timeout=0" not in argv


def test_variant_turns_the_idle_timeout_off_beside_chatroute(tmp_path: Path) -> None:
    setup = Setup(lifted=("--max-connections=0",), variants=("chatroute-noidle",))
    servers = servers_for(setup, ALL)
    assert list(servers)[:2] == ["chatroute", "chatroute-noidle"]
    argv = servers["chatroute-noidle"].command(4321, tmp_path)
    assert argv[-2:] == ["--max-connections=0", "--idle-timeout=0"]
    assert servers["chatroute-noidle"].protocol == "chatroute"


def test_peers_of_a_setup(tmp_path: Path) -> None:
    setup = Setup(peers=("chatroute", "ngircd"))
    assert list(servers_for(setup, ALL)) == ["chatroute", "ngircd"]
    assert list(servers_for(setup, ["ngircd"])) == ["ngircd"]


def test_tls_leaves_out_the_tutorial_and_listens_with_a_certificate(tmp_path: Path) -> None:
    servers = servers_for(Setup(tls=True), ALL)
    assert "tutorial" not in servers
    assert without_tls(ALL) == ["tutorial"]
    argv = servers["chatroute"].command(4321, tmp_path)
    listen = argv[argv.index("--listen") + 1]
    assert listen.startswith("ssl:4321:interface=127.0.0.1:privateKey=")
    assert (tmp_path / "key.pem").exists()
    assert (tmp_path / "cert.pem").exists()


def test_ngircd_tls_config(tmp_path: Path) -> None:
    servers_for(Setup(tls=True), ["ngircd"])["ngircd"].command(4321, tmp_path)
    conf = (tmp_path / "ngircd.conf").read_text()
    assert "[SSL]" in conf
    assert "\tPorts = 4321\n" in conf
