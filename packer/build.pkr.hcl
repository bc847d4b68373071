# One build over every source: the same playbook bakes the same roles into an AMI or a local qcow2. Pick the source
# with -only: amazon-ebs.ami (the distribution is var.aws_distribution) or qemu.debian12.

locals {
  # `make image` runs Packer 1.6.6 on a copy of these files elsewhere, so it names the checkout explicitly.
  repo_root = var.repo_root != "" ? var.repo_root : "${path.root}/.."
  # A ready Meinheld wheel replaces the role's default (the builder dir, compiled on the machine being baked).
  meinheld_arguments = var.meinheld_wheel != "" ? ["--extra-vars", jsonencode({ server_meinheld_source = var.meinheld_wheel })] : []
  # A known_hosts file new to each build: a reused address or port of an earlier build is never a stale entry.
  known_hosts = var.ansible_known_hosts_file != "" ? var.ansible_known_hosts_file : "packer-known-hosts-${local.timestamp}"
}

build {
  sources = [
    "source.amazon-ebs.ami",
    "source.qemu.debian12",
  ]

  provisioner "ansible" {
    playbook_file = "${local.repo_root}/playbooks/image.yml"
    # Ansible connects to the machine itself (the instance's address, or QEMU's forwarded port) instead of through
    # Packer's SSH proxy, whose ssh-rsa host key current OpenSSH clients refuse.
    use_proxy = false
    user      = build.User
    # Host-key checking stays on: the machine's key is unknown before it boots (a fresh instance makes its own), so the
    # first connection records it in a known_hosts file of this build alone (accept-new) and every later connection
    # of the build must meet the same key. Packer's own SSH communicator (the builder's steps, the shutdown) has no
    # host-key option: it does not check; see packer/README.md.
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${local.repo_root}/ansible.cfg",
      "ANSIBLE_HOST_KEY_CHECKING=True",
      "ANSIBLE_SSH_COMMON_ARGS=-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=${local.known_hosts}",
      "ANSIBLE_FORCE_COLOR=1",
    ]
    extra_arguments = concat(local.meinheld_arguments, var.ansible_extra_arguments)
  }

  # The local qcow2 only: its base (the lab's image) trusts this machine's CAs, for pip during the build; the image
  # must not keep them (the CA certificates, the bundle made with them, /etc/pip.conf).
  provisioner "shell" {
    only   = ["qemu.debian12"]
    script = "${local.repo_root}/packer/scripts/forget-lab-trust.sh"
  }

  post-processor "manifest" {
    output     = var.manifest_path
    strip_path = true
    custom_data = {
      ami_name_prefix = var.ami_name_prefix
      built_at        = local.timestamp
    }
  }
}
