"""CURVE keys: this process's keypair, and the public keys it trusts.

With keys, every connection is encrypted and both ends are authenticated by ZeroMQ's CURVE
handshake: a worker accepts only callers whose public key it trusts (its allow-list), and a
caller connects only to workers whose published public key it trusts. A process always
trusts its own key, so processes that share one key directory trust each other as they are.

The directory `python -m wool.keys generate DIR` makes:

    DIR/              0700
      id.key          0600  this process's secret key (z85, one line; never share it)
      id.pub                its public key: give it to the peers that should trust this one
      trusted/              public keys this process trusts, one `*.pub` file each

Key files hold one z85 key on a line of its own (lines starting with `#` are comments);
ZeroMQ certificate files (`public-key = "..."`, as `zmq.auth` and czmq write) are read too.

Whoever can write to `DIR` or `trusted/` decides whom this process trusts, and whoever owns
`id.key` holds its identity: so `Keys.load` opens each of them without following links
(relative to the descriptor of the directory it checked, so nothing can be swapped in
between) and refuses a directory, or a key file, that belongs to another user or that group
or others may write, and an `id.key` that anyone but its owner may read.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

import zmq

Z85_ALPHABET = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
KEY_LENGTH = 40  # a 32-byte CURVE key in z85
SECRET_FILE, PUBLIC_FILE, TRUSTED_DIR = "id.key", "id.pub", "trusted"
_CERT_FIELD = re.compile(r'^\s*(public|secret)-key\s*=\s*"([^"]*)"\s*$', re.MULTILINE)

PathLike = str | os.PathLike[str]


def check_key(key: object, what: str = "a CURVE key") -> str:
    """`key` (str or bytes) as a z85 string, or `ValueError`/`TypeError` saying what is wrong."""
    if isinstance(key, (bytes, bytearray)):
        try:
            key = bytes(key).decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"{what} must be 40 z85 characters, got non-ASCII bytes") from None
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a str, not {type(key).__name__}")
    if len(key) != KEY_LENGTH or not Z85_ALPHABET.issuperset(key):
        shown = key if len(key) <= 60 else key[:57] + "..."
        raise ValueError(f"{what} must be 40 z85 characters, got {shown!r}")
    return key


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class Keys:
    """This process's CURVE keypair and the public keys of the peers it trusts: what
    `WorkerPool(keys=...)`, `StaticDiscovery(keys=...)` and `DnsDiscovery(keys=...)` take.

    With keys every connection is encrypted, and both ends are authenticated: a worker
    accepts only callers whose public key it trusts, a caller connects only to workers whose
    public key it trusts. Its own key is always trusted as well, so processes sharing one key
    directory trust each other. Build one with `Keys.load(DIR)` (a directory made by
    `python -m wool.keys generate DIR`), `Keys.generate()` (a fresh keypair, in memory), or
    from strings. Its repr never shows the secret key; pickled (to a spawned worker), it
    carries it.

    Args:
        public: This process's public key (z85, 40 characters).
        secret: The matching secret key (z85).
        trusted: The public keys of the peers it trusts.

    Attributes:
        public: This process's public key (z85).
        secret: Its secret key (z85): never share it.
        trusted: The public keys of the peers it trusts (its own not included; see
            `allowed`).

    Raises:
        TypeError: `trusted` is a single key instead of a collection.
        ValueError: A key is malformed, or the secret key does not belong to the public one.

    Example:
        ```python
        keys = wool.Keys.load("~/.wool/keys")      # python -m wool.keys generate ~/.wool/keys
        async with wool.WorkerPool(discovery=wool.LanDiscovery(), keys=keys):
            ...
        ```
    """

    public: str
    secret: str
    trusted: frozenset[str] = frozenset()

    def __init__(self, public: str | bytes, secret: str | bytes, trusted: Iterable[str | bytes] = ()) -> None:
        public_key = check_key(public, "the public key")
        secret_key = check_key(secret, "the secret key")
        if isinstance(trusted, (str, bytes)):
            raise TypeError("trusted must be a collection of public keys, not one key")
        if zmq.curve_public(secret_key.encode()).decode() != public_key:
            raise ValueError("the secret key does not belong to the public key")
        object.__setattr__(self, "public", public_key)
        object.__setattr__(self, "secret", secret_key)
        object.__setattr__(self, "trusted", frozenset(check_key(k, "a trusted key") for k in trusted))

    def __repr__(self) -> str:
        return f"Keys(public={self.public!r}, trusted={len(self.trusted)} keys)"

    def __reduce__(self) -> tuple[object, ...]:
        return (Keys, (self.public, self.secret, sorted(self.trusted)))

    @classmethod
    def generate(cls, trusted: Iterable[str | bytes] = ()) -> Keys:
        """A fresh keypair, in memory.

        Args:
            trusted: The public keys of the peers it trusts (besides itself).

        Returns:
            The new keys.
        """
        public, secret = zmq.curve_keypair()
        return cls(public, secret, trusted)

    @classmethod
    def load(cls, directory: PathLike) -> Keys:
        """The keys in a directory made by `python -m wool.keys generate DIR`: the secret key
        in `id.key` (0600), its public key in `id.pub`, and one trusted public key per
        `trusted/*.pub` file.

        Whoever can write to the directory decides whom this process trusts, so each file is
        opened without following links and its owner and mode are checked.

        Args:
            directory: The key directory (`~` is expanded).

        Returns:
            The keys.

        Raises:
            FileNotFoundError: The directory has no `id.key` (the message says how to make
                one).
            OSError: A key file cannot be read.
            ValueError: A key file is malformed, `id.pub` does not match `id.key`, `id.key`
                is readable by anyone but its owner, or the directory, `trusted/` or a key
                file is a link, belongs to another user, or is writable by group or others.
        """
        root = Path(directory).expanduser()
        secret_path = root / SECRET_FILE
        missing = f"no secret key at {secret_path}: make a key directory with `python -m wool.keys generate {root}`"
        try:
            root_fd = _open_checked(root, str(root), None, directory=True)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, missing, str(secret_path)) from None
        try:
            try:
                text, info = _read_at(root_fd, SECRET_FILE, secret_path)
            except FileNotFoundError:
                raise FileNotFoundError(errno.ENOENT, missing, str(secret_path)) from None
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise ValueError(
                    f"{secret_path} is accessible by other users (mode {mode:04o}): "
                    f"its secret key must be private; run `chmod 600 {secret_path}`"
                )
            secret = parse_key_text(text, secret_path, "secret")
            public = zmq.curve_public(secret.encode()).decode()
            public_path = root / PUBLIC_FILE
            try:
                public_text, _ = _read_at(root_fd, PUBLIC_FILE, public_path)
            except FileNotFoundError:
                pass
            else:
                if parse_key_text(public_text, public_path, "public") != public:
                    raise ValueError(f"{public_path} does not hold the public key of {secret_path}")
            trusted = _load_trusted_at(root_fd, root / TRUSTED_DIR)
        finally:
            os.close(root_fd)
        return cls(public, secret, trusted)

    def trusts(self, public_key: str) -> bool:
        """Whether a peer with `public_key` may be talked to (or may call, on a worker).

        Args:
            public_key: The peer's public key (z85).

        Returns:
            `True` for this process's own key and for every trusted key.
        """
        return public_key == self.public or public_key in self.trusted

    def trusting(self, *public_keys: str | bytes) -> Keys:
        """A copy of these keys that trusts `public_keys` too.

        Args:
            *public_keys: More public keys to trust (z85).

        Returns:
            The new keys; these are unchanged (they are frozen).

        Raises:
            ValueError: A key is malformed.
        """
        return Keys(self.public, self.secret, [*self.trusted, *public_keys])

    @property
    def allowed(self) -> frozenset[str]:
        """Every key this process trusts, its own included."""
        return self.trusted | {self.public}


def as_keys(keys: Keys | PathLike | None) -> Keys | None:
    """`keys`, loading a directory path given instead; `TypeError` for anything else."""
    if keys is None or isinstance(keys, Keys):
        return keys
    if isinstance(keys, (str, os.PathLike)):
        return Keys.load(keys)
    raise TypeError(f"keys must be a wool.Keys or a key directory, not {type(keys).__name__}")


_MAX_KEY_FILE = 64 * 1024  # a key file is a few hundred bytes; this bounds a hostile one


def _check_owner(path: Path, info: os.stat_result) -> None:
    """`ValueError` unless `info` (of `path`, from `fstat`) is this user's and not writable by
    group or others: whoever can write a key file or directory chooses whom we trust."""
    if info.st_uid != os.getuid():
        raise ValueError(
            f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.getuid()}): wool uses only keys "
            "its user controls; make your own with `python -m wool.keys generate DIR`"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise ValueError(
            f"{path} is writable by other users (mode {mode:04o}), who could make this process trust their "
            f"keys; run `chmod go-w {path}` and check what it holds"
        )


def _open_checked(path: Path, name: str, dir_fd: int | None, *, directory: bool) -> int:
    """A descriptor of `name` (relative to `dir_fd`), opened without following a link and
    checked with `_check_owner`. Raises `FileNotFoundError` if it is missing."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR) and stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
            raise ValueError(
                f"{path} is a symbolic link: wool reads keys only from the directory and files themselves "
                f"(give the real path, {os.path.realpath(path)})"
            ) from None
        raise
    try:
        info = os.fstat(fd)
        if not directory and not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file")
        _check_owner(path, info)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_at(dir_fd: int, name: str, path: Path) -> tuple[str, os.stat_result]:
    """The text of key file `name` in the directory `dir_fd` (`path` names it in errors)."""
    fd = _open_checked(path, name, dir_fd, directory=False)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        raw = f.read(_MAX_KEY_FILE + 1)
    if len(raw) > _MAX_KEY_FILE:
        raise ValueError(f"{path} is larger than {_MAX_KEY_FILE} bytes: not a key file")
    return raw.decode("ascii", errors="replace"), info


