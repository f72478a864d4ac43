"""TLS settings: clear errors for a bad certificate or key, and no token in clear text to another machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from kube_cluster import make_certificates

from runner.auth.tls import ServerTls, server_ssl_context
from runner.client.channel import Target
from runner.domain.errors import InvalidArgument

pytestmark = pytest.mark.timeout(20)


def test_server_tls_errors_are_clear(tmp_path: Path) -> None:
    make_certificates(tmp_path / "one", hosts=["localhost"], ips=["127.0.0.1"])
    make_certificates(tmp_path / "two", hosts=["localhost"], ips=["127.0.0.1"])
    cert, key = tmp_path / "one" / "apiserver.crt", tmp_path / "one" / "apiserver.key"
    assert server_ssl_context(cert, key).minimum_version.name == "TLSv1_2"
    with pytest.raises(InvalidArgument, match=r"the TLS key .*two/apiserver.key does not belong to the certificate"):
        ServerTls.load(cert, tmp_path / "two" / "apiserver.key")
    with pytest.raises(InvalidArgument, match=r"the TLS certificate .*/absent.crt does not exist"):
        ServerTls.load(tmp_path / "absent.crt", key)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(InvalidArgument, match=r"the TLS key .*/junk.pem is not a PEM file"):
        ServerTls.load(cert, tmp_path / "junk.pem")
    with pytest.raises(InvalidArgument, match="TLS needs both a certificate and its key"):
        ServerTls.from_settings(cert, None)


def test_a_token_is_not_sent_in_clear_text_to_another_machine() -> None:
    with pytest.raises(InvalidArgument, match=r"refusing to send the token in clear text to runner.example:50051"):
        Target.parse("runner.example:50051", "a-token-0123456789", plaintext=False)
    assert not Target.parse("127.0.0.1:50051", "a-token-0123456789", plaintext=False).tls
    assert not Target.parse("[::1]:50051", "a-token-0123456789", plaintext=False).tls
    assert not Target.parse("runner.example:50051", "a-token-0123456789", plaintext=True).tls
    assert not Target.parse("runner.example:50051", None, plaintext=False).tls
    tls = Target.parse("https://runner.example:443/", "a-token-0123456789", plaintext=False)
    assert (tls.address, tls.tls) == ("runner.example:443", True)
    with pytest.raises(InvalidArgument, match="use unix:/path, host:port, tls://host:port"):
        Target.parse("http://runner.example:80", None)
