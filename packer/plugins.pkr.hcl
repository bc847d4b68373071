# Plugins for Packer >= 1.7 (`packer init packer/` installs them). Packer 1.6.6, Debian 12's package, bundles these
# builders and does not understand this block: `make image` / `make packer-check` leave this file out for it.
# Each plugin is pinned with `~>` to its major version (from the minimum the templates need): `packer init` never pulls
# a new major release, whose breaking changes would reach the images unreviewed; raise a pin on purpose. packer init
# checks each downloaded binary against its release's SHA256SUMS.
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      version = "~> 1.2"
      source  = "github.com/hashicorp/amazon"
    }
    qemu = {
      version = "~> 1.1"
      source  = "github.com/hashicorp/qemu"
    }
    ansible = {
      version = "~> 1.1"
      source  = "github.com/hashicorp/ansible"
    }
  }
}
