"""
C{chatroute-makecert}: a private key and a self-signed certificate for trying TLS.

It writes an EC P-256 key and a certificate valid for the host names and IP
addresses given (by default C{localhost}, C{127.0.0.1} and C{::1}), both as
PEM, then prints the commands that use them: a C{twistd chatroute} TLS
listener and a C{chatroute-client --tls --cafile} that trusts exactly this
certificate. A certificate authority's certificate is what a public server
wants; this is for a test or a private server. Also C{python -m chatroute.certs}.
"""

import ipaddress
import os
import re
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.python import usage

from chatroute.options import CommandOptions, whole_number

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
TLS_PORT = 6697
# A little slack for clocks that are behind this machine's.
_BACKDATE = timedelta(hours=1)
_DNS_NAME = re.compile(
    r"(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
    re.IGNORECASE,
)

Host = str | ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_host(text: str) -> Host:
    """
    A host the certificate is for: an IP address, or else a DNS name (C{*.} allowed).

    @raise usage.UsageError: C{text} is neither.
    """
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if len(text) > 253 or not _DNS_NAME.fullmatch(text):
        raise usage.UsageError(
            "--host: expected an IP address or a host name (letters, digits, - and . only; "
            f"use the xn-- form of other letters), got {text!r}"
        )
    return text.lower()


class CertOptions(CommandOptions):
    """Command-line options of C{chatroute-makecert}."""

    command = "chatroute-makecert"
    synopsis = (
        "Usage: chatroute-makecert [--key key.pem] [--cert cert.pem] [--host NAME ...] "
        "[--days N] [--force]"
    )
    longdesc = (
        "Make a private key and a self-signed certificate for a chatroute TLS listener, "
        f"for trying it out. Without --host the certificate is for {', '.join(DEFAULT_HOSTS)}."
    )
    optFlags: ClassVar[list[list[str | None]]] = [
        ["force", None, "Replace the key and certificate files if they exist."],
    ]
    optParameters: ClassVar[list[list[Any]]] = [
        ["key", None, "key.pem", "Write the private key here (mode 0600)."],
        ["cert", None, "cert.pem", "Write the certificate here."],
        [
            "days",
            None,
            365,
            "Days the certificate is valid (1-3650).",
            whole_number("days", 1, 3650),
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["hosts"] = []

    def opt_host(self, text: str) -> None:
        """A host name or IP address the certificate is for (repeatable)."""
        host = parse_host(text)
        if host not in self["hosts"]:
            self["hosts"].append(host)

    def postOptions(self) -> None:
        """Fill in the default hosts; the key and the certificate need two files."""
        if not self["hosts"]:
            self["hosts"] = [parse_host(host) for host in DEFAULT_HOSTS]
        if Path(self["key"]).resolve() == Path(self["cert"]).resolve():
            raise usage.UsageError("--key and --cert must be different files")


def make_certificate(hosts: Sequence[Host], days: int, now: datetime) -> tuple[bytes, bytes]:
    """
    A new private key and a self-signed certificate for C{hosts}, both as PEM.

    The certificate names the first host as its subject (if it is short
    enough to be a common name) and all of them as subject alternative
    names, which is what clients check; it is valid from a little before
    C{now} for C{days} days, for TLS servers only.

    @return: the key (PKCS#8, unencrypted) and the certificate.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    # Clients go by the alternative names; a common name has at most 64 characters.
    common_name = str(hosts[0]) if len(str(hosts[0])) <= 64 else "chatroute"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alternative_names: list[x509.GeneralName] = [
        x509.DNSName(host) if isinstance(host, str) else x509.IPAddress(host) for host in hosts
    ]
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(key_id, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, replace: bool, private: bool = False) -> None:
    """
    Write C{data} to a new file, or with C{replace} to any file.

    @param private: only the owner may read the file, even if it existed.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, 0o600 if private else 0o666)
    with os.fdopen(fd, "wb") as file:
        if private:
            # A replaced file keeps its old mode unless told otherwise.
            os.fchmod(fd, 0o600)
        file.write(data)


def _endpoint_value(text: str) -> str:
    """C{text} as a value in a Twisted endpoint description, where C{\\ : =} are special."""
    return re.sub(r"([\\:=])", r"\\\1", text)


def listen_description(key: Path, cert: Path, port: int, interface: str | None = None) -> str:
    """
    The C{--listen} endpoint of a TLS listener on C{port} with this key and certificate.

    @param interface: the address to listen on; by default all of them.
    """
    where = "" if interface is None else f":interface={_endpoint_value(interface)}"
    return (
        f"ssl:{port}{where}:privateKey={_endpoint_value(str(key))}"
        f":certKey={_endpoint_value(str(cert))}"
    )


def usage_hint(key: Path, cert: Path, hosts: Sequence[Host]) -> str:
    """The commands that use the key and certificate just written, one per line."""
    host = next((host for host in hosts if isinstance(host, str) and "*" not in host), None)
    host = host or str(hosts[0])
    listen = listen_description(key, cert, TLS_PORT)
    # The commands sit beside this Python (the virtual environment's bin/),
    # which need not be on PATH.
    bin_dir = Path(sys.executable).parent
    twistd, client = (shlex.quote(str(bin_dir / name)) for name in ("twistd", "chatroute-client"))
    return (
        "Run the server with a plain and a TLS listener:\n"
        f"  {twistd} -n --pidfile= chatroute --port 12345 --listen {shlex.quote(listen)}\n"
        "Connect to its TLS port:\n"
        f"  {client} --tls --cafile {shlex.quote(str(cert))} "
        f"--host {shlex.quote(host)} --port {TLS_PORT}\n"
        f"  openssl s_client -connect {shlex.quote(_host_port(host))} "
        f"-CAfile {shlex.quote(str(cert))} -quiet\n"
    )


def _host_port(host: str) -> str:
    return f"[{host}]:{TLS_PORT}" if ":" in host else f"{host}:{TLS_PORT}"


def main(argv: list[str] | None = None) -> None:
    """
    The C{chatroute-makecert} command.

    @raise SystemExit: with 2 for a usage error, with 1 if a file exists
        (without C{--force}) or cannot be written.
    """
    options = CertOptions()
    options.parse_or_exit(argv)
    key_path, cert_path = Path(options["key"]).absolute(), Path(options["cert"]).absolute()
    hosts: list[Host] = options["hosts"]
    if not options["force"]:
        for path in (key_path, cert_path):
            if path.exists():
                sys.stderr.write(f"chatroute-makecert: {path} exists; use --force to replace it\n")
                raise SystemExit(1)
    key_pem, cert_pem = make_certificate(hosts, options["days"], datetime.now(UTC))
    try:
        _write(key_path, key_pem, options["force"], private=True)
        _write(cert_path, cert_pem, options["force"])
    except OSError as error:
        sys.stderr.write(f"chatroute-makecert: cannot write {error.filename}: {error.strerror}\n")
        raise SystemExit(1) from None
    names = ", ".join(str(host) for host in hosts)
    sys.stdout.write(
        f"Wrote the private key {key_path} (keep it secret)\n"
        f"and the self-signed certificate {cert_path}\n"
        f"for {names}, valid for {options['days']} days.\n" + usage_hint(key_path, cert_path, hosts)
    )


if __name__ == "__main__":
    main()
