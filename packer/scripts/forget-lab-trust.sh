#!/bin/sh
# The qemu build's last step (packer/build.pkr.hcl): the local qcow2 starts from the lab's base image, which trusts this
# machine's extra CAs so that the build reaches PyPI through this network (lab/image.py, ca_trust_script: certificates
# in /usr/local/share/ca-certificates/lab, the system bundle rebuilt with them, /etc/pip.conf pointing pip at it). The
# build may use them; the image must not keep them: every instance would trust a CA of the machine that built it.
# Removes them, rebuilds the system bundle from what is left, and fails the build if any of it remains.
# ROOT (a tree instead of /) and UPDATE_CA (the bundle rebuild) are for tests/unit/test_packer_local.py.
set -eu
root="${ROOT:-}"
rm -rf "$root/usr/local/share/ca-certificates/lab"
rm -f "$root/etc/pip.conf"
${UPDATE_CA:-update-ca-certificates --fresh}
left=""
[ ! -e "$root/usr/local/share/ca-certificates/lab" ] || left="$left /usr/local/share/ca-certificates/lab"
[ ! -e "$root/etc/pip.conf" ] || left="$left /etc/pip.conf"
for link in "$root"/etc/ssl/certs/*; do
  case "$(readlink "$link" 2>/dev/null || true)" in
    */ca-certificates/lab/*) left="$left ${link#"$root"}" ;;
  esac
done
if [ -n "$left" ]; then
  echo "the lab's CA trust is still in the image:$left" >&2
  exit 1
fi
echo "the lab's CA certificates and pip config are gone from the image"