def _load_trusted_at(root_fd: int, path: Path) -> list[str]:
    """The public keys in the `trusted/` directory of `root_fd` (see `load_trusted`), read
    without following links; none if it does not exist."""
    try:
        fd = _open_checked(path, TRUSTED_DIR, root_fd, directory=True)
    except FileNotFoundError:
        return []
    try:
        keys = []
        for name in sorted(os.listdir(fd)):
            if Path(name).suffix not in (".pub", ".key"):
                continue
            if stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
                continue
            text, _ = _read_at(fd, name, path / name)
            keys.append(parse_key_text(text, path / name, "public"))
        return keys
    finally:
        os.close(fd)


def read_key_file(path: PathLike, kind: str) -> str:
    """The `kind` ("public" or "secret") z85 key in the file at `path`."""
    return parse_key_text(Path(path).read_text(encoding="ascii", errors="replace"), path, kind)


def parse_key_text(text: str, path: PathLike, kind: str) -> str:
    """The `kind` z85 key in `text`, read from `path` (named in errors)."""
    fields = dict((m.group(1), m.group(2)) for m in _CERT_FIELD.finditer(text))
    if fields:
        if kind not in fields:
            raise ValueError(f"{path} is a certificate without a {kind} key")
        candidate = fields[kind]
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if len(lines) != 1:
            raise ValueError(f"{path} must hold exactly one key on a line of its own, found {len(lines)} lines")
        candidate = lines[0]
    try:
        return check_key(candidate, f"the {kind} key in {path}")
    except ValueError as e:
        raise ValueError(str(e)) from None


