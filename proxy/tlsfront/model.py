"""The configuration model: frozen dataclasses, built and validated by `config.load()`.

This module is the contract between the loader (config.py, tlsctx.py) and the
data path (listeners, frontend, backend). It imports nothing from Twisted or
pyOpenSSL, so `tlsfront check` and the tests can use it freely.

Durations are seconds (float), sizes are bytes (int): units are in the names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

WILDCARD = "*"


@dataclass(frozen=True)
class Address:
    """A listening address. `host` is an IP literal or "*" (every local address)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_wildcard(self) -> bool:
        return self.host == WILDCARD


@dataclass(frozen=True)
class Backend:
    """One origin server: only plain `http://host:port` for now."""

    url: str
    host: str
    port: int

    def __post_init__(self) -> None:
        # "host:port" labels every backend metric and log line, several times per request:
        # built once (not a dataclass field: equality, hashing and replace() are unchanged).
        object.__setattr__(self, "_label", f"{self.host}:{self.port}")

    def __str__(self) -> str:
        return self._label


@dataclass(frozen=True)
class CertKey:
    """A certificate, its private key and the intermediates sent with it
    (mod_ssl's SSLCertificateFile / SSLCertificateKeyFile / SSLCertificateChainFile)."""

    cert_file: Path
    key_file: Path
    chain_file: Path | None = None


@dataclass(frozen=True)
class ClientAuth:
    """Client certificates (SSLVerifyClient, SSLVerifyDepth, SSLCACertificate*, SSLCARevocationFile)."""

    verify: str = "none"  # none | optional | require | optional_no_ca
    depth: int = 1
    ca_file: Path | None = None
    ca_path: Path | None = None
    crl_file: Path | None = None


@dataclass(frozen=True)
class TLSSettings:
    """Everything that shapes one vhost's OpenSSL Context.

    `[tls]` gives the defaults; a vhost's `[vhost.tls]` overrides them key by key.
    """

    certs: tuple[CertKey, ...] = ()
    protocols: str = "+TLSv1.2 +TLSv1.3"  # SSLProtocol syntax
    # Opt-in for TLS 1.0/1.1 (security level 0): the name says what it costs.
    insecure_legacy_protocols: bool = False
    ciphers: str = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!RC4:!3DES"
    ciphersuites: str = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
    honor_cipher_order: bool = True
    groups: str = "X25519:P-256:P-384"
    session_cache: str = "shared"  # shared | per-worker | off
    session_cache_size: int = 20480
    session_timeout_seconds: float = 300.0
    session_tickets: bool = True
    client: ClientAuth = field(default_factory=ClientAuth)
    passphrase_dialog: str = "builtin"  # builtin | exec:/path | file:/path | env:NAME


@dataclass(frozen=True)
class Forwarding:
    """What the proxy adds to requests on their way to the backend."""

    # X-Forwarded-* from these peers are kept and appended to; from anyone else, replaced.
    trusted_proxies: tuple[str, ...] = ()
    # mod_ssl's SSLOptions +StdEnvVars / +ExportCertData, as X-SSL-* and Client-Cert headers.
    tls_headers: bool = True
    client_cert_header: bool = False
    preserve_host: bool = True


@dataclass(frozen=True)
class Timeouts:
    backend_connect_seconds: float = 5.0
    backend_response_header_seconds: float = 60.0
    backend_idle_seconds: float = 30.0
    client_handshake_seconds: float = 10.0
    client_header_seconds: float = 20.0
    client_body_idle_seconds: float = 30.0
    client_keepalive_seconds: float = 15.0


@dataclass(frozen=True)
class Limits:
    max_header_count: int = 100
    max_header_bytes: int = 32 * 1024
    max_body_bytes: int = 1024 ** 4  # 1 TiB: effectively unlimited unless set
    max_connections: int = 10_000


@dataclass(frozen=True)
class Quirk:
    """One `[[quirk]]` rule: like SetEnvIf/BrowserMatch, in the order given."""

    attribute: str  # "User-Agent" | "Remote_Addr" | "Request_URI" | any request header name
    pattern: str
    ignore_case: bool = False
    negate: bool = False
    set: tuple[str, ...] = ()
    unset: tuple[str, ...] = ()


@dataclass(frozen=True)
class VHost:
    index: int  # position in the file: `vhost[index]` in error messages
    server_name: str
    listen: Address
    tls: TLSSettings | None  # None: a plain-HTTP vhost
    backends: tuple[Backend, ...]
    server_aliases: tuple[str, ...] = ()
    forwarding: Forwarding = field(default_factory=Forwarding)
    # Plain vhosts: answer every request with 301 to https://<name>:<port> of this TLS vhost name.
    redirect_to_https: str | None = None
    hsts_max_age_seconds: int | None = None
    # TLS vhosts: the answer to plain HTTP on this port: "400" (Apache) or "redirect" (nginx 497).
    plain_http_answer: str = "400"
    # The FAQ's rewrite trick: paths ending in :SSL / :NOSSL switch scheme.
    ssl_nossl_suffix_redirects: bool = False

    @property
    def is_tls(self) -> bool:
        return self.tls is not None

    @property
    def label(self) -> str:
        """The bounded name used in logs and metric labels."""
        return f"{self.server_name}:{self.listen.port}"


@dataclass(frozen=True)
class RandomSeed:
    """One `random_seed` entry, mod_ssl's `SSLRandomSeed context source [bytes]`.

    context: "startup" | "connect"; source: "builtin" | "file:/path" | "exec:/path".
    """

    context: str
    source: str
    bytes: int | None = None

    @property
    def kind(self) -> str:
        return self.source.split(":", 1)[0]

    @property
    def path(self) -> Path | None:
        return Path(self.source.split(":", 1)[1]) if ":" in self.source else None


@dataclass(frozen=True)
class ServerSettings:
    error_log: Path | None = None
    access_log: Path | None = None
    ssl_request_log: Path | None = None
    log_level: str = "info"  # emerg alert crit error warn notice info debug
    log_stderr: bool = False
    pid_file: Path | None = None
    workers: int = 0  # 0: one per CPU
    user: str | None = None
    group: str | None = None
    allow_root: bool = False
    shutdown_grace_seconds: float = 30.0
    random_seed: tuple[RandomSeed, ...] = ()
    # Session-ticket keys live in the Contexts (pyOpenSSL has no ticket-key API): rotating
    # them means new Contexts and a rolling worker replacement (docs/sessions.md). 0 = never
    # (only at reload/restart).
    session_ticket_rotation_seconds: float = 43200.0


@dataclass(frozen=True)
class AdminSettings:
    listen: Address | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    server: ServerSettings
    admin: AdminSettings
    tls_defaults: TLSSettings
    vhosts: tuple[VHost, ...]
    quirks: tuple[Quirk, ...] = ()
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    # Non-fatal problems found by the loader (key readable by others, /dev/random...),
    # rendered as text; `serve` logs them at start-up, `check` prints them.
    warnings: tuple[str, ...] = ()
