//! Switchboard packet framing (owned by the packet-framing work).