def load_trusted(directory: PathLike) -> list[str]:
    """The public keys of the `*.pub` (and certificate `*.key`) files in `directory`; none if
    it does not exist."""
    root = Path(directory)
    if not root.is_dir():
        return []
    return [read_key_file(p, "public") for p in sorted(root.iterdir()) if p.suffix in (".pub", ".key") and p.is_file()]


def _header(what: str) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"# wool CURVE {what}, generated {stamp} by `python -m wool.keys`\n"


def _write_new(path: Path, text: str, mode: int) -> None:
    """Create `path` holding `text` with permissions `mode`, whatever the umask; never
    replace an existing file (`FileExistsError`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)


def generate_directory(directory: PathLike, *, force: bool = False) -> Keys:
    """Make the layout of the module docstring in `directory` with a fresh keypair and return
    it. Raises `FileExistsError` if `directory` already has keys (unless `force`, which
    replaces them: peers that trusted the old public key no longer trust this process), and
    `ValueError` if an existing `directory` is a link, another user's, or writable by others."""
    root = Path(directory)
    root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.mkdir(root, 0o700)
        created = True
    except FileExistsError:
        created = False  # used as it is if safe (checked below), never chmodded: it may not be ours
    fd = _open_checked(root, str(root), None, directory=True)
    try:
        if created:
            os.fchmod(fd, 0o700)  # whatever the umask
    finally:
        os.close(fd)
    (root / TRUSTED_DIR).mkdir(mode=0o755, exist_ok=True)
    secret_path, public_path = root / SECRET_FILE, root / PUBLIC_FILE
    if force:
        for path in (secret_path, public_path):
            path.unlink(missing_ok=True)
    elif secret_path.exists() or public_path.exists():
        raise FileExistsError(f"{root} already holds keys ({SECRET_FILE}); pass --force to replace them")
    keys = Keys.generate()
    _write_new(secret_path, _header("secret key: keep this file private") + keys.secret + "\n", 0o600)
    _write_new(public_path, _header("public key") + keys.public + "\n", 0o644)
    return Keys(keys.public, keys.secret, load_trusted(root / TRUSTED_DIR))


def trust_key(directory: PathLike, public_key: str, name: str) -> Path:
    """Add `public_key` to `directory`'s trusted keys as `trusted/NAME.pub`; the file's path.
    Raises `FileExistsError` if a different key already has that name."""
    key = check_key(public_key, "the public key")
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise ValueError(f"{name!r} cannot name a key file")
    folder = Path(directory) / TRUSTED_DIR
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = folder / f"{name}.pub"
    if path.exists():
        if read_key_file(path, "public") == key:
            return path
        raise FileExistsError(f"{path} already holds another key")
    _write_new(path, _header("trusted public key") + key + "\n", 0o644)
    return path
