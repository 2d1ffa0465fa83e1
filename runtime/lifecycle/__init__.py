"""Device lifecycle: install slots with anti-rollback, secure updates (TUF), change control (diff against the
parent's PCCP), and the SBOM / SOUP register.

An optional layer beside ``tools``, ``cli`` and ``fleet``: it uses only the core's public names, and the core never
imports it, so a device that never updates never loads it. Updates and SBOMs need the [lifecycle] extra
(python-tuf, cyclonedx-python-lib); slots, ``medinfer install`` and ``medinfer diff`` run on the base install.
"""

from __future__ import annotations

from .slots import ActiveBundle, BundleKey, SlotWatcher, active_bundle, bundle_key, install

__all__ = ["ActiveBundle", "BundleKey", "SlotWatcher", "active_bundle", "bundle_key", "install"]
