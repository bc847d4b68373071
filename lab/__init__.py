"""The local VM lab: bootable Debian/Ubuntu images and throw-away systemd VMs under QEMU.

The suite is tested on real systemd hosts rather than mocks; this package gives every test tier (molecule,
`make demo`, the image checks) the same way to get one: build a base image once, boot overlays of it, reach
them over SSH on loopback.
"""
