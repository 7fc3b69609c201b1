"""Node identity: an Ed25519 key pair and its ``did:key`` identifier.

Every node of the ledger (a member's node or a community's node) signs what it writes with one
Ed25519 key (RFC 8032).  Its public identity is a ``did:key`` DID (W3C CCG did:key method): the
multicodec prefix of an Ed25519 public key (``0xed 0x01``, the unsigned varint of code ``0xed``)
followed by the 32 key bytes, base58btc-encoded with the multibase prefix ``z``.  Ed25519 DIDs
therefore always start with ``did:key:z6Mk``.  Because the DID *is* the public key, anybody can
check a signature with nothing but the DID, which is what makes offline verification possible.

The private key lives in one file, ``node_ed25519.pem`` (PKCS#8 PEM, optionally encrypted with a
passphrase), created with mode ``0600`` inside a directory created with mode ``0700``.  A key file
that group or others could read is refused, as OpenSSH does.  The private key never appears in a
``repr``, a ``str``, a log record or an exception message, and a :class:`NodeIdentity` cannot be
pickled or copied out of the process by accident.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "DID_KEY_PREFIX",
    "KEY_FILE_NAME",
    "IdentityError",
    "NodeIdentity",
    "PublicIdentity",
    "b64url_decode",
    "b64url_encode",
    "did_from_public_key",
    "public_key_from_did",
    "verify_signature",
]

#: Prefix of every ``did:key`` identifier.
DID_KEY_PREFIX = "did:key:"
#: Name of the private key file inside a node's key directory.
KEY_FILE_NAME = "node_ed25519.pem"
#: Multicodec code of an Ed25519 public key (0xed) as an unsigned varint.
_ED25519_MULTICODEC = b"\xed\x01"
_PUBLIC_KEY_SIZE = 32
_SIGNATURE_SIZE = 64
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {char: value for value, char in enumerate(_B58_ALPHABET)}


class IdentityError(ValueError):
    """A key file, a DID or a public key is missing, malformed or unsafe.

    Messages name the file or the DID at fault and never contain key material.
    """


# --------------------------------------------------------------------------- encodings


def b64url_encode(data: bytes) -> str:
    """Encode bytes as unpadded base64url (RFC 4648, section 5), as JOSE does.

    Parameters
    ----------
    data : bytes
        Bytes to encode (a signature, a hash).

    Returns
    -------
    str
        ASCII text over ``A-Z a-z 0-9 - _``, without ``=`` padding.
    """
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, what: str = "value") -> bytes:
    """Decode unpadded base64url text strictly.

    Parameters
    ----------
    text : str
        Unpadded base64url text.
    what : str, optional
        Name of the field being decoded, used in the error message.

    Returns
    -------
    bytes
        The decoded bytes.

    Raises
    ------
    IdentityError
        If ``text`` is not a string, is padded, contains characters outside the base64url alphabet
        or is not the canonical encoding of its bytes.
    """
    if not isinstance(text, str) or "=" in text:
        raise IdentityError(f"{what} is not unpadded base64url text")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise IdentityError(f"{what} is not valid base64url") from None
    if b64url_encode(data) != text:  # rejects non-zero trailing bits: one encoding per value
        raise IdentityError(f"{what} is not canonical base64url")
    return data


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    chars = []
    while number:
        number, digit = divmod(number, 58)
        chars.append(_B58_ALPHABET[digit])
    leading_zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading_zeros + "".join(reversed(chars))


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise IdentityError(f"{char!r} is not a base58btc character")
        number = number * 58 + digit
    leading_zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * leading_zeros + body


# --------------------------------------------------------------------------- did:key


def did_from_public_key(public_key: bytes) -> str:
    """Return the ``did:key`` identifier of a raw Ed25519 public key.

    Parameters
    ----------
    public_key : bytes
        The 32-byte raw Ed25519 public key (RFC 8032 encoding).

    Returns
    -------
    str
        ``did:key:z6Mk...``: multibase base58btc of ``0xed 0x01 || public_key``.

    Raises
    ------
    IdentityError
        If ``public_key`` is not 32 bytes long.
    """
    if not isinstance(public_key, bytes | bytearray) or len(public_key) != _PUBLIC_KEY_SIZE:
        raise IdentityError("an Ed25519 public key is exactly 32 bytes")
    return DID_KEY_PREFIX + "z" + _b58encode(_ED25519_MULTICODEC + bytes(public_key))


def public_key_from_did(did: str) -> bytes:
    """Return the raw Ed25519 public key that a ``did:key`` identifier encodes.

    Parameters
    ----------
    did : str
        A ``did:key`` identifier of an Ed25519 key; a DID URL fragment (``#...``) is ignored.

    Returns
    -------
    bytes
        The 32-byte raw public key.

    Raises
    ------
    IdentityError
        If ``did`` is not a base58btc ``did:key`` of an Ed25519 key, or encodes a byte string
        that is not a point of the curve.
    """
    if not isinstance(did, str) or not did.startswith(DID_KEY_PREFIX):
        raise IdentityError(f"{did!r} is not a did:key identifier")
    multibase = did[len(DID_KEY_PREFIX) :].split("#", 1)[0]
    if not multibase.startswith("z"):
        raise IdentityError(f"{did!r} is not base58btc multibase (it must start with 'did:key:z')")
    try:
        decoded = _b58decode(multibase[1:])
    except IdentityError as error:
        raise IdentityError(f"{did!r} is not valid base58btc: {error}") from None
    if not decoded.startswith(_ED25519_MULTICODEC) or len(decoded) != 2 + _PUBLIC_KEY_SIZE:
        raise IdentityError(f"{did!r} does not encode an Ed25519 public key (multicodec 0xed)")
    public_key = decoded[2:]
    try:
        Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        raise IdentityError(f"{did!r} does not encode a valid Ed25519 public key") from None
    return public_key


def verify_signature(did: str, message: bytes, signature: bytes) -> bool:
    """Check an Ed25519 signature against the key that a ``did:key`` names.

    Parameters
    ----------
    did : str
        ``did:key`` identifier of the alleged signer.
    message : bytes
        The signed bytes.
    signature : bytes
        The 64-byte Ed25519 signature.

    Returns
    -------
    bool
        True if the signature is valid; False if it is not, or if ``did`` or ``signature`` is
        malformed (a malformed signature is simply not a valid one).
    """
    try:
        return PublicIdentity.from_did(did).verify(message, signature)
    except IdentityError:
        return False


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """The public half of a node identity: what other nodes know about it.

    Attributes
    ----------
    did : str
        ``did:key`` identifier.
    public_key : bytes
        The 32-byte raw Ed25519 public key that ``did`` encodes.
    """

    did: str
    public_key: bytes

    def __post_init__(self) -> None:
        if did_from_public_key(self.public_key) != self.did:
            raise IdentityError(f"{self.did!r} does not encode the given public key")

    @classmethod
    def from_did(cls, did: str) -> PublicIdentity:
        """Build the public identity named by a ``did:key`` identifier.

        Parameters
        ----------
        did : str
            ``did:key`` identifier of an Ed25519 key.

        Returns
        -------
        PublicIdentity
        """
        public_key = public_key_from_did(did)
        return cls(did_from_public_key(public_key), public_key)

    @property
    def multibase(self) -> str:
        """The ``publicKeyMultibase`` value (the DID without ``did:key:``)."""
        return self.did[len(DID_KEY_PREFIX) :]

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Check an Ed25519 signature made by this identity.

        Parameters
        ----------
        message : bytes
            The signed bytes.
        signature : bytes
            The 64-byte signature.

        Returns
        -------
        bool
            True if valid, False otherwise (including a signature of the wrong length).
        """
        if not isinstance(signature, bytes | bytearray) or len(signature) != _SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(bytes(signature), message)
        except InvalidSignature:
            return False
        return True

    def did_document(self) -> dict[str, Any]:
        """Return the DID document that the did:key method derives from the key.

        Uses the ``Multikey`` verification method type (W3C Controlled Identifiers), suitable to
        publish the node identity as an entity of the twin.

        Returns
        -------
        dict
            JSON-serialisable DID document.
        """
        method_id = f"{self.did}#{self.multibase}"
        return {
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": self.did,
            "verificationMethod": [
                {
                    "id": method_id,
                    "type": "Multikey",
                    "controller": self.did,
                    "publicKeyMultibase": self.multibase,
                }
            ],
            "authentication": [method_id],
            "assertionMethod": [method_id],
            "capabilityInvocation": [method_id],
            "capabilityDelegation": [method_id],
        }


class NodeIdentity:
    """A node's Ed25519 key pair: it signs, and it never shows its private key.

    Build one with :meth:`load_or_create` (the normal way for a node),
    :meth:`create`, :meth:`load` or :meth:`generate` (in memory, for tests and tools).

    Attributes
    ----------
    did : str
        ``did:key`` identifier.
    public_key : bytes
        32-byte raw Ed25519 public key.

    Examples
    --------
    >>> identity = NodeIdentity.generate()
    >>> signature = identity.sign(b"settlement")
    >>> identity.public.verify(b"settlement", signature)
    True
    >>> identity.did.startswith("did:key:z6Mk")
    True
    """

    __slots__ = ("__private_key", "did", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise IdentityError("a node identity needs an Ed25519 private key")
        self.__private_key = private_key
        self.public_key: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.did: str = did_from_public_key(self.public_key)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def generate(cls) -> NodeIdentity:
        """Create a fresh identity in memory (nothing is written).

        Returns
        -------
        NodeIdentity
        """
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeIdentity:
        """Build the identity of a 32-byte Ed25519 seed (RFC 8032 private key).

        Meant for test vectors and deterministic fixtures; a node should use
        :meth:`load_or_create`.

        Parameters
        ----------
        seed : bytes
            32 secret bytes.

        Returns
        -------
        NodeIdentity
        """
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise IdentityError("an Ed25519 seed is exactly 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def create(cls, directory: str | os.PathLike[str], *, passphrase: bytes | None = None) -> NodeIdentity:
        """Create a new key pair and store it in ``directory`` with owner-only permissions.

        The directory is created with mode ``0700`` if missing; the key file is written to a
        temporary file (mode ``0600``), flushed to disk and linked into place atomically, so a
        crash never leaves a half-written key and two concurrent creators cannot both win.

        Parameters
        ----------
        directory : str or os.PathLike
            The node's key directory.
        passphrase : bytes, optional
            If given, the PKCS#8 file is encrypted with it (scrypt + AES-256-CBC via the best
            available scheme of ``cryptography``).

        Returns
        -------
        NodeIdentity

        Raises
        ------
        IdentityError
            If a key file already exists in ``directory``.
        """
        key_path = Path(directory) / KEY_FILE_NAME
        key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private_key = Ed25519PrivateKey.generate()
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        descriptor, temporary = tempfile.mkstemp(prefix=".node_ed25519.", dir=key_path.parent)
        try:
            os.chmod(temporary, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, key_path)
            except FileExistsError:
                raise IdentityError(f"a key file already exists at {key_path}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        return cls(private_key)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, passphrase: bytes | None = None) -> NodeIdentity:
        """Load the key pair stored in ``directory``.

        Parameters
        ----------
        directory : str or os.PathLike
            The node's key directory.
        passphrase : bytes, optional
            Passphrase of an encrypted key file.

        Returns
        -------
        NodeIdentity

        Raises
        ------
        IdentityError
            If the file is missing, readable by group or others, not an Ed25519 PKCS#8 key, or
            encrypted with another passphrase.  The message names the file, never its content.
        """
        key_path = Path(directory) / KEY_FILE_NAME
        try:
            with open(key_path, "rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                    raise IdentityError(
                        f"key file {key_path} is accessible by group or others "
                        f"(mode {stat.S_IMODE(mode):04o}); restrict it with chmod 600"
                    )
                pem = handle.read()
        except FileNotFoundError:
            raise IdentityError(f"no key file at {key_path}") from None
        try:
            private_key = serialization.load_pem_private_key(pem, password=passphrase)
        except TypeError:
            _refuse(key_path, "is encrypted and needs a passphrase, or is not encrypted and takes none")
        except (ValueError, binascii.Error):
            _refuse(key_path, "is not a readable PKCS#8 PEM key (or the passphrase is wrong)")
        finally:
            del pem
        if not isinstance(private_key, Ed25519PrivateKey):
            _refuse(key_path, "does not hold an Ed25519 key")
        return cls(private_key)

    @classmethod
    def load_or_create(
        cls, directory: str | os.PathLike[str], *, passphrase: bytes | None = None
    ) -> NodeIdentity:
        """Load the node's key pair, creating it on first start.

        Parameters
        ----------
        directory : str or os.PathLike
            The node's key directory.
        passphrase : bytes, optional
            Passphrase protecting the key file.

        Returns
        -------
        NodeIdentity
        """
        if (Path(directory) / KEY_FILE_NAME).exists():
            return cls.load(directory, passphrase=passphrase)
        try:
            return cls.create(directory, passphrase=passphrase)
        except IdentityError:
            # Another process created it between our check and our link: use theirs.
            return cls.load(directory, passphrase=passphrase)

    # -- use ----------------------------------------------------------------------------

    @property
    def public(self) -> PublicIdentity:
        """The public identity (DID and public key) to publish."""
        return PublicIdentity(self.did, self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Sign bytes with Ed25519.

        Parameters
        ----------
        message : bytes
            The bytes to sign (callers prepend a domain-separation context).

        Returns
        -------
        bytes
            64-byte signature.
        """
        return self.__private_key.sign(message)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Check a signature made with this identity's key (see :meth:`PublicIdentity.verify`)."""
        return self.public.verify(message, signature)

    # -- no leaks -----------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"NodeIdentity(did={self.did!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeIdentity) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a NodeIdentity holds a private key and cannot be pickled or copied")

    def __copy__(self) -> NoReturn:
        raise TypeError("a NodeIdentity holds a private key and cannot be copied")

    def __deepcopy__(self, memo: dict[int, Any]) -> NoReturn:
        raise TypeError("a NodeIdentity holds a private key and cannot be copied")


def _refuse(key_path: Path, reason: str) -> NoReturn:
    raise IdentityError(f"key file {key_path} {reason}") from None
