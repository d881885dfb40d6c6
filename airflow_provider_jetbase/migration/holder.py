"""Who holds the lock: a process identity packed into Jetbase's ``process_id`` (``VARCHAR(36)``).

Jetbase only compares ``process_id`` with the value it wrote, so ours stays a canonical UUID, a
version-8 (custom) one instead of the CLI's random version 4. Its 122 free bits carry::

    tag (4 bits, 0xA)   namespace (40 bits)   pid (22 bits)   start time (32 bits)   random (24 bits)

- namespace: the first 40 bits of sha256(boot id + PID-namespace inode). Same value = same running
  kernel and same PID namespace, the only case in which a pid means the same process to the
  reader. Two containers with one host name differ here (their PID namespaces differ), and so do
  two machines (their boot ids differ). 0 = unknown (no /proc, or a /proc of another namespace).
- start time: the process's start in clock ticks since boot (``/proc/<pid>/stat`` field 22), low
  32 bits, so a recycled pid is not mistaken for the holder.
- random: two runs of one process write two different values.

A reader in the same namespace can therefore prove the holder dead (its pid is gone or belongs to
a process started at another time); a reader anywhere else cannot, and says "unknown".
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from typing import NamedTuple

_TAG = 0xA
_PID_BITS = 22
_START_BITS = 32
_NAMESPACE_BITS = 40
_RANDOM_BITS = 24


class ProcessIdentity(NamedTuple):
    namespace: int  # 0: unknown
    pid: int
    start_ticks: int  # low 32 bits; 0: unknown


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except OSError:
        return None


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (after the parenthesised command, which may hold spaces)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None or ")" not in stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def namespace_fingerprint() -> int:
    """This process's (boot, PID namespace); 0 when /proc does not describe our own namespace."""
    boot_id = _read("/proc/sys/kernel/random/boot_id")
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return 0
    # A /proc mounted from a parent namespace lists other pids: /proc/self is then not os.getpid().
    own_stat = _read("/proc/self/stat")
    if boot_id is None or own_stat is None or own_stat.split(" ", 1)[0] != str(os.getpid()):
        return 0
    digest = hashlib.sha256(f"{boot_id.strip()}|{pid_ns}".encode()).digest()
    return int.from_bytes(digest[:5], "big") or 1


def make_process_id(pid: int | None = None) -> str:
    """A canonical 36-character version-8 UUID carrying this namespace, ``pid`` and its start time."""
    pid = os.getpid() if pid is None else pid
    start = start_ticks(pid) or 0
    payload = _TAG
    payload = payload << _NAMESPACE_BITS | namespace_fingerprint()
    payload = payload << _PID_BITS | (pid & ((1 << _PID_BITS) - 1))
    payload = payload << _START_BITS | (start & ((1 << _START_BITS) - 1))
    payload = payload << _RANDOM_BITS | secrets.randbits(_RANDOM_BITS)
    # 122 payload bits around the version (bits 79..76) and the RFC 4122 variant (bits 63..62).
    value = (payload >> 74) << 80 | 0x8 << 76 | ((payload >> 62) & 0xFFF) << 64
    value |= 0b10 << 62 | (payload & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def parse_process_id(process_id: object) -> ProcessIdentity | None:
    """The identity in one of our process_ids; None for the CLI's uuid4, NULL, or anything else."""
    try:
        parsed = uuid.UUID(str(process_id))
    except ValueError:
        return None
    if parsed.version != 8 or len(str(process_id)) != 36:
        return None
    value = parsed.int
    payload = (value >> 80) << 74 | ((value >> 64) & 0xFFF) << 62 | (value & ((1 << 62) - 1))
    payload >>= _RANDOM_BITS
    start = payload & ((1 << _START_BITS) - 1)
    payload >>= _START_BITS
    pid = payload & ((1 << _PID_BITS) - 1)
    payload >>= _PID_BITS
    namespace = payload & ((1 << _NAMESPACE_BITS) - 1)
    if payload >> _NAMESPACE_BITS != _TAG:
        return None
    return ProcessIdentity(namespace, pid, start)


def is_ours(process_id: object) -> bool:
    return parse_process_id(process_id) is not None


def provably_dead(identity: ProcessIdentity) -> str | None:
    """Why the holder cannot be running, judged from this process; None when it may be running."""
    here = namespace_fingerprint()
    if identity.namespace == 0 or here == 0 or identity.namespace != here:
        return None  # another machine, boot or PID namespace: its pids mean nothing here
    if identity.pid == os.getpid():
        return None
    start = start_ticks(identity.pid)
    if start is None:
        return f"its holder (pid {identity.pid} in this PID namespace) is no longer running"
    if identity.start_ticks and (start & ((1 << _START_BITS) - 1)) != identity.start_ticks:
        return (
            f"its holder (pid {identity.pid} in this PID namespace) is no longer running: that pid now "
            "belongs to a process started later"
        )
    return None


def describe(identity: ProcessIdentity | None) -> str:
    if identity is None:
        return "holder not recorded (probably the jetbase CLI or another tool)"
    here = namespace_fingerprint()
    if identity.namespace and identity.namespace == here:
        return f"pid {identity.pid} on this host, in this PID namespace"
    return f"pid {identity.pid} on another host or in another PID namespace ({identity.namespace:010x})"
