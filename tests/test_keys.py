"""`wool.Keys` and `python -m wool.keys`: the key directory's layout and file modes (whatever
the umask), loading it back, refusing what is malformed or unprotected, reading ZeroMQ
certificates, and the command line."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest
import zmq
import zmq.auth
from helpers import REPO

import wool
from wool._keys import generate_directory, read_key_file, trust_key


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Umask 000: a file created with the default mode would be world-readable."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def keys_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "wool.keys", *args], capture_output=True, text=True, env=env, timeout=30)


# -- the value ---------------------------------------------------------------------------------


def test_keys_check_their_keys() -> None:
    public, secret = zmq.curve_keypair()
    keys = wool.Keys(public, secret, [zmq.curve_keypair()[0]])
    assert keys.public == public.decode() and keys.secret == secret.decode()
    with pytest.raises(ValueError, match="40 z85 characters"):
        wool.Keys("short", secret)
    with pytest.raises(ValueError, match="40 z85 characters"):
        wool.Keys(public, secret, ["x" * 39 + ","])
    with pytest.raises(ValueError, match="does not belong"):
        wool.Keys(zmq.curve_keypair()[0], secret)
    with pytest.raises(TypeError, match="not one key"):
        wool.Keys(public, secret, public.decode())  # type: ignore[arg-type]


def test_keys_trust_themselves_and_hide_the_secret() -> None:
    peer = wool.Keys.generate()
    keys = wool.Keys.generate([peer.public])
    assert keys.trusts(keys.public) and keys.trusts(peer.public)
    assert not keys.trusts(wool.Keys.generate().public)
    assert keys.allowed == {keys.public, peer.public}
    assert keys.secret not in repr(keys) and keys.public in repr(keys)
    other = wool.Keys.generate().public
    assert keys.trusting(other).trusted == {peer.public, other}
    for dumps in (pickle.dumps, cloudpickle.dumps):
        assert pickle.loads(dumps(keys)) == keys


# -- the directory -----------------------------------------------------------------------------


def test_generated_directory_has_private_modes_whatever_the_umask(tmp_path: Path, permissive_umask: None) -> None:
    root = tmp_path / "keys"
    keys = generate_directory(root)
    assert sorted(p.name for p in root.iterdir()) == ["id.key", "id.pub", "trusted"]
    assert mode(root) == 0o700
    assert mode(root / "id.key") == 0o600
    assert mode(root / "id.pub") == 0o644
    assert read_key_file(root / "id.pub", "public") == keys.public
    assert read_key_file(root / "id.key", "secret") == keys.secret
    assert keys.public not in (root / "id.key").read_text()  # the secret file holds the secret only
    assert wool.Keys.load(root) == keys


def test_generate_never_replaces_keys_unless_forced(tmp_path: Path) -> None:
    first = generate_directory(tmp_path)
    with pytest.raises(FileExistsError, match="--force"):
        generate_directory(tmp_path)
    assert wool.Keys.load(tmp_path) == first
    second = generate_directory(tmp_path, force=True)
    assert second.public != first.public and wool.Keys.load(tmp_path) == second


def test_trusted_keys_are_loaded(tmp_path: Path) -> None:
    peers = [wool.Keys.generate() for _ in range(2)]
    generate_directory(tmp_path)
    trust_key(tmp_path, peers[0].public, "alice")
    trust_key(tmp_path, peers[0].public, "alice")  # the same key again: nothing to do
    with pytest.raises(FileExistsError, match="another key"):
        trust_key(tmp_path, peers[1].public, "alice")
    # A ZeroMQ certificate (as zmq.auth and czmq write them) is read as well.
    public_cert, _ = zmq.auth.create_certificates(str(tmp_path / "trusted"), "bob")
    bob = zmq.auth.load_certificate(public_cert)[0]
    assert bob is not None
    assert wool.Keys.load(tmp_path).trusted == {peers[0].public, bob.decode()}


def test_a_secret_key_others_can_read_is_refused(tmp_path: Path) -> None:
    generate_directory(tmp_path)
    os.chmod(tmp_path / "id.key", 0o644)
    with pytest.raises(ValueError, match=r"accessible by other users \(mode 0644\).*chmod 600"):
        wool.Keys.load(tmp_path)


@pytest.mark.parametrize(
    "file, text, problem",
    [
        ("id.key", "", "exactly one key"),
        ("id.key", "abc\n", "40 z85 characters"),
        ("id.pub", "# comment\n" + "0" * 40 + "\n", "does not hold the public key"),
        ("trusted/x.pub", "one\ntwo\n", r"x\.pub must hold exactly one key"),
        ("trusted/y.pub", 'metadata\ncurve\n    secret-key = "' + "0" * 40 + '"\n', "without a public key"),
    ],
)
def test_malformed_key_files_are_named(tmp_path: Path, file: str, text: str, problem: str) -> None:
    generate_directory(tmp_path)
    path = tmp_path / file
    path.unlink(missing_ok=True)
    path.write_text(text)
    if file == "id.key":
        os.chmod(path, 0o600)
    with pytest.raises(ValueError, match=problem):
        wool.Keys.load(tmp_path)


def test_missing_directory_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        wool.Keys.load(tmp_path / "nowhere")


def test_pool_takes_keys_or_a_directory(tmp_path: Path) -> None:
    keys = generate_directory(tmp_path)
    assert wool.WorkerPool(size=1, keys=tmp_path).keys == keys
    assert wool.WorkerPool(size=1, keys=str(tmp_path)).keys == keys
    with pytest.raises(TypeError, match="keys must be"):
        wool.WorkerPool(size=1, keys=42)  # type: ignore[arg-type]


# -- the command line ------------------------------------------------------------------------


def test_cli_generate_trust_and_show(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    made = keys_cli("generate", str(ours))
    assert made.returncode == 0, made.stderr
    public = wool.Keys.load(ours).public
    assert f"public key: {public}" in made.stdout
    assert "--keys" in made.stdout
    again = keys_cli("generate", str(ours))
    assert again.returncode == 1 and "already holds keys" in again.stderr and "--force" in again.stderr

    assert keys_cli("generate", str(theirs)).returncode == 0
    other = wool.Keys.generate().public
    trusted = keys_cli("trust", str(ours), str(theirs / "id.pub"))
    assert trusted.returncode == 0, trusted.stderr
    named = keys_cli("trust", str(ours), other, "--name", "carol")
    assert named.returncode == 0, named.stderr
    assert sorted(p.name for p in (ours / "trusted").iterdir()) == ["carol.pub", "theirs.pub"]
    assert wool.Keys.load(ours).trusted == {wool.Keys.load(theirs).public, other}

    shown = keys_cli("show", str(ours))
    assert shown.returncode == 0 and public in shown.stdout and other in shown.stdout and "carol.pub" in shown.stdout
    bad = keys_cli("trust", str(ours), "not-a-key")
    assert bad.returncode == 1 and "neither a key file nor a key" in bad.stderr
