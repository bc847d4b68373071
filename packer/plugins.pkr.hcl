# Plugins for Packer >= 1.7 (`packer init packer/` installs them). Packer 1.6.6, Debian 12's package, bundles these
# builders and does not understand this block: `make image` / `make packer-check` leave this file out for it.
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      version = ">= 1.2.0"
      source  = "github.com/hashicorp/amazon"
    }
    qemu = {
      version = ">= 1.0.9"
      source  = "github.com/hashicorp/qemu"
    }
    ansible = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/ansible"
    }
  }
}
