"""C{chatroute-makecert}: the key and self-signed certificate it writes, and its options."""

import ipaddress
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.internet.endpoints import serverFromString
from twisted.internet.ssl import PrivateCertificate
from twisted.internet.testing import MemoryReactor
from twisted.python.usage import UsageError

from chatroute.certs import CertOptions, listen_description, main, make_certificate


def make(tmp_path: Path, *args: str) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    main(["--key", str(key), "--cert", str(cert), *args])
    return key, cert


def names(cert: Path) -> tuple[list[str], list[str]]:
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    alternative = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = alternative.get_values_for_type(x509.DNSName)
    addresses = [str(ip) for ip in alternative.get_values_for_type(x509.IPAddress)]
    return dns, addresses


def test_key_and_certificate_load_as_a_twisted_private_certificate(tmp_path, capsys):
    key, cert = make(tmp_path)
    private = PrivateCertificate.loadPEM(cert.read_text() + key.read_text())
    assert private.getPublicKey().matches(private.privateKey)
    assert isinstance(
        x509.load_pem_x509_certificate(cert.read_bytes()).public_key(), ec.EllipticCurvePublicKey
    )


def test_default_names_are_localhost_and_the_loopback_addresses(tmp_path, capsys):
    _, cert = make(tmp_path)
    assert names(cert) == (["localhost"], ["127.0.0.1", "::1"])


def test_names_as_asked(tmp_path, capsys):
    _, cert = make(
        tmp_path, "--host", "chat.example.org", "--host", "192.0.2.7", "--host", "*.Example.org"
    )
    assert names(cert) == (["chat.example.org", "*.example.org"], ["192.0.2.7"])
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    assert loaded.subject.rfc4514_string() == "CN=chat.example.org"


@pytest.mark.parametrize("host", ["exa mple.org", "ünï.example", "a..b", "-a.example", ""])
def test_a_bad_host_is_a_usage_error(host):
    with pytest.raises(
        UsageError, match=r"^--host: expected an IP address or a host name \(letters"
    ):
        CertOptions().parseOptions(["--host", host])


def test_a_long_host_name_is_only_an_alternative_name():
    long_name = ".".join(["a" * 60] * 4)
    _, pem = make_certificate([long_name], 1, datetime.now(UTC))
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject.rfc4514_string() == "CN=chatroute"
    alternative = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alternative.get_values_for_type(x509.DNSName) == [long_name]


def test_certificate_is_for_tls_servers_and_not_a_ca():
    now = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
    _, pem = make_certificate([ipaddress.ip_address("127.0.0.1")], 30, now)
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.not_valid_before_utc == now - timedelta(hours=1)
    assert cert.not_valid_after_utc == now + timedelta(days=30)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.subject == cert.issuer


def test_key_file_is_private(tmp_path, capsys):
    key, cert = make(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(cert.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("existing", ["key.pem", "cert.pem"])
def test_refuses_to_overwrite(tmp_path, capsys, existing):
    (tmp_path / existing).write_text("precious")
    with pytest.raises(SystemExit) as exited:
        make(tmp_path)
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        f"chatroute-makecert: {tmp_path / existing} exists; use --force to replace it\n"
    )
    assert (tmp_path / existing).read_text() == "precious"
    assert [path.name for path in tmp_path.iterdir()] == [existing]


def test_force_replaces_and_keeps_the_key_private(tmp_path, capsys):
    key, cert = make(tmp_path)
    first = cert.read_bytes()
    key.chmod(0o644)
    make(tmp_path, "--force")
    assert cert.read_bytes() != first
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_key_and_certificate_must_be_different_files(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--key", str(tmp_path / "both.pem"), "--cert", str(tmp_path / "both.pem")])
    assert exited.value.code == 2
    assert "--key and --cert must be different files" in capsys.readouterr().err


def test_cannot_write(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--key", str(tmp_path / "missing" / "key.pem"), "--cert", str(tmp_path / "c.pem")])
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        f"chatroute-makecert: cannot write {tmp_path / 'missing' / 'key.pem'}: "
        "No such file or directory\n"
    )


@pytest.mark.parametrize("days", ["0", "3651", "x", "-1", "1.5"])
def test_bad_days(days):
    with pytest.raises(UsageError) as raised:
        CertOptions().parseOptions(["--days", days])
    assert str(raised.value) == f"--days: expected a whole number from 1 to 3650, got {days!r}"


def test_bad_days_from_the_command_line(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--days", "soon"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(
        "chatroute-makecert: --days: expected a whole number from 1 to 3650, got 'soon'\n"
    )


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag, capsys):
    with pytest.raises(SystemExit) as exited:
        main([flag])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("Usage: chatroute-makecert [--key key.pem]")


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"chatroute-makecert {metadata.version('chatroute')}\n"


def test_prints_the_files_and_the_commands_that_use_them(tmp_path, capsys):
    key, cert = make(tmp_path)
    shown = capsys.readouterr().out
    assert f"Wrote the private key {key} (keep it secret)\n" in shown
    assert "for localhost, 127.0.0.1, ::1, valid for 365 days.\n" in shown
    bin_dir = Path(sys.executable).parent
    assert (
        f"  {bin_dir}/twistd -n --pidfile= chatroute --port 12345"
        f" --listen ssl:6697:privateKey={key}:certKey={cert}\n"
    ) in shown
    assert (
        f"  {bin_dir}/chatroute-client --tls --cafile {cert} --host localhost --port 6697\n"
    ) in shown
    assert f"  openssl s_client -connect localhost:6697 -CAfile {cert} -quiet\n" in shown


def test_listen_description_is_a_working_endpoint_even_for_odd_paths(tmp_path, capsys):
    odd = tmp_path / "a:b=c\\d"
    odd.mkdir()
    key, cert = make(odd)
    description = listen_description(key, cert, 6697, interface="::1")
    reactor = MemoryReactor()
    serverFromString(reactor, description).listen(object())
    port, _, _, _, interface = reactor.sslServers[0]
    assert (port, interface) == (6697, "::1")


def test_runs_as_a_module(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "chatroute.certs", "--host", "localhost"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cert.pem", "key.pem"]
    assert names(tmp_path / "cert.pem") == (["localhost"], [])
