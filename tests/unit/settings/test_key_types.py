"""The two lists of key types are named for what they are: the certificates' key types
(tls.key_type) and the SSH public key types (every SSH key of the config). Neither module
has a bare KEY_TYPES any more, which read as if it were the other."""

from components.settings import provision, tls
from components.settings.checks import Problems
from components.settings.provision import SSH_KEY_TYPES, ssh_key_problem
from components.settings.tls import TLS_KEY_TYPES, TlsSettings, check_tls


def test_each_list_of_key_types_is_named_for_its_kind():
    assert TLS_KEY_TYPES == ("ecdsa", "rsa")
    assert "ssh-ed25519" in SSH_KEY_TYPES and "ecdsa" not in SSH_KEY_TYPES
    assert not hasattr(tls, "KEY_TYPES") and not hasattr(provision, "KEY_TYPES")


def test_the_tls_check_takes_the_tls_key_types_and_the_ssh_check_the_ssh_ones():
    for key_type in TLS_KEY_TYPES:
        problems = Problems()
        check_tls(TlsSettings(mode="self_signed", key_type=key_type), problems)
        assert problems.items == []
    problems = Problems()
    check_tls(TlsSettings(mode="self_signed", key_type="ssh-ed25519"), problems)
    assert problems.items == ["aiia:platform.tls.key_type='ssh-ed25519' must be ecdsa (P-256) "
                              "or rsa (2048)"]
    problem = ssh_key_problem("ecdsa AAAA", "k")
    assert problem is not None and ", ".join(SSH_KEY_TYPES) in problem
