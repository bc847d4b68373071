# One build over every source: the same playbook bakes the same roles into an AMI or a local qcow2. Pick the source
# with -only: amazon-ebs.ami (the distribution is var.aws_distribution) or qemu.debian12.

locals {
  # `make image` runs Packer 1.6.6 on a copy of these files elsewhere, so it names the checkout explicitly.
  repo_root = var.repo_root != "" ? var.repo_root : "${path.root}/.."
  # A ready Meinheld wheel replaces the role's default (the builder dir, compiled on the machine being baked).
  meinheld_arguments = var.meinheld_wheel != "" ? ["--extra-vars", jsonencode({ server_meinheld_source = var.meinheld_wheel })] : []
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
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${local.repo_root}/ansible.cfg",
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_FORCE_COLOR=1",
    ]
    extra_arguments = concat(local.meinheld_arguments, var.ansible_extra_arguments)
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
