"""TLS, mutual TLS and bearer tokens against real ``taskd serve`` processes.

Each node is a single-node cluster on loopback started with ``--tls-cert-file``,
``--tls-key-file``, ``--auth-token-file`` (and, for mutual TLS, ``--tls-client-ca-file``),
with a CA and certificates made at run time by ``cryptography``: no key is committed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from taskd_client import (
    AsyncTaskClient,
    PermissionDeniedError,
    TaskClient,
    TaskdError,
    UnauthenticatedError,
)

from conftest import eventually, free_ports, taskd_bin

ADMIN_TOKEN = "admin-token-0123456789abcdef"
WRITER_TOKEN = "writer-token-0123456789abcdef"
READER_TOKEN = "reader-token-0123456789abcdef"


# ---- certificates ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Two CAs and what they signed, all PEM bytes: the nodes' CA (clients trust it; it is
    also the node's ``--peer-ca-file``, as nodes present their server certificate to each
    other) and, apart from it as the server asks, the clients' CA
    (``--tls-client-ca-file``) with one client certificate."""

    ca: bytes
    server_cert: bytes
    server_key: bytes
    client_ca: bytes
    client_cert: bytes
    client_key: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return builder.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))


def _new_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )  # fmt: skip
    return _validity(builder).sign(key, hashes.SHA256()), key


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    common_name: str,
    sans: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
) -> tuple[bytes, bytes]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = _validity(builder).sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def make_pki(name: str) -> Pki:
    """A fresh nodes' CA with a server certificate for ``localhost`` and 127.0.0.1, and a
    fresh clients' CA with a client certificate."""
    nodes_ca = _new_ca(f"{name} nodes CA")
    clients_ca = _new_ca(f"{name} clients CA")
    server_cert, server_key = _leaf(
        nodes_ca,
        "taskd node",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    client_cert, client_key = _leaf(clients_ca, "taskd test client", [], [ExtendedKeyUsageOID.CLIENT_AUTH])
    pem = serialization.Encoding.PEM
    return Pki(
        nodes_ca[0].public_bytes(pem), server_cert, server_key, clients_ca[0].public_bytes(pem), client_cert, client_key
    )


# ---- a TLS node -----------------------------------------------------------------------


class SecureNode:
    """One ``taskd serve`` process serving TLS only, with the three test tokens."""

    def __init__(self, base_dir: Path, pki: Pki, require_client_cert: bool) -> None:
        self.base_dir = base_dir
        self.pki = pki
        self.address = f"127.0.0.1:{free_ports(1)[0]}"
        files = {
            "node.pem": pki.server_cert,
            "node.key": pki.server_key,
            "ca.pem": pki.ca,
            "client-ca.pem": pki.client_ca,
            "tokens": (
                f"# token role\n{ADMIN_TOKEN} admin\n{WRITER_TOKEN} writer\n{READER_TOKEN} reader\n"
            ).encode(),
        }
        for name, data in files.items():
            (base_dir / name).write_bytes(data)
        args = [
            str(taskd_bin()), "serve",
            "--node-id", "1",
            "--listen", self.address,
            "--data-dir", str(base_dir / "data"),
            "--initial-cluster", f"1={self.address}",
            "--tls-cert-file", str(base_dir / "node.pem"),
            "--tls-key-file", str(base_dir / "node.key"),
            "--auth-token-file", str(base_dir / "tokens"),
            # The server wants a peer CA with TLS, even for a lone node.
            "--peer-ca-file", str(base_dir / "ca.pem"),
        ]  # fmt: skip
        if require_client_cert:
            args += ["--tls-client-ca-file", str(base_dir / "client-ca.pem")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKD_")}
        env["NO_COLOR"] = "1"
        with open(self.stderr_path, "ab") as stderr:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env
            )

    @property
    def stderr_path(self) -> Path:
        return self.base_dir / "stderr"

    def wait_ready(self, **client_args) -> None:
        """Until a client built with ``client_args`` gets an answer to a List."""
        last: list[Exception] = []

        def probe() -> Optional[bool]:
            if self.process.poll() is not None:
                raise RuntimeError(f"taskd exited with {self.process.returncode}:\n{self.stderr_path.read_text()}")
            with TaskClient([self.address], timeout=1.0, **client_args) as client:
                try:
                    list(client.list_tasks(page_size=1))
                    return True
                except TaskdError as e:
                    last[:] = [e]
                    return None

        try:
            eventually(f"the TLS node at {self.address} to answer", probe)
        except AssertionError as e:
            raise AssertionError(f"{e}; last error: {last}\n{self.stderr_path.read_text()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki("taskd test")


@pytest.fixture(scope="module")
def other_pki() -> Pki:
    return make_pki("another")


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory, pki):
    node = SecureNode(tmp_path_factory.mktemp("tls"), pki, require_client_cert=False)
    try:
        node.wait_ready(root_certificates=pki.ca, token=ADMIN_TOKEN)
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def mtls_node(tmp_path_factory, pki):
    node = SecureNode(tmp_path_factory.mktemp("mtls"), pki, require_client_cert=True)
    try:
        node.wait_ready(
            root_certificates=pki.ca,
            private_key=pki.client_key,
            certificate_chain=pki.client_cert,
            token=ADMIN_TOKEN,
        )
        yield node
    finally:
        node.stop()


# Failures here are final: give up fast instead of retrying for 10 s.
QUICK = dict(timeout=3.0, initial_backoff=0.02, max_backoff=0.2)


# ---- the tests ------------------------------------------------------------------------


def test_tls_with_the_ca_works(tls_node, pki):
    """With the node's CA a writer creates and reads, by ``host:port`` + CA, by
    ``https://`` + CA, and by ``https://localhost`` (the DNS SAN)."""
    localhost = tls_node.address.replace("127.0.0.1", "localhost")
    for endpoint in (tls_node.address, f"https://{tls_node.address}", f"https://{localhost}"):
        with TaskClient(endpoint, root_certificates=pki.ca, token=WRITER_TOKEN, **QUICK) as client:
            task = client.create_task(title=f"over TLS to {endpoint}")
            assert client.get_task(task.id).title == task.title


def test_plaintext_client_fails_against_tls_node(tls_node):
    with TaskClient(tls_node.address, token=WRITER_TOKEN, **QUICK) as client:
        with pytest.raises(TaskdError):
            list(client.list_tasks())


@pytest.mark.parametrize("trust", ["default roots", "another CA"])
def test_untrusted_server_certificate_fails(tls_node, other_pki, trust):
    roots = None if trust == "default roots" else other_pki.ca
    with TaskClient(
        f"https://{tls_node.address}", root_certificates=roots, token=WRITER_TOKEN, **QUICK
    ) as client:
        with pytest.raises(TaskdError):
            list(client.list_tasks())


def test_mtls_requires_a_client_certificate_from_the_ca(mtls_node, pki, other_pki):
    with TaskClient(
        mtls_node.address,
        root_certificates=pki.ca,
        private_key=pki.client_key,
        certificate_chain=pki.client_cert,
        token=WRITER_TOKEN,
        **QUICK,
    ) as client:
        task = client.create_task(title="with a client certificate")
        assert client.get_task(task.id).id == task.id
    for identity in ({}, {"private_key": other_pki.client_key, "certificate_chain": other_pki.client_cert}):
        with TaskClient(
            mtls_node.address, root_certificates=pki.ca, token=WRITER_TOKEN, **identity, **QUICK
        ) as client:
            with pytest.raises(TaskdError):
                client.get_task(task.id)


def test_reader_reads_but_may_not_create(tls_node, pki, label):
    with TaskClient(tls_node.address, root_certificates=pki.ca, token=WRITER_TOKEN, **QUICK) as writer:
        task = writer.create_task(title="readable", labels=[label])
    with TaskClient(tls_node.address, root_certificates=pki.ca, token=READER_TOKEN, **QUICK) as reader:
        assert reader.get_task(task.id).id == task.id
        assert [t.id for t in reader.list_tasks(label=label)] == [task.id]
        # Refused as such at once: a retried refusal would end as UnavailableError.
        with pytest.raises(PermissionDeniedError) as refused:
            reader.create_task(title="not allowed")
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("token", [None, "not-a-known-token-0123456789"])
def test_missing_or_unknown_token_is_unauthenticated(tls_node, pki, token):
    with TaskClient(tls_node.address, root_certificates=pki.ca, token=token, **QUICK) as client:
        with pytest.raises(UnauthenticatedError) as refused:
            list(client.list_tasks())
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "not-a-known-token" not in str(refused.value)


def test_async_client_over_tls_with_tokens(tls_node, pki):
    async def scenario() -> None:
        async with AsyncTaskClient(
            f"https://{tls_node.address}", root_certificates=pki.ca, token=WRITER_TOKEN, **QUICK
        ) as writer:
            task = await writer.create_task(title="async over TLS")
            assert (await writer.get_task(task.id)).id == task.id
        async with AsyncTaskClient(
            f"https://{tls_node.address}", root_certificates=pki.ca, token=READER_TOKEN, **QUICK
        ) as reader:
            assert (await reader.get_task(task.id)).id == task.id
            with pytest.raises(PermissionDeniedError):
                await reader.create_task(title="not allowed")
        async with AsyncTaskClient(
            f"https://{tls_node.address}", root_certificates=pki.ca, token="wrong-token-0123456789", **QUICK
        ) as stranger:
            with pytest.raises(UnauthenticatedError):
                await stranger.get_task(task.id)
        async with AsyncTaskClient(tls_node.address, token=WRITER_TOKEN, **QUICK) as plaintext:
            with pytest.raises(TaskdError):
                await plaintext.get_task(task.id)

    asyncio.run(scenario())


# ---- option handling (no server) ------------------------------------------------------


def test_tls_is_chosen_by_scheme_or_certificates():
    from taskd_client import _common

    assert not _common.connection("a:1,http://b:2").tls
    assert _common.connection("https://a:1,https://b:2").tls
    assert _common.connection("https://a:1").endpoints == ["a:1"]
    assert _common.connection("a:1", root_certificates=b"pem").tls
    # A client certificate on a plaintext channel would be dropped silently: TLS instead.
    assert _common.connection("a:1", private_key=b"k", certificate_chain=b"c").tls
    with pytest.raises(ValueError, match="go together"):
        _common.connection("a:1", private_key=b"k")
    with pytest.raises(TypeError, match="PEM bytes"):
        _common.connection("a:1", root_certificates="/path/to/ca.pem")
    with pytest.raises(ValueError, match="mix"):
        _common.connection("https://a:1,http://b:2")
    with pytest.raises(ValueError):
        _common.connection("grpc://a:1")
    # An iterator is read once, not once per decision.
    assert _common.connection(iter(["https://a:1"])).tls


def test_token_is_bearer_metadata_and_stays_out_of_repr():
    from taskd_client import _common

    connection = _common.connection("a:1", token=" reader-token-0123456789\n")
    assert connection.metadata == (("authorization", "Bearer reader-token-0123456789"),)
    assert "reader-token" not in repr(connection)
    assert _common.connection("a:1").metadata is None
    for bad in ("", "two words", "caf\u00e9"):
        with pytest.raises(ValueError, match="token"):
            _common.connection("a:1", token=bad)
    client = TaskClient("a:1", token="reader-token-0123456789")
    try:
        assert "reader-token" not in repr(client)
    finally:
        client.close()


def test_auth_failures_are_typed_and_final():
    from taskd_client import _common
    from taskd_client._errors import error_for

    assert isinstance(error_for(grpc.StatusCode.UNAUTHENTICATED, "no token"), UnauthenticatedError)
    assert isinstance(error_for(grpc.StatusCode.PERMISSION_DENIED, "reader"), PermissionDeniedError)
    assert not _common.retryable(grpc.StatusCode.UNAUTHENTICATED)
    assert not _common.retryable(grpc.StatusCode.PERMISSION_DENIED)
