"""File capabilities for the application binary (``linux_capabilities`` in ``.ko.yaml``).

ko's rules: each term is a capability name (``net_bind_service``, ``CAP_NET_BIND_SERVICE``,
``NET_BIND_SERVICE``, a number below 64, or ``all``), which is *permitted* only (a list of
names means ``cap1,cap2=p``), or a ``setcap``/``cap_from_text(3)`` clause such as
``net_bind_service=ep`` or ``chown,fowner+p``: operators ``=`` (reset, then set), ``+``,
``-``; flags ``p`` (permitted), ``i`` (inheritable), ``e`` (effective: the kernel raises
the permitted ones at exec, so a program that does not raise them itself still gets
them). The result is the ``security.capability`` extended attribute the kernel reads
(``struct vfs_cap_data``, revision 2), carried in the binary's tar entry as the PAX record
``SCHILY.xattr.security.capability``, which container runtimes apply when unpacking.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

# Linux's capability numbers (include/uapi/linux/capability.h).
CAPABILITIES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
    "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
    "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
    "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
    "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
)
ALL_KNOWN = (1 << len(CAPABILITIES)) - 1
VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_FLAGS_EFFECTIVE = 0x000001
XATTR_NAME = "security.capability"
PAX_RECORD = "SCHILY.xattr." + XATTR_NAME


class CapabilityError(ValueError):
    """A term names no capability or is not ``setcap`` syntax."""


@dataclass(frozen=True)
class FileCapabilities:
    permitted: int
    inheritable: int
    effective: bool

    def xattr(self) -> bytes:
        """``struct vfs_cap_data`` (revision 2): magic and flags, then the low and high
        32 bits of the permitted and inheritable sets, little-endian."""
        magic = VFS_CAP_REVISION_2 | (VFS_CAP_FLAGS_EFFECTIVE if self.effective else 0)
        mask = 0xFFFFFFFF
        return struct.pack("<5I", magic, self.permitted & mask, self.inheritable & mask,
                           self.permitted >> 32, self.inheritable >> 32)


def capability_mask(name: str) -> int:
    """One capability (or ``all``) as a bit mask."""
    text = name.strip()
    if text.isdigit() and int(text) < 64:
        return 1 << int(text)
    lowered = text.lower()
    if lowered == "all":
        return ALL_KNOWN
    lowered = lowered.removeprefix("cap_")
    if lowered in CAPABILITIES:
        return 1 << CAPABILITIES.index(lowered)
    raise CapabilityError(f"unknown capability {name!r}")


def file_capabilities(terms: Iterable[str]) -> FileCapabilities | None:
    """The file capabilities ``terms`` describe; None when they grant nothing."""
    permitted = inheritable = effective = 0
    for term in terms:
        split = next((i for i, c in enumerate(term) if c in "+-="), -1)
        if split < 0:
            permitted |= capability_mask(term)
            continue
        names, actions = term[:split], term[split:]
        if not names and actions.startswith("="):
            names = "all"
        try:
            mask = 0
            for name in names.split(","):
                mask |= capability_mask(name)
        except CapabilityError as exc:
            raise CapabilityError(f"{term!r}: {exc}") from None
        keep = 0
        for action in actions:
            if action in "+=":
                keep = ~0
                if action == "=":
                    permitted, inheritable, effective = (
                        s & ~mask for s in (permitted, inheritable, effective))
            elif action == "-":
                keep = ~mask
            elif action == "p":
                permitted = (permitted | mask) & keep
            elif action == "i":
                inheritable = (inheritable | mask) & keep
            elif action == "e":
                effective = (effective | mask) & keep
            else:
                raise CapabilityError(f"{term!r}: unknown flag {action!r} (use p, i or e)")
    if not permitted and not inheritable:
        return None
    return FileCapabilities(permitted, inheritable, effective != 0)
