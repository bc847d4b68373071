# Where images are built. Every source runs the same provisioning (build.pkr.hcl); they differ only in where the
# machine comes from and how Packer reaches it.

locals {
  # UTC build time in AMI names and tags: unique per build, and names sort by age.
  timestamp = formatdate("YYYYMMDDhhmmss", timestamp())

  # The distribution this build bakes (var.aws_distribution): its base AMI, and the AMI's name and tags (the
  # operator's ami_tags win on a clash).
  base = var.aws_source_amis[var.aws_distribution]
  # The distributions name the architectures amd64 and arm64 in their AMI names.
  base_ami_name = replace(local.base.name, "{arch}", var.aws_architecture == "arm64" ? "arm64" : "amd64")
  instance_type = var.aws_instance_type != "" ? var.aws_instance_type : (var.aws_architecture == "arm64" ? "t4g.small" : "t3.small")
  ami = {
    name = "${var.ami_name_prefix}-${var.aws_distribution}-${var.aws_architecture}-${local.timestamp}"
    tags = merge({
      Name         = "${var.ami_name_prefix}-${var.aws_distribution}-${var.aws_architecture}-${local.timestamp}"
      Distribution = var.aws_distribution
      Architecture = var.aws_architecture
      Project      = "gunicorn-flask"
      Built-By     = "packer"
      Built-At     = local.timestamp
    }, var.ami_tags)
  }

  # The encrypted gp3 root volume; gp3's baseline throughput and IOPS spelled out (Packer 1.6.6 insists).
  root_volume = {
    volume_size           = var.aws_root_volume_size_gb
    volume_type           = "gp3"
    throughput            = 125
    iops                  = 3000
    encrypted             = true
    kms_key_id            = var.aws_kms_key_id
    delete_on_termination = true
  }
}

# --- amazon-ebs: one source, keyed on the distribution ---------------------------------------------------------------
#   packer build -only=amazon-ebs.ami -var aws_distribution=ubuntu2404 packer/

source "amazon-ebs" "ami" {
  region        = var.aws_region
  instance_type = local.instance_type
  ami_regions   = var.ami_regions
  subnet_id     = var.aws_subnet_id
  ssh_username  = local.base.ssh_username
  ami_name      = local.ami.name
  tags          = local.ami.tags
  snapshot_tags = local.ami.tags
  run_tags      = local.ami.tags

  source_ami_filter {
    owners = local.base.owners
    filters = {
      name                = local.base_ami_name
      architecture        = var.aws_architecture
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    most_recent = true
  }

  # The builder instance answers metadata requests only with IMDSv2 session tokens.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  launch_block_device_mappings {
    device_name           = local.base.root_device
    volume_size           = local.root_volume.volume_size
    volume_type           = local.root_volume.volume_type
    throughput            = local.root_volume.throughput
    iops                  = local.root_volume.iops
    encrypted             = local.root_volume.encrypted
    kms_key_id            = local.root_volume.kms_key_id
    delete_on_termination = local.root_volume.delete_on_termination
  }
}

# --- qemu: the local image, from the lab's Debian 12 base --------------------------------------------------------
# The lab's disk is one ext4 filesystem with no partition table and no bootloader: QEMU boots the kernel and initrd
# that sit beside it (-kernel/-initrd/-append through qemuargs), exactly as the lab boots its VMs. Packer copies the
# base disk into qemu_output_dir first (use_backing_file = false), so the lab's image stays pristine.

source "qemu" "debian12" {
  disk_image       = true
  use_backing_file = false
  iso_url          = "${var.lab_image_dir}/disk.qcow2"
  iso_checksum     = "none"
  skip_resize_disk = true
  format           = "qcow2"
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  disk_compression = true
  accelerator      = var.qemu_accelerator
  cpus             = var.qemu_cpus
  memory           = var.qemu_memory_mib
  headless         = true
  output_directory = var.qemu_output_dir
  vm_name          = "debian12-gunicorn-flask.qcow2"

  qemuargs = [
    ["-cpu", var.qemu_cpu_model],
    ["-kernel", "${var.lab_image_dir}/vmlinuz"],
    ["-initrd", "${var.lab_image_dir}/initrd.img"],
    ["-append", "root=/dev/vda rw console=ttyS0 panic=-1"],
    ["-serial", "file:${var.qemu_serial_log}"],
  ]

  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = var.lab_ssh_key
  ssh_timeout          = "15m"
  shutdown_command     = "systemctl poweroff"
  shutdown_timeout     = "5m"
}
